# SPDX-License-Identifier: MIT
# Issue 12, the reader side: steps(), load(rank=) / torch_load(rank=) after a change of world
# size (RanksMismatch), and one save per step per checkpointer (StaleSave).
import glob
import os
import shutil
import subprocess

import pytest

import ckpt
from conftest import child_env


def test_steps_lists_committed_steps(ck):
    assert ck.steps() == []
    for s in (1, 2, 3):
        ck.save(s, {"a": bytes([s]) * 100})
    ck.wait()
    got = ck.steps()
    assert [i.step for i in got] == [3, 2, 1]
    for i in got:
        assert isinstance(i, ckpt.StepInfo)
        assert i.nranks == 1 and i.committed and i.shared
        assert i.save_id != 0 and i.created_ns > 0
    assert got[0].local  # retention (keep_local) may have removed the older local copies


def test_steps_from_another_node(dirs, tmp_path, ck):
    ck.save(5, {"a": b"x" * 10})
    ck.wait()
    other = tmp_path / "other"
    other.mkdir()
    with ckpt.Checkpointer(local_dir=other, shared_dir=dirs[1], name="test") as c2:
        (i,) = c2.steps()
        assert i.step == 5 and i.committed and i.shared and not i.local and i.nranks == 1


def test_new_error_classes():
    assert ckpt.RanksMismatch.code == -12 and ckpt.StaleSave.code == -13
    assert "ranks" in ckpt.strerror(-12)
    assert "replaced" in ckpt.strerror(-13)


def _old_shards(shared, step):
    return set(glob.glob(os.path.join(str(shared), "test", "step-%020d" % step, "rank-*.ckz")))


def test_stale_save_is_distinct(dirs, tmp_path):
    """A reader pinned to a save that is removed gets StaleSave (never another save's bytes,
    never Corrupt); latest() re-pins to the new save."""
    rdir = tmp_path / "reader"
    rdir.mkdir()
    with ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="test",
                           log_level=0) as w, \
            ckpt.Checkpointer(local_dir=rdir, shared_dir=dirs[1], name="test",
                              log_level=0) as r:
        w.save(1, {"a": b"A" * 1000, "b": b"B" * 1000})
        w.wait()
        assert r.latest() == 1
        assert r.load(1, names="a")["a"] == b"A" * 1000
        before = _old_shards(dirs[1], 1)
        w.save(1, {"a": b"C" * 1000, "b": b"D" * 1000})
        w.wait()
        # the old save's shard is gone (as after any grace period)
        for f in before:
            if os.path.exists(f):
                os.unlink(f)
        with pytest.raises(ckpt.StaleSave) as ei:
            r.load(1, names="b")
        assert "step 1" in str(ei.value) and "ckpt_latest" in str(ei.value)
        assert r.latest() == 1
        got = r.load(1)
        assert got == {"a": b"C" * 1000, "b": b"D" * 1000}


def _mpirun():
    return shutil.which(os.environ.get("MPIRUN", "mpirun"))


def test_world_size_change(tmp_path):
    """A step saved by 4 ranks (tests/conc_mpi, under mpirun): a 1-process checkpointer's
    latest() names it, steps() says 4 ranks, load() of its own shard raises RanksMismatch,
    load(rank=) reads every shard."""
    build = os.environ.get("CKPT_BUILD_DIR", "")
    prog = os.path.join(build, "tests", "conc_mpi")
    if not build or not os.access(prog, os.X_OK) or not _mpirun():
        pytest.skip("no MPI build (tests/conc_mpi) or no mpirun")
    env = child_env(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    OMPI_MCA_btl="self,vader",
                    OMPI_MCA_btl_vader_single_copy_mechanism="none",
                    OMPI_MCA_rmaps_base_oversubscribe="1", CONC_MPI_BYTES="65536")
    subprocess.run([_mpirun(), "--allow-run-as-root", "--oversubscribe", "-np", "4", prog,
                    str(tmp_path), "save4"], env=env, check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    local = tmp_path / "single"
    local.mkdir()
    with ckpt.Checkpointer(local_dir=local, shared_dir=tmp_path / "shared", name="job",
                           log_level=0) as c:
        assert c.latest() == 2
        assert [(i.step, i.nranks, i.committed) for i in c.steps()] == [(2, 4, True),
                                                                         (1, 4, True)]
        with pytest.raises(ckpt.RanksMismatch) as ei:
            c.load(2)
        msg = str(ei.value)
        assert "step 2" in msg and "4 ranks" in msg and "ckpt_load_rank" in msg
        with pytest.raises(ckpt.RanksMismatch):
            c.regions(2)
        parts = [c.load(2, names="w", rank=q, raw=True)["w"] for q in range(4)]
        assert [len(p) for p in parts] == [65536 // 4] * 4
        assert c.step_nranks(2) == 4
        with pytest.raises(ckpt.NotFound):
            c.load(2, names="w", rank=4)


def test_torch_load_rank(dirs, ck):
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(4, 3)
    ckpt.torch_save(ck, 7, model=m)
    ck.wait()
    m2 = torch.nn.Linear(4, 3)
    ckpt.torch_load(ck, 7, model=m2, rank=0)
    assert torch.equal(m.weight, m2.weight) and torch.equal(m.bias, m2.bias)
    with pytest.raises(ckpt.NotFound):
        ckpt.torch_load(ck, 7, model=torch.nn.Linear(4, 3), rank=1)
