# SPDX-License-Identifier: MIT
# Snapshot mode (stage_bytes): save() copies into the library's staging memory and returns; the
# objects may change at once; wait_local / wait / poll; a pool too small for the step.
import numpy as np
import pytest

import ckpt


def _state(seed, n=300_000):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal(n).astype(np.float32),
            "b": rng.integers(0, 255, 4097, dtype=np.uint8),
            "empty": np.zeros(0, np.float64),
            "blob": b"hello" * 7}


def test_snapshot_save_then_modify(dirs, monkeypatch):
    calls = []
    with ckpt.Checkpointer(dirs[0], dirs[1], name="snap", stage_bytes="16M",
                           keep_local=5) as c:
        real = c._lib.ckpt_save_staged  # the library object is shared: monkeypatch restores it
        monkeypatch.setattr(c._lib, "ckpt_save_staged", lambda *a: calls.append(a[1]) or real(*a))
        want = {}
        for step in range(1, 4):
            objs = _state(step)
            want[step] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                          for k, v in objs.items()}
            c.save(step, objs)
            objs["w"][:] = -1.0  # modified at once: the step holds what was passed
            objs["b"][:] = 0
            assert c.poll(step) in (ckpt.State.STAGED, ckpt.State.LOCAL, ckpt.State.COMMITTED)
        c.wait_local(3)
        assert c.poll(3) in (ckpt.State.LOCAL, ckpt.State.COMMITTED)
        c.wait()
        for step in range(1, 4):
            got = c.load(step)
            assert np.array_equal(got["w"], want[step]["w"])
            assert np.array_equal(got["b"], want[step]["b"])
            assert got["empty"].shape == (0,)
            assert got["blob"] == want[step]["blob"]
        with pytest.raises(ckpt.NotFound):
            c.wait_local(99)
    assert calls == [1, 2, 3]  # the copy-free API was used for every save


def test_snapshot_torch_cpu(dirs):
    torch = pytest.importorskip("torch")
    with ckpt.Checkpointer(dirs[0], dirs[1], name="snapt", stage_bytes="8M") as c:
        t = torch.arange(100_000, dtype=torch.float32)
        strided = torch.arange(64, dtype=torch.int64).reshape(8, 8).t()
        c.save_state(1, {"model": {"t": t, "s": strided}, "epoch": 3})
        t.zero_()
        c.wait_local()
        got = c.load_state(1)
        assert torch.equal(got["model"]["t"], torch.arange(100_000, dtype=torch.float32))
        assert torch.equal(got["model"]["s"], torch.arange(64).reshape(8, 8).t())
        assert got["epoch"] == 3


def test_snapshot_pool_too_small(dirs, monkeypatch):
    calls = []
    with ckpt.Checkpointer(dirs[0], dirs[1], name="small", stage_bytes="64K") as c:
        real = c._lib.ckpt_save
        monkeypatch.setattr(c._lib, "ckpt_save", lambda *a: calls.append(a[1]) or real(*a))
        objs = _state(7)
        c.save(1, objs)  # 1.2 MB > 64 KiB: written directly by ckpt_save
        c.save(2, {"x": b"small"})  # fits: staged
        c.wait()
        assert calls == [1]
        assert np.array_equal(c.load(1)["w"], objs["w"])
        assert c.load(2)["x"] == b"small"
        assert c.poll(1) == ckpt.State.COMMITTED


def test_wait_local_without_snapshot(ck):
    ck.save(1, {"x": b"abc"})
    ck.wait_local(1)
    ck.wait_local()
    assert ck.poll(1) != ckpt.State.STAGED
