# SPDX-License-Identifier: MIT
"""Python objects <-> (address, size) pairs for C, without copies where the memory allows it, and
the per-region metadata (kind, dtype, shape) that lets load() rebuild the same kind of object.

NumPy and PyTorch are optional: they are looked up in sys.modules (an object can only be an
ndarray or a Tensor if its module is already imported) and imported only to rebuild a region
that was saved from one of them."""
import ctypes
import sys
from typing import Any

from . import _lib
from .errors import InvalidArgument, Corrupt

# ---- the buffer protocol through the C API: zero-copy access to any buffer, read-only ones too.
# (ctypes' from_buffer() insists on writable memory, which would force a copy of every bytes.)


class _Py_buffer(ctypes.Structure):  # Include/pybuffer.h, unchanged since Python 3.3
    _fields_ = [
        ("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p),
    ]


_PyBUF_WRITABLE = 0x0001
_PyBUF_C_CONTIGUOUS = 0x0038  # 0x20 | PyBUF_STRIDES, pybuffer.h

_GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_Py_buffer), ctypes.c_int]
_GetBuffer.restype = ctypes.c_int
_ReleaseBuffer = ctypes.pythonapi.PyBuffer_Release
_ReleaseBuffer.argtypes = [ctypes.POINTER(_Py_buffer)]
_ReleaseBuffer.restype = None


class _BufferExport:
    """Holds a buffer export of `obj` (PEP 3118): the memory stays put, and a bytearray cannot
    be resized, until release(). Raises BufferError when obj is not C-contiguous (or not
    writable, when writable=True)."""

    def __init__(self, obj, writable=False):
        self._view = _Py_buffer()
        flags = _PyBUF_C_CONTIGUOUS | (_PyBUF_WRITABLE if writable else 0)
        if _GetBuffer(obj, ctypes.byref(self._view), flags) != 0:  # pythonapi raises for us
            raise BufferError("cannot export a buffer")
        self.address = self._view.buf
        self.size = self._view.len

    def release(self):
        if self._view is not None:
            _ReleaseBuffer(ctypes.byref(self._view))
            self._view = None


def _np():
    return sys.modules.get("numpy")


def _torch():
    return sys.modules.get("torch")


def is_ndarray(obj):
    np = _np()
    return np is not None and isinstance(obj, (np.ndarray, np.generic))


def is_tensor(obj):
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def _import(name, region):
    try:
        return __import__(name)
    except ImportError as e:
        raise ImportError("region %r was saved from %s, which cannot be imported here (%s); "
                          "load it with raw=True to get its bytes" % (region, name, e)) from e


# ---- torch dtypes by name (str(torch.float32) == "torch.float32"). Only names that are dtypes
# are accepted on load: metadata is data, never code.
_TORCH_TO_NUMPY = {
    "bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16", "int32": "int32",
    "int64": "int64", "float16": "float16", "float32": "float32", "float64": "float64",
    "complex64": "complex64", "complex128": "complex128",
}


def torch_dtype_name(dtype):
    return str(dtype).rpartition(".")[2]


def torch_dtype(name, region):
    torch = _import("torch", region)
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise Corrupt(_lib.CKPT_ECORRUPT, "region %r: metadata names an unknown torch dtype %r"
                      % (region, name), "load")
    return dt


def numpy_dtype(name, region):
    np = _import("numpy", region)
    try:
        dt = np.dtype(name)  # parses a type string; never evaluates anything
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt.hasobject or dt.fields is not None or not isinstance(name, str):
        raise Corrupt(_lib.CKPT_ECORRUPT, "region %r: metadata names an unusable numpy dtype "
                      "%r" % (region, name), "load")
    return dt


# ---- shared memory (tied weights)


def identity(obj):
    """A key that two objects share when saving them is saving the same values from the same
    memory, seen the same way: the same object, or tensors (arrays) with the same data pointer,
    device, dtype, shape and strides, as a model's tied weights are in its state_dict(). Such
    a region is stored once (the others are aliases of it) and loaded as one object. None
    for what is never aliased (empty tensors and arrays: their pointers mean nothing)."""
    if is_tensor(obj):
        torch = _torch()
        t = obj.detach()
        if t.layout != torch.strided or t.is_quantized or t.numel() == 0:
            return None
        return ("torch", str(t.device), str(t.dtype), t.data_ptr(), tuple(t.shape),
                tuple(t.stride()), t.is_conj(), t.is_neg())
    if is_ndarray(obj) and isinstance(obj, _np().ndarray):
        if obj.nbytes == 0:
            return None
        return ("numpy", obj.dtype.str, obj.__array_interface__["data"][0], obj.shape,
                obj.strides)
    return ("id", id(obj))


def same_memory(a, b):
    """Whether a and b are the same memory seen the same way (see identity)."""
    if a is b:
        return True
    ka = identity(a)
    return ka is not None and ka[0] != "id" and ka == identity(b)


# ---- element width hints (ckpt_region_hint)

_WIDTHS = (1, 2, 4, 8)
_torch_widths = {}  # torch.dtype -> width (torch 1.x dtypes have no itemsize)


def elem_width(x: Any) -> int:
    """The element width hint of a dtype, array or tensor (ckpt_region_hint): the item size of
    a floating-point dtype (bfloat16 and float16: 2, float32: 4, float64: 8, float8: 1), and
    half that of a complex dtype (its parts are floats); 0 (no hint: the library detects the
    width from the data) for everything else, integers and bool included, and for floats of
    other sizes (float128). x may be a numpy dtype or scalar type, a torch dtype, an ndarray, a
    numpy scalar, a tensor or a memoryview (formats e, f, d); anything else gives 0."""
    torch = _torch()
    if torch is not None:
        if isinstance(x, torch.Tensor):
            x = x.dtype
        if isinstance(x, torch.dtype):
            w = _torch_widths.get(x)
            if w is None:
                size = torch.empty(0, dtype=x).element_size()
                w = (size if x.is_floating_point else size // 2 if x.is_complex else 0)
                _torch_widths[x] = w = w if w in _WIDTHS else 0
            return w
    np = _np()
    if np is not None:
        if isinstance(x, (np.ndarray, np.generic)):
            x = x.dtype
        elif isinstance(x, type) and issubclass(x, np.generic):
            x = np.dtype(x)
        if isinstance(x, np.dtype):
            if x.kind == "f":
                w = x.itemsize
            elif x.kind == "c":
                w = x.itemsize // 2
            elif x.name == "bfloat16":  # ml_dtypes' bfloat16 (kind V)
                w = 2
            else:
                w = 0
            return w if w in _WIDTHS else 0
    if isinstance(x, memoryview):
        fmt = x.format.lstrip("@=<>!")
        return x.itemsize if fmt in ("e", "f", "d") and x.itemsize in _WIDTHS else 0
    return 0


def is_dtype(x):
    """Whether x is a dtype: a torch.dtype, a numpy.dtype or a numpy scalar type."""
    torch, np = _torch(), _np()
    if torch is not None and isinstance(x, torch.dtype):
        return True
    return np is not None and (isinstance(x, np.dtype) or
                               (isinstance(x, type) and issubclass(x, np.generic)))


# ---- saving


class Export:
    """One region ready for ckpt_save: address and size of memory that stays valid until
    release(), plus the metadata describing it and the element width hint of its dtype
    (elem_width; 0: none)."""

    __slots__ = ("address", "size", "meta", "_keep", "_buffer", "device_tensor", "width")

    def __init__(self, address, size, meta, keep, buffer=None, device_tensor=None, width=0):
        self.address = address
        self.size = size
        self.meta = meta
        self.width = width
        self._keep = keep        # the object owning the memory (a contiguous copy, maybe)
        self._buffer = buffer    # a buffer export to release
        # export(..., defer_device=True) of a tensor on a GPU: its contiguous bytes are still on
        # the device (address is None); fill_staging copies them to host memory.
        self.device_tensor = device_tensor

    def release(self):
        if self._buffer is not None:
            self._buffer.release()
            self._buffer = None
        self._keep = None


def export(name, obj, defer_device=False):
    """Export obj for writing. Contiguous objects are passed to C in place; non-contiguous
    arrays/tensors/memoryviews and tensors on other devices are copied first. defer_device: a
    tensor on another device stays there (see Export.device_tensor and fill_staging)."""
    if is_tensor(obj):
        return _export_tensor(obj, defer_device)
    if is_ndarray(obj):
        return _export_ndarray(name, obj)
    if isinstance(obj, (bytes, bytearray, memoryview)) or _has_buffer(obj):
        return _export_buffer(obj)
    raise TypeError("region %r: cannot save a %s; supported: bytes, bytearray, memoryview (any "
                    "buffer), numpy.ndarray, torch.Tensor (use save_state() for nested Python "
                    "structures)" % (name, type(obj).__name__))


def _has_buffer(obj):
    if isinstance(obj, str):
        return False
    try:
        memoryview(obj).release()
        return True
    except TypeError:
        return False


def _export_buffer(obj):
    if isinstance(obj, bytes):
        meta = {"kind": "bytes"}
    elif isinstance(obj, bytearray):
        meta = {"kind": "bytearray"}
    else:
        mv = obj if isinstance(obj, memoryview) else memoryview(obj)
        meta = {"kind": "memoryview", "format": mv.format, "itemsize": mv.itemsize,
                "shape": list(mv.shape)}
    try:
        buf = _BufferExport(obj)
        return Export(buf.address, buf.size, meta, obj, buf, width=_buffer_width(obj))
    except BufferError:
        # Not C-contiguous (a strided memoryview): its bytes in C order, one copy.
        data = memoryview(obj).tobytes()
        buf = _BufferExport(data)
        return Export(buf.address, buf.size, meta, data, buf, width=_buffer_width(obj))


def _buffer_width(obj):
    if isinstance(obj, (bytes, bytearray)):
        return 0
    with memoryview(obj) as mv:
        return elem_width(mv)


def _export_ndarray(name, obj):
    np = _np()
    arr = np.asarray(obj)
    scalar = isinstance(obj, np.generic)
    if isinstance(obj, np.ma.MaskedArray):
        raise TypeError("region %r: a masked array would lose its mask; save .data and .mask"
                        % name)
    if arr.dtype.hasobject or arr.dtype.fields is not None:
        raise TypeError("region %r: dtype %s cannot be saved (Python objects or a structured "
                        "dtype); only plain numeric, bool, string and datetime dtypes" %
                        (name, arr.dtype))
    if arr.flags.c_contiguous:
        order = "C"
    elif arr.flags.f_contiguous:
        order = "F"  # stored as is, in Fortran order: no copy
    else:
        arr = np.ascontiguousarray(arr)  # a strided view: one copy
        order = "C"
    meta = {"kind": "numpy", "dtype": arr.dtype.str, "shape": list(arr.shape), "order": order}
    if scalar:
        meta["scalar"] = True
    return Export(arr.ctypes.data if arr.nbytes else None, arr.nbytes, meta, arr,
                  width=elem_width(arr.dtype))


def _export_tensor(obj, defer_device=False):
    torch = _torch()
    t = obj.detach()
    if t.layout != torch.strided or t.is_quantized:
        raise TypeError("cannot save a %s tensor of layout %s; convert it to a dense tensor"
                        % ("quantized" if t.is_quantized else "sparse", t.layout))
    device = str(t.device)
    if t.device.type != "cpu" and defer_device:
        return _export_device_tensor(t, device)
    if t.device.type != "cpu":
        t = t.cpu()  # one copy to host memory
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()  # one copy
    nbytes = t.numel() * t.element_size()
    meta = {"kind": "torch", "dtype": torch_dtype_name(t.dtype), "shape": list(t.shape)}
    if device != "cpu":
        meta["device"] = device
    return Export(t.data_ptr() if nbytes else None, nbytes, meta, t, width=elem_width(t.dtype))


def _export_device_tensor(t, device):
    # Snapshot mode, a tensor on a GPU: made contiguous on the device, and copied once, by
    # fill_staging, straight into the library's staging memory. Untested: no GPU here.
    torch = _torch()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    t = t.contiguous()
    meta = {"kind": "torch", "dtype": torch_dtype_name(t.dtype), "shape": list(t.shape),
            "device": device}
    return Export(None, t.numel() * t.element_size(), meta, t, device_tensor=t,
                  width=elem_width(t.dtype))


def fill_staging(ex, address):
    """Copy the bytes of export ex into staging memory at address (ckpt_stage_alloc, at least
    ex.size bytes): the one copy of a snapshot save. ctypes.memmove runs without the GIL."""
    if not ex.size:
        return
    if ex.device_tensor is not None:
        torch = _torch()
        dst = torch.frombuffer((ctypes.c_char * ex.size).from_address(address), dtype=torch.uint8)
        dst.copy_(ex.device_tensor.reshape(-1).view(torch.uint8))  # device to host, once
        return
    ctypes.memmove(address, ex.address, ex.size)


# ---- loading


def check_meta(name, meta, size):
    """Validate a metadata entry read from a checkpoint against the region's real size; returns a
    normalized dict. Anything malformed is Corrupt; nothing in it is ever evaluated."""
    if meta is None:
        return {"kind": "bytes"}
    if not isinstance(meta, dict) or not isinstance(meta.get("kind"), str):
        raise Corrupt(_lib.CKPT_ECORRUPT, "region %r: malformed metadata %r" % (name, meta),
                      "load")
    kind = meta["kind"]
    shape = meta.get("shape", [])
    if kind in ("numpy", "torch", "memoryview"):
        if (not isinstance(shape, list) or
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                        for d in shape)):
            raise Corrupt(_lib.CKPT_ECORRUPT, "region %r: malformed shape %r" % (name, shape),
                          "load")
    return meta


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _check_size(name, what, expect, size):
    if expect != size:
        raise Corrupt(_lib.CKPT_ECORRUPT, "region %r: metadata describes %s of %d bytes, the "
                      "region has %d" % (name, what, expect, size), "load")


class Target:
    """Where one region is loaded: writable memory of exactly the region's size, and how to
    turn it into the result once filled."""

    __slots__ = ("address", "size", "_finish", "_buffer", "_keep")

    def __init__(self, address, size, finish, keep, buffer=None):
        self.address = address
        self.size = size
        self._finish = finish
        self._keep = keep
        self._buffer = buffer

    def finish(self):
        self.release()
        return self._finish()

    def release(self):
        if self._buffer is not None:
            self._buffer.release()
            self._buffer = None


def _buffer_target(obj, finish):
    buf = _BufferExport(obj, writable=True)
    return Target(buf.address, buf.size, finish, obj, buf)


def new_target(name, meta, size, raw=False):
    """Fresh memory for a region, rebuilt as the kind of object it was saved from."""
    kind = "bytes" if raw else meta["kind"]
    if kind == "numpy":
        dt = numpy_dtype(meta.get("dtype"), name)
        shape = meta.get("shape", [])
        _check_size(name, "a %s array of shape %s" % (dt, tuple(shape)),
                    _count(shape) * dt.itemsize, size)
        np = _np()
        arr = np.empty(shape, dtype=dt, order="F" if meta.get("order") == "F" else "C")
        if meta.get("scalar"):
            return Target(arr.ctypes.data if size else None, size, lambda: arr[()], arr)
        return Target(arr.ctypes.data if size else None, size, lambda: arr, arr)
    if kind == "torch":
        dt = torch_dtype(meta.get("dtype"), name)
        shape = meta.get("shape", [])
        torch = _torch()
        t = torch.empty(shape, dtype=dt)
        _check_size(name, "a %s tensor of shape %s" % (dt, tuple(shape)),
                    t.numel() * t.element_size(), size)
        return Target(t.data_ptr() if size else None, size, lambda: t, t)
    ba = bytearray(size)
    if kind == "bytearray":
        return _buffer_target(ba, lambda: ba)
    if kind == "memoryview":
        return _buffer_target(ba, lambda: _as_memoryview(ba, meta))
    return _buffer_target(ba, lambda: bytes(ba))  # "bytes", raw=True, or unknown kinds


def _as_memoryview(ba, meta):
    mv = memoryview(ba)
    fmt, shape = meta.get("format"), meta.get("shape")
    if fmt not in (None, "B") or shape != [len(ba)]:
        try:
            return mv.cast("B").cast(fmt, shape)
        except (TypeError, ValueError):
            pass  # a format memoryview.cast does not know: the bytes, flat
    return mv


def map_tensor(t, saved, map_location):
    """A freshly loaded CPU tensor moved as torch.load's map_location says: a device (str or
    torch.device), a dict {saved location: device} (locations it lacks stay on the CPU), or a
    callable(tensor, saved location) -> tensor. `saved` is where the tensor was saved from."""
    torch = _torch()
    if isinstance(map_location, dict):
        dest = map_location.get(saved)
        if dest is None:
            return t
    elif callable(map_location) and not isinstance(map_location, (str, torch.device)):
        return map_location(t, saved)
    else:
        dest = map_location
    if not isinstance(dest, (str, torch.device)):
        raise TypeError("map_location: expected a device (str or torch.device), a dict or a "
                        "callable, not %s" % type(dest).__name__)
    dev = torch.device(dest)
    return t if t.device == dev else t.to(dev)


def existing_target(name, meta, size, obj):
    """Load region `name` into obj in place. The checks here are only those C cannot make
    (dtype, shape, layout); a wrong byte size is left to ckpt_load, whose message names both
    sizes."""
    if is_tensor(obj):
        return _tensor_target(name, meta, size, obj)
    if is_ndarray(obj):
        return _ndarray_target(name, meta, size, obj)
    if isinstance(obj, bytes):
        raise InvalidArgument(_lib.CKPT_EINVAL, "region %r: cannot load into bytes (immutable); "
                              "pass a bytearray" % name, "load")
    try:
        return _buffer_target(obj, lambda: obj)
    except BufferError as e:
        raise InvalidArgument(_lib.CKPT_EINVAL, "region %r: cannot load into a %s: %s (a "
                              "writable C-contiguous buffer is needed)" %
                              (name, type(obj).__name__, e), "load") from None
    except TypeError:
        raise TypeError("region %r: cannot load into a %s" % (name, type(obj).__name__)) from None


def _same_shape(name, meta, shape):
    if meta["kind"] in ("numpy", "torch") and list(meta.get("shape", [])) != list(shape):
        raise InvalidArgument(_lib.CKPT_EINVAL, "region %r has shape %s, the target has shape %s"
                              % (name, tuple(meta.get("shape", [])), tuple(shape)), "load")


def _ndarray_target(name, meta, size, arr):
    np = _np()
    if not isinstance(arr, np.ndarray):
        raise InvalidArgument(_lib.CKPT_EINVAL, "region %r: cannot load into a numpy scalar "
                              "(immutable)" % name, "load")
    if not arr.flags.writeable:
        raise InvalidArgument(_lib.CKPT_EINVAL, "region %r: the target array is read-only" % name,
                              "load")
    kind = meta["kind"]
    if kind == "numpy":
        dt = numpy_dtype(meta.get("dtype"), name)
        if dt != arr.dtype:
            raise InvalidArgument(_lib.CKPT_EINVAL, "region %r has dtype %s, the target array %s"
                                  % (name, dt, arr.dtype), "load")
    elif kind == "torch":
        want = _TORCH_TO_NUMPY.get(meta.get("dtype"))
        if want is None or np.dtype(want) != arr.dtype:
            raise InvalidArgument(_lib.CKPT_EINVAL, "region %r has torch dtype %s, the target "
                                  "array %s" % (name, meta.get("dtype"), arr.dtype), "load")
    _same_shape(name, meta, arr.shape)
    order = meta.get("order", "C")
    if arr.flags.c_contiguous if order != "F" else arr.flags.f_contiguous:
        return Target(arr.ctypes.data if arr.nbytes else None, arr.nbytes, lambda: arr, arr)
    # A strided target, or the other memory order: read into a scratch array, then copy.
    tmp = np.empty(arr.shape, dtype=arr.dtype, order="F" if order == "F" else "C")

    def finish():
        np.copyto(arr, tmp)
        return arr
    return Target(tmp.ctypes.data if tmp.nbytes else None, tmp.nbytes, finish, tmp)


def _tensor_target(name, meta, size, t):
    torch = _torch()
    kind = meta["kind"]
    if kind == "torch":
        if meta.get("dtype") != torch_dtype_name(t.dtype):
            raise InvalidArgument(_lib.CKPT_EINVAL, "region %r has dtype %s, the target tensor %s"
                                  % (name, meta.get("dtype"), torch_dtype_name(t.dtype)), "load")
    elif kind == "numpy":
        np = _import("numpy", name)
        mine = _TORCH_TO_NUMPY.get(torch_dtype_name(t.dtype))
        if mine is None or np.dtype(mine) != numpy_dtype(meta.get("dtype"), name):
            raise InvalidArgument(_lib.CKPT_EINVAL, "region %r has numpy dtype %s, the target "
                                  "tensor %s" % (name, meta.get("dtype"), t.dtype), "load")
        if meta.get("order") == "F" and t.dim() > 1:
            raise InvalidArgument(_lib.CKPT_EINVAL, "region %r is a Fortran-order array; load "
                                  "it as an array" % name, "load")
    _same_shape(name, meta, t.shape)
    nbytes = t.numel() * t.element_size()
    d = t.detach()
    if (d.device.type == "cpu" and d.is_contiguous() and d.layout == torch.strided
            and not d.is_conj() and not d.is_neg()):
        return Target(d.data_ptr() if nbytes else None, nbytes, lambda: t, d)
    # On another device, or strided: read into host memory, then one copy_ (no autograd).
    tmp = torch.empty(tuple(t.shape), dtype=t.dtype)

    def finish():
        with torch.no_grad():
            t.copy_(tmp)
        return t
    return Target(tmp.data_ptr() if nbytes else None, nbytes, finish, tmp)
