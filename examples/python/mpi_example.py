#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mpi4py + libckpt: every rank saves its own NumPy shard of a step, the step commits atomically
across ranks, all ranks agree on latest(), and each reads its shard (and a neighbour's) back.

    mpirun -np 2 python3 mpi_example.py [BASE_DIR]

Prints "mpi_example: OK rank R/N" on every rank; exits 77 when libckpt was built without MPI."""
import os
import shutil
import sys
import tempfile

try:
    import ckpt
except ImportError:  # not installed: use the package of this source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "bindings", "python"))
    import ckpt

import numpy as np
from mpi4py import MPI


def shard(step, rank):
    return np.arange(100000, dtype=np.float64) * (rank + 1) + step


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    base = sys.argv[1] if len(sys.argv) > 1 else None
    made = False
    if rank == 0 and base is None:
        base, made = tempfile.mkdtemp(prefix="ckpt-mpi-"), True
    base = comm.bcast(base, root=0)
    local_dir = os.path.join(base, "local")  # ranks of one node may share their local_dir
    shared_dir = os.path.join(base, "shared")
    if rank == 0:
        os.makedirs(local_dir, exist_ok=True)
        os.makedirs(shared_dir, exist_ok=True)
    comm.Barrier()

    try:
        ck = ckpt.Checkpointer(local_dir=local_dir, shared_dir=shared_dir, name="mpi-example",
                               comm=comm)
    except ckpt.NotSupported as e:
        print("mpi_example: SKIP (%s)" % e, flush=True)
        sys.exit(77)
    with ck:
        assert (ck.rank, ck.nranks) == (rank, size), (ck.rank, ck.nranks)
        for step in (1, 2):  # collective: every rank saves the same step
            ck.save(step, {"shard": shard(step, rank), "rank": np.array(rank, dtype=np.int32)})
        ck.wait()  # both steps committed on the shared volume, across all ranks
        latest = ck.latest()  # collective: the same answer everywhere
        everyone = comm.allgather(latest)
        assert everyone == [2] * size, everyone

        mine = ck.load(latest)
        assert np.array_equal(mine["shard"], shard(latest, rank))
        assert int(mine["rank"]) == rank
        assert ck.step_nranks(latest) == size
        other = (rank + 1) % size  # resharding: read a neighbour's shard
        theirs = ck.load(latest, names=["shard"], rank=other)["shard"]
        assert np.array_equal(theirs, shard(latest, other))

        buf = np.empty(100000, dtype=np.float64)  # in place, no allocation
        ck.load(1, into={"shard": buf}, names=["shard"])
        assert np.array_equal(buf, shard(1, rank))
    comm.Barrier()
    if made:
        shutil.rmtree(base, ignore_errors=True)
    print("mpi_example: OK rank %d/%d" % (rank, size), flush=True)


if __name__ == "__main__":
    main()
