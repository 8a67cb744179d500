"""Backward warping (vfimamba.warp.warp's bilinear sampling, border padding, align_corners=True) as
one Triton pass that reads and writes channels-last memory.

The refiner takes both frames' backbone features warped to the target time at five scales. With
PyTorch's grid_sample each warp of a half-precision channels-last feature map costs three passes
on the fast path: a copy to float32 NCHW (grid_sample's CUDA kernel reads channels-last memory
about 3x slower), the sampling, and the conversion of its float32 NCHW output back to half
precision channels-last for the next convolution (cuDNN wants that). Here each output pixel's
four neighbours are read with all their channels at once (contiguous in channels-last memory) and
the result is written once, in the dtype asked for: at 720p the full-size feature warps alone were
about 1 ms of copies a frame.

The sampling position is computed as warp() computes it: the identity grid in normalised
coordinates (linspace(-1, 1)) plus the flow divided by (size - 1) / 2, mapped back to pixels by
grid_sample's align_corners=True rule and clipped to the border. Each program takes a block of
pixels of one image and a block of channels.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_launch import launching

__all__ = ["warp"]

BLOCK_PIXELS = 64
MAX_BLOCK_CHANNELS = 64  # 64 half-precision channels: 128 contiguous bytes per neighbour and pixel


@triton.jit
def _warp_kernel(img, flow, out, C, H, W,
                 si_n, si_c, si_h, si_w, sf_n, sf_c, sf_h, sf_w, so_n, so_c, so_h, so_w,
                 BP: tl.constexpr, BC: tl.constexpr):
    n = tl.program_id(1).to(tl.int64)
    p = tl.program_id(0) * BP + tl.arange(0, BP)
    c = tl.program_id(2) * BC + tl.arange(0, BC)
    pm = p < H * W
    cm = c < C
    y = p // W
    x = p % W
    fbase = flow + n * sf_n + y.to(tl.int64) * sf_h + x.to(tl.int64) * sf_w
    fx = tl.load(fbase, mask=pm, other=0.0).to(tl.float32)
    fy = tl.load(fbase + sf_c, mask=pm, other=0.0).to(tl.float32)
    # warp(): grid = linspace(-1, 1, size) + flow / ((size - 1) / 2); grid_sample(align_corners=True)
    # maps g back to (g + 1) / 2 * (size - 1), and padding_mode="border" clips that to [0, size - 1].
    hw = (W - 1.0) / 2.0
    hh = (H - 1.0) / 2.0
    gx = (x.to(tl.float32) * (2.0 / (W - 1.0)) - 1.0) + fx / hw
    gy = (y.to(tl.float32) * (2.0 / (H - 1.0)) - 1.0) + fy / hh
    ix = tl.minimum(tl.maximum((gx + 1.0) / 2.0 * (W - 1.0), 0.0), W - 1.0)
    iy = tl.minimum(tl.maximum((gy + 1.0) / 2.0 * (H - 1.0), 0.0), H - 1.0)
    x0f = tl.floor(ix)
    y0f = tl.floor(iy)
    wx = ix - x0f
    wy = iy - y0f
    x0 = x0f.to(tl.int64)
    y0 = y0f.to(tl.int64)
    x1 = tl.minimum(x0 + 1, W - 1)  # its weight is 0 where it is clipped
    y1 = tl.minimum(y0 + 1, H - 1)
    m = pm[:, None] & cm[None, :]
    base = img + n * si_n + c.to(tl.int64)[None, :] * si_c
    v00 = tl.load(base + (y0 * si_h + x0 * si_w)[:, None], mask=m, other=0.0).to(tl.float32)
    v01 = tl.load(base + (y0 * si_h + x1 * si_w)[:, None], mask=m, other=0.0).to(tl.float32)
    v10 = tl.load(base + (y1 * si_h + x0 * si_w)[:, None], mask=m, other=0.0).to(tl.float32)
    v11 = tl.load(base + (y1 * si_h + x1 * si_w)[:, None], mask=m, other=0.0).to(tl.float32)
    wx = wx[:, None]
    wy = wy[:, None]
    v = (v00 * (1.0 - wx) + v01 * wx) * (1.0 - wy) + (v10 * (1.0 - wx) + v11 * wx) * wy
    o = out + n * so_n + c.to(tl.int64)[None, :] * so_c + (y.to(tl.int64) * so_h + x.to(tl.int64) * so_w)[:, None]
    tl.store(o, v.to(out.dtype.element_ty), mask=m)


def warp(img: torch.Tensor, flow: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """img (B, C, H, W) in any layout and float dtype, flow (B, 2, H, W) in pixels (any strides) ->
    img sampled at pixel + flow, channels-last, in `dtype` (default img's), computed in float32."""
    b, c, h, w = img.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(f"warp: image {tuple(img.shape)} and flow {tuple(flow.shape)} do not match")
    if h < 2 or w < 2:
        raise ValueError(f"warp: needs at least 2 x 2 pixels, got {h} x {w}")
    out = torch.empty((b, c, h, w), dtype=dtype or img.dtype, device=img.device, memory_format=torch.channels_last)
    bc = min(triton.next_power_of_2(c), MAX_BLOCK_CHANNELS)
    args = (img, flow, out, c, h, w, *img.stride(), *flow.stride(), *out.stride())
    with launching(img, args, ("warp", BLOCK_PIXELS, bc)):
        _warp_kernel[(triton.cdiv(h * w, BLOCK_PIXELS), b, triton.cdiv(c, bc))](*args, BP=BLOCK_PIXELS, BC=bc)
    return out
