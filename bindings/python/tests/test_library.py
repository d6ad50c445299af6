# SPDX-License-Identifier: MIT
# Finding the library, ctypes declarations, the exception classes.
import ctypes
import errno
import os
import pickle
import subprocess
import sys

import pytest

import ckpt
from ckpt import _lib
from conftest import PKG_ROOT


def _import_in_child(env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("CKPT_LIBRARY", "CKPT_BUILD_DIR")}
    env.update(env_changes)
    env["PYTHONPATH"] = PKG_ROOT
    code = "import ckpt; print(ckpt.library_path()); print(ckpt.version())"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd="/",
                          capture_output=True, text=True, timeout=60)


def test_version_and_strerror():
    parts = ckpt.version().split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)
    assert ckpt.strerror(-5) == "no such step, region or directory"
    assert ckpt.strerror(-12345)  # never NULL, also for unknown codes


def test_every_function_declared():
    lib = _lib.lib()
    for name, (restype, argtypes) in _lib._PROTOTYPES.items():
        fn = getattr(lib, name)
        assert fn.restype is restype, name
        assert fn.argtypes == argtypes, name
    # The library is a CDLL (GIL released during calls), not a PyDLL.
    assert type(lib) is ctypes.CDLL
    assert lib._func_flags_ & ctypes._FUNCFLAG_PYTHONAPI == 0


def test_ckpt_library_env():
    r = _import_in_child({"CKPT_LIBRARY": ckpt.library_path()})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == ckpt.version()


def test_ckpt_library_env_bad_path_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nope" / "libckpt.so.1")
    r = _import_in_child({"CKPT_LIBRARY": missing})
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr and missing in r.stderr


def test_build_dir_env():
    lib_path = ckpt.library_path()
    if not lib_path.endswith(os.path.join("src", ".libs", "libckpt.so.1")):
        pytest.skip("library not loaded from a build tree")
    build = os.path.dirname(os.path.dirname(os.path.dirname(lib_path)))
    r = _import_in_child({"CKPT_BUILD_DIR": build})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == os.path.join(build, "src", ".libs", "libckpt.so.1")


def test_not_found_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("CKPT_LIBRARY", raising=False)
    monkeypatch.setenv("CKPT_BUILD_DIR", str(tmp_path))
    monkeypatch.setattr(_lib.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(_lib, "SONAME", "libckpt-does-not-exist.so.1")
    with pytest.raises(ckpt.LibraryNotFound) as ei:
        _lib._load()
    msg = str(ei.value)
    assert str(tmp_path) in msg and "CKPT_LIBRARY" in msg and "CKPT_BUILD_DIR" in msg


@pytest.mark.parametrize("code,cls,base,os_errno", [
    (-1, ckpt.InvalidArgument, ValueError, None), (-2, ckpt.OutOfMemory, MemoryError, None),
    (-3, ckpt.CkptIOError, OSError, errno.EIO), (-4, ckpt.NoSpace, OSError, errno.ENOSPC),
    (-5, ckpt.NotFound, LookupError, None), (-6, ckpt.Corrupt, ckpt.CkptError, None),
    (-7, ckpt.NotSupported, ckpt.CkptError, None),
    (-8, ckpt.TimedOut, TimeoutError, errno.ETIMEDOUT),
    (-9, ckpt.PermissionDenied, PermissionError, errno.EACCES),
    (-10, ckpt.MPIError, ckpt.CkptError, None), (-11, ckpt.Busy, OSError, errno.EBUSY),
    (-12, ckpt.RanksMismatch, ckpt.CkptError, None), (-13, ckpt.StaleSave, ckpt.CkptError, None),
])
def test_error_classes(code, cls, base, os_errno):
    e = ckpt.error_from_code(code, "what failed", "ckpt_x")
    assert type(e) is cls and isinstance(e, base) and isinstance(e, ckpt.CkptError)
    assert e.code == cls.code == code and e.message == "what failed"
    assert "what failed" in str(e) and "ckpt_x" in str(e)
    assert e.description == ckpt.strerror(code)
    # The failures of a system call are OSErrors with their errno: `except OSError` around a
    # training loop catches a full disk from libckpt as it does from open(). The others are not.
    assert isinstance(e, OSError) == (os_errno is not None)
    if os_errno is not None:
        assert e.errno == os_errno and e.strerror == "what failed"
        with pytest.raises(OSError):
            raise e
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is cls and again.message == e.message and again.function == "ckpt_x"
    assert getattr(again, "errno", None) == os_errno


def test_not_found_is_not_an_os_error():
    """No such step or region is an answer (a LookupError), not a storage failure: a handler
    for broken storage (`except OSError`) must not swallow it."""
    assert not issubclass(ckpt.NotFound, OSError)
    assert not issubclass(ckpt.Corrupt, OSError)


def test_unknown_code_is_base_class():
    e = ckpt.error_from_code(-99, "future")
    assert type(e) is ckpt.CkptError and e.code == -99


def test_dynamic_loader_fallback(tmp_path):
    """An installed package (no build tree above it, no CKPT_* variables) finds the library
    through the dynamic loader: here LD_LIBRARY_PATH, as for a --prefix install."""
    lib_path = ckpt.library_path()
    if not os.path.isabs(lib_path):
        pytest.skip("library already found by the dynamic loader")
    import shutil
    shutil.copytree(os.path.join(PKG_ROOT, "ckpt"), tmp_path / "ckpt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("CKPT_LIBRARY", "CKPT_BUILD_DIR")}
    env["PYTHONPATH"] = str(tmp_path)
    env["LD_LIBRARY_PATH"] = os.path.dirname(lib_path)
    code = "import ckpt; print(ckpt.library_path()); print(ckpt.version())"
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["libckpt.so.1", ckpt.version()]
    del env["LD_LIBRARY_PATH"]
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True,
                       text=True, timeout=60)
    if r.returncode == 0:
        pytest.skip("a libckpt is installed system-wide")
    assert "LibraryNotFound" in r.stderr and "CKPT_LIBRARY" in r.stderr
