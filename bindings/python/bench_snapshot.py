#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Snapshot saves from Python: how long save() blocks the training loop, against torch.save and
against libckpt's durable mode (stage_bytes=0), in one run, on real trained weights tiled up.

    CKPT_BUILD_DIR=/path/to/build python3 bindings/python/bench_snapshot.py [--size 256M] [--reps 5]

For each repetition, back to back (so that all share the machine's noise): a memcpy-like copy of
the state (torch.Tensor.clone into preallocated tensors: the copy a snapshot cannot avoid),
torch.save to a file in local_dir + os.fsync (durable, as ckpt_save's durable mode), save() in
durable mode, save() in snapshot mode. Every libckpt save waits for the previous drain first
(wait()). Prints medians and ratios; a benchmark, not a test."""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ckpt  # noqa: E402

DATA = ["weights-fp32.bin", "adamw-state-fp32.bin", "weights-bf16.bin"]


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * mult[s[-1].upper()]) if s[-1].upper() in mult else int(s)


def real_state(nbytes, data_dir):
    raw = b"".join(open(os.path.join(data_dir, f), "rb").read() for f in DATA)
    buf = np.frombuffer((raw * (nbytes // len(raw) + 1))[:nbytes], dtype=np.float32).copy()
    per = 16 << 20  # 16 MiB tensors: a model's layers
    return {"layer.%d" % i: torch.from_numpy(buf[o // 4:(o + per) // 4])
            for i, o in enumerate(range(0, nbytes, per))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="256M")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--data", default=os.environ.get("CKPT_TEST_DATA",
                                                     os.path.join(HERE, "../../../shared/data")))
    ap.add_argument("--dir", default=None, help="where local/ and shared/ go (default: mkdtemp)")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.data, DATA[0])):
        a.data = "/work/shared/data"
    n = parse_size(a.size)
    state = real_state(n, a.data)
    copies = {k: torch.empty_like(v) for k, v in state.items()}
    base = a.dir or tempfile.mkdtemp(prefix="ckpt-pybench-")
    local, shared = os.path.join(base, "local"), os.path.join(base, "shared")
    os.makedirs(local, exist_ok=True)
    os.makedirs(shared, exist_ok=True)
    t = {"copy": [], "torch.save": [], "durable": [], "snapshot": []}
    with ckpt.Checkpointer(local, shared, name="durable", log_level=0) as dur, \
            ckpt.Checkpointer(local, shared, name="snap", log_level=0,
                              stage_bytes=str(n + (16 << 20))) as snap:
        for rep in range(-1, a.reps):  # rep -1: warm-up (the staging pool's first touch)
            t0 = time.perf_counter()
            for k, v in state.items():
                copies[k].copy_(v)
            t1 = time.perf_counter()
            path = os.path.join(local, "torch-%d.pt" % rep)
            with open(path, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            t2 = time.perf_counter()
            os.unlink(path)
            dur.wait()
            os.sync()
            t3 = time.perf_counter()
            dur.save(rep + 2, state)
            t4 = time.perf_counter()
            snap.wait()
            os.sync()
            t5 = time.perf_counter()
            snap.save(rep + 2, state)
            t6 = time.perf_counter()
            if rep >= 0:
                for key, v in (("copy", t1 - t0), ("torch.save", t2 - t1), ("durable", t4 - t3),
                               ("snapshot", t6 - t5)):
                    t[key].append(v)
        snap.wait()
        got = snap.load(a.reps + 1, names=["layer.0"])["layer.0"]
        assert torch.equal(got, state["layer.0"]), "snapshot step differs"
    med = {k: statistics.median(v) for k, v in t.items()}
    print("python snapshot bench: %d MiB in %d tensors, %d reps (medians), %d CPUs, load %s"
          % (n >> 20, len(state), a.reps, os.cpu_count(), os.getloadavg()[0]))
    for k in ("copy", "torch.save", "durable", "snapshot"):
        print("  %-11s %8.1f ms  %6.2fx the copy" % (k, med[k] * 1e3, med[k] / med["copy"]))
    print("  snapshot is %.1fx faster than torch.save+fsync, %.1fx faster than the durable save"
          % (med["torch.save"] / med["snapshot"], med["durable"] / med["snapshot"]))
    if not a.dir:
        import shutil
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
