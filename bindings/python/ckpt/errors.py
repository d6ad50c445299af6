# SPDX-License-Identifier: MIT
"""Exceptions: one CkptError subclass per pinned CKPT_E* code, carrying the C library's message."""
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

    code = None

    def __init__(self, code, message="", function=None):
        super().__init__(code, message, function)
        self.code = code
        self.message = message
        self.function = function

    @property
    def description(self):
        """ckpt_strerror(code): the short generic text for the code."""
        try:
            return _lib.decode(_lib.lib().ckpt_strerror(self.code))
        except ImportError:
            return "libckpt error %s" % self.code

    def __str__(self):
        detail = self.message or self.description
        head = ""
        if self.function and not detail.startswith(self.function + ":"):
            head = "%s: " % self.function  # C messages often name their function already
        return "%s%s [%s %s]" % (head, detail, _NAMES.get(self.code, "CKPT_E?"), self.code)

    def __reduce__(self):  # picklable across processes (multiprocessing), whatever the subclass
        return (error_from_code, (self.code, self.message, self.function))


class InvalidArgument(CkptError, ValueError):
    """CKPT_EINVAL: bad argument, configuration key or value, region name, buffer size."""
    code = _lib.CKPT_EINVAL


class OutOfMemory(CkptError, MemoryError):
    """CKPT_ENOMEM."""
    code = _lib.CKPT_ENOMEM


class CkptIOError(CkptError):
    """CKPT_EIO: an I/O system call failed (the message has the path and the system's words)."""
    code = _lib.CKPT_EIO


class NoSpace(CkptError):
    """CKPT_ENOSPC: a tier is full or over its quota."""
    code = _lib.CKPT_ENOSPC


class NotFound(CkptError, LookupError):
    """CKPT_ENOENT: no such step or region."""
    code = _lib.CKPT_ENOENT


class Corrupt(CkptError):
    """CKPT_ECORRUPT: no intact copy (checksum or format check failed); also raised by the binding
    for a metadata region it cannot trust."""
    code = _lib.CKPT_ECORRUPT


class NotSupported(CkptError):
    """CKPT_ENOTSUP: not supported by this build (e.g. MPI in a libckpt built without it)."""
    code = _lib.CKPT_ENOTSUP


class TimedOut(CkptError):
    """CKPT_ETIMEDOUT: a wait (close_timeout, mpi_timeout) ran past its limit."""
    code = _lib.CKPT_ETIMEDOUT


class PermissionDenied(CkptError):
    """CKPT_EPERM: permission denied on a directory or file (or a read-only file system)."""
    code = _lib.CKPT_EPERM


class MPIError(CkptError):
    """CKPT_EMPI: an MPI call failed, or ranks disagreed (e.g. on the step number)."""
    code = _lib.CKPT_EMPI


class Busy(CkptError):
    """CKPT_EBUSY: the job (this rank) is already open in another process on this node."""
    code = _lib.CKPT_EBUSY


_CLASSES = {c.code: c for c in (InvalidArgument, OutOfMemory, CkptIOError, NoSpace, NotFound,
                                Corrupt, NotSupported, TimedOut, PermissionDenied, MPIError,
                                Busy)}
_NAMES = {
    -1: "CKPT_EINVAL", -2: "CKPT_ENOMEM", -3: "CKPT_EIO", -4: "CKPT_ENOSPC", -5: "CKPT_ENOENT",
    -6: "CKPT_ECORRUPT", -7: "CKPT_ENOTSUP", -8: "CKPT_ETIMEDOUT", -9: "CKPT_EPERM",
    -10: "CKPT_EMPI", -11: "CKPT_EBUSY",
}


def error_from_code(code, message="", function=None):
    """The exception for a CKPT_E* code: its subclass, or CkptError itself for a code this
    package does not know yet (the C API may add codes)."""
    cls = _CLASSES.get(code, CkptError)
    return cls(code, message, function)
