"""The channels-last warp kernel (vfimamba.warp_triton) against vfimamba.warp.warp (grid_sample), and
the net's fast path that takes it for the backbone features.

Needs Triton and CUDA (skipped otherwise: CI is CPU-only); with TRITON_INTERPRET=1 and Triton
installed the kernel also runs here on the CPU through Triton's interpreter (the net takes it on
CUDA only).
"""
from __future__ import annotations

import pytest
import torch
from conftest import triton_device

DEVICE, HAS_CUDA, INTERPRET = triton_device()

from vfimamba import warp_triton  # noqa: E402
from vfimamba.warp import warp  # noqa: E402

# (batch, channels, height, width): channel counts below, at and above the channel block, odd sizes
SHAPES = [(1, 3, 9, 13), (2, 16, 20, 17), (1, 64, 8, 64), (2, 130, 11, 7), (1, 5, 2, 2)]


def _case(b, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed + b * 7 + c * 31 + h * w)
    img = torch.randn(b, c, h, w, generator=g)
    # flows of several pixels (positions outside the frame too: border padding) with fractions
    flow4 = torch.randn(b, 4, h, w, generator=g) * torch.tensor([w, h, w, h]).view(1, 4, 1, 1) * 0.3
    return img.to(DEVICE), flow4.to(DEVICE)


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_matches_grid_sample(shape):
    img, flow4 = _case(*shape)
    for flow in (flow4[:, 0:2], flow4[:, 2:4]):   # strided views of a 4-channel flow, as the net passes
        want = warp(img, flow)
        got = warp_triton.warp(img, flow)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert got.is_contiguous(memory_format=torch.channels_last)
        err = (got - want).abs().max().item()
        assert err <= 2e-5 * max(1.0, want.abs().max().item()), err


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_half_channels_last_rounds_grid_samples_result(shape):
    img, flow4 = _case(*shape, seed=1)
    half = img.half().contiguous(memory_format=torch.channels_last)
    want = warp(half.float(), flow4[:, 2:4])          # what grid_sample gives in float32
    got = warp_triton.warp(half, flow4[:, 2:4])
    assert got.dtype == torch.float16 and got.is_contiguous(memory_format=torch.channels_last)
    # computed in float32 and rounded once: within a unit in the last place of float16 (half of it
    # for the rounding, the rest for the float32 differences that can tip a value across a rounding
    # boundary: the sampling position is computed in another order than linspace's)
    ulp = torch.finfo(torch.float16).eps * want.abs().clamp(min=2 ** -14)
    assert torch.all((got.float() - want).abs() <= ulp + 2e-5)
    out32 = warp_triton.warp(half, flow4[:, 2:4], dtype=torch.float32)
    assert out32.dtype == torch.float32 and (out32 - want).abs().max().item() <= 2e-5 * max(1.0, want.abs().max().item())


def test_whole_pixel_flows_move_pixels_exactly():
    """A flow of whole pixels samples the source pixels themselves; past the border the edge pixel."""
    b, c, h, w = 1, 4, 6, 10
    img = torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w).to(DEVICE)
    flow = torch.zeros(b, 2, h, w, device=DEVICE)
    flow[:, 0] = 3.0    # x + 3
    flow[:, 1] = -2.0   # y - 2
    got = warp_triton.warp(img, flow)
    ys = (torch.arange(h) - 2).clamp(0, h - 1)
    xs = (torch.arange(w) + 3).clamp(0, w - 1)
    want = img.cpu()[:, :, ys][:, :, :, xs]
    # exactly those pixels but for the float32 rounding of the positions (which grid_sample has too)
    assert (got.cpu() - want).abs().max().item() <= 1e-4
    assert (warp(img, flow).cpu() - want).abs().max().item() <= 1e-4


def test_warp_checks_its_input():
    img, flow4 = _case(1, 3, 8, 8)
    with pytest.raises(ValueError, match="do not match"):
        warp_triton.warp(img, flow4)
    with pytest.raises(ValueError, match="2 x 2"):
        warp_triton.warp(img[:, :, :1], flow4[:, :2, :1])


@pytest.mark.skipif(not HAS_CUDA, reason="the net takes the kernel on CUDA only")
def test_net_fast_path_warps_features_with_the_kernel():
    """The fp16 fast path launches the kernel for the features (and PyTorch's grid_sample only for the
    images), and its output is within a level in 255 of the same path with grid_sample everywhere."""
    from torch.profiler import ProfilerActivity, profile

    from vfimamba.model import Config, VFIMambaNet
    torch.manual_seed(0)
    net = VFIMambaNet(Config(F=16)).to(DEVICE).eval()
    net.set_scan_backend("triton")
    net.set_fast(half_scan=True, channels_last=True)
    g = torch.Generator().manual_seed(4)
    imgs = torch.rand(1, 6, 64, 96, generator=g).to(DEVICE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            got = net(imgs, 0.5, local=True)[3]
            torch.cuda.synchronize()
        net.fused_warp = False
        want = net(imgs, 0.5, local=True)[3]
    names = [e.key for e in prof.key_averages()]
    assert sum(e.count for e in prof.key_averages() if "_warp_kernel" in e.key) == 10, names  # 5 levels x 2 frames
    d = (got - want).abs() * 255
    assert d.max().item() <= 1.0 and d.mean().item() <= 0.05, (d.max().item(), d.mean().item())


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA: the exported program runs the kernel")
def test_exported_fast_net_warps_features_with_the_operator():
    """In a traced graph (torch.export here, torch.compile alike) the channels-last path's feature
    warps are the `vfimamba::warp_features` operator that runs the kernel, not grid_sample with
    the copies to and from NCHW around it; the program gives the eager path's frame."""
    from vfimamba import export as vexport
    from vfimamba.model import Config, VFIMambaNet
    torch.manual_seed(0)
    net = VFIMambaNet(Config(F=16)).to(DEVICE).eval()
    net.set_scan_backend("triton")
    net.set_fast(channels_last=True)
    g = torch.Generator().manual_seed(4)
    imgs = torch.rand(1, 6, 64, 96, generator=g).to(DEVICE).contiguous(memory_format=torch.channels_last)
    t = torch.full((1,), 0.5, device=DEVICE)
    ep = vexport.export(net, imgs, t)
    targets = [str(n.target) for gm in ep.graph_module.modules() if isinstance(gm, torch.fx.GraphModule)
               for n in gm.graph.nodes if n.op == "call_function"]
    assert sum("vfimamba.warp_features" in s for s in targets) == 10, targets  # 5 levels x 2 frames
    assert sum("vfimamba.grid_sample" in s for s in targets) >= 4  # the images still: both, two levels or more
    assert net.opaque_warp is None
    with torch.no_grad():
        want = net(imgs, t, local=True)[3]
        got = ep.module()(imgs, t)
    assert got.shape == (1, 3, 64, 96)
    assert (got - want).abs().max().item() < 1e-5
