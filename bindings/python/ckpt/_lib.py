# SPDX-License-Identifier: MIT
"""Finding and loading libckpt, and the ctypes declaration of every C function the package calls."""
import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Optional

# The soname this package was written against (libckpt.map version LIBCKPT_1).
SONAME = "libckpt.so.1"

# Pinned forever by include/ckpt.h.
CKPT_OK = 0
CKPT_EINVAL = -1
CKPT_ENOMEM = -2
CKPT_EIO = -3
CKPT_ENOSPC = -4
CKPT_ENOENT = -5
CKPT_ECORRUPT = -6
CKPT_ENOTSUP = -7
CKPT_ETIMEDOUT = -8
CKPT_EPERM = -9
CKPT_EMPI = -10
CKPT_EBUSY = -11
CKPT_ENRANKS = -12
CKPT_ESTALE = -13

CKPT_TIER_LOCAL = 1
CKPT_TIER_SHARED = 2

CKPT_NAME_MAX = 255
CKPT_STEP_ALL = 2**64 - 1


class LibraryNotFound(ImportError):
    """libckpt could not be found or loaded; the message lists every place that was tried."""


class ckpt_region(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class ckpt_region_info(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * (CKPT_NAME_MAX + 1)), ("size", ctypes.c_uint64)]


class ckpt_step_info(ctypes.Structure):
    _fields_ = [("step", ctypes.c_uint64), ("save_id", ctypes.c_uint64),
                ("created_ns", ctypes.c_uint64), ("nranks", ctypes.c_uint32),
                ("tiers", ctypes.c_uint32), ("committed", ctypes.c_int),
                ("reserved", ctypes.c_uint32 * 7)]


class ckpt_lag_info(ctypes.Structure):
    _fields_ = [("newest_local", ctypes.c_uint64), ("newest_committed", ctypes.c_uint64),
                ("has_local", ctypes.c_int), ("has_committed", ctypes.c_int),
                ("seconds_behind", ctypes.c_double), ("stalled", ctypes.c_int),
                ("stalled_seconds", ctypes.c_double), ("pending", ctypes.c_uint),
                ("skipped", ctypes.c_uint), ("reserved", ctypes.c_uint64 * 4)]


_c_config_p = ctypes.c_void_p  # opaque ckpt_config *
_c_ctx_p = ctypes.c_void_p     # opaque ckpt_ctx *
_int = ctypes.c_int
_u64 = ctypes.c_uint64
_u32 = ctypes.c_uint32
_size = ctypes.c_size_t
_str = ctypes.c_char_p

# name: (restype, argtypes). Every function declared here is an exported symbol of libckpt.so.1;
# ckpt_open_mpi (which takes an MPI_Comm by value) is deliberately absent: ctypes cannot build
# an MPI_Comm, so MPI goes through ckpt_open_mpi_f and the communicator's Fortran handle.
_PROTOTYPES = {
    "ckpt_config_new": (_int, [ctypes.POINTER(_c_config_p)]),
    "ckpt_config_set": (_int, [_c_config_p, _str, _str]),
    "ckpt_config_get": (_str, [_c_config_p, _str]),
    "ckpt_config_errmsg": (_str, [_c_config_p]),
    "ckpt_config_free": (None, [_c_config_p]),
    "ckpt_open": (_int, [ctypes.POINTER(_c_ctx_p), _c_config_p]),
    "ckpt_open_mpi_f": (_int, [ctypes.POINTER(_c_ctx_p), _c_config_p, _int]),
    "ckpt_save": (_int, [_c_ctx_p, _u64, ctypes.POINTER(ckpt_region), _size]),
    "ckpt_wait": (_int, [_c_ctx_p, _u64]),
    "ckpt_poll": (_int, [_c_ctx_p, _u64, ctypes.POINTER(_int)]),
    "ckpt_latest": (_int, [_c_ctx_p, ctypes.POINTER(_u64)]),
    "ckpt_load_rank": (_int, [_c_ctx_p, _u64, _u32, _str, ctypes.c_void_p, _size]),
    "ckpt_region_size_rank": (_int, [_c_ctx_p, _u64, _u32, _str, ctypes.POINTER(_size)]),
    "ckpt_step_nranks": (_int, [_c_ctx_p, _u64, ctypes.POINTER(_u32)]),
    "ckpt_rank": (_int, [_c_ctx_p, ctypes.POINTER(_u32), ctypes.POINTER(_u32)]),
    "ckpt_region_size": (_int, [_c_ctx_p, _u64, _str, ctypes.POINTER(_size)]),
    "ckpt_list_regions": (_int, [_c_ctx_p, _u64, ctypes.POINTER(ckpt_region_info), _size,
                                 ctypes.POINTER(_size)]),
    "ckpt_load": (_int, [_c_ctx_p, _u64, _str, ctypes.c_void_p, _size]),
    # LIBCKPT_2
    "ckpt_list_steps": (_int, [_c_ctx_p, ctypes.POINTER(ckpt_step_info), _size,
                               ctypes.POINTER(_size)]),
    "ckpt_close": (_int, [_c_ctx_p]),
    "ckpt_strerror": (_str, [_int]),
    "ckpt_errmsg": (_str, [_c_ctx_p]),
    "ckpt_version": (_str, []),
    # snapshot mode (LIBCKPT_2)
    "ckpt_wait_local": (_int, [_c_ctx_p, _u64]),
    "ckpt_stage_alloc": (_int, [_c_ctx_p, _size, ctypes.POINTER(ctypes.c_void_p)]),
    "ckpt_stage_free": (_int, [_c_ctx_p, ctypes.c_void_p]),
    "ckpt_save_staged": (_int, [_c_ctx_p, _u64, ctypes.POINTER(ckpt_region), _size]),
    # bounded failure and drain lag (LIBCKPT_2)
    "ckpt_wait_timeout": (_int, [_c_ctx_p, _u64, ctypes.c_double]),
    "ckpt_drain_lag": (_int, [_c_ctx_p, ctypes.POINTER(ckpt_lag_info)]),
    # per-region element width hints (LIBCKPT_2)
    "ckpt_region_hint": (_int, [_c_ctx_p, _str, ctypes.c_uint]),
}


def _build_tree_candidates():
    """src/.libs/libckpt.so.1 of a libtool build tree: $CKPT_BUILD_DIR's, then, when this package
    is the one of a source tree (<repo>/bindings/python/ckpt), the tree's own in-tree build
    (<repo>/src/.libs) or out-of-tree one in <repo>/build. An installed package looks no
    further than $CKPT_BUILD_DIR: a stale build tree must not shadow the installed library."""
    found = []
    build_dir = os.environ.get("CKPT_BUILD_DIR")
    if build_dir:
        found.append(os.path.join(build_dir, "src", ".libs", SONAME))
    pkg = os.path.dirname(os.path.abspath(__file__))
    python_dir = os.path.dirname(pkg)
    bindings_dir = os.path.dirname(python_dir)
    if os.path.basename(python_dir) == "python" and os.path.basename(bindings_dir) == "bindings":
        repo = os.path.dirname(bindings_dir)
        found.append(os.path.join(repo, "src", ".libs", SONAME))
        found.append(os.path.join(repo, "build", "src", ".libs", SONAME))
    return found


def _installed_candidates():
    """The library installed together with this package by `make install`, whose libdir
    bindings/python/install.sh wrote into ckpt/_install.py. Absent in a source tree and in a
    pip-installed package."""
    try:
        from . import _install
    except ImportError:
        return []
    libdir = getattr(_install, "LIBDIR", None)
    return [os.path.join(libdir, SONAME)] if isinstance(libdir, str) else []


def _fallback_candidates():
    """Where `make install` puts the library when the dynamic loader does not know it yet
    (libtool does not run ldconfig, and /usr/local/lib is in ld.so.cache only after it): this
    Python's prefix (a virtual environment the library was configured into: --prefix=$VENV,
    or /usr), then /usr/local, the default prefix."""
    found = []
    for prefix in (sys.prefix, sys.base_prefix, "/usr/local"):
        path = os.path.join(prefix, "lib", SONAME)
        if path not in found:
            found.append(path)
    return found


def _try_paths(paths, tried):
    for path in paths:
        if os.path.exists(path):
            try:
                return _declare(ctypes.CDLL(path)), path
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
        else:
            tried.append(path + " (absent)")
    return None


def _load():
    tried = []
    explicit = os.environ.get("CKPT_LIBRARY")
    if explicit:
        # An explicit choice is never silently replaced by another copy of the library.
        try:
            return _declare(ctypes.CDLL(explicit)), explicit
        except OSError as e:
            raise LibraryNotFound("CKPT_LIBRARY=%s cannot be loaded: %s" % (explicit, e)) from e
    found = _try_paths(_build_tree_candidates() + _installed_candidates(), tried)
    if found:
        return found
    names = []
    known = ctypes.util.find_library("ckpt")  # ld.so.cache; also honours LD_LIBRARY_PATH
    if known:
        names.append(known)
    names.append(SONAME)
    for name in names:
        try:
            return _declare(ctypes.CDLL(name)), name
        except OSError as e:
            tried.append("%s (%s)" % (name, e))
    found = _try_paths(_fallback_candidates(), tried)
    if found:
        return found
    raise LibraryNotFound(
        "libckpt (%s) was not found. Install it (make install), or set "
        "CKPT_LIBRARY to the path of libckpt.so.1, or CKPT_BUILD_DIR to a build tree. Tried:\n  %s"
        % (SONAME, "\n  ".join(tried)))


def _declare(lib):
    # ctypes.CDLL (unlike ctypes.PyDLL) releases the GIL for the duration of every foreign call,
    # so other Python threads (data loaders, logging) keep running while ckpt_save writes or
    # ckpt_load reads gigabytes. This is why the library is loaded with CDLL; the C API is
    # thread-safe (calls on one context are serialized by the library), and the package never
    # touches Python objects from C. tests/test_gil.py checks it against a PyDLL control.
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)  # AttributeError here means a libckpt older than this package
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_lock = threading.Lock()
_cached = None


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use, so that `import ckpt` never fails)."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                _cached = _load()
    return _cached[0]


def library_path() -> str:
    """Where the loaded libckpt came from (a path, or the name given to the dynamic loader)."""
    lib()
    return _cached[1]


def decode(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b is not None else ""
