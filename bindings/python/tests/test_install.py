# SPDX-License-Identifier: MIT
# Installing the package as the READMEs say: the documented venv + pip commands run verbatim,
# and `make install prefix=P`, after which the installed package loads P's library by itself.
import os
import re
import shutil
import subprocess
import sys

import pytest

import ckpt
from conftest import PKG_ROOT, REPO

INSTALL_MARK = "<!-- the commands below are run verbatim by bindings/python/tests/test_install.py -->"
# What `import ckpt` must save and load once installed (run by the installed package).
SMOKE = r"""
import os, sys, ckpt
print(ckpt.__file__)
print(ckpt.library_path())
local, shared = sys.argv[1], sys.argv[2]
os.makedirs(local)
os.makedirs(shared)
with ckpt.Checkpointer(local_dir=local, shared_dir=shared, name="smoke") as ck:
    ck.save(1, {"b": b"installed"})
    ck.wait()
    assert ck.load(1) == {"b": b"installed"}
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        ck.save(2, {"a": a, "tied": a})
        out = ck.load(2)
        assert np.array_equal(out["a"], a) and out["tied"] is out["a"]
print("smoke OK")
"""


def _documented_block(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert INSTALL_MARK in text, "%s has no tested install block" % path
    block = text.split(INSTALL_MARK, 1)[1]
    m = re.match(r"\s*```sh\n(.*?)```", block, re.S)
    assert m, "no ```sh block after the mark in %s" % path
    return m.group(1)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("CKPT_LIBRARY", "CKPT_BUILD_DIR", "PYTHONPATH", "LD_LIBRARY_PATH",
                        "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONHOME")
           and not k.startswith("PIP_")}
    env.update(extra)
    return env


def test_readmes_document_the_same_commands():
    block = _documented_block(os.path.join(PKG_ROOT, "README.md"))
    assert "/usr/bin/python3 -m venv --system-site-packages" in block
    assert "--no-build-isolation --no-index bindings/python" in block
    assert _documented_block(os.path.join(REPO, "README.md")) == block


def test_documented_venv_install(tmp_path):
    """The README's commands, verbatim, from the top of a (copied) source tree, with HOME in
    a temporary directory; then the venv's Python saves and loads through the package."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("no /usr/bin/python3 (the documented commands are Debian's)")
    block = _documented_block(os.path.join(PKG_ROOT, "README.md"))
    tree = tmp_path / "src"  # pip builds in the source directory: never in this one
    shutil.copytree(PKG_ROOT, tree / "bindings" / "python", ignore=shutil.ignore_patterns(
        "tests", "__pycache__", "build", "*.egg-info", "_install.py"))
    home = tmp_path / "home"
    home.mkdir()
    env = _clean_env(HOME=str(home), CKPT_LIBRARY=ckpt.library_path())
    r = subprocess.run(["/bin/sh", "-exc", block], cwd=str(tree), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (
        "the documented install failed (scripts/setup.sh installs python3-venv, python3-pip, "
        "python3-wheel, python3-setuptools):\n" + r.stdout + r.stderr)
    assert ckpt.version() in r.stdout
    venv_python = home / ".venvs" / "ckpt" / "bin" / "python"
    r = subprocess.run([str(venv_python), "-c", SMOKE, str(tmp_path / "l"), str(tmp_path / "s")],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = r.stdout.splitlines()[0]
    assert installed.startswith(str(home / ".venvs" / "ckpt")), installed
    assert os.path.isfile(os.path.join(os.path.dirname(installed), "py.typed"))
    assert "smoke OK" in r.stdout


def _build_dir():
    build = os.environ.get("CKPT_BUILD_DIR")
    if not build or not os.path.isfile(os.path.join(build, "Makefile")):
        pytest.skip("no configured build tree (CKPT_BUILD_DIR)")
    if not shutil.which("make"):
        pytest.skip("no make")
    return build


def test_make_install_prefix_finds_its_library(tmp_path):
    """make install prefix=P installs the package too; with neither LD_LIBRARY_PATH nor
    CKPT_LIBRARY it loads P's library (recorded at install time), and make uninstall removes
    it again."""
    build = _build_dir()
    prefix = tmp_path / "prefix"
    env = _clean_env()
    r = subprocess.run(["make", "-C", build, "install", "prefix=" + str(prefix)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    pkgs = [os.path.join(root) for root, dirs, files in os.walk(prefix)
            if os.path.basename(root) == "ckpt" and "__init__.py" in files]
    assert len(pkgs) == 1, pkgs
    pkg = pkgs[0]
    source = {f for f in os.listdir(os.path.join(PKG_ROOT, "ckpt"))
              if f.endswith(".py") or f == "py.typed"} - {"_install.py"}
    assert set(os.listdir(pkg)) == source | {"_install.py"}  # install.sh's list is complete

    site = os.path.dirname(pkg)
    r = subprocess.run([sys.executable, "-c", SMOKE, str(tmp_path / "l"), str(tmp_path / "s")],
                       cwd=str(tmp_path), env=_clean_env(PYTHONPATH=site),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == os.path.join(pkg, "__init__.py")
    assert lines[1] == os.path.join(str(prefix), "lib", "libckpt.so.1")
    assert "smoke OK" in r.stdout

    r = subprocess.run(["make", "-C", build, "uninstall", "prefix=" + str(prefix)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.exists(pkg)


def test_pip_installed_package_finds_library_in_its_prefix(tmp_path):
    """A package without a recorded libdir (pip-installed) finds a library that the dynamic
    loader does not know in lib/ of its Python's prefix (a venv configured as --prefix)."""
    shutil.copytree(os.path.join(PKG_ROOT, "ckpt"), tmp_path / "site" / "ckpt",
                    ignore=shutil.ignore_patterns("__pycache__", "_install.py"))
    (tmp_path / "venv" / "lib").mkdir(parents=True)
    shutil.copy(os.path.realpath(ckpt.library_path()), tmp_path / "venv" / "lib" /
                "libckpt.so.1")
    code = ("import sys; sys.prefix = sys.argv[1]\n"
            "import ckpt; print(ckpt.library_path()); print(ckpt.version())")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "venv")], cwd="/",
                       env=_clean_env(PYTHONPATH=str(tmp_path / "site")),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(tmp_path / "venv" / "lib" / "libckpt.so.1"),
                                     ckpt.version()]
