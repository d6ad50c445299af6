# SPDX-License-Identifier: MIT
"""Saving and restoring PyTorch training state (model, optimizer, scheduler, RNGs, your own
counters) through Checkpointer.save_state: tensors as zero-copy regions, the rest as JSON.
Never pickle: loading a checkpoint cannot execute code from it."""
import random
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional, Union

from .checkpointer import Checkpointer

if TYPE_CHECKING:  # pragma: no cover  (PyTorch is optional: imported only by type checkers)
    import torch

# torch.load's map_location forms: a device (str or torch.device), {saved location: device}, or
# a callable(tensor, saved location) -> tensor (torch.load's gets a storage; ours a tensor).
MapLocation = Union[None, str, "torch.device", Dict[str, Union[str, "torch.device"]],
                    Callable[[Any, str], Any]]


class Restored(NamedTuple):
    """What torch_load() restored: the step number and the `extra` object saved."""
    step: int
    extra: Any


def rng_state() -> Dict[str, Any]:
    """The random number generators' states: torch's CPU generator, CUDA's (when CUDA is
    initialized), Python's `random`, and NumPy's global one (when NumPy is imported)."""
    import torch
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    np = sys.modules.get("numpy")
    if np is not None:
        state["numpy"] = np.random.get_state()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what rng_state() returned."""
    import torch
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np
        np.random.set_state(state["numpy"])


def torch_save(ckpt: "Checkpointer", step: int, model: Any = None, optimizer: Any = None,
               scheduler: Any = None, extra: Any = None, rng: bool = True) -> None:
    """Save a training step: model.state_dict(), optimizer.state_dict(),
    scheduler.state_dict(), `extra` (nested dicts/lists/tuples of scalars, strings, tensors,
    arrays: epoch, data order, a generator's get_state(), ...), and with rng=True the RNG states
    (rng_state()). The model's and optimizer's tensors are written from their own memory.
    Collective with MPI, like Checkpointer.save."""
    state = {}
    if model is not None:
        state["model"] = model.state_dict()
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if extra is not None:
        state["extra"] = extra
    if rng:
        state["rng"] = rng_state()
    ckpt.save_state(step, state)


def _in_place_targets(ckpt: "Checkpointer", step: int, model: Any,
                      rank: Optional[int] = None) -> Dict[str, Any]:
    """model.state_dict() tensors that can receive their stored values directly (CPU,
    contiguous, same dtype and shape): they share memory with the parameters and buffers, so
    the load itself restores the model and load_state_dict's copy is a no-op."""
    from ._objects import torch_dtype_name
    stored = {path[1]: r for path, r in ckpt.state_regions(step, rank).items()
              if len(path) == 2 and path[0] == "model"}
    out = {}
    for key, t in model.state_dict().items():
        r = stored.get(key)
        if (r is not None and r.kind == "torch" and t.device.type == "cpu"
                and t.is_contiguous() and r.dtype == torch_dtype_name(t.dtype)
                and r.shape == tuple(t.shape)):
            out[key] = t
    return out


def torch_load(ckpt: "Checkpointer", step: Optional[int] = None, model: Any = None,
               optimizer: Any = None, scheduler: Any = None, rng: bool = True,
               strict: bool = True, map_location: MapLocation = None,
               rank: Optional[int] = None) -> Restored:
    """Restore what torch_save saved at `step` (None: ckpt.latest(); NotFound when there is no
    checkpoint). Each of model/optimizer/scheduler given gets load_state_dict() (strict for the
    model unless strict=False); with rng=True the RNG states are restored. Returns
    Restored(step, extra). Model tensors that match their stored dtype and shape are read in
    place before load_state_dict runs, so a strict load that then fails on other keys leaves
    those tensors already restored.

    map_location, as in torch.load: where the tensors of the loaded state (`extra`, and the
    state dicts handed to load_state_dict) are put: a device ("cpu", "cuda:1", a torch.device),
    a dict {saved location: device} (e.g. {"cuda:0": "cuda:1"}; locations not in it stay on the
    CPU), or a callable(tensor, saved location) -> tensor. Saved locations are "cpu" or the
    device a tensor was saved from ("cuda:0"). Unlike torch.load, None leaves every tensor on
    the CPU, where it is read, rather than on the device it was saved from: a checkpoint
    written on a GPU loads on a machine without one. Model tensors read in place stay where
    the model has them; load_state_dict and the optimizer move the rest to their parameters'
    devices anyway. The RNG states are not moved (set_rng_state wants them on the CPU).

    rank: restore the state that rank `rank` saved instead of this rank's: after a change of
    world size (RanksMismatch without it), e.g. the replicated model and optimizer of a
    data-parallel job from rank 0 (rank=0), or each saved rank's shard in turn to reshard."""
    step = ckpt._resolve(step)
    into = {}
    if model is not None:
        into["model"] = _in_place_targets(ckpt, step, model, rank)
    # The RNG states stay on the CPU: torch.set_rng_state takes a CPU tensor only.
    state = ckpt.load_state(step, into=into, rank=rank, map_location=map_location,
                            _unmapped=("rng",))
    if not isinstance(state, dict):
        raise TypeError("step %d does not hold a torch_save() state" % step)
    for obj, key in ((model, "model"), (optimizer, "optimizer"), (scheduler, "scheduler")):
        if obj is None:
            continue
        if key not in state:
            raise KeyError("step %d holds no %s state" % (step, key))
        if key == "model":
            obj.load_state_dict(state[key], strict=strict)
        else:
            obj.load_state_dict(state[key])
    if rng and "rng" in state:
        set_rng_state(state["rng"])
    return Restored(step, state.get("extra"))
