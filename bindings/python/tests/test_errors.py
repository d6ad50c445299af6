# SPDX-License-Identifier: MIT
# Error paths: each raises the exception of its CKPT_E* code, with the C library's message.
import gc
import os
import warnings

import pytest

import ckpt

np = pytest.importorskip("numpy")


def test_unknown_key(dirs):
    with pytest.raises(ckpt.InvalidArgument) as ei:
        ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], no_such_key=1)
    assert ei.value.code == -1 and "no_such_key" in ei.value.message
    assert ei.value.function == "ckpt_config_set"


def test_bad_value(dirs):
    with pytest.raises(ckpt.InvalidArgument, match="compress_level"):
        ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], compress_level=99)
    with pytest.raises(ckpt.InvalidArgument, match="name"):
        ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="no/slashes")
    with pytest.raises(TypeError):
        ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], keep_local=True)


def test_missing_shared_dir(dirs, monkeypatch):
    monkeypatch.delenv("CKPT_SHARED_DIR", raising=False)
    with pytest.raises(ckpt.InvalidArgument, match="shared_dir") as ei:
        ckpt.Checkpointer(local_dir=dirs[0])
    assert ei.value.function == "ckpt_open"
    with pytest.raises(ckpt.CkptError, match="does not exist") as ei:
        ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1] / "not-mounted")
    assert ei.value.code in (-1, -5)


def test_shared_inside_local(dirs):
    inner = dirs[0] / "inner"
    inner.mkdir()
    with pytest.raises(ckpt.InvalidArgument, match="local_dir"):
        ckpt.Checkpointer(local_dir=dirs[0], shared_dir=inner)


def test_environment_variable_config(dirs, monkeypatch):
    monkeypatch.setenv("CKPT_LOCAL_DIR", str(dirs[0]))
    monkeypatch.setenv("CKPT_SHARED_DIR", str(dirs[1]))
    with ckpt.Checkpointer(name="from-env") as c:
        c.save(1, {"a": b"x"})
    assert (dirs[1] / "from-env").is_dir()


def test_wrong_step_and_region(ck):
    ck.save(1, {"a": b"abc"})
    with pytest.raises(ckpt.NotFound) as ei:
        ck.load(2)
    assert "2" in ei.value.message and isinstance(ei.value, LookupError)
    with pytest.raises(ckpt.NotFound, match="no region 'zz'"):
        ck.load(1, names=["zz"])
    with pytest.raises(ckpt.NotFound):
        ck.regions(5)
    with pytest.raises(ckpt.NotFound):
        ck.wait(7)  # never saved by this context
    with pytest.raises(ckpt.NotFound, match="save_state"):
        ck.load_state(1)


def test_load_with_no_checkpoint(ck):
    with pytest.raises(ckpt.NotFound, match="no checkpoint"):
        ck.load()


def test_load_into_wrong_size(ck):
    ck.save(1, {"a": np.zeros(10, dtype=np.float32), "b": b"12345"})
    with pytest.raises(ckpt.InvalidArgument) as ei:
        ck.load(1, into={"b": bytearray(4)}, names=["b"])
    assert "4 bytes" in ei.value.message and "5" in ei.value.message  # C's message
    assert ei.value.function == "ckpt_load"
    with pytest.raises(ckpt.InvalidArgument, match="shape"):
        ck.load(1, into={"a": np.zeros(11, dtype=np.float32)}, names=["a"])
    with pytest.raises(ckpt.InvalidArgument, match="dtype"):
        ck.load(1, into={"a": np.zeros(10, dtype=np.int32)}, names=["a"])
    ro = np.zeros(10, dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(ckpt.InvalidArgument, match="read-only"):
        ck.load(1, into={"a": ro}, names=["a"])
    with pytest.raises(ckpt.InvalidArgument, match="immutable"):
        ck.load(1, into={"b": b"xxxxx"}, names=["b"])
    with pytest.raises(ckpt.InvalidArgument, match="writable"):
        ck.load(1, into={"b": memoryview(b"xxxxx")}, names=["b"])


def test_bad_region_names(ck):
    with pytest.raises(ckpt.InvalidArgument, match="too long"):  # C's check
        ck.save(1, {"x" * 256: b""})
    with pytest.raises(ckpt.InvalidArgument, match="empty"):
        ck.save(1, {"": b""})
    with pytest.raises(ckpt.InvalidArgument, match="NUL"):
        ck.save(1, {"a\0b": b""})
    with pytest.raises(ckpt.InvalidArgument, match="reserved"):
        ck.save(1, {ckpt.META_REGION: b""})
    with pytest.raises(TypeError):
        ck.save(1, {3: b""})
    ck.save(1, {"\u00e9t\u00e9 \U0001f600": b"utf8"})
    assert ck.load(1) == {"\u00e9t\u00e9 \U0001f600": b"utf8"}


def test_bad_objects_and_steps(ck):
    with pytest.raises(TypeError, match="cannot save a str"):
        ck.save(1, {"s": "text"})
    with pytest.raises(TypeError, match="dtype"):
        ck.save(1, {"o": np.array([object()])})
    with pytest.raises(TypeError, match="dtype"):
        ck.save(1, {"rec": np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])})
    with pytest.raises(TypeError, match="mask"):
        ck.save(1, {"m": np.ma.masked_array([1, 2], mask=[0, 1])})
    with pytest.raises(ckpt.InvalidArgument, match="out of range"):
        ck.save(-1, {})
    with pytest.raises(ckpt.InvalidArgument, match="out of range"):
        ck.save(2**64 - 1, {})  # CKPT_STEP_ALL is not a step
    with pytest.raises(TypeError):
        ck.save(1.5, {})
    with pytest.raises(TypeError):
        ck.save(1, [("a", b"")])


def test_closed(dirs):
    c = ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1])
    with c:
        c.save(1, {"a": b"x"})
    assert c.closed
    c.close()  # twice: a no-op
    with pytest.raises(ckpt.InvalidArgument, match="closed"):
        c.latest()


def test_exception_in_with_block_still_closes(dirs):
    with pytest.raises(RuntimeError):
        with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1]) as c:
            c.save(1, {"a": b"x"})
            raise RuntimeError("boom")
    assert c.closed


def test_garbage_collected_checkpointer_finishes_its_drains(dirs):
    c = ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="gc")
    c.save(1, {"a": np.arange(100000)})
    del c
    gc.collect()
    with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="gc") as c2:
        c2.wait()
    assert any(f.startswith("MANIFEST") for _, _, fs in os.walk(dirs[1] / "gc") for f in fs)


def _flip_middle(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))


def test_corrupt_copies(ck, dirs):
    data = np.random.default_rng(0).integers(0, 2**63, 200000)
    ck.save(1, {"d": data})
    ck.wait()
    local = [os.path.join(r, f) for r, _, fs in os.walk(dirs[0]) for f in fs
             if f.endswith(".ckl")]
    shared = [os.path.join(r, f) for r, _, fs in os.walk(dirs[1]) for f in fs
              if f.endswith(".ckz")]
    assert len(local) == 1 and len(shared) == 1
    _flip_middle(local[0])
    assert np.array_equal(ck.load(1)["d"], data)  # the shared copy steps in
    _flip_middle(shared[0])
    with pytest.raises(ckpt.Corrupt) as ei:
        ck.load(1)
    assert "shared" in ei.value.message


def test_corrupt_metadata(ck):
    import ctypes
    from ckpt import _lib
    regs = (_lib.ckpt_region * 1)()
    blob = b'{"format": "libckpt-python", "version": 1, "regions": []}'
    regs[0].name, regs[0].size = ckpt.META_REGION.encode(), len(blob)
    regs[0].data = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p)
    assert _lib.lib().ckpt_save(ck._ctx, 1, regs, 1) == 0
    with pytest.raises(ckpt.Corrupt, match="metadata"):
        ck.load(1)
    ck._save(2, {"a": np.zeros(4)}, None)
    doc_shape = {"format": "libckpt-python", "version": 1,
                 "regions": {"a": {"kind": "numpy", "dtype": "<f8", "shape": [1000]}}}
    import json
    blob = json.dumps(doc_shape).encode()
    regs = (_lib.ckpt_region * 2)()
    zeros = (ctypes.c_char * 32)()
    regs[0].name, regs[0].data, regs[0].size = b"a", ctypes.addressof(zeros), 32
    regs[1].name, regs[1].size = ckpt.META_REGION.encode(), len(blob)
    regs[1].data = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p)
    assert _lib.lib().ckpt_save(ck._ctx, 3, regs, 2) == 0
    with pytest.raises(ckpt.Corrupt, match="8000 bytes"):
        ck.load(3)
    assert ck.load(3, raw=True)["a"] == bytes(32)


def test_no_resource_warning_on_close(dirs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1]):
            pass


def _libmpi_loaded():
    with open("/proc/self/maps") as f:
        return "libmpi" in f.read()


def test_mpi_in_a_build_without_mpi(dirs):
    """comm= goes through ckpt_open_mpi_f and the Fortran handle (comm.py2f()); a libckpt built
    without MPI answers NotSupported. (With MPI, tests/test_examples.py runs it under mpirun:
    calling MPI here, outside mpirun and before MPI_Init, is not an option.)"""
    ckpt.version()  # load the library and its dependencies
    if _libmpi_loaded():
        pytest.skip("libckpt is built with MPI (the MPI path is tested under mpirun)")

    class Comm:  # what the binding needs of an mpi4py communicator
        def py2f(self):
            return 0

    for comm in (Comm(), 0):
        with pytest.raises(ckpt.NotSupported, match="without MPI") as ei:
            ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], comm=comm)
        assert ei.value.code == -7 and ei.value.function == "ckpt_open_mpi_f"


def test_second_checkpointer_same_job_same_process_is_busy(dirs):
    """A second Checkpointer of the same job rank in one process: Busy (issue 12); closing it
    never drops the first one's lock, and another job or a later open is fine."""
    import errno
    with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="j"):
        with pytest.raises(ckpt.Busy) as ei:
            ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="j")
        assert ei.value.errno == errno.EBUSY and ei.value.function == "ckpt_open"
        assert "this process" in ei.value.message
        with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="other"):
            pass
    with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="j"):
        pass


def test_busy_in_another_process_is_an_os_error(dirs):
    """A job open in another process: Busy, which is also an OSError with errno EBUSY."""
    import errno
    import subprocess
    import sys
    from conftest import child_env
    code = ("import ckpt, sys\n"
            "c = ckpt.Checkpointer(local_dir=sys.argv[1], shared_dir=sys.argv[2], name='b')\n"
            "print('open', flush=True)\n"
            "sys.stdin.read()\n"
            "c.close()\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(dirs[0]), str(dirs[1])],
                             env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline() == "open\n"
        with pytest.raises(OSError) as ei:
            ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="b")
        assert type(ei.value) is ckpt.Busy and ei.value.errno == errno.EBUSY
        assert ei.value.code == -11 and "another process" in ei.value.message
    finally:
        child.communicate("", timeout=60)
    assert child.returncode == 0
    with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="b"):
        pass  # free again once the other process closed it
