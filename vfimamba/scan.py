"""The selective scan (Mamba's S6 recurrence) behind one function, with interchangeable backends.

Semantics are those of mamba_ssm's `selective_scan_fn` with z=None and no last state:

    delta = softplus(delta + delta_bias)              (when delta_softplus)
    x_l   = exp(delta_l * A) * x_{l-1} + delta_l * B_l * u_l      per channel d and state n, x_0 = 0
    y_l   = sum_n C_l[n] * x_l[n] + D * u_l

B and C are shared by groups: with G groups, group g drives channels g*D/G .. (g+1)*D/G - 1.

Backends:
  "cpu"       vfimamba.scan_cpu: a C++ kernel built at first use with the system compiler (CPU
              tensors; about 10x faster than "torch").
  "torch"     pure PyTorch, vectorised: chunked scan (cumulative log-decays inside chunks, a
              doubling scan across chunk ends). No loop over the sequence; only loops over
              channel slabs and log2 steps.
  "mamba_ssm" mamba_ssm's fused CUDA kernel (CUDA tensors only).
  "triton"    vfimamba.scan_triton.selective_scan_triton (CUDA tensors only), when present.
  "auto"      triton, else mamba_ssm, on CUDA; cpu, else torch (with a warning), on the CPU.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from . import scan_cpu

BACKENDS = ("torch", "cpu", "mamba_ssm", "triton")
_warned_cpu = False

# Per-slab budget for the (b, slab, n, L) state tensors of the torch backend, in elements. Three such
# tensors live at once: 2**20 floats (4 MiB) each keeps a CPU slab in cache.
_SLAB_ELEMS = {"cpu": 2 ** 20, "cuda": 2 ** 27}
_CHUNK = 64
_MIN_FAST_CHUNK = 8
_MAX_LOG_DECAY = 60.0  # e^60 ~ 1e26: e^{-S} * dBu and its running sum stay far from float32 overflow


def _triton_fn():
    try:
        from .scan_triton import selective_scan_triton  # written elsewhere; optional
    except Exception:
        return None
    return selective_scan_triton


def _mamba_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:
        return None
    return selective_scan_fn


def available_backends(device="cpu") -> list[str]:
    """Backends that can run on `device` here, fastest first ("torch" is always there)."""
    out = []
    if torch.device(device).type == "cuda":
        if torch.cuda.is_available():
            if _triton_fn() is not None:
                out.append("triton")
            if _mamba_fn() is not None:
                out.append("mamba_ssm")
    elif scan_cpu.available():
        out.append("cpu")
    out.append("torch")
    return out


def resolve_backend(backend: str, device) -> str:
    """Turn "auto" into a concrete backend; reject one that cannot run on `device`."""
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"unknown scan_backend={backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    avail = available_backends(device)
    if backend == "auto":
        global _warned_cpu
        if torch.device(device).type == "cpu" and avail[0] == "torch" and not _warned_cpu:
            _warned_cpu = True
            warnings.warn(f"VFIMamba: the compiled CPU scan is unavailable ({scan_cpu.error()}); "
                          "using the PyTorch scan, about 10x slower", RuntimeWarning, stacklevel=2)
        return avail[0]
    if backend not in avail:
        raise ValueError(f"scan_backend={backend!r} is not available on {device} (available: {', '.join(avail)})")
    return backend


def selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus=True, backend="auto", out=None,
                   out_dtype=torch.float32):
    """u, delta: (b, d, l); A: (d, n); B, C: (b, g, n, l); D, delta_bias: (d,) -> (b, d, l) in
    out_dtype (computed in float32 by every backend; the Triton kernel rounds as it stores).

    out: a float32 tensor to hold the result (returned); it may be u or delta itself. The "cpu"
    backend writes into it directly, sparing a fresh output's page faults; the others copy into it.
    """
    name = resolve_backend(backend, u.device)
    if out is not None and out_dtype != torch.float32:
        raise ValueError("selective_scan: out= holds a float32 result; leave out_dtype float32 with it")
    if name == "cpu" and scan_cpu.supports(A, delta_softplus):
        return scan_cpu.selective_scan_cpu(u, delta, A, B, C, D, delta_bias, delta_softplus, out=out).to(out_dtype)
    if name == "triton":
        y = _triton_fn()(u, delta, A, B, C, D, delta_bias, delta_softplus=delta_softplus, out_dtype=out_dtype)
    elif name == "mamba_ssm":
        y = _mamba_fn()(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
                        D.float(), z=None, delta_bias=delta_bias.float(), delta_softplus=delta_softplus,
                        return_last_state=False)
    else:
        y = _scan_torch(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if out is None:
        return y.to(out_dtype)
    scan_cpu.check_out(out, y.shape)
    return out.copy_(y)


def _doubling_scan_(a, h, dim):
    """In place: h_t <- h_t + a_t h_{t-1} (inclusive linear recurrence) along `dim`, and a_t <- prod a.

    Hillis-Steele doubling: log2(len) steps, each one vectorised over everything. Only products of
    decays in [0, 1] are ever formed, so nothing can overflow whatever the size of delta * A.
    """
    n = a.shape[dim]
    k = 1
    while k < n:
        hi = [slice(None)] * a.dim()
        lo = [slice(None)] * a.dim()
        hi[dim], lo[dim] = slice(k, None), slice(None, n - k)
        hi, lo = tuple(hi), tuple(lo)
        h[hi] += a[hi] * h[lo]  # the product is formed before the in-place add, so old h is read
        a[hi] = a[hi] * a[lo]
        k *= 2


def _chunk_scan(delta, A, h, T_fast):
    """States of x_t = e^{delta_t A} x_{t-1} + h_t from x_0 = 0, for delta (b, s, L), A (s, n) and
    h (b, s, n, L) (overwritten and returned). Time is the last axis so cumsums run contiguously.

    Two levels: inside chunks, then across chunk ends (the same recurrence on the chunks' total
    decays and end states, by doubling), then each chunk adds its decayed incoming state.
    Inside a chunk the log-decay since its start is S_t = A * cumsum(delta)_t <= 0 (a cumsum over
    (b, s, L) only, not over the n states), and x_t = e^{S_t} * cumsum_s(e^{-S_s} h_s): a few cheap
    passes, exact, but e^{-S} must stay finite, so the caller picks T_fast such that no chunk
    decays by more than e^{-_MAX_LOG_DECAY}. When decays are too strong for a useful chunk size
    (T_fast == 0) a doubling scan is used instead: it only multiplies factors in (0, 1].
    """
    b, s, n, L = h.shape
    T = T_fast or min(_CHUNK, L)
    nc = L // T
    h = h.view(b, s, n, nc, T)
    dl = delta.reshape(b, s, 1, nc, T)
    An = A[:, :, None, None]  # (s, n, 1, 1)
    e = torch.cumsum(dl, dim=4) * An  # S
    e.exp_()  # decay since the chunk started, in (0, 1]
    if T_fast:
        h.div_(e)
        torch.cumsum(h, dim=4, out=h)
        h.mul_(e)
    else:
        a = (dl * An).exp_()
        _doubling_scan_(a, h, dim=4)
    end_h = h[..., -1].clone()
    end_a = e[..., -1].clone()
    _doubling_scan_(end_a, end_h, dim=3)
    carry = torch.zeros_like(end_h)
    carry[..., 1:] = end_h[..., :-1]  # state entering chunk c
    h.addcmul_(e, carry[..., None])
    return h.view(b, s, n, L)


def _scan_torch(u, delta, A, B, C, D, delta_bias, delta_softplus=True):
    b, d, length = u.shape
    g, n = B.shape[1], A.shape[1]
    dev = u.device
    u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    T0 = min(_CHUNK, 1 << max(0, (length - 1).bit_length()))  # a power of two
    Lp = -(-length // T0) * T0
    pad = Lp - length
    if pad:  # delta = 0 there: decay 1 and no input, so padding never leaks into real steps
        delta, u = F.pad(delta, (0, pad)), F.pad(u, (0, pad))
        B, C = F.pad(B, (0, pad)), F.pad(C, (0, pad))
    du = delta * u
    # Largest per-step decay rate of each channel, to size the fast chunks (one host sync).
    rate = (delta.amax(dim=(0, 2)) * (-A).amax(dim=1)).tolist()

    per_group = d // g
    # Channel slabs: small enough to stay in cache on CPU, large enough to amortise launches on GPU.
    budget = _SLAB_ELEMS["cuda" if dev.type == "cuda" else "cpu"]
    slab = max(1, min(per_group, budget // max(1, b * Lp * n)))
    y = torch.empty(b, d, Lp, device=dev, dtype=torch.float32)
    c0 = 0
    while c0 < d:
        c1 = min(d, c0 + slab, (c0 // per_group + 1) * per_group)  # stay inside one group
        T = T0
        r = max(rate[c0:c1])
        while T >= _MIN_FAST_CHUNK and r * T > _MAX_LOG_DECAY:
            T //= 2
        grp = c0 // per_group
        h = du[:, c0:c1, None, :] * B[:, grp, None]  # (b, s, n, L)
        h = _chunk_scan(delta[:, c0:c1], A[c0:c1], h, T if T >= _MIN_FAST_CHUNK else 0)
        h.mul_(C[:, grp, None])
        torch.sum(h, dim=2, out=y[:, c0:c1])
        c0 = c1
    y = y[..., :length]
    return y + u[..., :length] * D.float()[:, None]


def selective_scan_reference(u, delta, A, B, C, D, delta_bias, delta_softplus=True):
    """Plain sequential loop over the sequence, float32. Slow; for tests only."""
    b, d, length = u.shape
    g = B.shape[1]
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B, C = B.float(), C.float()
    x = u.new_zeros(b, d, A.shape[1])
    ys = []
    for i in range(length):
        Bi = B[..., i].repeat_interleave(d // g, dim=1)  # (b, d, n): each group's B for its channels
        Ci = C[..., i].repeat_interleave(d // g, dim=1)
        x = torch.exp(delta[:, :, i, None] * A) * x + (delta[:, :, i] * u[:, :, i])[..., None] * Bi
        ys.append((x * Ci).sum(-1))
    return torch.stack(ys, dim=-1) + u * D.float()[:, None]
