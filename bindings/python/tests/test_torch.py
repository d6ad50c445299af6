# SPDX-License-Identifier: MIT
# PyTorch tensors (every dtype, shapes, layouts, in place) and model/optimizer state round trips.
import pytest

import ckpt

torch = pytest.importorskip("torch")

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int16,
          torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128]
SHAPES = [(), (0,), (7,), (3, 4, 5), (2, 0, 3)]


def sample(dtype, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point or dtype.is_complex:
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 100).to(dtype) \
            if not dtype.is_complex else torch.randn(shape, generator=g, dtype=dtype)
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, shape, generator=g, dtype=torch.int64).to(dtype)


def bits(t):
    """The exact bytes of a tensor (bfloat16 and all: through an integer view)."""
    t = t.contiguous()
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy().tobytes() if t.dim() else \
        t.reshape(1).view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_tensor_round_trip(ck, dtype, shape):
    t = sample(dtype, shape)
    ck.save(1, {"t": t})
    u = ck.load(1)["t"]
    assert isinstance(u, torch.Tensor) and u.dtype == dtype and u.shape == t.shape
    assert bits(u) == bits(t)
    r = ck.regions(1)["t"]
    assert (r.kind, r.dtype, r.shape) == ("torch", str(dtype)[6:], tuple(shape))


def test_tensor_layouts(ck):
    base = sample(torch.float32, (6, 8))
    c = torch.randn(4, dtype=torch.complex64)
    objs = {"T": base.t(), "slice": base[::2, 1::3], "expand": torch.ones(3, 1).expand(3, 5),
            "param": torch.nn.Parameter(base.clone()), "conj": c.conj(), "neg": c.conj().imag,
            "offset": base[2:]}
    ck.save(1, objs)
    out = ck.load(1)
    for k, v in objs.items():
        assert torch.equal(out[k], v.detach().resolve_conj()), k
        assert out[k].is_contiguous() and not out[k].requires_grad


def test_bfloat16_bits_exact(ck):
    t = torch.tensor([1.0, -0.0, float("inf"), float("nan"), 3.0e38, 1e-40],
                     dtype=torch.bfloat16)
    ck.save(1, {"t": t})
    assert bits(ck.load(1)["t"]) == bits(t)


def test_in_place(ck):
    src = sample(torch.float32, (32, 16))
    bf = sample(torch.bfloat16, (10,))
    ck.save(2, {"w": src, "bf": bf})
    dst = torch.zeros(32, 16)
    ptr = dst.data_ptr()
    param = torch.nn.Parameter(torch.zeros(32, 16))  # a leaf requiring grad
    big = torch.zeros(32, 32)
    dst_bf = torch.zeros(10, dtype=torch.bfloat16)
    out = ck.load(2, into={"w": dst, "bf": dst_bf})
    assert out["w"] is dst and dst.data_ptr() == ptr and torch.equal(dst, src)
    assert bits(dst_bf) == bits(bf)
    ck.load(2, into={"w": param}, names=["w"])
    assert torch.equal(param.detach(), src) and param.requires_grad
    ck.load(2, into={"w": big[:, ::2]}, names=["w"])  # strided: through a scratch tensor
    assert torch.equal(big[:, ::2], src) and not big[:, 1::2].any()


def test_numpy_and_torch_interchange(ck):
    np = pytest.importorskip("numpy")
    ck.save(3, {"n": np.arange(6, dtype=np.float32).reshape(2, 3), "t": torch.arange(4)})
    dst_t = torch.zeros(2, 3)
    dst_n = np.zeros(4, dtype=np.int64)
    ck.load(3, into={"n": dst_t, "t": dst_n})
    assert dst_t.tolist() == [[0, 1, 2], [3, 4, 5]] and dst_n.tolist() == [0, 1, 2, 3]
    with pytest.raises(ckpt.InvalidArgument, match="dtype"):
        ck.load(3, into={"n": torch.zeros(2, 3, dtype=torch.float64)}, names=["n"])


def _model():
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                               torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 3))


def _train(model, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(12, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("opt_cls", [torch.optim.Adam, torch.optim.SGD, torch.optim.AdamW])
def test_state_dict_round_trip(ck, opt_cls):
    torch.manual_seed(0)
    kwargs = {"lr": 0.05, "momentum": 0.9} if opt_cls is torch.optim.SGD else {"lr": 0.01}
    m1 = _model()
    o1 = opt_cls(m1.parameters(), **kwargs)
    sched1 = torch.optim.lr_scheduler.StepLR(o1, step_size=2, gamma=0.5)
    _train(m1, o1, 3, seed=1)
    sched1.step()
    ckpt.torch_save(ck, 5, model=m1, optimizer=o1, scheduler=sched1,
                    extra={"epoch": 2, "note": "hi", "ids": (1, 2)})

    torch.manual_seed(123)  # a different init and RNG state
    m2 = _model()
    o2 = opt_cls(m2.parameters(), **dict(kwargs, lr=1.0))
    sched2 = torch.optim.lr_scheduler.StepLR(o2, step_size=7, gamma=0.1)
    ptrs = [p.data_ptr() for p in m2.parameters()]
    restored = ckpt.torch_load(ck, model=m2, optimizer=o2, scheduler=sched2)
    assert restored == (5, {"epoch": 2, "note": "hi", "ids": (1, 2)})
    assert [p.data_ptr() for p in m2.parameters()] == ptrs  # loaded in place
    for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert o2.state_dict()["param_groups"] == o1.state_dict()["param_groups"]
    assert sched2.state_dict() == sched1.state_dict()
    # One more identical step on both gives bit-identical parameters.
    _train(m1, o1, 1, seed=9)
    _train(m2, o2, 1, seed=9)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def test_rng_restored(ck):
    torch.manual_seed(7)
    ckpt.torch_save(ck, 1, extra={})
    a = torch.rand(5)
    torch.manual_seed(99)
    ckpt.torch_load(ck, 1)
    assert torch.equal(torch.rand(5), a)


def test_nothing_is_executed_on_load(ck, dirs):
    # The state region is JSON: a tagged object naming anything but a known tag is Corrupt.
    state_tree = {"t": "dict", "v": [["x", {"t": "__reduce__", "v": "os.system"}]]}
    ck._save(1, {}, state_tree)
    with pytest.raises(ckpt.Corrupt, match="unknown node"):
        ck.load_state(1)
    ck._save(2, {}, {"t": "torch.dtype", "v": "manual_seed"})  # an attribute, not a dtype
    with pytest.raises(ckpt.Corrupt, match="dtype"):
        ck.load_state(2)


def test_unstorable_state(ck):
    with pytest.raises(TypeError, match=r"state\['x'\]"):
        ck.save_state(1, {"x": object()})
    with pytest.raises(TypeError, match="lambda|function"):
        ck.save_state(1, {"f": lambda: 0})


def test_map_location(ck):
    """torch_load(map_location=...) as torch.load: a device string or torch.device, a dict
    {saved location: device}, a callable(tensor, saved location). "meta" is a device every
    PyTorch has, so moving there is visible without a GPU."""
    torch.manual_seed(3)
    m = _model()
    o = torch.optim.Adam(m.parameters(), lr=0.01)
    _train(m, o, 2, seed=4)
    extra = {"t": torch.arange(6.0).reshape(2, 3), "nested": [torch.ones(2, dtype=torch.int8)]}
    ckpt.torch_save(ck, 1, model=m, optimizer=o, extra=extra)

    for loc in ("cpu", torch.device("cpu"), {"cpu": "cpu"}, None):
        e = ckpt.torch_load(ck, 1, model=_model(), map_location=loc).extra
        assert e["t"].device.type == "cpu" and torch.equal(e["t"], extra["t"])
    for loc in ("meta", torch.device("meta"), {"cpu": "meta"}):
        e = ckpt.torch_load(ck, 1, map_location=loc).extra
        assert e["t"].device.type == "meta" and e["t"].shape == (2, 3)
        assert e["nested"][0].device.type == "meta" and e["nested"][0].dtype == torch.int8
    e = ckpt.torch_load(ck, 1, map_location={"cuda:0": "meta"}).extra  # not a saved location
    assert e["t"].device.type == "cpu"

    seen = []

    def fn(t, location):
        seen.append(location)
        return t * 2
    e = ckpt.torch_load(ck, 1, map_location=fn).extra
    assert torch.equal(e["t"], extra["t"] * 2) and set(seen) == {"cpu"}

    # A model and an optimizer still restore exactly with a map_location (the model in place).
    m2 = _model()
    o2 = torch.optim.Adam(m2.parameters(), lr=1.0)
    ckpt.torch_load(ck, 1, model=m2, optimizer=o2, map_location="cpu")
    for p1, p2 in zip(m.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert o2.state_dict()["param_groups"] == o.state_dict()["param_groups"]
    with pytest.raises(TypeError, match="map_location"):
        ckpt.torch_load(ck, 1, map_location={"cpu": 3})
