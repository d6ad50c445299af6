# SPDX-License-Identifier: MIT
# Shared fixtures: a fresh local/shared directory pair and an open Checkpointer per test.
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)                            # bindings/python
REPO = os.path.dirname(os.path.dirname(PKG_ROOT))           # the source tree
EXAMPLES = os.path.join(REPO, "examples", "python")
sys.path.insert(0, PKG_ROOT)  # the package of this tree, also when an older one is installed

import ckpt  # noqa: E402


def pytest_report_header(config):
    try:
        return "libckpt %s from %s" % (ckpt.version(), ckpt.library_path())
    except ckpt.LibraryNotFound as e:
        return "libckpt NOT FOUND: %s" % e


@pytest.fixture
def dirs(tmp_path):
    local, shared = tmp_path / "local", tmp_path / "shared"
    local.mkdir()
    shared.mkdir()
    return local, shared


@pytest.fixture
def ck(dirs):
    c = ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], name="test")
    yield c
    c.close()


def child_env(**extra):
    """Environment for subprocesses (examples): they must find this tree's package and library."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["CKPT_LIBRARY"] = ckpt.library_path()
    env.update(extra)
    return env
