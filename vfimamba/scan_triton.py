"""Triton forward kernel for Mamba's selective scan (the part VFIMamba needs).

Semantics are those of mamba_ssm's ``selective_scan_ref`` forward with ``z=None``, a real ``A``
and no last state::

    delta = softplus(delta + delta_bias)                  # if delta_softplus
    x_l   = exp(delta_l * A) * x_{l-1} + delta_l * B_l * u_l   # x: (n,) per (batch, channel)
    y_l   = sum_n x_l[n] * C_l[n] + D * u_l

Shapes: ``u``, ``delta``: (b, d, l); ``A``: (d, n); ``B``, ``C``: (b, g, n, l) (group ``k`` owns
channels ``k*d/g .. (k+1)*d/g - 1``) or (b, n, l) (one group); ``D``, ``delta_bias``: (d,) or None.
``u``/``delta``/``B``/``C`` may be float32, float16 or bfloat16; the state, every product and every
sum are float32, and the output is float32 (b, d, l).

Kernel layout: one program per (block of ``BLOCK_D`` channels, batch). It walks the sequence in
chunks of ``BLOCK_L``; inside a chunk it builds the (BLOCK_D, n, BLOCK_L) tiles of decays
``exp(delta*A)`` and inputs ``delta*B*u``, runs ``tl.associative_scan`` along L with the combine
(a1, b1), (a2, b2) -> (a1*a2, a2*b1 + b2), adds the carried state times the cumulative decay,
reduces ``h*C`` over n, and carries ``h[..., -1]`` to the next chunk.  A channel block never
straddles two groups, so B and C are loaded once per chunk as (n, BLOCK_L) rows shared by the block.
u, delta, B, C and the output are contiguous along L, so every load and store is coalesced.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

__all__ = ["selective_scan_triton", "DEFAULT_CONFIG"]

_LOG2E = 1.4426950408889634

# Chosen from the sweep in bench/bench_scan.py (see bench/results/scan.md).
DEFAULT_CONFIG = dict(BLOCK_D=1, BLOCK_L=256, num_warps=4, CARRY_GATHER=False)


@triton.jit
def _first_order_combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2):  h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr,
    dim, seqlen, dstate, ch_per_group,
    s_ub, s_ud, s_tb, s_td,
    s_Ad, s_An,
    s_Bb, s_Bg, s_Bn,
    s_Cb, s_Cg, s_Cn,
    s_ob, s_od,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    CARRY_GATHER: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    d0 = pid_d * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, BLOCK_L)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    grp = (d0 // ch_per_group).to(tl.int64)  # the wrapper picks BLOCK_D | ch_per_group

    # A pre-multiplied by log2(e) so the decay is one exp2; padded states get A = 0 -> decay 1,
    # and B = C = 0, so they stay 0 and add nothing.
    A = tl.load(A_ptr + offs_d[:, None] * s_Ad + offs_n[None, :] * s_An,
                mask=mask_d[:, None] & mask_n[None, :], other=0.0).to(tl.float32) * 1.4426950408889634
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

    offs_d64 = offs_d.to(tl.int64)
    u_row = u_ptr + pid_b * s_ub + offs_d64[:, None] * s_ud          # (BD, 1)
    dt_row = dt_ptr + pid_b * s_tb + offs_d64[:, None] * s_td
    out_row = out_ptr + pid_b * s_ob + offs_d64[:, None] * s_od
    B_row = B_ptr + pid_b * s_Bb + grp * s_Bg + offs_n[:, None] * s_Bn  # (N, 1)
    C_row = C_ptr + pid_b * s_Cb + grp * s_Cg + offs_n[:, None] * s_Cn

    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    is_last = (offs_c == BLOCK_L - 1)[None, None, :]
    for l0 in range(0, seqlen, BLOCK_L):
        offs_l = l0 + offs_c
        mask_l = offs_l < seqlen
        m_dl = mask_d[:, None] & mask_l[None, :]
        m_nl = mask_n[:, None] & mask_l[None, :]
        u = tl.load(u_row + offs_l[None, :], mask=m_dl, other=0.0).to(tl.float32)
        dt = tl.load(dt_row + offs_l[None, :], mask=m_dl, other=0.0).to(tl.float32)
        Bt = tl.load(B_row + offs_l[None, :], mask=m_nl, other=0.0).to(tl.float32)
        Ct = tl.load(C_row + offs_l[None, :], mask=m_nl, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt = dt + bias[:, None]
        if SOFTPLUS:
            dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
        # Positions past the end: delta 0 -> decay 1, input 0, so the state passes through.
        dt = tl.where(m_dl, dt, 0.0)

        dA = tl.exp2(dt[:, None, :] * A[:, :, None])                 # (BD, N, BL)
        dBu = (dt * u)[:, None, :] * Bt[None, :, :]                  # (BD, N, BL)
        cA, h = tl.associative_scan((dA, dBu), axis=2, combine_fn=_first_order_combine)
        h = cA * carry[:, :, None] + h
        y = tl.sum(h * Ct[None, :, :], axis=1)                       # (BD, BL)
        if HAS_D:
            y = y + u * Dv[:, None]
        tl.store(out_row + offs_l[None, :], y, mask=m_dl)
        if CARRY_GATHER:
            idx = tl.full((BLOCK_D, BLOCK_N, 1), BLOCK_L - 1, tl.int32)
            carry = tl.reshape(tl.gather(h, idx, axis=2), (BLOCK_D, BLOCK_N))
        else:
            carry = tl.sum(tl.where(is_last, h, 0.0), axis=2)


def _pick_block_d(want: int, ch_per_group: int) -> int:
    bd = 1
    while bd * 2 <= want and ch_per_group % (bd * 2) == 0:
        bd *= 2
    return bd


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True,
                          *, BLOCK_D=None, BLOCK_L=None, num_warps=None, CARRY_GATHER=None):
    """Selective-scan forward on CUDA through Triton; returns float32 (b, d, l).

    See the module docstring for the shapes.  The keyword-only tuning knobs default to
    ``DEFAULT_CONFIG``; they exist for the benchmark's sweep.
    """
    if A.is_complex():
        raise NotImplementedError("selective_scan_triton: complex A is not supported")
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must be (b, d, l) of one shape, got {tuple(u.shape)}, {tuple(delta.shape)}")
    b, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d, n) = ({d}, n), got {tuple(A.shape)}")
    n = A.shape[1]
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    if B.dim() != 4 or B.shape[0] != b or B.shape[2] != n or B.shape[3] != L:
        raise ValueError(f"B must be (b, g, n, l) = ({b}, g, {n}, {L}), got {tuple(B.shape)}")
    if C.shape != B.shape:
        raise ValueError(f"C must have B's shape {tuple(B.shape)}, got {tuple(C.shape)}")
    g = B.shape[1]
    if d % g != 0:
        raise ValueError(f"d={d} is not a multiple of the number of groups g={g}")
    if not u.is_cuda:
        raise RuntimeError("selective_scan_triton needs CUDA tensors")
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.device != u.device:
            raise ValueError(f"{name} is on {t.device}, u on {u.device}")
    if D is not None and D.shape != (d,):
        raise ValueError(f"D must be ({d},), got {tuple(D.shape)}")
    if delta_bias is not None and delta_bias.shape != (d,):
        raise ValueError(f"delta_bias must be ({d},), got {tuple(delta_bias.shape)}")

    cfg = dict(DEFAULT_CONFIG)
    for k, v in (("BLOCK_D", BLOCK_D), ("BLOCK_L", BLOCK_L), ("num_warps", num_warps),
                 ("CARRY_GATHER", CARRY_GATHER)):
        if v is not None:
            cfg[k] = v

    # Unit stride along L (the loads vectorise and coalesce on it); other strides are free.
    def _lastc(t):
        return t if t.stride(-1) == 1 else t.contiguous()

    u, delta, B, C = _lastc(u), _lastc(delta), _lastc(B), _lastc(C)
    A = A.float()
    Df = D.float().contiguous() if D is not None else None
    bias = delta_bias.float().contiguous() if delta_bias is not None else None
    out = torch.empty((b, d, L), device=u.device, dtype=torch.float32)
    if out.numel() == 0:
        return out

    ch_per_group = d // g
    bd = _pick_block_d(int(cfg["BLOCK_D"]), ch_per_group)
    block_n = max(1, triton.next_power_of_2(n))
    block_l = int(cfg["BLOCK_L"])
    grid = (triton.cdiv(d, bd), b)
    dummy = out  # never read when the flag is off
    with torch.cuda.device(u.device):
        _selective_scan_fwd_kernel[grid](
            u, delta, A, B, C, Df if Df is not None else dummy, bias if bias is not None else dummy, out,
            d, L, n, ch_per_group,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1),
            A.stride(0), A.stride(1),
            B.stride(0), B.stride(1), B.stride(2),
            C.stride(0), C.stride(1), C.stride(2),
            out.stride(0), out.stride(1),
            HAS_D=Df is not None, HAS_BIAS=bias is not None, SOFTPLUS=bool(delta_softplus),
            CARRY_GATHER=bool(cfg["CARRY_GATHER"]),
            BLOCK_D=bd, BLOCK_N=block_n, BLOCK_L=block_l,
            num_warps=int(cfg["num_warps"]),
        )
    return out
