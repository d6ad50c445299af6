#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch (CPU) training that checkpoints every N steps with libckpt, can be SIGKILLed mid-run
(--kill-at), resumes from the newest checkpoint, and ends bit-identical to an uninterrupted run.

    python3 train_torch.py --dirs /tmp/run1                  # uninterrupted
    python3 train_torch.py --dirs /tmp/run2 --kill-at 37     # dies after step 37 (exit -9)
    python3 train_torch.py --dirs /tmp/run2                  # resumes from step 30, finishes
Both last lines print the same "params sha256".

Everything that decides the next step is checkpointed: parameters, Adam's moments and step
counts, the LR scheduler, the global torch RNG (dropout), and the data order: the shuffling
generator's state at the start of the epoch and the position in it.

The DataLoader gets its own generator (generator=): without one, creating each epoch's
iterator draws the shuffling seed from the global torch RNG, and a run resumed mid-epoch
(whose global RNG was restored to the state of the checkpoint, later than the epoch's start)
would shuffle that epoch differently. --no-loader-generator shows it: the resumed run's final
hash then differs from the uninterrupted run's."""
import argparse
import hashlib
import os
import signal
import sys

try:
    import ckpt
except ImportError:  # not installed: use the package of this source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "bindings", "python"))
    import ckpt

import torch

N_SAMPLES, N_FEATURES, N_CLASSES, BATCH = 512, 16, 4, 32


def make_dataset():
    """A fixed synthetic classification problem (the same in every run: regenerated, not
    checkpointed)."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N_SAMPLES, N_FEATURES, generator=g)
    w = torch.randn(N_FEATURES, N_CLASSES, generator=g)
    y = (x @ w + 0.5 * torch.randn(N_SAMPLES, N_CLASSES, generator=g)).argmax(dim=1)
    return x, y


def make_model():
    return torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, 64), torch.nn.ReLU(), torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, N_CLASSES))


def params_sha256(model):
    h = hashlib.sha256()
    for key, t in model.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dirs", help="base directory: uses BASE/local and BASE/shared")
    ap.add_argument("--local-dir")
    ap.add_argument("--shared-dir")
    ap.add_argument("--name", default="train-torch")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=10, help="checkpoint every N steps")
    ap.add_argument("--kill-at", type=int, help="SIGKILL this process right after step K")
    ap.add_argument("--no-loader-generator", action="store_true",
                    help="the mistake: a DataLoader without generator= (resume differs)")
    args = ap.parse_args()
    local_dir = args.local_dir or (args.dirs and os.path.join(args.dirs, "local"))
    shared_dir = args.shared_dir or (args.dirs and os.path.join(args.dirs, "shared"))
    if not local_dir or not shared_dir:
        ap.error("give --dirs, or --local-dir and --shared-dir")
    for d in (local_dir, shared_dir):
        os.makedirs(d, exist_ok=True)  # in production shared_dir is a mount that must exist

    # Bit-identical runs: one thread (no reduction-order differences), deterministic kernels.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    x, y = make_dataset()
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    loader_gen = torch.Generator().manual_seed(42)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True,
        generator=None if args.no_loader_generator else loader_gen)
    step, epoch, pos = 0, 0, 0

    with ckpt.Checkpointer(local_dir=local_dir, shared_dir=shared_dir, name=args.name) as ck:
        latest = ck.latest()
        if latest is not None:
            restored = ckpt.torch_load(ck, latest, model=model, optimizer=opt, scheduler=sched)
            e = restored.extra
            step, epoch, pos = restored.step, e["epoch"], e["pos"]
            loader_gen.set_state(e["loader_gen"])  # as it was when this epoch began
            print("resumed from step %d (epoch %d, batch %d)" % (step, epoch, pos), flush=True)

        model.train()
        while step < args.steps:
            # The epoch's order follows from the generator's state before iter(loader) draws
            # from it: that state is what a checkpoint taken during this epoch records.
            epoch_gen_state = loader_gen.get_state()
            for i, (xb, yb) in enumerate(loader):
                if i < pos:
                    continue  # done before the restart (a real loader may skip faster)
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                sched.step()
                step, pos = step + 1, i + 1
                if step % args.every == 0:
                    done = pos == len(loader)  # the next step starts a new epoch
                    extra = {"epoch": epoch + 1 if done else epoch, "pos": 0 if done else pos,
                             "loader_gen": loader_gen.get_state() if done else epoch_gen_state,
                             "loss": loss.item()}
                    ckpt.torch_save(ck, step, model=model, optimizer=opt, scheduler=sched,
                                    extra=extra)
                    print("step %d loss %.6f checkpointed" % (step, loss.item()), flush=True)
                if args.kill_at is not None and step == args.kill_at:
                    print("killing myself after step %d" % step, flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)
                if step == args.steps:
                    break
            else:
                epoch, pos = epoch + 1, 0
        ck.wait()  # every checkpoint committed on the shared volume
    print("final step %d params sha256 %s" % (step, params_sha256(model)), flush=True)


if __name__ == "__main__":
    main()
