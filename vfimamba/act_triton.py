"""A convolution's bias and the PReLU after it, as one Triton pass over channels-last memory.

Every convolution of the flow heads, the IFBlocks, the U-Net and the backbone's convolutional
stages is followed by a per-channel PReLU. On the GPU's fast path (channels-last activations)
PyTorch spends two passes on what follows the convolution: the bias added by a broadcast kernel,
then PReLU's generic strided kernel (a per-channel weight over channels-last memory is not a
vectorisable pattern for it). Both are elementwise over the same tensor, 46 pairs a VFIMamba frame.
Here the convolution runs without its bias and one kernel adds the bias and applies the PReLU in
place, reading and writing each element once, in float32 and rounded once to the tensor's dtype.

A channels-last (N, C, H, W) tensor is an (N*H*W, C) row-major matrix in memory, so each program
takes a block of rows, all channels at once, with the bias and slope loaded once per program.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_launch import launching

__all__ = ["bias_prelu_"]

# Elements per program: big enough that each program streams several KB, small enough that the
# 720p tensors (100-200 MB) still give every multiprocessor many programs.
BLOCK_ELEMENTS = 4096


@triton.jit
def _bias_prelu_kernel(y_ptr, bias_ptr, slope_ptr, rows, C, BR: tl.constexpr, BC: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    c = tl.arange(0, BC)
    cm = c < C
    mask = (r[:, None] < rows) & cm[None, :]
    offs = r[:, None] * C + c[None, :]
    b = tl.load(bias_ptr + c, mask=cm, other=0.0).to(tl.float32)
    a = tl.load(slope_ptr + c, mask=cm, other=0.0).to(tl.float32)
    v = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32) + b[None, :]
    v = tl.where(v >= 0, v, v * a[None, :])
    tl.store(y_ptr + offs, v.to(y_ptr.dtype.element_ty), mask=mask)


def bias_prelu_(y: torch.Tensor, bias: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """In place: y <- prelu(y + bias, slope), y (N, C, H, W) channels-last contiguous; bias and slope
    (C,) in any float dtype. Returns y."""
    n, c, h, w = y.shape
    if not y.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("bias_prelu_: y must be channels-last contiguous")
    if bias.numel() != c or slope.numel() != c:
        raise ValueError(f"bias_prelu_: {c} channels, bias {bias.numel()}, slope {slope.numel()}")
    rows = n * h * w
    bc = triton.next_power_of_2(c)
    br = max(1, BLOCK_ELEMENTS // bc)
    args = (y, bias.contiguous(), slope.contiguous(), rows, c)
    with launching(y, args, ("bias prelu", br, bc)):
        _bias_prelu_kernel[(triton.cdiv(rows, br),)](*args, BR=br, BC=bc)
    return y

