# SPDX-License-Identifier: MIT
"""Exceptions: one CkptError subclass per pinned CKPT_E* code, carrying the C library's message.

The codes that stand for a failed system call are also the matching built-in OSError subclass
with its errno, so that `except OSError` (or `except TimeoutError`, `except PermissionError`)
around a training loop catches a full disk as it catches any other: CkptIOError (EIO), NoSpace
(ENOSPC), TimedOut (TimeoutError, ETIMEDOUT), PermissionDenied (PermissionError, EACCES), Busy
(EBUSY). NotFound ("no such step, region or directory") stays a LookupError, not a FileNotFoundError: a
checkpoint that does not exist yet is an expected answer, not an OS failure, and must not be
swallowed by a handler meant for broken storage."""
import errno as _errno
import os as _os
from typing import Any, Callable, Dict, Optional, Tuple, Type

from . import _lib

__all__ = [
    "CkptError", "InvalidArgument", "OutOfMemory", "CkptIOError", "NoSpace", "NotFound",
    "Corrupt", "NotSupported", "TimedOut", "PermissionDenied", "MPIError", "Busy", "error_from_code",
]


class CkptError(Exception):
    """A libckpt call failed.

    code     the negative CKPT_E* code (class attribute on subclasses, e.g. NotFound.code == -5)
    message  what failed, on which path, in the system's words (ckpt_errmsg), or the binding's
             own explanation for a check made in Python
    function the C function (or Python method) that failed, when known
    """

    code: Optional[int] = None
    message: str
    function: Optional[str]

    def __init__(self, code: int, message: str = "", function: Optional[str] = None) -> None:
        os_errno = getattr(type(self), "os_errno", None)
        if os_errno is not None:
            # OSError's own constructor sets errno and strerror from (errno, strerror); the
            # CKPT_E* code, the message and the function are kept in our attributes.
            super().__init__(os_errno, message or _os.strerror(os_errno))
        else:
            super().__init__(code, message, function)
        self.code = code
        self.message = message
        self.function = function

    @property
    def description(self) -> str:
        """ckpt_strerror(code): the short generic text for the code."""
        try:
            return _lib.decode(_lib.lib().ckpt_strerror(self.code))
        except ImportError:
            return "libckpt error %s" % self.code

    def __str__(self) -> str:
        detail = self.message or self.description
        head = ""
        if self.function and not detail.startswith(self.function + ":"):
            head = "%s: " % self.function  # C messages often name their function already
        return "%s%s [%s %s]" % (head, detail, _NAMES.get(self.code, "CKPT_E?"), self.code)

    def __reduce__(self) -> Tuple[Callable[..., "CkptError"], Tuple[Any, ...]]:  # picklable across processes (multiprocessing), whatever the subclass
        return (error_from_code, (self.code, self.message, self.function))


class InvalidArgument(CkptError, ValueError):
    """CKPT_EINVAL: bad argument, configuration key or value, region name, buffer size."""
    code = _lib.CKPT_EINVAL


class OutOfMemory(CkptError, MemoryError):
    """CKPT_ENOMEM."""
    code = _lib.CKPT_ENOMEM


class CkptIOError(CkptError, OSError):
    """CKPT_EIO: an I/O system call failed (the message has the path and the system's words).
    Also an OSError with errno EIO."""
    code = _lib.CKPT_EIO
    os_errno = _errno.EIO


class NoSpace(CkptError, OSError):
    """CKPT_ENOSPC: a tier is full or over its quota. Also an OSError with errno ENOSPC."""
    code = _lib.CKPT_ENOSPC
    os_errno = _errno.ENOSPC


class NotFound(CkptError, LookupError):
    """CKPT_ENOENT: no such step, region or directory."""
    code = _lib.CKPT_ENOENT


class Corrupt(CkptError):
    """CKPT_ECORRUPT: no intact copy (checksum or format check failed); also raised by the binding
    for a metadata region it cannot trust."""
    code = _lib.CKPT_ECORRUPT


class NotSupported(CkptError):
    """CKPT_ENOTSUP: not supported by this build (e.g. MPI in a libckpt built without it)."""
    code = _lib.CKPT_ENOTSUP


class TimedOut(CkptError, TimeoutError):
    """CKPT_ETIMEDOUT: a wait (close_timeout, mpi_timeout) ran past its limit. Also a
    TimeoutError (an OSError) with errno ETIMEDOUT."""
    code = _lib.CKPT_ETIMEDOUT
    os_errno = _errno.ETIMEDOUT


class PermissionDenied(CkptError, PermissionError):
    """CKPT_EPERM: permission denied on a directory or file (or a read-only file system). Also
    a PermissionError (an OSError) with errno EACCES: the C code does not say whether the
    system answered EACCES, EPERM or EROFS."""
    code = _lib.CKPT_EPERM
    os_errno = _errno.EACCES


class MPIError(CkptError):
    """CKPT_EMPI: an MPI call failed, or ranks disagreed (e.g. on the step number)."""
    code = _lib.CKPT_EMPI


class Busy(CkptError, OSError):
    """CKPT_EBUSY: the job (this rank) is already open elsewhere on this node (another process,
    or another Checkpointer of this process), or another live writer holds the job's writer
    lease (a drain's commit refused). Also an OSError with errno EBUSY."""
    code = _lib.CKPT_EBUSY
    os_errno = _errno.EBUSY


class RanksMismatch(CkptError):
    """CKPT_ENRANKS: the step was saved by another number of ranks than this checkpointer has
    (the job was resumed with another world size). This rank's own shard of it is another
    rank's part of the model: read each saved rank's shard with load(step, rank=r) (or
    torch_load(..., rank=r)) and reshard; step_nranks(step) and steps() say how many ranks
    saved it."""
    code = _lib.CKPT_ENRANKS


class StaleSave(CkptError):
    """CKPT_ESTALE: the save of a step this checkpointer was reading was replaced (the step was
    saved again elsewhere) or retired, and removed, before the reads were done. Nothing of
    another save was mixed in: call latest() again and read the step it names from the
    start."""
    code = _lib.CKPT_ESTALE


_CLASSES: Dict[int, Type[CkptError]] = {c.code: c for c in (InvalidArgument, OutOfMemory, CkptIOError, NoSpace, NotFound,
                                Corrupt, NotSupported, TimedOut, PermissionDenied, MPIError,
                                Busy, RanksMismatch, StaleSave)}
_NAMES: Dict[int, str] = {
    -1: "CKPT_EINVAL", -2: "CKPT_ENOMEM", -3: "CKPT_EIO", -4: "CKPT_ENOSPC", -5: "CKPT_ENOENT",
    -6: "CKPT_ECORRUPT", -7: "CKPT_ENOTSUP", -8: "CKPT_ETIMEDOUT", -9: "CKPT_EPERM",
    -10: "CKPT_EMPI", -11: "CKPT_EBUSY", -12: "CKPT_ENRANKS", -13: "CKPT_ESTALE",
}


def error_from_code(code: int, message: str = "", function: Optional[str] = None) -> CkptError:
    """The exception for a CKPT_E* code: its subclass, or CkptError itself for a code this
    package does not know yet (the C API may add codes)."""
    cls = _CLASSES.get(code, CkptError)
    return cls(code, message, function)
