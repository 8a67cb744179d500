"""The fused bias + PReLU kernel (vfimamba.act_triton) and the ConvPReLU pairs that use it, against
PyTorch's ops.

Needs Triton and CUDA (skipped otherwise: CI is CPU-only); with TRITON_INTERPRET=1 and Triton
installed the kernel also runs here on the CPU through Triton's interpreter (the modules only take
it on CUDA). In float32 the kernel computes exactly what PyTorch does (one add, one product), so
the results must be equal bit for bit; in half precision it rounds once where PyTorch rounds twice.
"""
from __future__ import annotations


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import triton_device

DEVICE, HAS_CUDA, INTERPRET = triton_device()

from vfimamba import act_triton  # noqa: E402
from vfimamba.layers import ConvPReLU, conv_prelu, deconv_prelu  # noqa: E402

# channel counts below, at and above a power of two; sizes that do not fill a block of rows
SHAPES = [(2, 5, 7, 9), (1, 16, 16, 16), (2, 32, 13, 21), (1, 64, 9, 31), (1, 129, 5, 6), (2, 1024, 3, 4)]


def _tensors(n, c, h, w, dtype):
    g = torch.Generator().manual_seed(n * 1000 + c + h * w)
    y = torch.randn(n, c, h, w, generator=g).to(DEVICE, dtype).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(c, generator=g).to(DEVICE)
    slope = (torch.rand(c, generator=g) * 0.5).to(DEVICE)
    return y, bias, slope


@pytest.mark.parametrize("shape", SHAPES)
def test_bias_prelu_float32_is_pytorchs(shape):
    y, bias, slope = _tensors(*shape, torch.float32)
    want = F.prelu(y + bias.view(1, -1, 1, 1), slope)
    got = act_triton.bias_prelu_(y.clone(memory_format=torch.channels_last), bias, slope)
    assert torch.equal(got, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_bias_prelu_half_rounds_once(shape):
    y, bias, slope = _tensors(*shape, torch.float16)
    exact = F.prelu(y.float() + bias.view(1, -1, 1, 1), slope)
    got = act_triton.bias_prelu_(y.clone(memory_format=torch.channels_last), bias, slope)
    assert got.dtype == torch.float16
    assert torch.equal(got, exact.half())           # computed in float32, rounded once
    pytorch = F.prelu(y + bias.half().view(1, -1, 1, 1), slope.half())
    assert torch.allclose(got.float(), pytorch.float(), rtol=2e-3, atol=2e-3)


def test_bias_prelu_works_in_place_and_checks_its_input():
    y, bias, slope = _tensors(1, 8, 4, 4, torch.float32)
    assert act_triton.bias_prelu_(y, bias, slope) is y
    with pytest.raises(ValueError, match="channels-last"):
        act_triton.bias_prelu_(torch.zeros(1, 8, 4, 4, device=DEVICE), bias, slope)
    with pytest.raises(ValueError, match="8 channels"):
        act_triton.bias_prelu_(y, bias[:4], slope)


@pytest.mark.skipif(not HAS_CUDA, reason="the modules take the kernel on CUDA only")
@pytest.mark.parametrize("make", [lambda: conv_prelu(12, 24), lambda: conv_prelu(24, 5, 3, 2, 1),
                                  lambda: deconv_prelu(16, 8),
                                  lambda: ConvPReLU(nn.Conv2d(3, 8, 3, 1, 1), nn.PReLU(8), nn.Conv2d(8, 8, 3, 1, 1),
                                                    nn.PReLU(8)),
                                  lambda: ConvPReLU(nn.Conv2d(4, 8, 3, 1, 2, dilation=2, groups=2), nn.PReLU(8),
                                                    nn.ConvTranspose2d(8, 6, 3, 2, 1, output_padding=1, groups=2),
                                                    nn.PReLU(6))])
def test_conv_prelu_modules_fused_on_cuda(make):
    """The fast path (channels-last weights, no gradients) gives PyTorch's values through the kernel,
    which it really launches; with fused_act off, or off the fast path, PyTorch's ops run."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    m = make().to(DEVICE).to(memory_format=torch.channels_last)
    for p in m.parameters():
        p.data.uniform_(-0.5, 0.5)
    cin = next(iter(m)).in_channels
    x = torch.randn(2, cin, 19, 27, device=DEVICE).contiguous(memory_format=torch.channels_last)
    m.fuse_min_elements = 0  # these small tensors take the kernel too (as in a graphed forward)
    with torch.no_grad():
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            got = m(x)
            torch.cuda.synchronize()
        m.fused_act = False
        want = m(x)
        m.fused_act = True
        with torch.autocast("cuda", dtype=torch.float16):
            got16 = m(x)
            m.fused_act = False
            want16 = m(x)
    names = [e.key for e in prof.key_averages()]
    assert any("bias_prelu" in k for k in names), names
    assert not any("prelu_kernel" in k and "bias_prelu" not in k for k in names), names  # PyTorch's
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
    assert torch.allclose(got16.float(), want16.float(), rtol=1e-2, atol=1e-2), (got16.float() - want16.float()).abs().max()
