# SPDX-License-Identifier: MIT
# Shared memory (a GPT's tied embedding and output weights): stored once, loaded as one object.
import ctypes
import json

import pytest

import ckpt
from ckpt import _lib

np = pytest.importorskip("numpy")


def stored_names(ck, step):
    """The regions the library really holds for the step (C's listing), metadata excluded."""
    return [n for n, _ in ck._list(step, ck.rank) if n != ckpt.META_REGION]


def meta_doc(ck, step):
    return ck._meta(step, ck.rank)


def test_numpy_same_memory_is_stored_once(ck):
    w = np.arange(1000, dtype=np.float32).reshape(10, 100)
    ba = bytearray(b"shared")
    objs = {"a": w, "b": w, "view": w[:], "other": w.copy(), "part": w[1:], "x": ba, "y": ba,
            "e1": np.zeros(0), "e2": np.zeros(0)}
    ck.save(1, objs)
    assert stored_names(ck, 1) == ["a", "other", "part", "x", "e1", "e2"]
    doc = meta_doc(ck, 1)
    assert doc["version"] == 2
    assert doc["regions"]["b"] == doc["regions"]["view"] == {"kind": "alias", "of": "a"}
    assert doc["regions"]["y"] == {"kind": "alias", "of": "x"}

    regs = ck.regions(1)
    assert list(regs) == list(objs)  # saved order, aliases included
    assert regs["b"] == regs["a"]._replace(name="b") and regs["b"].size == w.nbytes

    out = ck.load(1)
    assert list(out) == list(objs)
    assert out["a"] is out["b"] is out["view"] and np.array_equal(out["a"], w)
    assert out["other"] is not out["a"] and np.array_equal(out["other"], w)
    assert np.array_equal(out["part"], w[1:]) and out["x"] is out["y"] == ba
    out["a"][0, 0] = -1
    assert out["b"][0, 0] == -1  # sharing restored

    only_b = ck.load(1, names=["b"])  # an alias alone: read from the region it names
    assert list(only_b) == ["b"] and np.array_equal(only_b["b"], w)
    raw = ck.load(1, raw=True)
    assert raw["a"] is raw["b"] and raw["a"] == w.tobytes()

    # In place into one tied target: read once, both names give it back.
    dst = np.zeros_like(w)
    out = ck.load(1, into={"a": dst, "b": dst}, names=["a", "b"])
    assert out["a"] is dst and out["b"] is dst and np.array_equal(dst, w)
    # Into two separate targets: each is filled.
    d1, d2 = np.zeros_like(w), np.zeros_like(w)
    out = ck.load(1, into={"a": d1, "b": d2}, names=["a", "b"])
    assert out["a"] is d1 and out["b"] is d2 and np.array_equal(d2, w)


def test_no_alias_is_written_as_version_1(ck):
    """A step without shared memory keeps the metadata version older packages read."""
    ck.save(1, {"a": np.ones(3), "b": np.ones(3)})
    assert meta_doc(ck, 1)["version"] == 1
    ck.save_state(2, {"x": np.ones(2), "y": [1, 2]})
    assert meta_doc(ck, 2)["version"] == 1


def _save_raw(ck, step, regions, doc):
    """A step as an older (or a hostile) writer made it: regions and a metadata document."""
    blob = json.dumps(doc).encode()
    keep = []
    arr = (_lib.ckpt_region * (len(regions) + 1))()
    for i, (name, data) in enumerate(regions):
        buf = ctypes.create_string_buffer(data, len(data))
        keep.append(buf)
        arr[i].name, arr[i].data, arr[i].size = name.encode(), ctypes.addressof(buf), len(data)
    arr[len(regions)].name = ckpt.META_REGION.encode()
    arr[len(regions)].data = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p)
    arr[len(regions)].size = len(blob)
    assert _lib.lib().ckpt_save(ck._ctx, step, arr, len(regions) + 1) == 0


def test_version_1_steps_still_load(ck):
    """A step written before aliases existed: the same memory saved twice, version 1."""
    w = np.arange(4, dtype="<f4")
    m = {"kind": "numpy", "dtype": "<f4", "shape": [4], "order": "C"}
    _save_raw(ck, 1, [("a", w.tobytes()), ("b", w.tobytes())],
              {"format": "libckpt-python", "version": 1, "regions": {"a": m, "b": m}})
    out = ck.load(1)
    assert np.array_equal(out["a"], w) and np.array_equal(out["b"], w)
    assert out["a"] is not out["b"]


@pytest.mark.parametrize("alias", [{"kind": "alias", "of": "nope"},
                                   {"kind": "alias", "of": 3},
                                   {"kind": "alias", "of": "c"}])
def test_bad_alias_is_corrupt(ck, alias):
    m = {"kind": "bytes"}
    _save_raw(ck, 1, [("a", b"x")], {"format": "libckpt-python", "version": 2,
                                     "regions": {"a": m, "b": alias,
                                                 "c": {"kind": "alias", "of": "a"}}})
    with pytest.raises(ckpt.Corrupt):
        ck.load(1)


def test_alias_names_are_checked(ck):
    w = np.ones(3)
    with pytest.raises(ckpt.InvalidArgument, match="too long"):
        ck.save(1, {"a": w, "x" * 256: w})
    with pytest.raises(ckpt.InvalidArgument, match="empty"):
        ck.save(1, {"a": w, "": w})


def _gpt(torch, seed):
    torch.manual_seed(seed)

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 16)
            self.block = torch.nn.Linear(16, 16)
            self.head = torch.nn.Linear(16, 50, bias=False)
            self.head.weight = self.emb.weight  # tied

        def forward(self, idx):
            return self.head(torch.tanh(self.block(self.emb(idx))))
    return GPT()


def test_tied_weights_torch(ck):
    torch = pytest.importorskip("torch")
    m1 = _gpt(torch, 0)
    opt1 = torch.optim.Adam(m1.parameters(), lr=0.01)
    idx = torch.randint(0, 50, (4, 8))
    for _ in range(2):
        opt1.zero_grad()
        m1(idx).sum().backward()
        opt1.step()
    sd = m1.state_dict()
    assert sd["emb.weight"].data_ptr() == sd["head.weight"].data_ptr()
    ckpt.torch_save(ck, 3, model=m1, optimizer=opt1)

    held = [n for n in stored_names(ck, 3) if n.startswith("state:")]
    assert sum("emb.weight" in n for n in held) == 1 and not any("head.weight" in n for n in held)
    paths = ck.state_regions(3)
    assert paths[("model", "head.weight")].shape == (50, 16)

    state = ck.load_state(3)
    assert state["model"]["emb.weight"] is state["model"]["head.weight"]
    assert torch.equal(state["model"]["emb.weight"], m1.emb.weight.detach())

    # In place into a fresh tied model: the tie and the parameters' memory are kept.
    m2 = _gpt(torch, 5)
    opt2 = torch.optim.Adam(m2.parameters(), lr=1.0)
    ptr = m2.emb.weight.data_ptr()
    ckpt.torch_load(ck, 3, model=m2, optimizer=opt2)
    assert m2.head.weight is m2.emb.weight and m2.emb.weight.data_ptr() == ptr
    for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    for o in (opt1, opt2):  # one more identical step: bit-identical parameters
        o.zero_grad()
    m1(idx).sum().backward()
    m2(idx).sum().backward()
    opt1.step()
    opt2.step()
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def test_tied_tensors_in_save(ck):
    torch = pytest.importorskip("torch")
    w = torch.randn(8, 4)
    p = torch.nn.Parameter(w.clone())
    ck.save(1, {"a": w, "b": w, "t": w.t(), "p": p, "p2": p, "cpu": w.detach()})
    assert stored_names(ck, 1) == ["a", "t", "p"]
    out = ck.load(1)
    assert out["a"] is out["b"] is out["cpu"] and out["p"] is out["p2"]
    assert torch.equal(out["t"], w.t()) and torch.equal(out["p"], p.detach())
