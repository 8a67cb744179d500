"""Triton forward kernel for Mamba's selective scan (the part VFIMamba needs).

Semantics are those of mamba_ssm's ``selective_scan_ref`` forward with ``z=None``, a real ``A``
and no last state::

    delta = softplus(delta + delta_bias)                  # if delta_softplus
    x_l   = exp(delta_l * A) * x_{l-1} + delta_l * B_l * u_l   # x: (n,) per (batch, channel)
    y_l   = sum_n x_l[n] * C_l[n] + D * u_l

Shapes: ``u``, ``delta``: (b, d, l); ``A``: (d, n); ``B``, ``C``: (b, g, n, l) (group ``k`` owns
channels ``k*d/g .. (k+1)*d/g - 1``) or (b, n, l) (one group); ``D``, ``delta_bias``: (d,) or None.
``u``/``delta``/``B``/``C`` may be float32, float16 or bfloat16; the state, every product and every
sum are float32, and the output is float32 (b, d, l), or rounded once to ``out_dtype`` when asked
(half the bytes written, and read again by whatever follows).

Two kernels compute this; both keep one program per (channel or channel block, batch), walk the
sequence in chunks and carry the (n,) state from chunk to chunk in registers, and both read u, delta,
B, C once and write the output once, with loads and stores contiguous along L:

* ``variant="gluon"`` (default on a GPU; Triton's Gluon dialect, Triton >= 3.4): an explicit
  register layout; one program per (channel, batch), 1 warp when b*d fills the GPU, else 2 or 4.
  A chunk is an (n, T, K) tile in which each of the T thread columns owns K consecutive positions (and n/TPW_N of the states): a sequential in-thread scan over K, a
  ``gl.associative_scan`` of the T per-thread aggregates across lanes and warps, a gather of the
  state entering each thread, then one FMA per element; ``h*C`` is reduced over n mostly in-thread.
  Full chunks run unmasked, the tail chunk masked.  softplus uses the approximate ex2/lg2 units.
* ``variant="tl"`` (plain Triton; also runs under ``TRITON_INTERPRET=1``): (BLOCK_D, n, BLOCK_L)
  tiles, ``tl.associative_scan`` along L with the combine (a1, b1), (a2, b2) -> (a1*a2, a2*b1 + b2),
  the carried state added times the cumulative decay.  Triton gives such tiles one element per
  thread along L, so every element goes through the warp-shuffle stage: correct, but slower.
  It is the fallback when Gluon is missing or fails to compile.

A channel block never straddles two groups, so B and C rows are shared by the block.
"""
from __future__ import annotations

import os
import warnings

import torch
import triton
import triton.language as tl

from .triton_launch import launching

__all__ = ["selective_scan_triton", "DEFAULT_CONFIG"]

_TL_FALLBACK = dict(variant="tl", BLOCK_D=1, BLOCK_L=256, num_warps=4, CARRY_GATHER=False)
# From the sweeps in bench/bench_scan.py on an H200 (bench/results/scan.md): one warp per channel
# with 8 positions a thread when b*d fills the GPU (~12 warps per multiprocessor: VFIMamba's F=32
# shapes, d = 2048 and 4096); below that (VFIMamba_S stage 3, d = 1024) 2 (or 4) warps per channel
# with 4 positions a thread, so that every multiprocessor stays busy.
DEFAULT_CONFIG = dict(variant="gluon", TPW_N=4, SPT_L=8, num_warps="auto", SPT_L_MULTIWARP=4)
_WARPS_PER_SM_TARGET = 12
_SM_COUNT = {}
_GLUON_FAILED = False


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
        tl.store(out_row + offs_l[None, :], y.to(out_ptr.dtype.element_ty), mask=m_dl)
        if CARRY_GATHER:
            idx = tl.full((BLOCK_D, BLOCK_N, 1), BLOCK_L - 1, tl.int32)
            carry = tl.reshape(tl.gather(h, idx, axis=2), (BLOCK_D, BLOCK_N))
        else:
            carry = tl.sum(tl.where(is_last, h, 0.0), axis=2)


# --------------------------------------------------------------------------------------------
# Gluon variant: the same algorithm with an explicit register layout.  Plain Triton gives the
# (BLOCK_D, n, BLOCK_L) tiles its default layout (one element per thread along L, 32 lanes along
# L), which makes every element go through the warp-shuffle stage of the scan.  Here each thread
# holds SPT_L consecutive positions (sequential in-thread scan, shuffles only on the per-thread
# aggregates) and SPT_N of the n states (the reduction over n is mostly in-thread).
# --------------------------------------------------------------------------------------------
try:  # Gluon ships with Triton >= 3.4
    from triton.experimental import gluon as _gluon
    from triton.experimental.gluon import language as gl
except Exception:  # pragma: no cover - older Triton
    _gluon = None
    gl = None

if _gluon is not None:

    @_gluon.jit
    def _gl_combine(a1, b1, a2, b2):
        return a1 * a2, a2 * b1 + b2

    @_gluon.jit
    def _gl_last(a1, b1, a2, b2):
        return a2, b2

    @_gluon.jit
    def _gl_softplus(x):
        # log(1 + exp(x)) through the approximate ex2/lg2 units (relative error ~2^-22), x > 20 -> x
        e = gl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [x * 1.4426950408889634],
                                      dtype=gl.float32, is_pure=True, pack=1)
        lg = gl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e],
                                       dtype=gl.float32, is_pure=True, pack=1)
        return gl.where(x <= 20.0, lg * 0.6931471805599453, x)

    @_gluon.jit
    def _gl2_chunk(l0, carry, seqlen, dstate, u_base, dt_base, out_base, B_base, C_base,
                   pos_tk, pos3, n3, A3, Dv, bias, idx_prev, is_t0, idx_last,
                   LNT: gl.constexpr, LNT3: gl.constexpr,
                   HAS_D: gl.constexpr, HAS_BIAS: gl.constexpr, SOFTPLUS: gl.constexpr,
                   MASK_L: gl.constexpr, MASK_N: gl.constexpr):
        p_tk = l0 + pos_tk
        p3 = l0 + pos3
        if MASK_L:
            m_tk = p_tk < seqlen
            m3 = p3 < seqlen
            if MASK_N:
                m3 = m3 & (n3 < dstate)
            u = gl.load(u_base + p_tk, mask=m_tk, other=0.0).to(gl.float32)
            dt = gl.load(dt_base + p_tk, mask=m_tk, other=0.0).to(gl.float32)
            Bt = gl.load(B_base + p3, mask=m3, other=0.0).to(gl.float32)
            Ct = gl.load(C_base + p3, mask=m3, other=0.0).to(gl.float32)
        else:
            u = gl.load(u_base + p_tk).to(gl.float32)
            dt = gl.load(dt_base + p_tk).to(gl.float32)
            if MASK_N:
                m3 = (n3 < dstate) & (p3 >= 0)
                Bt = gl.load(B_base + p3, mask=m3, other=0.0).to(gl.float32)
                Ct = gl.load(C_base + p3, mask=m3, other=0.0).to(gl.float32)
            else:
                Bt = gl.load(B_base + p3).to(gl.float32)
                Ct = gl.load(C_base + p3).to(gl.float32)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = _gl_softplus(dt)
        if MASK_L:
            dt = gl.where(m_tk, dt, 0.0)  # past the end: decay 1, input 0 -> the state passes through

        dA = gl.exp2(gl.expand_dims(dt, 0) * A3)                 # (N, T, K)
        dBu = gl.expand_dims(dt * u, 0) * Bt
        cA, hl = gl.associative_scan((dA, dBu), 2, _gl_combine)   # in-thread, sequential over K
        P, S = gl.reduce((cA, hl), 2, _gl_last)                   # each thread's aggregate (its last)
        P = gl.convert_layout(P, LNT, assert_trivial=True)
        S = gl.convert_layout(S, LNT, assert_trivial=True)
        Pi, Si = gl.associative_scan((P, S), 1, _gl_combine)      # across the threads of the chunk
        e_end = Pi * carry + Si                                   # state after each thread's last
        prev = gl.gather(e_end, idx_prev, 1)                      # e_end[t-1]
        e_in = gl.where(is_t0, carry, prev)                       # state entering each thread
        new_carry = gl.gather(e_end, idx_last, 1)                 # (N, 1): e_end[T-1]
        h = cA * gl.expand_dims(gl.convert_layout(e_in, LNT3, assert_trivial=True), 2) + hl
        y = gl.sum(h * Ct, axis=0)                                # (T, K)
        if HAS_D:
            y = y + u * Dv
        y = y.to(out_base.dtype.element_ty)
        if MASK_L:
            gl.store(out_base + p_tk, y, mask=m_tk)
        else:
            gl.store(out_base + p_tk, y)
        return new_carry

    @_gluon.jit
    def _selective_scan_fwd_gluon2(
        u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr,
        dim, seqlen, dstate, ch_per_group,
        s_ub, s_ud, s_tb, s_td,
        s_Ad, s_An,
        s_Bb, s_Bg, s_Bn,
        s_Cb, s_Cg, s_Cn,
        s_ob, s_od,
        HAS_D: gl.constexpr, HAS_BIAS: gl.constexpr, SOFTPLUS: gl.constexpr,
        BLOCK_N: gl.constexpr, SPT_N: gl.constexpr, TPW_N: gl.constexpr,
        TPW_L: gl.constexpr, SPT_L: gl.constexpr, MASK_N: gl.constexpr, num_warps: gl.constexpr,
    ):
        # One program per (channel, batch).  A chunk of BLOCK_L = TPW_L*num_warps*SPT_L positions is
        # a (BLOCK_N, T, K) tile: thread column t owns the K consecutive positions t*K .. t*K+K-1.
        #  1. in-thread sequential scan over K (no shuffles),
        #  2. scan of the T per-thread aggregates across lanes and warps,
        #  3. the state entering each thread (the carry for t = 0) by a gather, one FMA per element.
        # Full chunks run without masks; the tail chunk, if any, runs masked.
        T: gl.constexpr = TPW_L * num_warps
        K: gl.constexpr = SPT_L
        BLOCK_L: gl.constexpr = T * K
        L3: gl.constexpr = gl.BlockedLayout([SPT_N, 1, K], [TPW_N, TPW_L, 1], [1, num_warps, 1], [2, 1, 0])
        LTK: gl.constexpr = gl.SliceLayout(0, L3)   # (T, K): per-position data
        LNT3: gl.constexpr = gl.SliceLayout(2, L3)  # (N, T): per-thread aggregates, as reduced
        LNT: gl.constexpr = gl.BlockedLayout([SPT_N, 1], [TPW_N, TPW_L], [1, num_warps], [1, 0])  # same map
        LN: gl.constexpr = gl.SliceLayout(1, LNT3)  # (N,)

        pid_d = gl.program_id(0)
        pid_b = gl.program_id(1).to(gl.int64)
        grp = (pid_d // ch_per_group).to(gl.int64)

        offs_n = gl.arange(0, BLOCK_N, layout=LN)
        A = gl.load(A_ptr + pid_d * s_Ad + offs_n * s_An, mask=offs_n < dstate, other=0.0).to(gl.float32)
        A3 = gl.expand_dims(gl.expand_dims(A * 1.4426950408889634, 1), 2)
        Dv = 0.0
        bias = 0.0
        if HAS_D:
            Dv = gl.load(D_ptr + pid_d).to(gl.float32)
        if HAS_BIAS:
            bias = gl.load(bias_ptr + pid_d).to(gl.float32)

        t_tk = gl.arange(0, T, layout=gl.SliceLayout(1, LTK))
        k_tk = gl.arange(0, K, layout=gl.SliceLayout(0, LTK))
        pos_tk = gl.expand_dims(t_tk, 1) * K + gl.expand_dims(k_tk, 0)   # (T, K)
        pos3 = gl.expand_dims(pos_tk, 0)                                  # (1, T, K)
        n3 = gl.expand_dims(gl.expand_dims(offs_n, 1), 2)                 # (N, 1, 1)

        t_nt = gl.expand_dims(gl.arange(0, T, layout=gl.SliceLayout(0, LNT)), 0)
        zero_nt = gl.zeros([BLOCK_N, T], gl.int32, layout=LNT)
        idx_prev = zero_nt + gl.maximum(t_nt - 1, 0)
        is_t0 = (zero_nt + t_nt) == 0
        idx_last = gl.full([BLOCK_N, 1], T - 1, gl.int32, layout=LNT)

        row = pid_d.to(gl.int64)
        u_base = u_ptr + pid_b * s_ub + row * s_ud
        dt_base = dt_ptr + pid_b * s_tb + row * s_td
        out_base = out_ptr + pid_b * s_ob + row * s_od
        B_base = B_ptr + pid_b * s_Bb + grp * s_Bg + n3 * s_Bn
        C_base = C_ptr + pid_b * s_Cb + grp * s_Cg + n3 * s_Cn

        carry = gl.zeros([BLOCK_N, 1], gl.float32, layout=LNT)
        n_full = (seqlen // BLOCK_L) * BLOCK_L
        for l0 in range(0, n_full, BLOCK_L):
            carry = _gl2_chunk(l0, carry, seqlen, dstate, u_base, dt_base, out_base, B_base, C_base,
                               pos_tk, pos3, n3, A3, Dv, bias, idx_prev, is_t0, idx_last,
                               LNT, LNT3, HAS_D, HAS_BIAS, SOFTPLUS, False, MASK_N)
        if n_full < seqlen:
            carry = _gl2_chunk(n_full, carry, seqlen, dstate, u_base, dt_base, out_base, B_base, C_base,
                               pos_tk, pos3, n3, A3, Dv, bias, idx_prev, is_t0, idx_last,
                               LNT, LNT3, HAS_D, HAS_BIAS, SOFTPLUS, True, MASK_N)


def _pick_block_d(want: int, ch_per_group: int) -> int:
    bd = 1
    while bd * 2 <= want and ch_per_group % (bd * 2) == 0:
        bd *= 2
    return bd


def _auto_warps(rows: int, device) -> int:
    """Warps per channel for the Gluon kernel: 1 while b*d channels give ~12 warps a multiprocessor."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    nw = 1
    while nw < 4 and rows * nw < _WARPS_PER_SM_TARGET * _SM_COUNT[idx]:
        nw *= 2
    return nw


def _gluon_geometry(cfg, block_n):
    """Resolve a Gluon config into the kernel's layout constexprs (powers of two)."""
    tpw_n = max(1, min(int(cfg["TPW_N"]), block_n))
    return dict(BLOCK_N=block_n, SPT_N=block_n // tpw_n, TPW_N=tpw_n, TPW_L=32 // tpw_n,
                SPT_L=int(cfg["SPT_L"]))


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, *,
                          config=None, out_dtype=torch.float32):
    """Selective-scan forward on CUDA through Triton; returns (b, d, l) in out_dtype (float32,
    float16 or bfloat16; computed in float32 either way).

    See the module docstring for the shapes.  ``config`` overrides ``DEFAULT_CONFIG`` (the
    benchmark's sweep uses it): ``variant`` "gluon" (explicit layout; needs Triton >= 3.4) or "tl"
    (plain Triton), plus that variant's block sizes.
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
    if g == 0 or d % g != 0:
        raise ValueError(f"d={d} is not a multiple of the number of groups g={g}")
    if D is not None and D.shape != (d,):
        raise ValueError(f"D must be ({d},), got {tuple(D.shape)}")
    if delta_bias is not None and delta_bias.shape != (d,):
        raise ValueError(f"delta_bias must be ({d},), got {tuple(delta_bias.shape)}")
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if not u.is_cuda and not interpret:
        raise RuntimeError("selective_scan_triton needs CUDA tensors (or TRITON_INTERPRET=1 to debug on CPU)")
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.device != u.device:
            raise ValueError(f"{name} is on {t.device}, u on {u.device}")

    config = dict(config or {})
    cfg = dict(_TL_FALLBACK if config.get("variant") == "tl" else DEFAULT_CONFIG)
    cfg.update(config)
    variant = cfg.get("variant", "tl")
    if variant == "gluon" and (_gluon is None or interpret):
        variant = "tl"  # the interpreter does not run Gluon; fall back to the plain kernel
        cfg = dict(_TL_FALLBACK)

    # Unit stride along L (the loads vectorise and coalesce on it); other strides are free.
    def _lastc(t):
        return t if t.stride(-1) == 1 else t.contiguous()

    u, delta, B, C = _lastc(u), _lastc(delta), _lastc(B), _lastc(C)
    A = A.float()
    Df = D.float().contiguous() if D is not None else None
    bias = delta_bias.float().contiguous() if delta_bias is not None else None
    if out_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"out_dtype must be float32, float16 or bfloat16, got {out_dtype}")
    out = torch.empty((b, d, L), device=u.device, dtype=out_dtype)
    if out.numel() == 0:
        return out

    ch_per_group = d // g
    block_n = max(1, triton.next_power_of_2(n))
    args = (u, delta, A, B, C, Df if Df is not None else out, bias if bias is not None else out, out,
            d, L, n, ch_per_group,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1),
            A.stride(0), A.stride(1),
            B.stride(0), B.stride(1), B.stride(2),
            C.stride(0), C.stride(1), C.stride(2),
            out.stride(0), out.stride(1))
    flags = dict(HAS_D=Df is not None, HAS_BIAS=bias is not None, SOFTPLUS=bool(delta_softplus))
    global _GLUON_FAILED
    if variant == "gluon" and _GLUON_FAILED and not config.get("variant"):
        variant, cfg = "tl", dict(_TL_FALLBACK)
    with launching(u, args, ("selective scan", variant, b, tuple(sorted(flags.items())),
                             tuple(sorted((k, str(v)) for k, v in cfg.items())))):
        if variant == "gluon":
            nw = cfg["num_warps"]
            if nw == "auto":
                nw = _auto_warps(b * d, u.device)
                if nw > 1 and "SPT_L_MULTIWARP" in cfg:
                    cfg["SPT_L"] = cfg["SPT_L_MULTIWARP"]
            nw = int(nw)
            geo = _gluon_geometry(cfg, block_n)
            try:
                _selective_scan_fwd_gluon2[(d, b)](*args, **flags, **geo, MASK_N=block_n != n, num_warps=nw)
            except Exception as exc:  # e.g. a Triton whose Gluon API differs: use the plain kernel
                if config.get("variant") == "gluon":
                    raise
                _GLUON_FAILED = True
                warnings.warn(f"selective_scan_triton: Gluon kernel failed ({type(exc).__name__}: {exc}); "
                              "using the plain Triton kernel", RuntimeWarning, stacklevel=2)
                variant, cfg = "tl", dict(_TL_FALLBACK)
        if variant == "tl":
            bd = _pick_block_d(int(cfg["BLOCK_D"]), ch_per_group)
            grid = (triton.cdiv(d, bd), b)
            _selective_scan_fwd_kernel[grid](*args, **flags, CARRY_GATHER=bool(cfg.get("CARRY_GATHER", False)),
                                             BLOCK_D=bd, BLOCK_N=block_n, BLOCK_L=int(cfg["BLOCK_L"]),
                                             num_warps=int(cfg["num_warps"]))
    return out
