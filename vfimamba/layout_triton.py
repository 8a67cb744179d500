"""SS2D's layout work as two Triton kernels: the four-direction cross-scan of the interleaved frame
pair, and the merge of the four scanned directions back into channels-last images.

In PyTorch ops (backbone.SS2D._cross_scan_torch and _merge_torch) each is about ten passes over
tensors of 60-240 MB per call at 720p: interleave, transpose, stack, flip and cat on the way in;
two flips, the un-scan, three adds, a transpose and a cat on the way out. Each kernel here reads
every element once and writes it once to each place it goes, with the very same values (the
cross-scan only moves elements; the merge adds the four directions in the same order, in the
same precision). Tiles are 2-D in the image, rows x columns, so that the row-major and the
column-major directions both come in runs rather than one element at a time.

Index maps (b pairs, d channels, an H x W image per frame, L = 2HW; frame f of pair i is image
f*b + i; position p = h*W + w):
  cross-scan  xs[i, 0, :, 2p + f]          = x[f*b + i, :, h, w]
              xs[i, 1, :, 2(w*H + h) + f]  = the same element (column-major)
              xs[i, 2 or 3, :, L-1-l]      = xs[i, 0 or 1, :, l] (both reversed)
  merge       m[l] = y0[l] + y2[L-1-l] + y1[g(l)] + y3[L-1-g(l)], with l = s*HW + h*W + w
              (s in {0, 1}) and g(l) = s*HW + w*H + h: the official un-scan of the column-major
              directions, which views each half of the sequence as a W x H block and transposes
              it (the weights were trained with it); then out[f*b + i, p, :] = m[2p + f].
"""
from __future__ import annotations

import re

import torch
import triton
import triton.language as tl

from .triton_launch import launching

__all__ = ["cross_scan", "cross_merge"]

# The cross-scan reverses blocks with tl.flip, which moves bits exactly from Triton 3.3 on. Before,
# it multiplied by 0 or 1 and summed in the values' own float type, which turns -0 into +0 and
# inf into NaN. With an older Triton this module refuses to load (layers.triton_kernels then gives
# None) and SS2D keeps its PyTorch layout ops: the same values, more passes.
MIN_TRITON = (3, 3)
if tuple(int(v) for v in re.findall(r"\d+", triton.__version__)[:2]) < MIN_TRITON:
    raise ImportError(f"layout_triton needs Triton {'.'.join(map(str, MIN_TRITON))} or newer "
                      f"(have {triton.__version__})")

# A tile: 16 x 16 pixels of 16 channels for the merge (the fastest of the sizes tried on an H200 at
# VFIMamba's stage-3 and stage-4 shapes of 720p and 1080p); the cross-scan takes 16 x 32 pixels
# with 8 warps (the fastest of 32 variants: 16 or 32 channels, rows, columns, 4 or 8 warps, flips
# or reversed reads; H100, 720p stages 3 and 4: 153 and 98 us against 205 and 110 for 16 x 16, 4 warps).
TILE_H, TILE_W, BLOCK_D = 16, 16, 16
SCAN_TILE_W, SCAN_WARPS = 32, 8


@triton.jit
def _store_runs(x0, x1, fwd, rev, dm, L, a0, A, sa, b0, NB, sb,
                BD: tl.constexpr, TA: tl.constexpr, TB: tl.constexpr):
    """One direction pair of the cross-scan for a tile: a (channel, a, b) block of both frames,
    where b is the image axis along which the direction runs (w for the row-major ones, h for the
    column-major ones: NB pixels, stride sb) and a the other (A pixels, stride sa). Each (channel, a)
    is one run of 2 * TB consecutive positions, the frame fastest, stored at `fwd` and, flipped, at
    `rev` (the reversed direction), both at a base plus an arange."""
    a = a0 + tl.arange(0, TA)[None, :, None]
    b = b0 + tl.arange(0, TB)[None, None, :]
    k = tl.arange(0, 2 * TB)[None, None, :]
    mask = dm & (a < A) & (b < NB)
    src = a * sa + b * sb
    v = tl.reshape(tl.join(tl.load(x0 + src, mask=mask), tl.load(x1 + src, mask=mask)), (BD, TA, 2 * TB))
    start = 2 * (a * NB + b0)
    tl.store(fwd + start + k, v, mask=dm & (a < A) & (b0 + k // 2 < NB))
    tl.store(rev + (L - 2 * TB - start) + k, tl.flip(v, 2), mask=dm & (a < A) & (b0 + (2 * TB - 1 - k) // 2 < NB))


@triton.jit
def _cross_scan_kernel(x_ptr, xs_ptr, B, D, H, W, sx0, sx1, sx2, sx3,
                       BD: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
    tile = tl.program_id(0)
    pid_d = tl.program_id(1)
    pair = tl.program_id(2).to(tl.int64)
    tiles_w = tl.cdiv(W, TW)
    h0 = (tile // tiles_w) * TH
    w0 = (tile % tiles_w) * TW
    d = pid_d * BD + tl.arange(0, BD)
    dm = (d < D)[:, None, None]
    L = 2 * H * W
    x0 = x_ptr + pair * sx0 + d[:, None, None].to(tl.int64) * sx1    # frame 0 of the pair
    x1 = x_ptr + (pair + B) * sx0 + d[:, None, None].to(tl.int64) * sx1  # frame 1 (64-bit: any batch)
    out = xs_ptr + pair * 4 * D * L + d[:, None, None].to(tl.int64) * L
    # Each direction's part of the tile is, per channel and image row (or column), one run of
    # consecutive positions: both frames' values joined, frame fastest, stored as one block whose
    # offsets are a base plus an arange, so that the compiler sees the runs and writes vectors; the
    # reversed directions store the block flipped, again at ascending addresses. (The first version
    # computed each element's position from a flat index, which hid the runs: 1.5x the time.)
    # Row-major (directions 0 and 2), then column-major (1 and 3) with the tile read again (from the cache).
    _store_runs(x0, x1, out, out + 2 * D * L, dm, L, h0, H, sx2, w0, W, sx3, BD, TH, TW)
    _store_runs(x0, x1, out + D * L, out + 3 * D * L, dm, L, w0, W, sx3, h0, H, sx2, BD, TW, TH)


@triton.jit
def _cross_merge_kernel(y_ptr, o_ptr, B, D, H, W,
                        BD: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
    tile = tl.program_id(0)
    pid_d = tl.program_id(1)
    pair = tl.program_id(2).to(tl.int64)
    tiles_w = tl.cdiv(W, TW)
    tiles = tl.cdiv(H, TH) * tiles_w
    half = tile // tiles                     # s: which half of the sequence
    tile = tile % tiles
    d = pid_d * BD + tl.arange(0, BD)
    t = tl.arange(0, TH * TW)
    h = (tile // tiles_w) * TH + t // TW
    w = (tile % tiles_w) * TW + t % TW
    mask = (d[:, None] < D) & ((h < H) & (w < W))[None, :]
    HW = H * W
    L = 2 * HW
    l = half * HW + h * W + w
    g = half * HW + w * H + h
    y = y_ptr + pair * 4 * D * L + d[:, None].to(tl.int64) * L
    v = tl.load(y + l[None, :], mask=mask)
    v += tl.load(y + 2 * D * L + (L - 1 - l)[None, :], mask=mask)
    v += tl.load(y + D * L + g[None, :], mask=mask)
    v += tl.load(y + 3 * D * L + (L - 1 - g)[None, :], mask=mask)
    image = (l % 2).to(tl.int64) * B + pair
    dst = o_ptr + image[None, :] * HW * D + (l // 2)[None, :].to(tl.int64) * D + d[:, None]
    tl.store(dst, v, mask=mask)


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """x: (2b, d, H, W), [frame0 images; frame1 images], any strides -> xs (b, 4, d, 2HW).
    Offsets within one pair are 32-bit: 6 * d * H * W must stay below 2**31 (backbone checks)."""
    b2, d, h, w = x.shape
    b = b2 // 2
    xs = torch.empty((b, 4, d, 2 * h * w), dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(h, TILE_H) * triton.cdiv(w, SCAN_TILE_W), triton.cdiv(d, BLOCK_D), b)
    args = (x, xs, b, d, h, w, *x.stride())
    with launching(x, args, ("cross scan", BLOCK_D, TILE_H, SCAN_TILE_W, SCAN_WARPS)):
        _cross_scan_kernel[grid](*args, BD=BLOCK_D, TH=TILE_H, TW=SCAN_TILE_W, num_warps=SCAN_WARPS)
    return xs


def cross_merge(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """y: (b, 4, d, 2HW) contiguous, the scanned directions -> (2b, H, W, d) contiguous, same dtype."""
    b, k, d, length = y.shape
    if k != 4 or length != 2 * h * w:
        raise ValueError(f"cross_merge: expected (b, 4, d, {2 * h * w}), got {tuple(y.shape)}")
    y = y.contiguous()
    out = torch.empty((2 * b, h, w, d), dtype=y.dtype, device=y.device)
    grid = (2 * triton.cdiv(h, TILE_H) * triton.cdiv(w, TILE_W), triton.cdiv(d, BLOCK_D), b)
    args = (y, out, b, d, h, w)
    with launching(y, args, ("cross merge", BLOCK_D, TILE_H, TILE_W)):
        _cross_merge_kernel[grid](*args, BD=BLOCK_D, TH=TILE_H, TW=TILE_W)
    return out
