# SPDX-License-Identifier: MIT
# The public API as documented: every configuration key of the README is a keyword the
# Checkpointer accepts and documents; every exception class is in the table; type hints and
# the py.typed marker.
import inspect
import os
import re
import types
import typing

import pytest

import ckpt
from conftest import PKG_ROOT, REPO


def _config_keys():
    """(key, default) rows of the top-level README's "Configuration keys" table."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Configuration keys", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]*) \| ([^|]*)", section, re.M)
    assert len(rows) >= 17, rows  # the table was found
    return [(k, d.strip().strip("`"), meaning) for k, d, meaning in rows]


def _bindings_readme():
    with open(os.path.join(PKG_ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_every_config_key_is_a_documented_keyword(dirs):
    doc = ckpt.Checkpointer.__doc__
    api = _bindings_readme().split("### `Checkpointer(", 1)[1].split("\n### ", 1)[0]
    for key, default, meaning in _config_keys():
        if meaning.strip().startswith("tests only"):
            continue
        assert re.search(r"\b%s\b" % key, api), "bindings/python/README.md lacks %s" % key
        assert re.search(r"\b%s\b" % key, doc), "Checkpointer.__doc__ does not list %s" % key
        if default.startswith("("):  # (required), (unset)
            continue
        opts = {"local_dir": dirs[0], "shared_dir": dirs[1], key: default}
        with ckpt.Checkpointer(**opts):
            pass  # accepted with its documented default


def test_every_exception_is_in_the_table():
    table = _bindings_readme().split("### Exceptions", 1)[1].split("\n## ", 1)[0]
    from ckpt import errors
    for code, cls in errors._CLASSES.items():
        row = re.search(r"^\| `%s` %d \| `%s`" % (errors._NAMES[code], code, cls.__name__),
                        table, re.M)
        assert row, "%s (%d) is missing from the exception table" % (cls.__name__, code)
        assert getattr(ckpt, cls.__name__) is cls


def _public_callables():
    for name in ckpt.__all__:
        obj = getattr(ckpt, name)
        if inspect.isfunction(obj):
            yield name, obj
    for cname, meth in vars(ckpt.Checkpointer).items():
        if inspect.isfunction(meth) and (not cname.startswith("_") or
                                         cname in ("__init__", "__enter__", "__exit__")):
            yield "Checkpointer." + cname, meth
    yield "Checkpointer.closed", ckpt.Checkpointer.closed.fget


@pytest.mark.parametrize("name,fn", list(_public_callables()),
                         ids=[n for n, _ in _public_callables()])
def test_type_hints(name, fn):
    localns = {}
    try:
        import torch  # "torch.device" in map_location's hint, for type checkers
        localns["torch"] = torch
    except ImportError:
        localns["torch"] = types.SimpleNamespace(device=object)
    hints = typing.get_type_hints(fn, localns=localns)  # every annotation resolves
    sig = inspect.signature(fn)
    for p in sig.parameters.values():
        if p.name != "self":
            assert p.name in hints, "%s: parameter %s has no type hint" % (name, p.name)
    assert "return" in hints, "%s has no return type" % name


def test_py_typed_marker():
    assert os.path.isfile(os.path.join(PKG_ROOT, "ckpt", "py.typed"))
    with open(os.path.join(PKG_ROOT, "pyproject.toml"), encoding="utf-8") as f:
        assert re.search(r'^ckpt = \[.*"py.typed".*\]', f.read(), re.M)
