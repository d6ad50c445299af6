# SPDX-License-Identifier: MIT
"""Checkpointer: one open libckpt context (ckpt_open / ckpt_open_mpi_f) and its calls."""
import collections
import collections.abc
import ctypes
import enum
import json
import math
import operator
import os
import threading
import weakref
from typing import (Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Type,
                    Union)

from . import _lib
from . import _objects
from . import _tree
from .errors import (CkptError, InvalidArgument, NotFound, Corrupt, OutOfMemory,
                     error_from_code)

# The region every step saved by this package carries, after the caller's regions: UTF-8 JSON
# {"format": "libckpt-python", "version": 1 or 2,
#  "regions": {name: {"kind": "bytes"|"bytearray"|"memoryview"|"numpy"|"torch", ...}},
#  "state": <encoded tree, only for save_state>}.
# Version 2 adds {"kind": "alias", "of": name} entries: a name whose object was the same memory
# as an earlier region's (tied weights) and that has no region of its own. A step without
# aliases is written as version 1, readable by every version of this package; one with aliases
# as version 2, which an older package refuses (Corrupt) instead of silently missing names.
# Steps without the metadata region (saved from C) load as bytes.
META_REGION = "__ckpt_meta__.json"
META_FORMAT = "libckpt-python"
META_VERSION = 2           # the newest version this package reads
META_VERSION_NO_ALIAS = 1  # what it writes when a step has no aliases


class State(enum.IntEnum):
    """ckpt_poll's answer for a step saved by this context."""
    NONE = 0       # never saved by this context
    LOCAL = 1      # durable locally; drain queued or running
    COMMITTED = 2  # committed on the shared volume
    FAILED = 3     # drain failed; local copy kept; wait() raises the error
    STAGED = 4     # snapshot mode: copied into staging memory, not yet durable locally


class Region(NamedTuple):
    """One region of a step: its name, size in bytes, and what it was saved from
    (kind: "bytes", "bytearray", "memoryview", "numpy", "torch"; dtype and shape, or None)."""
    name: str
    size: int
    kind: str
    dtype: Optional[str]
    shape: Optional[Tuple[int, ...]]


class StepInfo(NamedTuple):
    """One step that steps() lists: its number, how many ranks saved it (a step of another
    world size than this checkpointer's is read with load(step, rank=r)), where a copy is
    (local: this rank's shard on this node; shared: committed on the shared volume), whether
    it is committed, and the save that reads of it use (id, creation time in ns since the
    epoch)."""
    step: int
    nranks: int
    local: bool
    shared: bool
    committed: bool
    save_id: int
    created_ns: int


class DrainLag(NamedTuple):
    """How far the shared volume is behind the local tier (drain_lag(), ckpt_drain_lag).

    newest_local: the newest step this checkpointer saved (or found to drain at open), None if
    none; newest_committed: the newest step it committed on the shared volume, None if none;
    seconds_behind: age of the oldest save still waiting for its drain (0.0: none waits);
    stalled: the shared volume is not responding (a drain without progress for stall_after
    seconds), for stalled_seconds; pending: saved steps whose drain is queued or running;
    skipped: superseded steps skipped without a drain since open (training never waits for the
    shared volume)."""
    newest_local: Optional[int]
    newest_committed: Optional[int]
    seconds_behind: float
    stalled: bool
    stalled_seconds: float
    pending: int
    skipped: int


# What hint() accepts: an element width, or a NumPy/PyTorch dtype.
WidthLike = Any


# What a configuration keyword accepts (None: keep the default / CKPT_<KEY>).
OptionValue = Union[str, int, float, "os.PathLike[str]", None]


def _check_step(step):
    if isinstance(step, bool):
        raise TypeError("step must be an int, not bool")
    step = operator.index(step)
    if not 0 <= step < _lib.CKPT_STEP_ALL:
        raise InvalidArgument(_lib.CKPT_EINVAL, "step %d is out of range (0 .. 2**64-2)" % step)
    return step


def _encode_name(name):
    if not isinstance(name, str):
        raise TypeError("region names are str, not %s" % type(name).__name__)
    if "\0" in name:
        raise InvalidArgument(_lib.CKPT_EINVAL, "region name %r contains a NUL character" % name,
                              "save")
    if name == META_REGION:
        raise InvalidArgument(_lib.CKPT_EINVAL, "region name %r is reserved for the binding's "
                              "metadata" % name, "save")
    return name.encode("utf-8")


def _option_value(key, value):
    if isinstance(value, bool):
        raise TypeError("option %s: a bool is not a valid value" % key)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise TypeError("option %s: expected str, int, float or path, not %s"
                    % (key, type(value).__name__))


def _close_ctx(lib, handle):
    # weakref.finalize target: a Checkpointer collected (or alive at exit) without close().
    # ckpt_close finishes pending drains, so steps saved just before exit still reach the shared
    # volume. Errors cannot be raised from here; close() reports them.
    if handle.value:
        lib.ckpt_close(handle)
        handle.value = None


def _aliases(doc, step):
    """{alias name: region name} of a metadata document (version 2); Corrupt when an alias is
    malformed or names something that is not a region of the step."""
    metas = doc.get("regions", {})
    out = {}
    for name, m in metas.items():
        if isinstance(m, dict) and m.get("kind") == "alias":
            of = m.get("of")
            target = metas.get(of) if isinstance(of, str) else None
            if not isinstance(target, dict) or target.get("kind") == "alias":
                raise Corrupt(_lib.CKPT_ECORRUPT, "step %d: region %r is an alias of %r, which "
                              "is not a region of the step" % (step, name, of), "load")
            out[name] = of
    return out


class Checkpointer:
    """An open checkpointer.

    Checkpointer(local_dir, shared_dir, name=None, comm=None, **options)

    local_dir, shared_dir, name and every other configuration key of libckpt (compress_level,
    keep_local, keep_shared, drain_threads, io_backend, chunk_size, max_pending, close_timeout,
    io_depth, drain_nice, mpi_timeout, log_level, require_persistent, cluster, stage_bytes,
    chunk_transform, elem_width, probe_timeout, stall_after, stall_wait, read_grace,
    writer_lease) may be given as
    keywords; a key left out (or None) keeps
    its default or its CKPT_<KEY> environment variable. An unknown key or a bad value raises
    InvalidArgument with the library's message.

    comm: an mpi4py communicator (or its Fortran handle as an int) opens a checkpointer whose
    steps commit atomically across all its ranks (ckpt_open_mpi_f; collective). Raises
    NotSupported when libckpt was built without MPI.

    Use it as a context manager, or call close(): close waits (at most close_timeout seconds)
    for steps still draining to the shared volume. One object may be used from several
    threads; its calls are serialized, as the C library serializes calls on one context.
    """

    rank: int
    nranks: int

    def __init__(self, local_dir: OptionValue = None, shared_dir: OptionValue = None,
                 name: Optional[str] = None, comm: Any = None,
                 **options: OptionValue) -> None:
        self._lib = lib = _lib.lib()
        self._lock = threading.Lock()
        self._ctx = ctypes.c_void_p()
        self._hints = {}       # encoded name -> width this context was last told (save)
        self._explicit = {}    # encoded name -> width given to hint(): save leaves those alone
        self._finalizer = None
        settings = {"local_dir": local_dir, "shared_dir": shared_dir, "name": name}
        settings.update(options)
        cfg = ctypes.c_void_p()
        rc = lib.ckpt_config_new(ctypes.byref(cfg))
        if rc < 0:
            raise error_from_code(rc, _lib.decode(lib.ckpt_config_errmsg(cfg)), "ckpt_config_new")
        try:
            for key, value in settings.items():
                if value is None:
                    continue
                rc = lib.ckpt_config_set(cfg, key.encode("utf-8"),
                                         _option_value(key, value).encode("utf-8"))
                if rc < 0:
                    raise error_from_code(rc, _lib.decode(lib.ckpt_config_errmsg(cfg)),
                                          "ckpt_config_set")
            stage = lib.ckpt_config_get(cfg, b"stage_bytes")
            self._snapshot = bool(stage) and int(stage) > 0
            if comm is None:
                rc = lib.ckpt_open(ctypes.byref(self._ctx), cfg)
                fn = "ckpt_open"
            else:
                fcomm = comm if isinstance(comm, int) else comm.py2f()
                rc = lib.ckpt_open_mpi_f(ctypes.byref(self._ctx), cfg, fcomm)
                fn = "ckpt_open_mpi_f"
            if rc < 0:
                # ckpt_errmsg(NULL) is thread-local in C, and ctypes makes the call on this
                # thread, so it is this open's message.
                raise error_from_code(rc, _lib.decode(lib.ckpt_errmsg(None)), fn)
        finally:
            lib.ckpt_config_free(cfg)
        self._finalizer = weakref.finalize(self, _close_ctx, lib, self._ctx)
        r, n = ctypes.c_uint32(), ctypes.c_uint32()
        self._call("ckpt_rank", lib.ckpt_rank, ctypes.byref(r), ctypes.byref(n))
        self.rank, self.nranks = r.value, n.value

    # ---- plumbing

    def _call(self, fname, fn, *args):
        with self._lock:
            if not self._ctx.value:
                raise InvalidArgument(_lib.CKPT_EINVAL, "the checkpointer is closed", fname)
            rc = fn(self._ctx, *args)  # GIL released for the call (ctypes.CDLL)
            if rc < 0:
                raise error_from_code(rc, _lib.decode(self._lib.ckpt_errmsg(self._ctx)), fname)
            return rc

    @property
    def closed(self) -> bool:
        return not self._ctx.value

    def close(self) -> None:
        """Finish pending drains (at most close_timeout seconds), stop the threads, free the
        context. Raises the first drain error, or TimedOut (the local copies stay and are
        drained by the next open). Closing twice is a no-op. Collective with MPI."""
        with self._lock:
            if not self._ctx.value:
                return
            if self._finalizer is not None:
                self._finalizer.detach()
            rc = self._lib.ckpt_close(self._ctx)  # frees the context whatever it returns
            self._ctx.value = None
        if rc < 0:
            # The context is gone with its message; the code still says what happened.
            raise error_from_code(rc, "a drain failed or did not finish before close_timeout; "
                                  "the local copies are kept", "ckpt_close")

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Any) -> bool:
        if exc is None:
            self.close()
            return False
        try:
            self.close()
        except CkptError as close_error:  # do not hide the exception that is propagating
            if hasattr(exc, "add_note"):
                exc.add_note("and then close() failed: %s" % close_error)
        return False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "rank %d/%d" % (self.rank, self.nranks)
        return "<ckpt.Checkpointer %s>" % state

    # ---- saving

    def save(self, step: int, regions: Mapping[str, Any]) -> None:
        """Save `regions` ({name: object}) as checkpoint `step`; return once it is durable on
        the local tier (the objects may then be modified). Draining to the shared volume goes
        on in the background (wait(), poll()). Saving a step again replaces it.

        Objects: bytes, bytearray, memoryview (or any C-contiguous buffer), numpy.ndarray and
        numpy scalars, torch.Tensor. C-contiguous (and Fortran-ordered) arrays and contiguous CPU
        tensors are written from their own memory, without a copy; strided views and tensors
        on other devices are copied to contiguous host memory first. Do not modify an object
        while save() runs (other threads keep running: the GIL is released).
        Names whose objects are the same memory seen the same way (the same object; tied
        weights) are stored once and loaded as one object (see the README).
        Snapshot mode (stage_bytes > 0): returns once the objects are copied into the library's
        staging memory (each copied once, straight from its own memory, or from the GPU for a
        CUDA tensor); wait_local() waits for local durability, wait() for the commit.
        Collective with MPI: every rank passes the same step."""
        self._save(step, regions, None)

    def save_state(self, step: int, state: Any) -> None:
        """Save nested Python state (dicts, lists, tuples, scalars, strings, numpy arrays,
        torch tensors, e.g. {"model": model.state_dict(), "epoch": 3}) as checkpoint `step`.
        Arrays and tensors become regions (zero-copy as in save); the rest is JSON in the
        metadata region. No pickle: load_state() never executes anything from a checkpoint."""
        tree, leaves = _tree.encode(state)
        self._save(step, collections.OrderedDict(leaves), tree)

    def _save(self, step, regions, tree):
        step = _check_step(step)
        if not isinstance(regions, collections.abc.Mapping):
            raise TypeError("regions must be a mapping {name: object}")
        exports, names, meta, objs = [], [], {}, []
        first = {}  # identity key -> the name that stores that memory
        try:
            for name, obj in regions.items():
                raw = _encode_name(name)
                key = _objects.identity(obj)
                if key is not None and key in first:
                    # Tied: stored once, under the first name; C checks only the names it gets.
                    if not 0 < len(raw) <= _lib.CKPT_NAME_MAX:
                        raise InvalidArgument(_lib.CKPT_EINVAL, "region name %r is %s (1 to %d "
                                              "bytes)" % (name, "too long" if raw else "empty",
                                                          _lib.CKPT_NAME_MAX), "save")
                    meta[name] = {"kind": "alias", "of": first[key]}
                    continue
                names.append(raw)
                ex = _objects.export(name, obj, defer_device=self._snapshot)
                exports.append(ex)
                objs.append((name, obj))
                meta[name] = ex.meta
                if key is not None:
                    first[key] = name
            version = META_VERSION if len(exports) < len(meta) else META_VERSION_NO_ALIAS
            doc = {"format": META_FORMAT, "version": version, "regions": meta}
            if tree is not None:
                doc["state"] = tree
            blob = json.dumps(doc, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")
            self._hint_dtypes(names, exports)
            if self._snapshot:
                if self._save_staged(step, names, exports, blob):
                    return
                # The pool cannot hold the step: ckpt_save writes it directly (durable on
                # return); tensors left on a GPU come to host memory first.
                for i, ex in enumerate(exports):
                    if ex.device_tensor is not None:
                        ex.release()
                        exports[i] = _objects.export(objs[i][0], objs[i][1])
            arr = (_lib.ckpt_region * (len(exports) + 1))()
            for i, ex in enumerate(exports):
                arr[i].name = names[i]
                arr[i].data = ex.address
                arr[i].size = ex.size
            arr[len(exports)].name = META_REGION.encode("ascii")
            arr[len(exports)].data = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p)
            arr[len(exports)].size = len(blob)
            self._call("ckpt_save", self._lib.ckpt_save, step, arr, len(exports) + 1)
        finally:
            for ex in exports:
                ex.release()

    def _hint_dtypes(self, names, exports):
        """Tell the library the element width of each region's dtype (ckpt_region_hint), so
        that the drain groups its bytes with that width instead of detecting it: only where it
        changed since the last save (the library keeps hints until close), never for names
        given to hint(), and 0 (remove) where a name that had a width now holds integers or
        bytes."""
        lib = self._lib
        with self._lock:
            if not self._ctx.value:
                return  # save raises below
            for raw, ex in zip(names, exports):
                if (raw in self._explicit or self._hints.get(raw, 0) == ex.width
                        or not 0 < len(raw) <= _lib.CKPT_NAME_MAX):  # ckpt_save says why
                    continue
                rc = lib.ckpt_region_hint(self._ctx, raw, ex.width)
                if rc < 0:
                    raise error_from_code(rc, _lib.decode(lib.ckpt_errmsg(self._ctx)),
                                          "ckpt_region_hint")
                if ex.width:
                    self._hints[raw] = ex.width
                else:
                    self._hints.pop(raw, None)

    def hint(self, name: str, width: WidthLike) -> None:
        """Set the element width of region `name` for the drain's byte grouping
        (ckpt_region_hint): an int (1, 2, 4 or 8; 0 removes the hint), or a NumPy or PyTorch
        dtype (np.float32, np.dtype("<f2"), torch.bfloat16, tensor.dtype, ...), whose
        floating-point item size is taken (bfloat16 and float16: 2, float32: 4, float64: 8,
        complex64: 4; any other dtype gives 0, which removes the hint).

        save() already hints every array and tensor by its dtype; use hint() for regions saved
        as bytes or memoryviews whose element type only you know, or to override save()'s
        choice: a name given here keeps this width in every later save until hint(name, 0).
        Applies to the drains that start after the call. A wrong width costs compression
        ratio, never data (everything reads back bit-exact)."""
        raw = name.encode("utf-8") if isinstance(name, str) else None
        if raw is None:
            raise TypeError("region names are str, not %s" % type(name).__name__)
        if _objects.is_dtype(width):
            w = _objects.elem_width(width)
        elif isinstance(width, bool):
            raise TypeError("width must be an int or a dtype, not bool")
        else:
            try:
                w = operator.index(width)
            except TypeError:
                raise TypeError("width must be an int or a NumPy/PyTorch dtype, not %s"
                                % type(width).__name__) from None
            if w not in (0, 1, 2, 4, 8):
                raise InvalidArgument(_lib.CKPT_EINVAL, "element width %d for region %r (0, "
                                      "1, 2, 4 or 8)" % (w, name), "ckpt_region_hint")
        self._call("ckpt_region_hint", self._lib.ckpt_region_hint, raw, w)
        with self._lock:
            if w:
                self._explicit[raw] = w
            else:
                self._explicit.pop(raw, None)
            self._hints.pop(raw, None)  # save() re-hints the dtype's width after hint(name, 0)

    def _save_staged(self, step, names, exports, blob):
        """Snapshot mode: each region copied once into staging memory from the library
        (ckpt_stage_alloc), then handed over (ckpt_save_staged). False when the pool cannot
        hold the step (nothing saved)."""
        lib = self._lib
        sizes = [ex.size for ex in exports] + [len(blob)]
        bufs = []
        handed = False
        try:
            for size in sizes:
                p = ctypes.c_void_p()
                try:
                    self._call("ckpt_stage_alloc", lib.ckpt_stage_alloc, max(size, 1),
                               ctypes.byref(p))
                except OutOfMemory:
                    return False
                bufs.append(p.value)
            for ex, p in zip(exports, bufs):
                _objects.fill_staging(ex, p)
            ctypes.memmove(bufs[-1], blob, len(blob))
            arr = (_lib.ckpt_region * len(sizes))()
            for i in range(len(exports)):
                arr[i].name = names[i]
                arr[i].data = bufs[i]
                arr[i].size = exports[i].size
            arr[len(exports)].name = META_REGION.encode("ascii")
            arr[len(exports)].data = bufs[-1]
            arr[len(exports)].size = len(blob)
            handed = True  # the buffers are the library's from the call on, whatever it returns
            self._call("ckpt_save_staged", lib.ckpt_save_staged, step, arr, len(sizes))
            return True
        finally:
            if not handed:
                with self._lock:
                    for p in bufs:
                        if self._ctx.value:
                            lib.ckpt_stage_free(self._ctx, p)

    # ---- steps

    def wait_local(self, step: Optional[int] = None) -> None:
        """Snapshot mode: wait until `step` (None: every step saved so far) is durable on the
        local tier, not for the drain. Raises the error of its background local write (the
        staged save is then lost; the step is as it was before it), NotFound when this context
        never saved `step`. Without snapshot mode save() was durable already: returns at once."""
        s = _lib.CKPT_STEP_ALL if step is None else _check_step(step)
        self._call("ckpt_wait_local", self._lib.ckpt_wait_local, s)

    def wait(self, step: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """Wait until `step` (None: every step saved so far by this context) is committed on the
        shared volume. Raises the drain's error (the local copy is kept), NotFound when this
        context never saved `step`.

        timeout: at most this many seconds (>= 0; 0 asks without waiting; ckpt_wait_timeout).
        Raises TimedOut when the step is not committed by then, its message saying whether the
        shared volume is not responding; the drain goes on (call wait again, or see
        drain_lag()). None (the default) waits as long as the drain takes."""
        s = _lib.CKPT_STEP_ALL if step is None else _check_step(step)
        if timeout is None:
            self._call("ckpt_wait", self._lib.ckpt_wait, s)
            return
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a number of seconds or None, not %s"
                            % type(timeout).__name__)
        if math.isnan(timeout) or timeout < 0:
            raise InvalidArgument(_lib.CKPT_EINVAL, "timeout must be >= 0 seconds, not %r"
                                  % timeout, "ckpt_wait_timeout")
        self._call("ckpt_wait_timeout", self._lib.ckpt_wait_timeout, s, float(timeout))

    def drain_lag(self) -> DrainLag:
        """How far the shared volume is behind this checkpointer's saves, without blocking
        (ckpt_drain_lag): see DrainLag. E.g. log it every few steps, or alert when `stalled`."""
        info = _lib.ckpt_lag_info()
        self._call("ckpt_drain_lag", self._lib.ckpt_drain_lag, ctypes.byref(info))
        return DrainLag(info.newest_local if info.has_local else None,
                        info.newest_committed if info.has_committed else None,
                        info.seconds_behind, bool(info.stalled), info.stalled_seconds,
                        info.pending, info.skipped)

    def poll(self, step: int) -> Union[State, int]:
        """State of `step` saved by this context, without blocking (a State; a plain int for a
        state this package does not know yet)."""
        st = ctypes.c_int()
        self._call("ckpt_poll", self._lib.ckpt_poll, _check_step(step), ctypes.byref(st))
        try:
            return State(st.value)
        except ValueError:
            return st.value

    def latest(self) -> Optional[int]:
        """The newest complete, verifiable step on either tier, whatever number of ranks saved
        it (see steps(); load() of a step of another world size needs rank=), or None when
        there is none. Pins the step to the save found: this checkpointer's loads of it read
        that save (StaleSave if it is removed meanwhile); calling latest() again re-pins.
        Collective with MPI: every rank gets the same answer."""
        s = ctypes.c_uint64()
        try:
            self._call("ckpt_latest", self._lib.ckpt_latest, ctypes.byref(s))
        except NotFound:
            return None
        return s.value

    def steps(self) -> List[StepInfo]:
        """Every step this checkpointer can read, newest first (ckpt_list_steps): committed on
        the shared volume whatever number of ranks saved it, or complete locally. Not
        collective: with MPI it is this rank's view."""
        count = ctypes.c_size_t()
        while True:
            cap = count.value
            infos = (_lib.ckpt_step_info * max(cap, 1))()
            self._call("ckpt_list_steps", self._lib.ckpt_list_steps, infos, cap,
                       ctypes.byref(count))
            if count.value <= cap:
                return [StepInfo(i.step, i.nranks, bool(i.tiers & _lib.CKPT_TIER_LOCAL),
                                 bool(i.tiers & _lib.CKPT_TIER_SHARED), bool(i.committed),
                                 i.save_id, i.created_ns)
                        for i in infos[:count.value]]

    def step_nranks(self, step: int) -> int:
        """How many ranks saved `step`."""
        n = ctypes.c_uint32()
        self._call("ckpt_step_nranks", self._lib.ckpt_step_nranks, _check_step(step),
                   ctypes.byref(n))
        return n.value

    def _resolve(self, step):
        if step is None:
            latest = self.latest()
            if latest is None:
                raise NotFound(_lib.CKPT_ENOENT, "no checkpoint to load: no complete step on "
                               "either tier", "load")
            return latest
        return _check_step(step)

    def _rank(self, rank):
        if rank is None:
            return self.rank
        rank = operator.index(rank)
        if not 0 <= rank < 2**32:
            raise InvalidArgument(_lib.CKPT_EINVAL, "rank %d is out of range" % rank, "load")
        return rank

    def _list(self, step, rank):
        count = ctypes.c_size_t()
        while True:
            cap = count.value
            infos = (_lib.ckpt_region_info * max(cap, 1))()
            # ckpt_list_regions lists this context's rank; other ranks' names come from their
            # metadata region (every shard saved by this package has one).
            self._call("ckpt_list_regions", self._lib.ckpt_list_regions, step, infos, cap,
                       ctypes.byref(count))
            if count.value <= cap:
                return [(bytes(infos[i].name).decode("utf-8", "replace"), infos[i].size)
                        for i in range(count.value)]

    def _size(self, step, rank, name):
        size = ctypes.c_size_t()
        self._call("ckpt_region_size_rank", self._lib.ckpt_region_size_rank, step, rank,
                   name.encode("utf-8"), ctypes.byref(size))
        return size.value

    def _load_into(self, step, rank, name, target):
        try:
            self._call("ckpt_load", self._lib.ckpt_load_rank, step, rank, name.encode("utf-8"),
                       target.address, target.size)
        except BaseException:
            target.release()
            raise
        return target.finish()

    def _step(self, step, rank, own=False, by_name=False):
        """(metadata document, [(name, size)] of the caller's regions in saved order) of the
        shard of (step, rank). The document is {} for a shard saved without this package.
        own: the caller reads its own shard (no rank= given): a step saved by another number of
        ranks raises RanksMismatch (ckpt_list_regions says CKPT_ENRANKS)."""
        if own:
            listing = self._list(step, rank)  # NotFound: no such step
            has_meta = any(n == META_REGION for n, _ in listing)
        else:
            nranks = self.step_nranks(step)  # NotFound: no such step
            if rank >= nranks:
                raise NotFound(_lib.CKPT_ENOENT, "step %d was saved by %d ranks, not by rank %d"
                               % (step, nranks, rank), "load")
            listing = None
            try:
                self._size(step, rank, META_REGION)
                has_meta = True
            except NotFound:
                has_meta = False
        doc = self._meta(step, rank) if has_meta else {}
        aliases = _aliases(doc, step)
        if listing is None:
            if not doc and by_name:
                return {}, []  # the caller names its regions (load(names=...))
            if not doc:
                raise NotFound(_lib.CKPT_ENOENT, "step %d rank %d has no %s region, so its "
                               "region names are unknown; load them by name" %
                               (step, rank, META_REGION), "load")
            listing = [(n, self._size(step, rank, aliases.get(n, n))) for n in doc["regions"]]
        elif aliases:
            # An alias has no region of its own: it takes its place in the saved order (the
            # metadata's), and the size of the region it names.
            sizes = dict(listing)
            if any(of not in sizes for of in aliases.values()):
                raise Corrupt(_lib.CKPT_ECORRUPT, "step %d: an alias names a region the step "
                              "does not have" % step, "load")
            order = [n for n in doc["regions"] if n in sizes or n in aliases]
            order += [n for n in sizes if n not in doc["regions"]]
            listing = [(n, sizes[aliases.get(n, n)]) for n in order]
        return doc, [(n, s) for n, s in listing if n != META_REGION]

    def _meta(self, step, rank):
        size = self._size(step, rank, META_REGION)
        buf = bytearray(size)
        t = _objects._buffer_target(buf, lambda: bytes(buf))
        blob = self._load_into(step, rank, META_REGION, t)
        try:
            doc = json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Corrupt(_lib.CKPT_ECORRUPT, "step %d: metadata region is not UTF-8 JSON: %s"
                          % (step, e), "load") from None
        if (not isinstance(doc, dict) or doc.get("format") != META_FORMAT
                or not isinstance(doc.get("regions"), dict)):
            raise Corrupt(_lib.CKPT_ECORRUPT, "step %d: metadata region is not a %s document"
                          % (step, META_FORMAT), "load")
        if (not isinstance(doc.get("version"), int) or isinstance(doc["version"], bool)
                or doc["version"] > META_VERSION):
            raise Corrupt(_lib.CKPT_ECORRUPT, "step %d: metadata version %r is not one this "
                          "package reads (up to %d)" % (step, doc.get("version"), META_VERSION),
                          "load")
        return doc

    def regions(self, step: Optional[int] = None,
                rank: Optional[int] = None) -> Dict[str, Region]:
        """{name: Region} of a step (None: latest()), in the order they were saved; the
        metadata region is not listed. `rank` reads another rank's shard (resharding)."""
        own = rank is None
        step, rank = self._resolve(step), self._rank(rank)
        doc, listing = self._step(step, rank, own)
        metas = doc.get("regions", {})
        aliases = _aliases(doc, step)
        out = {}
        for name, size in listing:
            m = _objects.check_meta(name, metas.get(aliases.get(name, name)), size)
            out[name] = Region(name, size, m["kind"], m.get("dtype", m.get("format")),
                               tuple(m["shape"]) if "shape" in m else None)
        return out

    def load(self, step: Optional[int] = None, into: Optional[Mapping[str, Any]] = None,
             names: Union[str, Iterable[str], None] = None, raw: bool = False,
             rank: Optional[int] = None) -> Dict[str, Any]:
        """Load a step (None: latest(); NotFound when there is none) as {name: object}, each
        rebuilt as what it was saved from: bytes, bytearray, memoryview (format and shape),
        numpy.ndarray (dtype, shape, memory order), torch.Tensor (dtype, shape; on the CPU).

        into:  {name: object} to fill in place: a numpy array or torch tensor of the same dtype
               and shape (in place without a copy when contiguous and on the CPU; otherwise read
               into scratch memory and copied in), a bytearray or writable memoryview of the
               region's size. Those very objects are returned in the mapping.
        names: load only these regions (default: all).
        raw:   return every region as bytes, whatever it was saved from.
        rank:  read that rank's shard instead of this rank's (resharding). Without it, a step
               saved by another number of ranks than this checkpointer has raises
               RanksMismatch: its shard numbered like this rank is another rank's part of the
               model (see steps(), step_nranks())."""
        own = rank is None
        step, rank = self._resolve(step), self._rank(rank)
        doc, listing = self._step(step, rank, own, names is not None)
        metas = doc.get("regions", {})
        aliases = _aliases(doc, step)
        into = into or {}
        if names is None:
            todo = list(listing)
            have = {n for n, _ in todo}
            todo += [(n, None) for n in into if n not in have]  # NotFound from C, below
        else:
            todo = [(n, None) for n in ([names] if isinstance(names, str) else names)]
        out = {}
        loaded = {}  # region name -> the object it was loaded as (for its aliases)
        for name, size in todo:
            if not isinstance(name, str) or name == META_REGION or "\0" in name:
                raise InvalidArgument(_lib.CKPT_EINVAL, "bad region name %r" % (name,), "load")
            real = aliases.get(name, name)
            target = into.get(name)
            prev = loaded.get(real)
            if prev is not None and (target is None or _objects.same_memory(target, prev)):
                out[name] = prev if target is None else target  # tied: one object, read once
                continue
            if size is None:
                size = self._size(step, rank, real)  # NotFound with the C message
            obj = self._load_one(step, rank, real, size, metas.get(real), target, raw)
            loaded.setdefault(real, obj)
            out[name] = obj
        return out

    def _load_one(self, step, rank, name, size, meta, target, raw):
        meta = _objects.check_meta(name, meta, size)
        if target is not None:
            t = _objects.existing_target(name, meta, size, target)
        else:
            t = _objects.new_target(name, meta, size, raw)
        return self._load_into(step, rank, name, t)

    def load_state(self, step: Optional[int] = None, into: Any = None,
                   rank: Optional[int] = None, map_location: Any = None,
                   _unmapped: Tuple[Any, ...] = ()) -> Any:
        """Load what save_state() saved (None: latest()). `into` mirrors the state partially: a
        tensor or array found in it at the same path as a stored one is filled in place (same
        dtype and shape), e.g. into={"model": model.state_dict()}. Raises NotFound when the step
        was not saved by save_state().

        map_location: where the torch tensors that are not filled in place go, as in
        torch.load (see torch_load); None leaves them on the CPU. (_unmapped: top-level keys
        whose tensors stay on the CPU, e.g. torch_load's RNG states.)"""
        own = rank is None
        step, rank = self._resolve(step), self._rank(rank)
        doc, _ = self._step(step, rank, own)
        if "state" not in doc:
            raise NotFound(_lib.CKPT_ENOENT, "step %d was not saved with save_state()" % step,
                           "load_state")
        metas = doc["regions"]
        aliases = _aliases(doc, step)
        loaded = {}  # region name -> the object it was loaded as (for its aliases)
        unmapped = set()
        if map_location is not None and _unmapped:
            unmapped = {name for name, path in _tree.leaf_paths(doc["state"]).items()
                        if path and path[0] in _unmapped}

        def load_leaf(name, existing):
            if name not in metas:
                raise Corrupt(_lib.CKPT_ECORRUPT, "state refers to region %r, which has no "
                              "metadata" % name, "load_state")
            if existing is not None and not (_objects.is_tensor(existing) or
                                             _objects.is_ndarray(existing) or
                                             isinstance(existing, (bytearray, memoryview))):
                existing = None
            real = aliases.get(name, name)
            prev = loaded.get(real)
            if prev is not None and (existing is None or _objects.same_memory(existing, prev)):
                return prev if existing is None else existing  # tied: one object, read once
            obj = self._load_one(step, rank, real, self._size(step, rank, real), metas[real],
                                 existing, False)
            if (existing is None and map_location is not None and name not in unmapped
                    and _objects.is_tensor(obj)):
                obj = _objects.map_tensor(obj, metas[real].get("device", "cpu"), map_location)
            loaded.setdefault(real, obj)
            return obj

        return _tree.decode(doc["state"], load_leaf, into)

    def state_regions(self, step: Optional[int] = None,
                      rank: Optional[int] = None) -> Dict[Tuple[Any, ...], Region]:
        """{path tuple: Region} of the tensors/arrays a save_state() step holds, without loading
        them (e.g. to check shapes before loading in place)."""
        own = rank is None
        step, rank = self._resolve(step), self._rank(rank)
        doc, _ = self._step(step, rank, own)
        if "state" not in doc:
            raise NotFound(_lib.CKPT_ENOENT, "step %d was not saved with save_state()" % step,
                           "state_regions")
        regs = self.regions(step, rank)
        return {path: regs[name] for name, path in _tree.leaf_paths(doc["state"]).items()
                if name in regs}
