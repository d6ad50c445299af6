# SPDX-License-Identifier: MIT
"""Python bindings of libckpt: fast local checkpoints, drained asynchronously to a shared volume.

    import ckpt
    with ckpt.Checkpointer(local_dir="/nvme/ckpt", shared_dir="/mnt/pvc/ckpt", name="run3") as ck:
        ck.save(100, {"weights": array, "step_info": b"..."})
        step = ck.latest()
        regions = ck.load(step)

The library is found through $CKPT_LIBRARY (a path), a build tree ($CKPT_BUILD_DIR, or one
above this package), the directory `make install` recorded when it installed this package, the
dynamic loader, or lib/ of this Python's prefix and /usr/local/lib. NumPy, PyTorch and mpi4py
are optional."""
from ._lib import CKPT_NAME_MAX, CKPT_STEP_ALL, LibraryNotFound, library_path
from ._objects import elem_width
from .checkpointer import META_REGION, Checkpointer, DrainLag, Region, State, StepInfo
from .errors import (Busy, CkptError, Corrupt, CkptIOError, InvalidArgument, MPIError, NoSpace,
                     NotFound, NotSupported, OutOfMemory, PermissionDenied, RanksMismatch,
                     StaleSave, TimedOut, error_from_code)
from .torch_state import Restored, rng_state, set_rng_state, torch_load, torch_save

__version__ = "0.1.0"

__all__ = [
    "Checkpointer", "DrainLag", "Region", "State", "StepInfo", "elem_width", "META_REGION", "CKPT_NAME_MAX", "CKPT_STEP_ALL",
    "CkptError", "InvalidArgument", "OutOfMemory", "CkptIOError", "NoSpace", "NotFound",
    "Corrupt", "NotSupported", "TimedOut", "PermissionDenied", "MPIError", "Busy", "RanksMismatch", "StaleSave",
    "error_from_code",
    "LibraryNotFound", "library_path", "version", "strerror",
    "torch_save", "torch_load", "Restored", "rng_state", "set_rng_state",
]


def version() -> str:
    """The loaded libckpt's version, "MAJOR.MINOR.PATCH" (ckpt_version)."""
    from . import _lib
    return _lib.decode(_lib.lib().ckpt_version())


def strerror(code: int) -> str:
    """ckpt_strerror: the short description of a CKPT_* code."""
    from . import _lib
    return _lib.decode(_lib.lib().ckpt_strerror(code))
