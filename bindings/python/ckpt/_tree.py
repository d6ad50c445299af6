# SPDX-License-Identifier: MIT
"""Nested Python state (a state_dict, an optimizer's param_groups, RNG states, counters) as JSON
plus a list of array/tensor leaves stored as regions.

This replaces pickle: the JSON holds only data (None, bool, int, str, finite floats, lists) and
tagged objects {"t": ...} for what JSON lacks (tuples, dicts with non-string keys, non-finite
floats, bytes, torch dtypes/devices, numpy scalars, region references). Decoding builds values
from a fixed set of constructors; nothing in a checkpoint can name a class or a function to
call, so loading one never runs code from it."""
import base64
import collections
import math
import sys

from . import _lib
from . import _objects
from .errors import Corrupt

LEAF_PREFIX = "state:"


def _path_str(path):
    return "/".join(str(p) for p in path) or "."


def encode(state):
    """Returns (json-able tree, [(region name, leaf object)])."""
    leaves = []

    def leaf_name(path):
        # Unique by its index; the path only makes listings readable. At most CKPT_NAME_MAX
        # bytes of UTF-8, never a NUL.
        head = "%s%d:" % (LEAF_PREFIX, len(leaves))
        tail = _path_str(path).replace("\0", "?")
        name = head + tail
        raw = name.encode("utf-8")
        if len(raw) > _lib.CKPT_NAME_MAX:
            name = raw[:_lib.CKPT_NAME_MAX].decode("utf-8", "ignore")
        return name

    def enc(x, path):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int):
            return int(x)  # an IntEnum stores its value
        if isinstance(x, float):
            if math.isfinite(x):
                return float(x)
            return {"t": "float", "v": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}
        if _objects.is_tensor(x) or (_objects.is_ndarray(x) and
                                     not isinstance(x, _objects._np().generic)):
            name = leaf_name(path)
            leaves.append((name, x))
            return {"t": "region", "r": name}
        if _objects.is_ndarray(x):  # a numpy scalar: its dtype and its bytes
            if x.dtype.hasobject or x.dtype.fields is not None:
                raise TypeError("state%s: numpy scalar of dtype %s cannot be stored" %
                                (_fmt_path(path), x.dtype))
            return {"t": "npscalar", "dtype": x.dtype.str, "v": x.tobytes().hex()}
        if isinstance(x, (bytes, bytearray)):
            return {"t": "bytes" if isinstance(x, bytes) else "bytearray",
                    "v": base64.b64encode(bytes(x)).decode("ascii")}
        if isinstance(x, list):
            return [enc(v, path + (i,)) for i, v in enumerate(x)]
        if isinstance(x, tuple):  # namedtuples and torch.Size come back as plain tuples
            return {"t": "tuple", "v": [enc(v, path + (i,)) for i, v in enumerate(x)]}
        if isinstance(x, dict):
            node = {"t": "odict" if isinstance(x, collections.OrderedDict) else "dict",
                    "v": [[enc(k, path + ("<key>",)), enc(v, path + (k,))] for k, v in x.items()]}
            meta = getattr(x, "_metadata", None)  # torch state_dict module versions
            if isinstance(meta, dict):
                node["meta"] = enc(meta, path + ("_metadata",))
            return node
        torch = sys.modules.get("torch")
        if torch is not None:
            if isinstance(x, torch.dtype):
                return {"t": "torch.dtype", "v": _objects.torch_dtype_name(x)}
            if isinstance(x, torch.device):
                return {"t": "torch.device", "v": str(x)}
        raise TypeError("state%s: a %s cannot be stored safely (supported: None, bool, int, "
                        "float, str, bytes, list, tuple, dict, numpy arrays and scalars, torch "
                        "tensors, dtypes and devices)" % (_fmt_path(path), type(x).__name__))

    return enc(state, ()), leaves


def _fmt_path(path):
    return "".join("[%r]" % (p,) for p in path)


def _bad(what):
    return Corrupt(_lib.CKPT_ECORRUPT, "state tree: " + what, "load_state")


def decode(tree, load_leaf, into=None):
    """Rebuild the state. load_leaf(region name, existing object or None) returns the loaded
    leaf; `into` mirrors the state partially: a tensor/array/bytearray found at the same path
    as a stored leaf is filled in place."""

    def sub(into_node, key):
        if into_node is None:
            return None
        try:
            if isinstance(into_node, dict):
                return into_node.get(key)
            if isinstance(into_node, (list, tuple)) and isinstance(key, int):
                return into_node[key] if 0 <= key < len(into_node) else None
        except TypeError:  # an unhashable key
            return None
        return None

    def dec(x, into_node, depth):
        if depth > 200:
            raise _bad("nested too deeply")
        if x is None or isinstance(x, (bool, int, str)):
            return x
        if isinstance(x, float):
            return x
        if isinstance(x, list):
            return [dec(v, sub(into_node, i), depth + 1) for i, v in enumerate(x)]
        if not isinstance(x, dict) or not isinstance(x.get("t"), str):
            raise _bad("unexpected node %.80r" % (x,))
        t, v = x["t"], x.get("v")
        if t == "region":
            name = x.get("r")
            if not isinstance(name, str):
                raise _bad("bad region reference %.80r" % (x,))
            return load_leaf(name, into_node)
        if t == "tuple" and isinstance(v, list):
            return tuple(dec(e, sub(into_node, i), depth + 1) for i, e in enumerate(v))
        if t in ("dict", "odict") and isinstance(v, list):
            out = collections.OrderedDict() if t == "odict" else {}
            for pair in v:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _bad("bad dict item %.80r" % (pair,))
                k = dec(pair[0], None, depth + 1)
                try:
                    hash(k)
                except TypeError:
                    raise _bad("unhashable dict key %.80r" % (k,)) from None
                # Outside the try: a TypeError from loading the value is not about the key.
                out[k] = dec(pair[1], sub(into_node, k), depth + 1)
            if "meta" in x:
                out._metadata = dec(x["meta"], None, depth + 1)
            return out
        if t == "float" and v in ("nan", "inf", "-inf"):
            return float(v)
        if t in ("bytes", "bytearray") and isinstance(v, str):
            try:
                b = base64.b64decode(v.encode("ascii"), validate=True)
            except (ValueError, UnicodeEncodeError):
                raise _bad("bad base64") from None
            return b if t == "bytes" else bytearray(b)
        if t == "npscalar" and isinstance(v, str):
            dt = _objects.numpy_dtype(x.get("dtype"), "state")
            np = sys.modules["numpy"]
            try:
                raw = bytes.fromhex(v)
            except ValueError:
                raise _bad("bad numpy scalar bytes") from None
            if len(raw) != dt.itemsize:
                raise _bad("numpy scalar of %d bytes for dtype %s" % (len(raw), dt))
            return np.frombuffer(raw, dtype=dt)[0]
        if t == "torch.dtype":
            return _objects.torch_dtype(v, "state")
        if t == "torch.device" and isinstance(v, str):
            torch = _objects._import("torch", "state")
            try:
                return torch.device(v)  # parses "cpu", "cuda:0"; nothing else
            except (RuntimeError, ValueError):
                raise _bad("bad torch device %.80r" % (v,)) from None
        raise _bad("unknown node %.80r" % (x,))

    return dec(tree, into, 0)


def leaf_paths(tree):
    """{region name: path tuple} of the leaves of an encoded tree (no loading)."""
    out = {}

    def walk(x, path, depth):
        if depth > 200:
            return
        if isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, path + (i,), depth + 1)
        elif isinstance(x, dict):
            t, v = x.get("t"), x.get("v")
            if t == "region" and isinstance(x.get("r"), str):
                out[x["r"]] = path
            elif t == "tuple" and isinstance(v, list):
                for i, e in enumerate(v):
                    walk(e, path + (i,), depth + 1)
            elif t in ("dict", "odict") and isinstance(v, list):
                for pair in v:
                    if isinstance(pair, list) and len(pair) == 2:
                        k = pair[0]
                        if isinstance(k, (str, int)) and not isinstance(k, bool):
                            walk(pair[1], path + (k,), depth + 1)
    walk(tree, (), 0)
    return out
