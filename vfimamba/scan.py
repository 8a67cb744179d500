"""The selective scan (Mamba's S6 recurrence) behind one function, with interchangeable backends.

Semantics are those of mamba_ssm's `selective_scan_fn` with z=None and no last state:

    delta = softplus(delta + delta_bias)              (when delta_softplus)
    x_l   = exp(delta_l * A) * x_{l-1} + delta_l * B_l * u_l      per channel d and state n, x_0 = 0
    y_l   = sum_n C_l[n] * x_l[n] + D * u_l

B and C are shared by groups: with G groups, group g drives channels g*D/G .. (g+1)*D/G - 1.

Backends:
  "torch"     pure PyTorch, vectorised: a two-level (chunk, then chunk-ends) doubling scan.
              No loop over the sequence; only short loops over channel slabs and log2 steps.
  "mamba_ssm" mamba_ssm's fused CUDA kernel (CUDA tensors only).
  "triton"    vfimamba.scan_triton.selective_scan_triton (CUDA tensors only), when present.
  "auto"      triton, else mamba_ssm, on CUDA; torch otherwise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BACKENDS = ("torch", "mamba_ssm", "triton")

# Per-slab budget for the (b, d, L, n) state tensors of the torch backend, in elements.
# Several such tensors live at once; 2**24 floats = 64 MiB each keeps CPU memory and caches sane.
_SLAB_ELEMS = {"cpu": 2 ** 23, "cuda": 2 ** 27}
_CHUNK = 64


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
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        if _triton_fn() is not None:
            out.append("triton")
        if _mamba_fn() is not None:
            out.append("mamba_ssm")
    out.append("torch")
    return out


def resolve_backend(backend: str, device) -> str:
    """Turn "auto" into a concrete backend; reject one that cannot run on `device`."""
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"unknown scan backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    avail = available_backends(device)
    if backend == "auto":
        return avail[0]
    if backend not in avail:
        raise ValueError(f"scan backend {backend!r} is not available on {device} (available: {', '.join(avail)})")
    return backend


def selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus=True, backend="auto"):
    """u, delta: (b, d, l); A: (d, n); B, C: (b, g, n, l); D, delta_bias: (d,) -> (b, d, l) float32."""
    name = resolve_backend(backend, u.device)
    if name == "triton":
        out = _triton_fn()(u, delta, A, B, C, D, delta_bias, delta_softplus=delta_softplus)
    elif name == "mamba_ssm":
        out = _mamba_fn()(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
                          D.float(), z=None, delta_bias=delta_bias.float(), delta_softplus=delta_softplus,
                          return_last_state=False)
    else:
        out = _scan_torch(u, delta, A, B, C, D, delta_bias, delta_softplus)
    return out.float()


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


def _scan_torch(u, delta, A, B, C, D, delta_bias, delta_softplus=True, chunk=_CHUNK):
    b, d, length = u.shape
    g, n = B.shape[1], A.shape[1]
    dev = u.device
    u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    T = min(chunk, 1 << max(0, (length - 1).bit_length()))
    nc = -(-length // T)
    pad = nc * T - length
    if pad:  # delta = 0 there: decay 1 and no input, so padding never leaks into real steps
        delta = F.pad(delta, (0, pad))
        u = F.pad(u, (0, pad))
        B = F.pad(B, (0, pad))
        C = F.pad(C, (0, pad))
    Lp = nc * T
    # (b, g, n, L) -> (b, g, nc, T, n): state axis last so each time step is one contiguous row.
    Bt = B.view(b, g, n, nc, T).permute(0, 1, 3, 4, 2)
    Ct = C.view(b, g, n, nc, T).permute(0, 1, 3, 4, 2)
    du = (delta * u).view(b, d, nc, T)
    dl = delta.view(b, d, nc, T)

    per_group = d // g
    budget = _SLAB_ELEMS["cuda" if dev.type == "cuda" else "cpu"]
    slab = max(1, min(per_group, budget // max(1, b * Lp * n)))
    y = torch.empty(b, d, nc, T, device=dev, dtype=torch.float32)
    c0 = 0
    while c0 < d:
        c1 = min(d, c0 + slab, (c0 // per_group + 1) * per_group)  # stay inside one group
        Bs = Bt[:, c0 // per_group, None]  # (b, 1, nc, T, n), broadcast over the slab's channels
        Cs = Ct[:, c0 // per_group, None]
        a = torch.exp(dl[:, c0:c1, :, :, None] * A[c0:c1, None, None, :])  # decays in (0, 1]
        h = du[:, c0:c1, :, :, None] * Bs
        _doubling_scan_(a, h, dim=3)  # inside each chunk, from a zero state
        # chunk ends: carry_c = end_c + decay_c * carry_{c-1}, the same recurrence one level up
        end_h = h[:, :, :, -1].clone()
        end_a = a[:, :, :, -1].clone()
        _doubling_scan_(end_a, end_h, dim=2)
        carry = torch.zeros_like(end_h)
        carry[:, :, 1:] = end_h[:, :, :-1]  # state entering chunk c
        h += a * carry[:, :, :, None]
        y[:, c0:c1] = (h * Cs).sum(-1)
        c0 = c1
    y = y.view(b, d, Lp)[..., :length]
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
    Bf = B.float().repeat_interleave(d // g, dim=1)  # (b, d, n, l)
    Cf = C.float().repeat_interleave(d // g, dim=1)
    x = u.new_zeros(b, d, A.shape[1])
    ys = []
    for i in range(length):
        x = torch.exp(delta[:, :, i, None] * A) * x + (delta[:, :, i] * u[:, :, i])[..., None] * Bf[..., i]
        ys.append((x * Cf[..., i]).sum(-1))
    return torch.stack(ys, dim=-1) + u * D.float()[:, None]
