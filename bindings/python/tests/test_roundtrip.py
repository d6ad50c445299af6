# SPDX-License-Identifier: MIT
# Save/load round trips of every supported type, dtype and shape; in-place loads; listings.
import array
import ctypes

import pytest

import ckpt
from ckpt import _lib

np = pytest.importorskip("numpy")

NP_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
             "float16", "float32", "float64", "complex64", "complex128", ">i4", ">f8", "<U3",
             "S4", "datetime64[ns]"]
SHAPES = [(), (0,), (7,), (3, 4, 5), (2, 0, 3)]


def sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        flat = rng.integers(0, 2, n).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        flat = rng.integers(info.min, info.max, n, dtype=dt.newbyteorder("="), endpoint=True)
    elif dt.kind == "f":
        flat = rng.standard_normal(n) * 1e3
    elif dt.kind == "c":
        flat = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    elif dt.kind in "US":
        flat = np.array(["a", "bc", "xyz"] * n)[:n]
    elif dt.kind == "M":
        flat = rng.integers(0, 2**60, n)
    else:
        raise AssertionError(dtype)
    return np.asarray(flat).astype(dt).reshape(shape)


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_bytes_like(ck):
    nd = np.arange(24, dtype=np.int16).reshape(4, 6)
    objs = {"b": b"hello\0world", "e": b"", "ba": bytearray(b"\xff" * 1000),
            "mv": memoryview(b"read-only view"), "mv2d": memoryview(nd),
            "mvstrided": memoryview(nd)[::2], "arr": array.array("d", [1.5, -2.25]),
            "big": bytes(range(256)) * 4096}
    ck.save(3, objs)
    out = ck.load(3)
    assert list(out) == list(objs)
    assert out["b"] == objs["b"] and type(out["b"]) is bytes
    assert out["e"] == b"" and type(out["e"]) is bytes
    assert out["ba"] == objs["ba"] and type(out["ba"]) is bytearray
    assert type(out["mv"]) is memoryview and out["mv"].tobytes() == b"read-only view"
    assert out["mv2d"].format == "h" and out["mv2d"].shape == (4, 6)
    assert out["mv2d"].tolist() == nd.tolist()
    assert out["mvstrided"].shape == (2, 6) and out["mvstrided"].tolist() == nd[::2].tolist()
    assert out["arr"].format == "d" and out["arr"].tolist() == [1.5, -2.25]
    assert out["big"] == objs["big"]


@pytest.mark.parametrize("dtype", NP_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_numpy(ck, dtype, shape):
    a = sample(dtype, shape)
    ck.save(1, {"a": a})
    b = ck.load(1)["a"]
    assert isinstance(b, np.ndarray) and same(a, b)
    r = ck.regions(1)["a"]
    assert (r.kind, r.dtype, r.shape, r.size) == ("numpy", a.dtype.str, a.shape, a.nbytes)


@pytest.mark.parametrize("dtype", ["float64", "int32", "complex64", "bool"])
def test_numpy_layouts(ck, dtype):
    base = sample(dtype, (6, 8, 4), seed=1)
    objs = {"fortran": np.asfortranarray(base), "slice": base[::2, 1::3], "T": base.T,
            "neg": base[::-1], "scalar": np.float32(2.5), "readonly": base.copy()}
    objs["readonly"].flags.writeable = False
    ck.save(2, objs)
    out = ck.load(2)
    for k, v in objs.items():
        if k == "scalar":
            assert type(out[k]) is np.float32 and out[k] == v
            continue
        assert out[k].shape == v.shape and out[k].dtype == v.dtype and np.array_equal(out[k], v)
    assert out["fortran"].flags.f_contiguous  # stored in its own order: no copy either way
    assert out["T"].flags.f_contiguous  # the transpose of a C array is Fortran-contiguous


def test_numpy_in_place(ck):
    a = sample("float32", (64, 32))
    f = np.asfortranarray(sample("int64", (5, 7), seed=2))
    ck.save(4, {"a": a, "f": f, "raw": b"\x01\x02\x03\x04" * 4})
    dst = np.zeros_like(a)
    addr = dst.ctypes.data
    dst_f = np.zeros((5, 7), dtype=np.int64)                 # C order for a Fortran region
    big = np.zeros((64, 64), dtype=np.float32)
    view = big[:, ::2]                                        # a strided target
    raw = np.zeros(4, dtype=np.uint32)                       # raw bytes into any dtype
    out = ck.load(4, into={"a": dst, "f": dst_f, "raw": raw})
    assert out["a"] is dst and dst.ctypes.data == addr and np.array_equal(dst, a)
    assert out["f"] is dst_f and np.array_equal(dst_f, f)
    assert out["raw"] is raw and raw.tobytes() == b"\x01\x02\x03\x04" * 4
    ck.load(4, into={"a": view}, names=["a"])
    assert np.array_equal(view, a) and not big[:, 1::2].any()


def test_buffers_in_place(ck):
    ck.save(5, {"x": b"abcdef", "y": np.arange(3, dtype=np.int32)})
    ba = bytearray(6)
    mv_target = bytearray(12)
    out = ck.load(5, into={"x": ba, "y": memoryview(mv_target)})
    assert out["x"] is ba and ba == b"abcdef"
    assert np.frombuffer(mv_target, dtype=np.int32).tolist() == [0, 1, 2]
    c = (ctypes.c_char * 6)()
    ck.load(5, into={"x": c}, names=["x"])
    assert c.raw == b"abcdef"


def test_names_raw_latest_and_regions(ck):
    assert ck.latest() is None
    ck.save(7, {"w": np.ones(3), "t": b"x"})
    ck.save(9, {"w": np.zeros(3)})
    assert ck.latest() == 9
    out = ck.load()  # latest
    assert list(out) == ["w"] and not out["w"].any()
    assert list(ck.load(7, names=["t"])) == ["t"]
    assert ck.load(7, names="t") == {"t": b"x"}
    assert ck.load(7, raw=True)["w"] == np.ones(3).tobytes()
    regs = ck.regions(7)
    assert list(regs) == ["w", "t"] and ckpt.META_REGION not in regs
    assert regs["w"] == ckpt.Region("w", 24, "numpy", "<f8", (3,))
    assert regs["t"] == ckpt.Region("t", 1, "bytes", None, None)
    assert ck.step_nranks(7) == 1
    assert (ck.rank, ck.nranks) == (0, 1)


def test_reusing_a_step_replaces_it(ck):
    ck.save(1, {"a": b"old", "gone": b"x"})
    ck.save(1, {"a": b"new"})
    assert ck.load(1) == {"a": b"new"}


def test_wait_poll_and_shared_copy(ck, dirs):
    ck.save(1, {"a": np.arange(1000)})
    ck.wait(1)
    assert ck.poll(1) == ckpt.State.COMMITTED
    assert ck.poll(2) == ckpt.State.NONE
    ck.wait()
    # Drop the local tier (a recreated node): load reads the shared copy.
    ck.close()
    import shutil
    shutil.rmtree(dirs[0])
    dirs[0].mkdir()
    with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="test") as ck2:
        assert ck2.latest() == 1
        assert np.array_equal(ck2.load(1)["a"], np.arange(1000))


def test_step_saved_from_c_loads_as_bytes(ck):
    # No metadata region: what a C program saves.
    regs = (_lib.ckpt_region * 2)()
    blob_a, blob_b = ctypes.create_string_buffer(b"from C", 6), ctypes.create_string_buffer(3)
    regs[0].name, regs[0].data, regs[0].size = b"a", ctypes.addressof(blob_a), 6
    regs[1].name, regs[1].data, regs[1].size = b"b", ctypes.addressof(blob_b), 3
    assert _lib.lib().ckpt_save(ck._ctx, 11, regs, 2) == 0
    assert ck.load(11) == {"a": b"from C", "b": b"\0\0\0"}
    assert ck.regions(11)["a"] == ckpt.Region("a", 6, "bytes", None, None)
    dst = np.zeros(6, dtype=np.uint8)
    ck.load(11, into={"a": dst}, names=["a"])
    assert dst.tobytes() == b"from C"


def test_state_tree(ck):
    state = {"a": [1, 2.5, None, True, "s", (3, (4,))], 5: {"nested": np.arange(4)},
             "inf": float("-inf"), "nan": float("nan"), "b": b"\x00\xff", "ba": bytearray(b"z"),
             "np": np.int16(-3), "empty": {}, "tup": ()}
    ck.save_state(1, state)
    out = ck.load_state(1)
    assert out["a"] == [1, 2.5, None, True, "s", (3, (4,))]
    assert np.array_equal(out[5]["nested"], np.arange(4))
    assert out["inf"] == float("-inf") and out["nan"] != out["nan"]
    assert out["b"] == b"\x00\xff" and type(out["ba"]) is bytearray
    assert type(out["np"]) is np.int16 and out["np"] == -3
    assert out["empty"] == {} and out["tup"] == ()
    dst = np.zeros(4, dtype=np.arange(4).dtype)
    out = ck.load_state(1, into={5: {"nested": dst}})
    assert out[5]["nested"] is dst and dst.tolist() == [0, 1, 2, 3]
    assert list(ck.state_regions(1)) == [(5, "nested")]


def test_zero_copy_addresses():
    """Contiguous objects are handed to C at their own address (no copy); strided ones are
    copied once."""
    from ckpt import _objects
    a = np.arange(1000, dtype=np.float64).reshape(10, 100)
    cases = [(a, a.ctypes.data), (np.asfortranarray(a), None), (a.T, a.ctypes.data)]
    ba = bytearray(b"x" * 100)
    b = b"immutable bytes"
    for obj, want in cases + [(ba, ctypes.addressof((ctypes.c_char * 100).from_buffer(ba))),
                              (b, ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p).value)]:
        ex = _objects.export("x", obj)
        try:
            if want is None:
                want = obj.ctypes.data
            assert ex.address == want
        finally:
            ex.release()
    mv = memoryview(b)[3:]
    ex = _objects.export("x", mv)
    assert ex.address == ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p).value + 3
    ex.release()
    ex = _objects.export("x", a[:, ::2])
    assert ex.address != a.ctypes.data and ex.size == a.nbytes // 2
    ex.release()
    try:
        import torch
    except ImportError:
        return
    t = torch.randn(64, 64)
    for obj in (t, t[8:], torch.nn.Parameter(t.clone())):
        ex = _objects.export("x", obj)
        assert ex.address == obj.data_ptr()
        ex.release()
    ex = _objects.export("x", t.t())
    assert ex.address != t.data_ptr()
    ex.release()


def test_bytearray_is_pinned_during_export():
    from ckpt import _objects
    ba = bytearray(10)
    ex = _objects.export("x", ba)
    with pytest.raises(BufferError):
        ba.extend(b"more")  # the memory C is reading cannot move
    ex.release()
    ba.extend(b"more")
