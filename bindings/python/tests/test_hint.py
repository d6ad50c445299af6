# SPDX-License-Identifier: MIT
# Element width hints from dtypes (ckpt_region_hint): what save() passes, what the drain then
# records in the compressed shard's index, hint(); wait(timeout=) (ckpt_wait_timeout) and
# drain_lag() (ckpt_drain_lag).
import glob
import math
import os
import struct
import time

import numpy as np
import pytest

import ckpt


def chunk_codes(shared, name, step):
    """{region: [(xform, width) per chunk]} read from the index of rank 0's compressed shard of
    `step` (docs/FORMAT.md 3.4, 3.5 and 3.8.1): an independent reader, byte by byte."""
    paths = glob.glob(os.path.join(str(shared), name, "step-%020d" % step, "rank-000000-*.ckz"))
    assert len(paths) == 1, paths
    with open(paths[0], "rb") as f:
        data = f.read()
    trailer = data[-64:]
    assert trailer[:8] == b"CKPTTRLR"
    index_offset, index_size = struct.unpack_from("<QQ", trailer, 8)
    idx = data[index_offset:index_offset + index_size]
    out, p = {}, 0
    while p < len(idx):
        name_len, transform, _codec, nchunks = struct.unpack_from("<HBBI", idx, p)
        rname = idx[p + 40:p + 40 + name_len].decode("utf-8")
        p += 40 + name_len
        size = 32 if transform == 1 else 24
        out[rname] = [(idx[p + c * size + 24], idx[p + c * size + 25]) if transform == 1
                      else (0, 0) for c in range(nchunks)]
        p += size * nchunks
    assert p == len(idx)
    return out


def fp32_data(n, seed=1):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_elem_width_of_dtypes():
    assert ckpt.elem_width(np.float32) == 4
    assert ckpt.elem_width(np.dtype("<f2")) == 2
    assert ckpt.elem_width(np.float64) == 8
    assert ckpt.elem_width(np.complex64) == 4   # pairs of float32
    assert ckpt.elem_width(np.complex128) == 8
    assert ckpt.elem_width(np.zeros(3, np.float32)) == 4
    for dt in (np.int64, np.int32, np.uint8, np.bool_, np.dtype("S4")):
        assert ckpt.elem_width(dt) == 0, dt     # no hint: the library detects
    if np.dtype(np.longdouble).itemsize not in (1, 2, 4, 8):
        assert ckpt.elem_width(np.longdouble) == 0
    assert ckpt.elem_width(memoryview(np.zeros(4, np.float64))) == 8
    assert ckpt.elem_width(memoryview(b"abcd")) == 0
    assert ckpt.elem_width("float32") == 0      # not a dtype


def test_elem_width_of_torch_dtypes():
    torch = pytest.importorskip("torch")
    assert ckpt.elem_width(torch.bfloat16) == 2
    assert ckpt.elem_width(torch.float16) == 2
    assert ckpt.elem_width(torch.float32) == 4
    assert ckpt.elem_width(torch.float64) == 8
    assert ckpt.elem_width(torch.complex64) == 4
    assert ckpt.elem_width(torch.zeros(2, dtype=torch.bfloat16)) == 2
    for dt in (torch.int64, torch.int8, torch.uint8, torch.bool):
        assert ckpt.elem_width(dt) == 0, dt


def test_save_passes_dtype_widths(dirs, monkeypatch):
    calls = []
    with ckpt.Checkpointer(dirs[0], dirs[1], name="hints") as c:
        real = c._lib.ckpt_region_hint
        monkeypatch.setattr(c._lib, "ckpt_region_hint",
                            lambda ctx, name, w: calls.append((name, w)) or real(ctx, name, w))
        objs = {"f32": fp32_data(1000), "f16": np.zeros(10, np.float16),
                "f64": np.zeros(10), "c64": np.zeros(10, np.complex64),
                "i64": np.arange(10), "raw": b"bytes", "mv": memoryview(np.zeros(8))}
        c.save(1, objs)
        assert sorted(calls) == sorted([(b"f32", 4), (b"f16", 2), (b"f64", 8), (b"c64", 4),
                                        (b"mv", 8)])
        calls.clear()
        c.save(2, objs)
        assert calls == []  # unchanged: the library keeps its hints
        c.save(3, {"f32": np.arange(10), "f16": np.zeros(10, np.float32)})
        assert sorted(calls) == [(b"f16", 4), (b"f32", 0)]  # now integers: hint removed
        c.wait()
        for step in (1, 2):
            got = c.load(step)
            assert np.array_equal(got["f32"], objs["f32"])
            assert got["raw"] == b"bytes"


def test_torch_dtypes_hinted(dirs, monkeypatch):
    torch = pytest.importorskip("torch")
    calls = []
    with ckpt.Checkpointer(dirs[0], dirs[1], name="thints") as c:
        real = c._lib.ckpt_region_hint
        monkeypatch.setattr(c._lib, "ckpt_region_hint",
                            lambda ctx, name, w: calls.append((name, w)) or real(ctx, name, w))
        w = torch.randn(4096).to(torch.bfloat16)
        c.save_state(1, {"model": {"w": w, "h": torch.zeros(3, dtype=torch.float16),
                                   "n": torch.zeros(3, dtype=torch.int64)}})
        widths = dict(calls)
        assert sorted(widths.values()) == [2, 2]  # the int64 tensor is not hinted
        c.wait()
        got = c.load_state(1)
        assert torch.equal(got["model"]["w"], w)


def test_drain_uses_hints(dirs):
    """The width in the shard's index is the dtype's, not what detection picks from the bytes:
    float32 data saved as a float16 view is grouped by 2 (detection alone picks 4 for it)."""
    data = fp32_data(256 * 1024)  # 1 MiB: 16 chunks of 64 KiB
    with ckpt.Checkpointer(dirs[0], dirs[1], name="drainhint", chunk_size="64K") as c:
        c.save(1, {"as_f16": data.view(np.float16), "as_u8": data.view(np.uint8),
                   "as_f32": data})
        c.wait(1)
        codes = chunk_codes(dirs[1], "drainhint", 1)
        assert set(codes["as_f16"]) == {(2, 2)}     # hinted: 2, bytegroup
        assert set(codes["as_f32"]) == {(2, 4)}
        assert set(codes["as_u8"]) == {(2, 4)}      # no hint (uint8): detected
        # an explicit hint outranks the dtype's, and stays over later saves
        c.hint("as_f32", 8)
        c.hint("as_u8", np.float16)
        c.save(2, {"as_f16": data.view(np.float16), "as_u8": data.view(np.uint8),
                   "as_f32": data})
        c.save(3, {"as_f32": data})
        c.wait()
        codes = chunk_codes(dirs[1], "drainhint", 2)
        assert set(codes["as_f32"]) == {(2, 8)}
        assert set(codes["as_u8"]) == {(2, 2)}
        assert set(chunk_codes(dirs[1], "drainhint", 3)["as_f32"]) == {(2, 8)}
        # hint(name, 0) hands the name back to save()'s dtype hints
        c.hint("as_f32", 0)
        c.save(4, {"as_f32": data})
        c.wait(4)
        assert set(chunk_codes(dirs[1], "drainhint", 4)["as_f32"]) == {(2, 4)}
        # a wrong width still reads back bit-exact, from the shared tier
        for step in (1, 2, 3):
            got = c.load(step)
            assert np.array_equal(got["as_f32"], data)
        assert np.array_equal(c.load(2)["as_f16"].view(np.float32), data)


def test_hint_arguments(ck):
    ck.hint("x", 4)
    ck.hint("x", np.float64)
    ck.hint("x", np.int64(2))  # an integer, not a dtype
    with pytest.raises(ckpt.InvalidArgument, match="element width 3"):
        ck.hint("x", 3)
    with pytest.raises(ckpt.InvalidArgument):
        ck.hint("x", -1)
    with pytest.raises(ckpt.InvalidArgument, match="1..255"):
        ck.hint("n" * 256, 4)
    with pytest.raises(ckpt.InvalidArgument):
        ck.hint("", 4)
    with pytest.raises(TypeError):
        ck.hint("x", True)
    with pytest.raises(TypeError):
        ck.hint("x", "float32")
    with pytest.raises(TypeError):
        ck.hint(b"x", 4)
    ck.close()
    with pytest.raises(ckpt.InvalidArgument, match="closed"):
        ck.hint("x", 4)


def slow_drain(dirs, name):
    # level 19 without transforms: a few MiB take the drain thread a second or more
    return ckpt.Checkpointer(dirs[0], dirs[1], name=name, compress_level=19,
                             chunk_transform="none", drain_threads=1, chunk_size="4M")


def test_wait_timeout_and_drain_lag(dirs):
    with slow_drain(dirs, "lag") as c:
        lag = c.drain_lag()
        assert lag == ckpt.DrainLag(None, None, 0.0, False, 0.0, 0, 0)
        c.save(1, {"x": b"small"})
        c.wait(1, timeout=60)
        data = fp32_data(1024 * 1024)  # 4 MiB
        c.save(2, {"w": data})
        t0 = time.monotonic()
        with pytest.raises(ckpt.TimedOut) as e:
            c.wait(2, timeout=0)
        assert isinstance(e.value, TimeoutError)
        assert "not committed" in str(e.value)
        with pytest.raises(ckpt.TimedOut):
            c.wait(timeout=0.05)
        assert time.monotonic() - t0 < 2.0
        lag = c.drain_lag()
        assert lag.newest_local == 2 and lag.newest_committed == 1
        assert lag.pending >= 1 and lag.seconds_behind >= 0.0 and not lag.stalled
        c.wait(2, timeout=120)
        lag = c.drain_lag()
        assert (lag.newest_local, lag.newest_committed, lag.pending) == (2, 2, 0)
        assert lag.seconds_behind == 0.0
        c.wait(timeout=0)  # everything committed: returns at once
        assert np.array_equal(c.load(2)["w"], data)


def test_wait_timeout_arguments(ck):
    ck.save(1, {"x": b"abc"})
    with pytest.raises(ckpt.InvalidArgument):
        ck.wait(1, timeout=-1)
    with pytest.raises(ckpt.InvalidArgument):
        ck.wait(1, timeout=math.nan)
    with pytest.raises(TypeError):
        ck.wait(1, timeout="5")
    with pytest.raises(TypeError):
        ck.wait(1, timeout=True)
    with pytest.raises(ckpt.NotFound):
        ck.wait(99, timeout=1)
    ck.wait(1, timeout=30)
    ck.wait(1, timeout=math.inf)
