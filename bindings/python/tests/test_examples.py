# SPDX-License-Identifier: MIT
# The examples as real processes: SIGKILL mid-training and resume bit-identical; mpi4py at 2
# ranks. (Installing the package: test_install.py.)
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import EXAMPLES, child_env

TRAIN = os.path.join(EXAMPLES, "train_torch.py")
MPI_EXAMPLE = os.path.join(EXAMPLES, "mpi_example.py")


def _train(base, *args, expect_rc=0):
    r = subprocess.run([sys.executable, TRAIN, "--dirs", str(base), "--steps", "45",
                        "--every", "10", *args], env=child_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == expect_rc, r.stdout + r.stderr
    return r.stdout


def _final_hash(out):
    m = re.search(r"final step (\d+) params sha256 ([0-9a-f]{64})", out)
    assert m, out
    return int(m.group(1)), m.group(2)


def test_killed_and_resumed_training_is_bit_identical(tmp_path):
    pytest.importorskip("torch")
    reference = _final_hash(_train(tmp_path / "straight"))
    assert reference[0] == 45

    out = _train(tmp_path / "killed", "--kill-at", "27", expect_rc=-signal.SIGKILL)
    assert "killing myself after step 27" in out and "final step" not in out
    out = _train(tmp_path / "killed")
    assert "resumed from step 20" in out  # the newest checkpoint before the kill
    assert _final_hash(out) == reference

    # Killed again right after a checkpoint (its drain may be cut short), resumed again.
    out = _train(tmp_path / "twice", "--kill-at", "30", expect_rc=-signal.SIGKILL)
    out = _train(tmp_path / "twice")
    assert "resumed from step 30" in out
    assert _final_hash(out) == reference


def test_resume_mid_epoch_needs_a_loader_generator(tmp_path):
    """What the docs warn about: a DataLoader without generator= draws each epoch's shuffling
    seed from the global RNG, which the resumed run restored to a later state: killed mid-epoch
    and resumed, it ends differently from an uninterrupted run (with generator=, identical)."""
    pytest.importorskip("torch")
    reference = _final_hash(_train(tmp_path / "straight", "--no-loader-generator"))
    _train(tmp_path / "killed", "--no-loader-generator", "--kill-at", "27",
           expect_rc=-signal.SIGKILL)
    out = _train(tmp_path / "killed", "--no-loader-generator")
    assert "resumed from step 20 (epoch 1, batch 4)" in out  # mid-epoch
    assert _final_hash(out)[0] == reference[0] and _final_hash(out) != reference


def test_mpi_example_two_ranks(tmp_path):
    pytest.importorskip("mpi4py")
    pytest.importorskip("numpy")
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if not mpirun:
        pytest.skip("no mpirun")
    env = child_env(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    OMPI_MCA_btl="self,vader", OMPI_MCA_rmaps_base_oversubscribe="1")
    r = subprocess.run([mpirun, "-np", "2", "--oversubscribe", sys.executable, MPI_EXAMPLE,
                        str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode == 77 or "mpi_example: SKIP" in r.stdout:
        pytest.skip("libckpt built without MPI")
    assert r.returncode == 0, r.stdout + r.stderr
    for rank in range(2):
        assert "mpi_example: OK rank %d/2" % rank in r.stdout

