"""VFIMamba port against the official code's outputs (../shared/fixtures/vfimamba), on CPU float32.

Tolerances are the fixture README's: flows/features atol=rtol=1e-4, merged/pred 5e-5, masks 1e-5,
scan 5e-5 (10-25x the float32-vs-float64 error measured on the official code).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

import vfimamba  # noqa: E402
from vfimamba.checkpoint import load_net, read_state_dict  # noqa: E402
from vfimamba.inference import Padder, VFIMambaInterpolator, auto_scale, normalise_scale  # noqa: E402
from vfimamba.model import Config, VFIMambaNet  # noqa: E402
from vfimamba import scan_cpu  # noqa: E402
from vfimamba.scan import available_backends, selective_scan, selective_scan_reference  # noqa: E402

FIX = REPO.parent / "shared" / "fixtures" / "vfimamba"
needs_fixtures = pytest.mark.skipif(not (FIX / "golden_VFIMamba_S.npz").is_file(),
                                    reason=f"VFIMamba fixtures not found at {FIX}")
TOL = {"flow": (1e-4, 1e-4), "feat": (1e-4, 1e-4), "merged": (5e-5, 0), "pred": (5e-5, 0), "mask": (1e-5, 0)}


def assert_close(name, got, want, kind):
    atol, rtol = TOL[kind]
    got = got.detach().cpu().double().numpy()
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want)
    bound = atol + rtol * np.abs(want)
    assert np.all(err <= bound), f"{name}: max abs err {err.max():.3g} (allowed {atol} + {rtol}*|ref|)"


@pytest.fixture(scope="module", params=["torch", "cpu"])
def fx(request):
    """The fixture net with each CPU scan backend: the whole model must match with either."""
    if request.param not in available_backends("cpu"):
        pytest.skip(f"compiled CPU scan unavailable: {scan_cpu.error()}")
    net = load_net(str(FIX / "weights_VFIMamba_S.pkl"), "cpu")
    net.set_scan_backend(request.param)
    return net, np.load(FIX / "inputs.npz"), np.load(FIX / "golden_VFIMamba_S.npz")


CASES = {  # case -> (input size, timestep, scale), as the fixture README lists them
    "a": ("96x128", 0.5, 0),
    "b": ("96x128", 0.25, 0),
    "c": ("192x256", 0.5, 0.5),
}


@needs_fixtures
@pytest.mark.parametrize("case", sorted(CASES))
def test_fixture_case(fx, case):
    net, inp, gold = fx
    size, t, scale = CASES[case]
    imgs = torch.cat([torch.from_numpy(inp[f"img0_{size}"]), torch.from_numpy(inp[f"img1_{size}"])], 1)
    with torch.no_grad():
        flows, masks, merged, pred = net(imgs, timestep=t, scale=scale, local=True)
    assert len(flows) == len(masks) == len(merged) == 2
    for i in range(2):
        assert_close(f"{case}_flow_{i}", flows[i], gold[f"{case}_flow_{i}"], "flow")
        assert_close(f"{case}_mask_{i}", masks[i], gold[f"{case}_mask_{i}"], "mask")
        assert_close(f"{case}_merged_{i}", merged[i], gold[f"{case}_merged_{i}"], "merged")
    assert_close(f"{case}_pred", pred, gold[f"{case}_pred"], "pred")


@needs_fixtures
def test_fixture_features(fx):
    net, inp, gold = fx
    with torch.no_grad():
        feats = net.feature_bone(torch.from_numpy(inp["img0_96x128"]), torch.from_numpy(inp["img1_96x128"]))
    for k in (2, 3, 4):
        assert_close(f"a_feat_{k}", feats[k], gold[f"a_feat_{k}"], "feat")


@needs_fixtures
def test_fixture_case_d_fast_tta(fx):
    net, inp, gold = fx
    img0, img1 = torch.from_numpy(inp["img0_96x128"]), torch.from_numpy(inp["img1_96x128"])
    interp = VFIMambaInterpolator(net, tta=True)
    pairs = torch.cat([torch.cat([img0, img1], 1), torch.cat([img0, img1], 1).flip(2).flip(3)], 0)
    with torch.no_grad():
        batch2 = net(pairs, 0.5, scale=0, local=True)[3]
    assert_close("d_pred_batch2", batch2, gold["d_pred_batch2"], "pred")
    assert_close("d_pred", interp.predict(img0, img1, [0.5]), gold["d_pred"], "pred")


@needs_fixtures
def test_batched_timesteps_match_single(fx):
    net, inp, gold = fx
    img0, img1 = torch.from_numpy(inp["img0_96x128"]), torch.from_numpy(inp["img1_96x128"])
    both = VFIMambaInterpolator(net, tta=False).predict(img0, img1, [0.5, 0.25])
    assert_close("a_pred (batched)", both[:1], gold["a_pred"], "pred")
    assert_close("b_pred (batched)", both[1:], gold["b_pred"], "pred")


# -- state dicts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,F", [("VFIMamba", 32), ("VFIMamba_S", 16)])
def test_state_dict_matches_manifest(name, F):
    path = FIX / f"manifest_{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    man = json.loads(path.read_text())
    with torch.device("meta"):
        net = VFIMambaNet(Config(F=F))
    mine = {k: list(v.shape) for k, v in net.state_dict().items()}
    want = {e["key"]: e["shape"] for e in man["keys"]}
    assert sorted(mine) == sorted(want)
    assert mine == want
    assert all(v.dtype == torch.float32 for v in net.state_dict().values())
    assert sum(v.numel() for v in net.state_dict().values()) == man["total_params"]


# -- selective scan ---------------------------------------------------------------------------------
def _scan_fn(backend):
    if backend == "reference":
        return selective_scan_reference
    return lambda *a, **k: selective_scan(*a, **k, backend=backend)


@needs_fixtures
@pytest.mark.parametrize("backend", ["torch", "cpu", "reference", "mamba_ssm", "triton"])
def test_scan_case(backend):
    dev = "cpu"
    if backend == "cpu" and "cpu" not in available_backends("cpu"):
        pytest.skip(f"compiled CPU scan unavailable: {scan_cpu.error()}")
    if backend in ("mamba_ssm", "triton"):
        if not torch.cuda.is_available():
            pytest.skip(f"{backend} needs CUDA")
        if backend not in available_backends("cuda"):
            pytest.skip(f"{backend} is not importable here")
        dev = "cuda"
    z = np.load(FIX / "scan_case.npz")
    t = {k: torch.from_numpy(z[k]).to(dev) for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")}
    out = _scan_fn(backend)(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["delta_bias"], delta_softplus=True)
    assert out.dtype == torch.float32 and out.shape == z["out"].shape
    err = np.abs(out.cpu().numpy() - z["out"]).max()
    assert err <= 5e-5, f"scan_case with {backend}: max abs err {err:.3g}"


def _random_scan_inputs(b, d, n, g, length, seed=0, delta_scale=1.0, delta_shift=0.0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, length, generator=gen)
    delta = torch.randn(b, d, length, generator=gen) * delta_scale + delta_shift
    A = -torch.exp(torch.randn(d, n, generator=gen))
    B = torch.randn(b, g, n, length, generator=gen)
    C = torch.randn(b, g, n, length, generator=gen)
    D = torch.randn(d, generator=gen)
    bias = torch.randn(d, generator=gen) * 0.5
    return u, delta, A, B, C, D, bias


# The torch backend picks its path per channel slab from the largest decay rate: "weak" decays take
# the cumulative-log-decay path with 64-step chunks, "mixed" shorter chunks, "strong" the doubling scan.
REGIMES = {"weak": (0.5, -6.0), "mixed": (1.0, -1.0), "strong": (1.0, 2.0)}


@pytest.mark.parametrize("regime", sorted(REGIMES))
@pytest.mark.parametrize("length", [1, 7, 64, 1000, 1037])
def test_vectorised_scan_equals_sequential(length, regime):
    scale, shift = REGIMES[regime]
    args = _random_scan_inputs(2, 32, 16, 4, length, seed=length, delta_scale=scale, delta_shift=shift)
    ref = selective_scan_reference(*args)
    out = selective_scan(*args, backend="torch")
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()


def test_vectorised_scan_strong_decay_is_finite():
    # delta*|A| up to ~1e3 per step: a cumulative-product factorisation would overflow here.
    args = _random_scan_inputs(1, 8, 16, 2, 500, seed=3, delta_scale=30.0)
    ref = selective_scan_reference(*args)
    out = selective_scan(*args, backend="torch")
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()


def test_vectorised_scan_paths_are_exercised(monkeypatch):
    import vfimamba.scan as scan
    seen = []
    real = scan._chunk_scan
    monkeypatch.setattr(scan, "_chunk_scan", lambda *a: seen.append(a[3]) or real(*a))
    for regime in ("weak", "mixed", "strong"):
        scale, shift = REGIMES[regime]
        selective_scan(*_random_scan_inputs(1, 32, 16, 4, 1000, delta_scale=scale, delta_shift=shift), backend="torch")
    assert 64 in seen and 0 in seen and any(0 < t < 64 for t in seen), seen


def test_available_backends_cpu():
    assert available_backends("cpu") in (["cpu", "torch"], ["torch"])
    with pytest.raises(ValueError):
        selective_scan(*_random_scan_inputs(1, 4, 2, 1, 3), backend="mamba_ssm")


# -- the compiled CPU scan ------------------------------------------------------------------------------
needs_cpu_scan = pytest.mark.skipif(not scan_cpu.available(), reason=f"no compiled CPU scan: {scan_cpu.error()}")


@needs_cpu_scan
@pytest.mark.parametrize("regime", sorted(REGIMES))
@pytest.mark.parametrize("b,d,n,g,length", [
    (2, 32, 16, 4, 1037),  # the model's state size; a length that is no multiple of the 128-step tile
    (1, 24, 5, 2, 300),    # another state size (the generic loop); 12 channels per group: a partial block
    (1, 3, 1, 1, 1),       # fewer channels than vector lanes, one step
    (3, 40, 64, 5, 129),   # the largest state the kernel takes
])
def test_cpu_scan_equals_sequential(b, d, n, g, length, regime):
    scale, shift = REGIMES[regime]
    args = _random_scan_inputs(b, d, n, g, length, seed=length + n, delta_scale=scale, delta_shift=shift)
    ref = selective_scan_reference(*args)
    out = selective_scan(*args, backend="cpu")
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()


@needs_cpu_scan
def test_cpu_scan_extreme_decays_and_inputs():
    # delta * |A| up to ~1e3 (decays underflow to 0) and tiny deltas (decays of 1 - 1e-9) in one call;
    # non-contiguous, float64 inputs must be taken as they come.
    u, delta, A, B, C, D, bias = _random_scan_inputs(1, 16, 16, 2, 700, seed=5, delta_scale=30.0)
    delta[:, 8:] = -30.0
    ref = selective_scan_reference(u, delta, A, B, C, D, bias)
    out = selective_scan(u.double().transpose(0, 1).contiguous().transpose(0, 1), delta.double(), A, B, C, D, bias,
                         backend="cpu")
    assert torch.isfinite(out).all()
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()


@needs_cpu_scan
@pytest.mark.parametrize("n", [1, 16])  # the generic loop and the unrolled one for the model's 16 states
def test_cpu_scan_decays_are_exact_to_float_precision(n):
    # Two steps, u = (1, 0), B = C = 1, D = 0: y0 = n dt and y1 = n dt 2^t with t = dt A log2(e), so
    # y1 / y0 is the kernel's decay. 16384 channels spread t over (-8, 0]. A decay off by 1e-6 compounds
    # over the thousands of steps a state lives, so the bound is float's: 2^-22 relative, the division's
    # rounding included (measured: 1.25 x 2^-23 with the AVX2 table, 1.0 x 2^-23 with the polynomial).
    d = 1 << 14
    log2_decay = -8 * torch.rand(d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    dt = 0.05
    A = (log2_decay / dt / np.log2(np.e)).float()[:, None].repeat(1, n)
    bias = torch.full((d,), float(np.log(np.expm1(dt))))
    u = torch.tensor([1.0, 0.0]).repeat(1, d, 1)
    B, C = torch.ones(1, 1, n, 2), torch.ones(1, 1, n, 2)
    y = selective_scan(u, torch.zeros(1, d, 2), A, B, C, torch.zeros(d), bias, backend="cpu")[0].double()
    assert torch.allclose(y[:, 0], torch.full((d,), n * dt, dtype=torch.float64), rtol=1e-6)
    t = (y[:, 0] / n * (A[:, 0] * scan_cpu._LOG2E).double()).float().double()  # t as the kernel rounds it
    rel = (y[:, 1] / y[:, 0] / torch.exp2(t) - 1).abs()
    assert rel.max() <= 2.0 ** -22, rel.max()


@needs_cpu_scan
def test_cpu_scan_threads_split_channels_exactly():
    args = _random_scan_inputs(1, 72, 16, 3, 200, seed=9)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = selective_scan(*args, backend="cpu")
        torch.set_num_threads(3)  # 72 channels in 3 groups of 24: ranges cut at multiples of 8
        three = selective_scan(*args, backend="cpu")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


@needs_cpu_scan
@pytest.mark.parametrize("into", ["delta", "u"])
def test_cpu_scan_writes_over_its_input_when_asked(into):
    # 20 channels: two full 8-channel blocks and a partial one; 300 steps: two full tiles and a partial one
    args = _random_scan_inputs(1, 20, 16, 2, 300, seed=11)
    fresh = selective_scan(*args, backend="cpu")
    u, delta = args[0].clone(), args[1].clone()
    target = delta if into == "delta" else u
    out = selective_scan(u, delta, *args[2:], backend="cpu", out=target)
    assert out.data_ptr() == target.data_ptr()
    assert torch.equal(out, fresh)  # every value read before it was overwritten: the same bits


@needs_cpu_scan
def test_cpu_scan_refuses_an_output_it_would_corrupt():
    args = _random_scan_inputs(1, 16, 16, 2, 64, seed=12)
    flat = torch.zeros(16 * 64 + 8)
    delta = flat[8:].view(1, 16, 64).copy_(args[1])
    with pytest.raises(ValueError, match="overlaps"):  # y's step l would land on delta's step l + 8, unread
        selective_scan(args[0], delta, *args[2:], backend="cpu", out=flat[:16 * 64].view(1, 16, 64))
    with pytest.raises(ValueError, match="contiguous float32"):
        selective_scan(*args, backend="cpu", out=torch.empty(1, 16, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        selective_scan(*args, backend="cpu", out=torch.empty(1, 16, 63))


def test_scan_out_on_the_torch_backend_is_a_copy():
    args = _random_scan_inputs(1, 8, 4, 1, 50, seed=13)
    ref = selective_scan(*args, backend="torch")
    delta = args[1].clone()
    out = selective_scan(args[0], delta, *args[2:], backend="torch", out=delta)
    assert out.data_ptr() == delta.data_ptr() and torch.equal(out, ref)
    with pytest.raises(ValueError, match="float32"):  # no silent cast, nor broadcast
        selective_scan(*args, backend="torch", out=torch.empty(1, 8, 50, dtype=torch.float16))
    with pytest.raises(ValueError, match="shape"):
        selective_scan(*args, backend="torch", out=torch.empty(8, 50))


@needs_cpu_scan
def test_ss2d_on_the_cpu_reuses_delta_for_the_scan_output(monkeypatch):
    torch.manual_seed(0)
    net = VFIMambaNet(Config(F=8)).eval()
    imgs = torch.rand(1, 6, 64, 96)
    with torch.no_grad():
        net.set_scan_backend("torch")
        ref = net(imgs, 0.5, scale=0, local=True)[3]
        seen, real = [], scan_cpu.selective_scan_cpu

        def spy(u, delta, *rest, out=None):
            seen.append(out is delta)
            return real(u, delta, *rest, out=out)
        monkeypatch.setattr(scan_cpu, "selective_scan_cpu", spy)
        net.set_scan_backend("cpu")
        got = net(imgs, 0.5, scale=0, local=True)[3]
    assert seen and all(seen)
    assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()


def test_cpu_scan_declines_what_it_cannot_do():
    u, delta, A, B, C, D, bias = _random_scan_inputs(1, 8, 4, 1, 50, seed=2)
    assert scan_cpu.supports(A, True)
    assert not scan_cpu.supports(A, False)           # a raw delta may be negative: growth, not decay
    assert not scan_cpu.supports(-A, True)           # A > 0
    assert not scan_cpu.supports(torch.zeros(8, 65), True)
    # selective_scan then takes the PyTorch path, with the same result as the reference
    delta = delta.abs()
    ref = selective_scan_reference(u, delta, A, B, C, D, None, delta_softplus=False)
    out = selective_scan(u, delta, A, B, C, D, None, delta_softplus=False,
                         backend="cpu" if scan_cpu.available() else "torch")
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()


def test_cpu_scan_without_a_compiler_falls_back_with_a_warning(monkeypatch, tmp_path):
    import vfimamba.scan as scan
    monkeypatch.setattr(scan_cpu, "_lib", None)
    monkeypatch.setattr(scan_cpu, "_error", None)
    monkeypatch.setattr(scan, "_warned_cpu", False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(scan_cpu, "_compiler", lambda: None)
    assert available_backends("cpu") == ["torch"]
    assert "no C++ compiler" in scan_cpu.error()
    with pytest.warns(RuntimeWarning, match="compiled CPU scan is unavailable .*no C\\+\\+ compiler"):
        assert scan.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="not available"):
        scan.resolve_backend("cpu", "cpu")
    assert not list(tmp_path.rglob("*.so"))


def test_cpu_scan_build_is_cached_by_source(monkeypatch, tmp_path):
    if scan_cpu._compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setattr(scan_cpu, "_lib", None)
    monkeypatch.setattr(scan_cpu, "_error", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert scan_cpu.available(), scan_cpu.error()
    built = list((tmp_path / "interpolate_video").glob("scan_cpu-*.so"))
    assert len(built) == 1 and not [p for p in tmp_path.rglob("*") if p.is_file() and p not in built]
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(scan_cpu, "_lib", None)
    assert scan_cpu.available() and built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt


# -- checkpoint loading -------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_refused(tmp_path, protocol, recwarn):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    torch.save({"module.x": torch.zeros(1), "payload": _Evil(marker)}, path, pickle_protocol=protocol)
    assert not marker.exists()
    with pytest.raises(vfimamba.VFIMambaError, match="refusing to load") as e:
        load_net(str(path))
    assert not marker.exists(), "unpickling ran code"
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "not a plain tensor checkpoint" in msg
    for unsafe in ("weights_only=False", "weights_only` set to `False", "will likely succeed", "add_safe_globals",
                   "file an issue"):
        assert unsafe not in msg
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]  # torch's warning is not shown


def test_find_checkpoint_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert vfimamba.find_checkpoint([a, b]) is None
    (b / "VFIMamba.pkl").write_bytes(b"")
    (a / "VFIMamba_S.pkl").write_bytes(b"")
    assert vfimamba.find_checkpoint([a, b]) == str(a / "VFIMamba_S.pkl")  # folders first, then names
    (a / "VFIMamba.pkl").write_bytes(b"")
    assert vfimamba.find_checkpoint([a, b]) == str(a / "VFIMamba.pkl")
    assert vfimamba.find_checkpoint([tmp_path / "missing", b]) == str(b / "VFIMamba.pkl")


@needs_fixtures
def test_load_options_in_own_words():
    ckpt = str(FIX / "weights_VFIMamba_S.pkl")
    with pytest.raises(vfimamba.VFIMambaError, match=r"unknown precision='int8'") as e:
        vfimamba.load(ckpt, precision="int8")
    assert "--" not in str(e.value)
    with pytest.raises(vfimamba.VFIMambaError, match=r"unknown scan_backend='nope'"):
        vfimamba.load(ckpt, scan_backend="nope")
    if not torch.cuda.is_available():
        with pytest.raises(vfimamba.VFIMambaError, match=r"device='cuda' was asked for but CUDA is not available"):
            vfimamba.load(ckpt, device="cuda")
        with pytest.warns(RuntimeWarning, match=r"precision='fp16' needs device='cuda'"):
            assert vfimamba.load(ckpt, precision="fp16").precision == "fp32"
    assert vfimamba.load(ckpt).precision == "fp32"


@needs_fixtures
def test_missing_and_extra_keys_named(tmp_path):
    sd = torch.load(FIX / "weights_VFIMamba_S.pkl", map_location="cpu", weights_only=True)
    missing = dict(sd)
    del missing["module.unet.conv.bias"]
    torch.save(missing, tmp_path / "missing.pkl")
    with pytest.raises(vfimamba.VFIMambaError, match=r"missing keys: unet\.conv\.bias") as e:
        load_net(str(tmp_path / "missing.pkl"))
    assert "\n" not in str(e.value)

    extra = dict(sd)
    extra["module.block.9.conv.weight"] = torch.zeros(3)
    torch.save(extra, tmp_path / "extra.pkl")
    with pytest.raises(vfimamba.VFIMambaError, match=r"unexpected keys: block\.9\.conv\.weight"):
        load_net(str(tmp_path / "extra.pkl"))


@needs_fixtures
def test_loader_prefix_filter_and_dtype(tmp_path):
    sd = torch.load(FIX / "weights_VFIMamba_S.pkl", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values())
    plain = {k[len("module."):]: v for k, v in sd.items()}
    plain["feature_bone.attn_mask"] = torch.zeros(2)  # dropped by the official filter
    plain["block.0.HW"] = torch.zeros(2)
    torch.save(plain, tmp_path / "plain.pkl")
    got = read_state_dict(str(tmp_path / "plain.pkl"))
    assert set(got) == {k[len("module."):] for k in sd}
    assert all(v.dtype == torch.float32 for v in got.values())
    net = load_net(str(tmp_path / "plain.pkl"))
    assert net.cfg.F == 16


@needs_fixtures
def test_mapped_checkpoint_reads_the_same_tensors(tmp_path):
    """mmap (what load_net uses for a net bound for the GPU) gives exactly the tensors of a plain
    read, and a legacy-format file, which cannot be mapped, is read the plain way."""
    path = str(FIX / "weights_VFIMamba_S.pkl")
    plain, mapped = read_state_dict(path), read_state_dict(path, mmap=True)
    assert plain.keys() == mapped.keys()
    assert all(torch.equal(plain[k], mapped[k]) and mapped[k].dtype == torch.float32 for k in plain)
    legacy = tmp_path / "legacy.pkl"
    torch.save(torch.load(path, map_location="cpu", weights_only=True), legacy, _use_new_zipfile_serialization=False)
    old = read_state_dict(str(legacy), mmap=True)
    assert old.keys() == plain.keys() and all(torch.equal(plain[k], old[k]) for k in plain)


def test_not_a_checkpoint(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pkl")
    with pytest.raises(vfimamba.VFIMambaError, match="not a VFIMamba checkpoint"):
        load_net(str(tmp_path / "other.pkl"))
    (tmp_path / "junk.pkl").write_bytes(b"not a torch file")
    with pytest.raises(vfimamba.VFIMambaError):
        load_net(str(tmp_path / "junk.pkl"))


def test_missing_checkpoint_prints_download_command(tmp_path):
    with pytest.raises(vfimamba.VFIMambaError, match=r"wget -P ckpt https://huggingface.co/MCG-NJU/VFIMamba_ckpts/resolve/main/VFIMamba.pkl") as e:
        vfimamba.load(str(tmp_path / "nope.pkl"))
    assert "VFIMamba_S.pkl" in str(e.value) and "\n" not in str(e.value)


# -- inference wrapper -------------------------------------------------------------------------------
def test_padder_is_centred_like_official():
    p = Padder(77, 101, 32)
    assert p.pad == (13, 14, 9, 10)  # left, right, top, bottom: the official InputPadder split
    x = torch.arange(77 * 101, dtype=torch.float32).view(1, 1, 77, 101)
    y = p(x)
    assert y.shape[-2:] == (96, 128)
    assert torch.equal(y[..., 9:86, 13:114], x) and torch.equal(p.unpad(y), x)
    assert torch.equal(y[..., 0, 13:114], x[..., 0, :])  # replicate, not zero
    assert Padder(96, 128, 32).pad == (0, 0, 0, 0)


def test_scale_rules():
    assert normalise_scale(0) == 0 and normalise_scale(1.0) == 0  # official: scale 1 == scale 0, twice the cost
    assert normalise_scale(0.5) == 0.5 and normalise_scale(0.25) == 0.25
    with pytest.raises(ValueError):
        normalise_scale(0.3)
    assert auto_scale(720, 1280) == 0 and auto_scale(1080, 2048) == 0.5 and auto_scale(2160, 3840) == 0.25


@needs_fixtures
def test_interpolate_odd_size(fx):
    net, inp, _ = fx
    interp = VFIMambaInterpolator(net, tta=False)
    base = (inp["img0_96x128"][0].transpose(1, 2, 0)[:, :, ::-1] * 255).round().astype(np.uint8)
    f0 = np.ascontiguousarray(base[5:82, 11:112])  # 77 x 101, RGB
    f1 = np.ascontiguousarray(np.roll(f0, 2, axis=1))
    out = interp.interpolate(f0, f1, [0.5, 0.3])
    assert len(out) == 2 and all(o.shape == (77, 101, 3) and o.dtype == np.uint8 for o in out)

    # Same as padding by hand the official way (BGR, centred replicate pad), running the net, unpadding.
    def t(f):
        return torch.from_numpy(np.ascontiguousarray(f[:, :, ::-1].transpose(2, 0, 1))).unsqueeze(0) / 255.0
    pad = [13, 14, 9, 10]
    imgs = torch.nn.functional.pad(torch.cat([t(f0), t(f1)], 1), pad, mode="replicate")
    with torch.no_grad():
        pred = net(imgs, 0.3, scale=0, local=True)[3][0, :, 9:86, 13:114]
    want = (pred * 255).round().byte().numpy().transpose(1, 2, 0)[:, :, ::-1]
    assert np.abs(out[1].astype(int) - want.astype(int)).max() <= 1


@needs_fixtures
def test_recursive_mode(fx):
    net, inp, _ = fx
    interp = VFIMambaInterpolator(net, tta=False, recursive=True)
    f0 = (inp["img0_96x128"][0].transpose(1, 2, 0)[:, :, ::-1] * 255).round().astype(np.uint8)
    f1 = (inp["img1_96x128"][0].transpose(1, 2, 0)[:, :, ::-1] * 255).round().astype(np.uint8)
    out = interp.interpolate(f0, f1, [0.25, 0.5])
    direct = VFIMambaInterpolator(net, tta=False).interpolate(f0, f1, [0.5])
    assert np.array_equal(out[1], direct[0])  # the first midpoint is the direct prediction
    assert out[0].shape == f0.shape


@needs_fixtures
def test_public_load():
    interp = vfimamba.load(str(FIX / "weights_VFIMamba_S.pkl"), scan_backend="auto")
    assert interp.name == "vfimamba_s" and not interp.tta
    scan = available_backends("cpu")[0]
    assert "F=16" in interp.description and f"scan={scan}" in interp.description and "\n" not in interp.description


def test_cab_hidden_padding_changes_nothing():
    """The fast path rounds the CABs' hidden width (85, 170) up to a multiple of 8 with zero filters."""
    from vfimamba.backbone import CAB
    torch.manual_seed(0)
    cab = CAB(256).eval()
    x = torch.randn(2, 256, 12, 16)
    with torch.no_grad():
        plain = cab(x)
        cab.pad_hidden(8)
        w0, b0, w2 = cab._padded
        assert w0.shape == (88, 256, 3, 3) and b0.shape == (88,) and w2.shape == (256, 88, 3, 3)
        assert not w0[85:].any() and not b0[85:].any() and not w2[:, 85:].any()
        padded = cab(x)
    assert torch.allclose(padded, plain, atol=1e-6, rtol=0), (padded - plain).abs().max()
    cab.pad_hidden(None)
    assert cab._padded is None


def test_set_fast_pads_the_cabs_and_undoes_it():
    from vfimamba.backbone import CAB
    net = VFIMambaNet(Config(16)).eval()
    cabs = [m for m in net.modules() if isinstance(m, CAB)]
    assert cabs and all(m._padded is None for m in cabs)
    net.set_fast(half_scan=True, channels_last=True)
    assert all(m._padded is not None and m._padded[0].shape[0] % 8 == 0 for m in cabs)
    assert all(m._padded[0].is_contiguous(memory_format=torch.channels_last) for m in cabs)
    net.set_fast(False, False)
    assert all(m._padded is None for m in cabs)


def test_conv_input_padding_changes_nothing():
    """pad_input rounds a first convolution's input width (17 here) up to a multiple of 8 with zero
    weights: an input with 7 zero channels added gives what the plain input gave, and the plain
    input still takes the plain weight."""
    from vfimamba.layers import conv_prelu, deconv_prelu
    torch.manual_seed(0)
    for block, cin in ((conv_prelu(17, 32), 17), (deconv_prelu(13, 16), 13)):
        x = torch.randn(2, cin, 12, 16)
        with torch.no_grad():
            plain = block(x)
            block.pad_input(8)
            assert block.in_width == {17: 24, 13: 16}[cin]
            w = block._in_weight
            axis = 1 if cin == 17 else 0   # Conv2d weights are (out, in, ...), ConvTranspose2d's (in, out, ...)
            assert w.shape[axis] == block.in_width and not w.narrow(axis, cin, block.in_width - cin).any()
            padded = block(torch.cat([x, torch.zeros(2, block.in_width - cin, 12, 16)], 1))
            again = block(x)
        assert torch.allclose(padded, plain, atol=1e-5, rtol=0), (padded - plain).abs().max()
        assert torch.equal(again, plain)
        block.pad_input(None)
        assert block._in_weight is None and block.in_width == cin


def test_join_converts_and_pads_only_on_the_fast_path():
    """join() builds a convolution's input: a plain float32 cat on the exact path; channels-last in
    the weights' half precision with zero channels up to in_width on the fast path, every part's
    values as the convolution's own cast would have made them."""
    from vfimamba.layers import conv_prelu, join
    torch.manual_seed(0)
    parts = [torch.rand(1, 13, 6, 10), torch.randn(1, 4, 6, 10) * 30]
    block = conv_prelu(17, 32)
    block.pad_input(8)
    exact = join(parts, block)
    assert exact.dtype == torch.float32 and torch.equal(exact, torch.cat(parts, 1))
    block.to(memory_format=torch.channels_last).to(torch.bfloat16)
    block.pad_input(8)
    fast = join(parts, block)
    assert fast.shape == (1, 24, 6, 10) and fast.dtype == torch.bfloat16
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast[:, :17], torch.cat(parts, 1).to(torch.bfloat16)) and not fast[:, 17:].any()
    block.float()   # float32 channels-last weights under autocast: the autocast dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert join(parts, block).dtype == torch.bfloat16


def test_set_fast_pads_the_odd_conv_inputs_and_undoes_it():
    """On the fast path every ConvPReLU whose first convolution has an odd input width (the images
    into the backbone, the flow heads', IFBlocks' and refiner's stacked inputs) gets that many
    channels, the extra ones zero, and the frame is what it is without the padding up to the half
    precision's rounding; set_fast(False, False) takes the padding away."""
    from vfimamba.layers import ConvPReLU
    torch.manual_seed(0)
    net = VFIMambaNet(Config(16)).eval()
    x = torch.rand(1, 6, 64, 96).contiguous(memory_format=torch.channels_last)
    seen = {}
    for name, m in net.named_modules():
        if isinstance(m, ConvPReLU):
            m.register_forward_pre_hook(lambda m, a, name=name: seen.__setitem__(
                name, (a[0].shape[1], m[0].in_channels, a[0].dtype, bool(a[0][:, m[0].in_channels:].any()))))
    outs = {}
    for pad in (False, True):
        net.set_fast(half_scan=False, channels_last=True, pad_cabs=pad, weight_dtype=torch.bfloat16)
        seen.clear()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs[pad] = net(x)[-1].float()
        odd = {k: v for k, v in seen.items() if v[1] % 8}
        assert set(odd) == {"feature_bone.block0.conv", "block.0.conv.0", "block.1.conv.0", "local_block.0.conv0.0",
                            "local_block.1.conv0.0", "unet.down0.conv1"}
        if pad:
            assert all(width == -(-cin // 8) * 8 and dtype == torch.bfloat16 and not nonzero
                       for width, cin, dtype, nonzero in odd.values()), odd
        else:
            assert all(width == cin for width, cin, _, _ in odd.values()), odd
    diff = (outs[True] - outs[False]).abs()
    assert diff.mean() < 0.5 / 255 and diff.max() < 8 / 255, (diff.mean(), diff.max())
    net.set_fast(False, False)
    assert all(m._in_weight is None for m in net.modules() if isinstance(m, ConvPReLU))


def test_padded_copies_follow_loaded_weights_and_moves():
    """The padded copies of the fast path (the CABs' hidden widths, the odd input widths) take a
    state dict loaded into the net, in place (a captured CUDA graph keeps reading the same memory),
    and go wherever .to() takes the weights."""
    from vfimamba.backbone import CAB
    from vfimamba.layers import ConvPReLU
    torch.manual_seed(0)
    net = VFIMambaNet(Config(8)).eval()
    other = VFIMambaNet(Config(8)).eval()   # other random weights
    net.set_fast(half_scan=False, channels_last=True, weight_dtype=torch.bfloat16)
    convs = {n: m for n, m in net.named_modules() if isinstance(m, ConvPReLU) and m._in_weight is not None}
    cabs = {n: m for n, m in net.named_modules() if isinstance(m, CAB) and m._padded is not None}
    assert len(convs) == 6 and cabs
    memory = [m._in_weight.data_ptr() for m in convs.values()] + [m._padded[0].data_ptr() for m in cabs.values()]
    net.load_state_dict(other.state_dict())
    assert [m._in_weight.data_ptr() for m in convs.values()] + [m._padded[0].data_ptr() for m in cabs.values()] == memory
    for name, m in convs.items():
        cin, want = m[0].in_channels, other.get_submodule(name)[0].weight.to(torch.bfloat16)
        assert torch.equal(m._in_weight[:, :cin], want) and not m._in_weight[:, cin:].any(), name
    for name, m in cabs.items():
        hidden, theirs = m.cab[0].out_channels, other.get_submodule(name).cab
        assert torch.equal(m._padded[0][:hidden], theirs[0].weight.to(torch.bfloat16)), name
        assert torch.equal(m._padded[1][:hidden], theirs[0].bias.to(torch.bfloat16)), name
        assert torch.equal(m._padded[2][:, :hidden], theirs[2].weight.to(torch.bfloat16)), name
    net.to(torch.float64)
    assert all(m._in_weight.dtype == torch.float64 for m in convs.values())
    assert all(t.dtype == torch.float64 for m in cabs.values() for t in m._padded)


def test_join_refuses_parts_that_do_not_fit():
    from vfimamba.layers import conv_prelu, join
    block = conv_prelu(7, 16).to(memory_format=torch.channels_last).to(torch.bfloat16)
    block.pad_input(8)
    with pytest.raises(ValueError, match="differ in batch, size or device"):
        join([torch.rand(1, 3, 6, 10), torch.rand(1, 4, 6, 1)], block)   # cat would refuse; copy_ would broadcast


def test_layout_kernels_refuse_a_triton_whose_flip_is_not_exact(monkeypatch):
    """Before Triton 3.3, tl.flip (which the cross-scan uses) summed values times 0 or 1 in their own
    float type (-0 became +0, inf became NaN): layout_triton then refuses to load, so that SS2D keeps
    its PyTorch layout ops, and says which version it needs."""
    import importlib
    import types
    # What an import sets, the module's entry and the package's attribute, is put back as it was
    # (the real module, or none) when the test ends: later tests never see the stubbed one.
    monkeypatch.setitem(sys.modules, "vfimamba.layout_triton", None)
    monkeypatch.setattr(vfimamba, "layout_triton", None, raising=False)
    for version, loads in (("3.2.0", False), ("3.3.1", True)):
        fake = types.ModuleType("triton")
        fake.__version__ = version
        fake.language = types.ModuleType("triton.language")
        fake.jit = lambda fn: fn
        monkeypatch.setitem(sys.modules, "triton", fake)
        monkeypatch.setitem(sys.modules, "triton.language", fake.language)
        monkeypatch.setitem(sys.modules, "vfimamba.triton_launch", types.SimpleNamespace(launching=None))
        sys.modules.pop("vfimamba.layout_triton", None)
        if loads:
            assert importlib.import_module("vfimamba.layout_triton").MIN_TRITON == (3, 3)
        else:
            with pytest.raises(ImportError, match=r"needs Triton 3\.3 or newer \(have 3\.2\.0\)"):
                importlib.import_module("vfimamba.layout_triton")


def test_set_fast_keeps_half_weights_and_gives_the_float32_ones_back():
    """weight_dtype=float16: every convolution's and projection's weight and bias (what autocast
    would cast) in half precision, norms, slopes, skip scales and the scan's parameters untouched;
    back on the exact path the float32 values are bit for bit those of before."""
    from vfimamba.backbone import SS2D
    torch.manual_seed(0)
    net = VFIMambaNet(Config(16)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)  # twice: still one copy kept
    sd = net.state_dict()
    ss2d = next(m for m in net.modules() if isinstance(m, SS2D))
    assert ss2d.in_proj.weight.dtype == ss2d.x_proj_weight.dtype == ss2d.conv2d.bias.dtype == torch.float16
    assert net.unet.conv.weight.dtype == net.block[0].conv[0][0].weight.dtype == torch.float16
    assert ss2d.A_logs.dtype == ss2d.Ds.dtype == ss2d.dt_projs_bias.dtype == ss2d.out_norm.weight.dtype == torch.float32
    assert net.block[0].conv[0][1].weight.dtype == torch.float32   # a PReLU slope
    half = {k for k, v in sd.items() if v.dtype == torch.float16}
    assert len(half) > 100 and all(torch.equal(sd[k].float(), before[k].half().float()) for k in half)
    net.set_fast(False, False)
    after = net.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], before[k]) for k in before)


def test_cpu_scan_builds_without_a_writable_cache(monkeypatch, tmp_path):
    if scan_cpu._compiler() is None:
        pytest.skip("no C++ compiler")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(scan_cpu, "_lib", None)
    monkeypatch.setattr(scan_cpu, "_error", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its "interpolate_video" folder cannot be made
    assert scan_cpu.available(), scan_cpu.error()
    args = _random_scan_inputs(1, 8, 16, 1, 40, seed=4)
    ref = selective_scan_reference(*args)
    assert torch.allclose(scan_cpu.selective_scan_cpu(*args), ref, atol=1e-4, rtol=1e-4)


@needs_fixtures
def test_warmup_runs_at_the_given_size():
    interp = vfimamba.load(str(FIX / "weights_VFIMamba_S.pkl"))
    calls = []
    real = interp.interpolate
    interp.interpolate = lambda a, b, ts: calls.append((a.shape, b.shape, list(ts))) or real(a, b, ts)
    interp.warmup((40, 72))
    assert calls == [((40, 72, 3), (40, 72, 3), [0.5])]


def test_compile_settings_are_scoped(tmp_path, monkeypatch):
    """compile=True keeps Inductor's caches in the user cache folder (a folder the user set wins,
    Inductor's own /tmp default does not), only while it compiles or loads: afterwards the
    environment is as it was."""
    import os

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    from vfimamba.inference import _compiling, _inductor_folder
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ours = str(tmp_path / "interpolate_video" / "inductor")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert _inductor_folder() == ours
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # written there by Inductor itself
    assert _inductor_folder() == ours
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's choice wins
    assert _inductor_folder() == str(tmp_path / "mine")

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "t"))
    with _compiling(ours):
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == ours
        os.environ["TRITON_CACHE_DIR"] = ours + "/triton/0"  # as Inductor's kernels do
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "t")


def test_conv_prelu_pairs_keep_the_official_names_and_pytorchs_values_on_the_cpu(monkeypatch):
    """ConvPReLU is an nn.Sequential to the checkpoint (same state-dict names) and, off CUDA, runs
    exactly PyTorch's ops, never asking for Triton: the fused bias + PReLU kernel is for CUDA's
    fast path only."""
    import torch.nn as nn

    from vfimamba import layers
    from vfimamba.layers import ConvPReLU

    def no_triton(name):
        raise AssertionError(f"Triton kernels ({name}) asked for on the CPU")
    monkeypatch.setattr(layers, "triton_kernels", no_triton)
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, 1, 1), nn.PReLU(8), nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.PReLU(4)]
    plain = nn.Sequential(*layers)
    ours = ConvPReLU(*[type(m)(*a) for m, a in zip(layers, [(3, 8, 3, 1, 1), (8,), (8, 4, 4, 2, 1), (4,)])])
    assert list(ours.state_dict()) == list(plain.state_dict())
    ours.load_state_dict(plain.state_dict())
    ours.to(memory_format=torch.channels_last), plain.to(memory_format=torch.channels_last)  # the fast path's layout
    x = torch.rand(2, 3, 10, 14).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(ours(x), plain(x))


def test_conv_output_size_is_pytorchs():
    """ConvPReLU decides between its two paths by the size of each convolution's output, computed
    before running it: the same as what nn.Conv2d and nn.ConvTranspose2d make."""
    import torch.nn as nn

    from vfimamba.layers import _out_elements
    x = torch.zeros(2, 6, 17, 22)
    for conv in (nn.Conv2d(6, 8, 3, 1, 1), nn.Conv2d(6, 5, 3, 2, 1), nn.Conv2d(6, 4, 5, 3, 0, dilation=2),
                 nn.ConvTranspose2d(6, 8, 4, 2, 1), nn.ConvTranspose2d(6, 3, 3, 2, 1, output_padding=1)):
        assert _out_elements(conv, x) == conv(x).numel(), conv


def _half_net(seed):
    torch.manual_seed(seed)
    return VFIMambaNet(Config(8)).eval()


def test_set_fast_again_changes_nothing_a_graph_reads():
    """The same settings twice: every weight and padded CAB copy keeps its memory (a CUDA graph
    captured in between reads them), and fast_generation stays; a change bumps it."""
    from vfimamba.backbone import CAB
    net = _half_net(0)
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)
    gen = net.fast_generation
    ptrs = [p.data_ptr() for p in net.parameters()]
    padded = [t.data_ptr() for m in net.modules() if isinstance(m, CAB) and m._padded for t in m._padded]
    assert padded
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)
    assert [p.data_ptr() for p in net.parameters()] == ptrs
    assert [t.data_ptr() for m in net.modules() if isinstance(m, CAB) and m._padded for t in m._padded] == padded
    assert net.fast_generation == gen
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.bfloat16)
    assert net.fast_generation == gen + 1 and net.unet.conv.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("assign", [False, True])
def test_weights_loaded_into_half_weights_are_kept(assign):
    """A state dict loaded while the weights are half is what later set_fast calls give, never the
    float32 values kept from before the load: exactly (assign=True puts the float32 tensors in),
    or rounded to half where it was copied into half tensors."""
    a, b = _half_net(1), _half_net(2)
    want = {k: v.clone() for k, v in b.state_dict().items()}
    a.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)
    half = {k for k, v in a.state_dict().items() if v.dtype == torch.float16}
    assert len(half) > 50
    a.load_state_dict(b.state_dict(), assign=assign)
    gen = a.fast_generation
    a.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)  # the same settings: a change all the same
    assert a.fast_generation == gen + 1
    from vfimamba.backbone import CAB
    cab = next(m for m in a.modules() if isinstance(m, CAB) and m._padded)
    hidden = cab.cab[0].out_channels
    assert torch.equal(cab._padded[0][:hidden], cab.cab[0].weight)  # the padded copy made from the loaded weights
    a.set_fast(False, False)
    got = a.state_dict()
    for k, v in want.items():
        expect = v.half().float() if k in half and not assign else v
        assert got[k].dtype == torch.float32 and torch.equal(got[k], expect), k
    a.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)
    assert torch.equal(a.unet.conv.weight, want["unet.conv.weight"].half())
    a.set_fast(False, False)
    x = torch.rand(1, 6, 64, 64)
    with torch.no_grad():
        d = (a(x, 0.5, scale=0)[3] - b(x, 0.5, scale=0)[3]).abs().max().item()
    assert d < (1e-6 if assign else 2e-2), d


def test_deep_copy_of_half_weights_gives_the_float32_ones_back():
    import copy
    net = _half_net(3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.float16)
    twin = copy.deepcopy(net)
    twin.set_fast(False, False)
    after = twin.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], before[k]) for k in before)


def test_interpolator_takes_its_settings_back_from_a_shared_net():
    """Something else switching the shared net to the fast path (another interpolator, a set_fast
    call) does not change this interpolator's frames: it puts its own settings back first."""
    from vfimamba.inference import VFIMambaInterpolator
    torch.manual_seed(4)
    net = VFIMambaNet(Config(8)).eval()
    interp = VFIMambaInterpolator(net, tta=False)
    rng = np.random.default_rng(4)
    f0 = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    f1 = np.roll(f0, 3, axis=1)
    want = interp.interpolate(f0, f1, [0.5])[0]
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=torch.bfloat16)
    assert net.unet.conv.weight.dtype == torch.bfloat16
    got = interp.interpolate(f0, f1, [0.5])[0]
    assert net.unet.conv.weight.dtype == torch.float32 and not net.channels_last
    assert np.array_equal(got, want)


def test_the_triton_hash_is_computed_once_in_a_thread_and_waited_for(monkeypatch):
    """vfimamba.triton_key: start() runs Triton's own triton_key() in one background thread however
    often it is called, and wait() blocks until it is done (a first launch then finds the hash
    computed instead of computing it again). A stand-in Triton records who calls it."""
    import threading
    import time
    import types
    from vfimamba import triton_key
    calls = []

    def slow_key():
        calls.append(threading.current_thread().name)
        time.sleep(0.3)
        calls.append("done")
    for name in ("triton", "triton.runtime"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    cache = types.ModuleType("triton.runtime.cache")
    cache.triton_key = slow_key
    monkeypatch.setitem(sys.modules, "triton.runtime.cache", cache)
    monkeypatch.setattr(triton_key, "_thread", None)
    triton_key.start()
    triton_key.start()
    assert calls[:1] in ([], ["triton-key"])       # running in its own thread, not in this one
    triton_key.wait()
    assert calls == ["triton-key", "done"]
    triton_key.start()                               # once per process
    triton_key.wait()
    assert calls == ["triton-key", "done"]


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_scan_out_dtype_rounds_the_float32_result(backend):
    if backend not in available_backends("cpu"):
        pytest.skip(f"scan backend {backend!r} not available here")
    args = _random_scan_inputs(1, 8, 16, 2, 70, seed=14)
    full = selective_scan(*args, backend=backend)
    half = selective_scan(*args, backend=backend, out_dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, full.half())
    with pytest.raises(ValueError, match="out= holds a float32 result"):
        selective_scan(*args, backend=backend, out=torch.empty(1, 8, 70), out_dtype=torch.float16)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_kernel_warm_up_leaves_the_random_generator_alone(device):
    """vfimamba.load's background thread launches each kind of operation of the forward once
    (inference.launch_kernel_families); a caller who seeded torch before the load gets the same
    random numbers after it as without it."""
    from vfimamba.inference import launch_kernel_families
    dev = torch.device(device)
    torch.manual_seed(123)
    want = torch.rand(4, device=dev)
    torch.manual_seed(123)
    with torch.inference_mode():
        launch_kernel_families(dev)
    assert torch.equal(torch.rand(4, device=dev), want)
