"""The Triton selective-scan kernel against a plain sequential float64 loop and the shared fixture.

Needs CUDA and Triton (skipped otherwise: CI is CPU-only).  With TRITON_INTERPRET=1 and Triton
installed, the plain-Triton variant also runs here on the CPU through Triton's interpreter (small
shapes only); the Gluon variant needs a GPU.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import triton_device

DEVICE, HAS_CUDA, INTERPRET = triton_device("needs CUDA (or TRITON_INTERPRET=1 for the plain variant)")

from vfimamba.scan_triton import selective_scan_triton  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SCAN_CASE = SHARED / "fixtures" / "vfimamba" / "scan_case.npz"

# Variants: the default (Gluon on a GPU), the plain-Triton kernel, and a few Gluon/plain geometries
# so that tails and block sizes other than the default are exercised too.
if HAS_CUDA:
    VARIANTS = {
        "default": None,
        "gluon_k4": dict(variant="gluon", TPW_N=4, SPT_L=4, num_warps=2),
        "gluon_n2": dict(variant="gluon", TPW_N=8, SPT_L=16, num_warps=1),
        "gluon_1w": dict(variant="gluon", TPW_N=4, SPT_L=8, num_warps=1),
        "tl": dict(variant="tl"),
        "tl_bd4_gather": dict(variant="tl", BLOCK_D=4, BLOCK_L=64, CARRY_GATHER=True),
    }
else:  # interpreter: plain kernel only
    VARIANTS = {"tl": dict(variant="tl", BLOCK_L=32), "tl_bd4_gather": dict(variant="tl", BLOCK_D=4, BLOCK_L=16,
                                                                            CARRY_GATHER=True)}


def reference_scan(u, delta, A, B, C, D, delta_bias, delta_softplus=True):
    """The recurrence as a plain loop over the sequence, in float64 (mamba_ssm's selective_scan_ref)."""
    u, delta, A = u.double(), delta.double(), A.double()
    B, C = B.double(), C.double()
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    b, d, L = u.shape
    rep = d // B.shape[1]
    B = B.repeat_interleave(rep, dim=1)  # (b, d, n, L)
    C = C.repeat_interleave(rep, dim=1)
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = torch.nn.functional.softplus(delta)
    x = torch.zeros(b, d, A.shape[1], dtype=torch.float64, device=u.device)
    ys = []
    for i in range(L):
        x = torch.exp(delta[:, :, i, None] * A) * x + delta[:, :, i, None] * B[:, :, :, i] * u[:, :, i, None]
        ys.append((x * C[:, :, :, i]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.double()[:, None]
    return y


def make_inputs(b, d, L, g, n, seed, dtype=torch.float32, device=DEVICE):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    u = r(b, d, L)
    delta = 0.5 * r(b, d, L)
    A = -torch.exp(0.5 * r(d, n))  # all negative, as -exp(A_logs)
    B = r(b, g, n, L)
    C = r(b, g, n, L)
    D = r(d)
    bias = 0.5 * r(d) - 1.0
    t = lambda x, dt=torch.float32: x.to(device=device, dtype=dt)  # noqa: E731
    return t(u, dtype), t(delta, dtype), t(A), t(B, dtype), t(C, dtype), t(D), t(bias)


def run_checked(*args, config=None, **kw):
    """Run the kernel after filling the allocator's free memory with NaN: unwritten outputs show."""
    if HAS_CUDA:
        u = args[0]
        # allocated and freed at once: the output's block is likely to come from this NaN memory
        torch.full((u.shape[0] * u.shape[1] * u.shape[2] + 4096,), float("nan"), device=u.device)
    out = selective_scan_triton(*args, config=config, **kw)
    if HAS_CUDA:
        torch.cuda.synchronize()
    return out


def check(out, ref, atol_abs=5e-5, rel=3e-6):
    assert out.dtype == torch.float32
    assert out.shape == ref.shape
    assert torch.isfinite(out).all(), "non-finite output (unwritten or overflow)"
    err = (out.double() - ref).abs().max().item()
    scale = ref.abs().max().item()
    # float32 state over up to ~1000 steps: a few ulps of the largest value, and never above atol
    # for the fixture-sized outputs.
    assert err <= atol_abs + rel * scale, f"max abs err {err:.3g} (|ref| max {scale:.3g})"
    return err


SHAPES = [
    # b, d, L, g, n
    (1, 32, 50, 4, 16),      # the fixture's shape
    (2, 64, 1000, 4, 16),    # b=2; L not a multiple of any block
    (1, 24, 333, 4, 16),     # 6 channels a group
    (2, 20, 129, 4, 16),     # 5 channels a group (odd)
    (1, 16, 7, 1, 16),       # shorter than a chunk, one group
    (2, 12, 200, 2, 5),      # n not a power of two
]
if INTERPRET and not HAS_CUDA:
    SHAPES = [(1, 32, 50, 4, 16), (2, 12, 37, 4, 16), (1, 8, 20, 2, 5)]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_random_against_sequential_float64(shape, variant):
    b, d, L, g, n = shape
    args = make_inputs(b, d, L, g, n, seed=zlib.crc32(repr((shape, variant)).encode()))
    ref = reference_scan(*args)
    out = run_checked(*args, config=VARIANTS[variant])
    check(out, ref)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fixture_scan_case(variant):
    if not SCAN_CASE.exists():
        pytest.skip(f"{SCAN_CASE} not present")
    z = np.load(SCAN_CASE)
    t = {k: torch.from_numpy(z[k]).to(DEVICE) for k in z.files}
    out = run_checked(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["delta_bias"], True,
                      config=VARIANTS[variant])
    err = (out - t["out"]).abs().max().item()
    assert err <= 5e-5, f"scan_case max abs err {err:.3g}"
    ref = reference_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["delta_bias"])
    assert (out.double() - ref).abs().max().item() <= 5e-5


@pytest.mark.parametrize("variant", ["default", "tl"] if HAS_CUDA else ["tl"])
def test_options_off_and_3d_B(variant):
    """No D, no bias, no softplus, and B/C given as (b, n, L) (one group)."""
    u, delta, A, B, C, D, bias = make_inputs(2, 16, 90, 1, 16, seed=7)
    delta = delta.abs() + 0.01  # without softplus delta must stay positive to be meaningful
    B3, C3 = B[:, 0], C[:, 0]
    ref = reference_scan(u, delta, A, B3, C3, None, None, delta_softplus=False)
    out = run_checked(u, delta, A, B3, C3, None, None, False, config=VARIANTS[variant])
    check(out, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("variant", ["default", "tl"] if HAS_CUDA else ["tl"])
def test_half_inputs_keep_float32_state(dtype, variant):
    args = make_inputs(1, 32, 300, 4, 16, seed=11, dtype=dtype)
    ref = reference_scan(*args)  # on the same rounded inputs
    out = run_checked(*args, config=VARIANTS[variant])
    check(out, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("variant", ["default", "tl"] if HAS_CUDA else ["tl"])
def test_half_output_is_the_float32_result_rounded_once(dtype, variant):
    """out_dtype: the same float32 computation, each output rounded to the half type as it is stored
    (so within half an ulp of it, not a half-precision scan)."""
    args = make_inputs(1, 32, 300, 4, 16, seed=12, dtype=torch.float16)
    full = run_checked(*args, config=VARIANTS[variant])
    half = run_checked(*args, config=VARIANTS[variant], out_dtype=dtype)
    assert half.dtype == dtype and half.shape == full.shape
    assert torch.equal(half, full.to(dtype))
    with pytest.raises(ValueError, match="out_dtype"):
        selective_scan_triton(*args, out_dtype=torch.int32)


@pytest.mark.parametrize("variant", ["default", "tl"] if HAS_CUDA else ["tl"])
def test_non_contiguous_inputs(variant):
    u, delta, A, B, C, D, bias = make_inputs(2, 32, 120, 4, 16, seed=5)
    ref = reference_scan(u, delta, A, B, C, D, bias)
    u_nc = u.transpose(1, 2).contiguous().transpose(1, 2)       # L not unit-stride
    B_nc = B.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    out = run_checked(u_nc, delta, A, B_nc, C, D, bias, True, config=VARIANTS[variant])
    check(out, ref)


def test_bad_shapes_raise():
    u, delta, A, B, C, D, bias = make_inputs(1, 8, 16, 4, 16, seed=1)
    with pytest.raises(ValueError):
        selective_scan_triton(u, delta, A[:4], B, C, D, bias)
    with pytest.raises(ValueError):
        selective_scan_triton(u, delta, A, B[:, :3], C[:, :3], D, bias)  # 8 channels, 3 groups
    with pytest.raises(ValueError):
        selective_scan_triton(u, delta, A, B, C[..., :8], D, bias)
