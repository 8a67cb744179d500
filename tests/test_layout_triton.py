"""SS2D's fused layout kernels (vfimamba.layout_triton) against the PyTorch ops they replace.

Needs Triton and CUDA (skipped otherwise: CI is CPU-only); with TRITON_INTERPRET=1 and Triton
installed the kernels also run here on the CPU through Triton's interpreter. The cross-scan only
moves elements and the merge adds the four directions in the same order, so the results must be
equal bit for bit.
"""
from __future__ import annotations

import re

import pytest
import torch
from conftest import triton_device

DEVICE, HAS_CUDA, INTERPRET = triton_device()
import triton  # noqa: E402  (triton_device has skipped the module where it is missing)
if tuple(int(v) for v in re.findall(r"\d+", triton.__version__)[:2]) < (3, 3):  # see layout_triton.MIN_TRITON
    pytest.skip(f"layout_triton needs Triton 3.3 or newer (have {triton.__version__})", allow_module_level=True)

from vfimamba import layout_triton  # noqa: E402
from vfimamba.backbone import SS2D, VSSBlock  # noqa: E402

# Sizes that are and are not multiples of the tiles (16 x 32 or 16 x 16 pixels, 16-channel blocks).
SHAPES = [(1, 16, 16, 32), (2, 40, 13, 21), (1, 64, 23, 9), (1, 32, 8, 8), (1, 16, 17, 70)]


def _x(pairs, d, h, w, dtype, channels_last):
    g = torch.Generator().manual_seed(pairs * 1000 + d + h * w)
    x = torch.randn(2 * pairs, d, h, w, generator=g).to(DEVICE, dtype)
    # every element different (in float32; nearly all in float16), so that a misplaced one shows
    x += torch.arange(x.numel(), dtype=torch.float32).view(x.shape).to(DEVICE, dtype) * 1e-3
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cross_scan_is_the_torch_layout(shape, dtype, channels_last):
    x = _x(*shape, dtype, channels_last)
    got = layout_triton.cross_scan(x)
    want = SS2D._cross_scan_torch(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(got, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_cross_merge_is_the_torch_merge(shape):
    pairs, d, h, w = shape
    g = torch.Generator().manual_seed(d * h + w)
    y = torch.randn(pairs, 4, d, 2 * h * w, generator=g).to(DEVICE)
    got = layout_triton.cross_merge(y, h, w)
    want = SS2D._merge_torch(y, h, w)
    assert got.shape == want.shape == (2 * pairs, h, w, d)
    assert torch.equal(got, want)


def test_merge_undoes_the_scan_as_the_official_code_does():
    """Scanning, then merging, each direction's copy of a pixel lands back where the official
    (not exactly inverse) un-scan puts it; for the row-major directions that is the pixel itself."""
    x = _x(1, 32, 6, 10, torch.float32, False)
    xs = layout_triton.cross_scan(x)
    keep = torch.zeros_like(xs)
    keep[:, 0] = xs[:, 0]
    keep[:, 2] = xs[:, 2]
    back = layout_triton.cross_merge(keep, 6, 10)
    assert torch.equal(back, 2 * x.permute(0, 2, 3, 1))


@pytest.mark.skipif(not HAS_CUDA, reason="SS2D picks the kernels for CUDA tensors only")
def test_block_uses_the_kernels_and_matches_the_torch_path():
    from torch.profiler import ProfilerActivity, profile
    torch.manual_seed(0)
    block = VSSBlock(32).to(DEVICE).eval()
    block.self_attention.scan_backend = "triton"
    x = torch.randn(2, 32, 11, 7, device=DEVICE)
    with torch.no_grad():
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fused = block(x)
            torch.cuda.synchronize()
        block.self_attention.fused_layout = False
        plain = block(x)
    names = {e.key for e in prof.key_averages()}
    assert any("_cross_scan_kernel" in n for n in names) and any("_cross_merge_kernel" in n for n in names)
    assert torch.equal(fused, plain)


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA: the exported program runs the layout kernels")
def test_exported_net_calls_the_layout_kernels_as_operators():
    """In a traced graph (torch.export here, torch.compile alike) SS2D's cross-scan and merge are the
    `vfimamba::` operators that run these kernels, once per block each, not the PyTorch ops that
    the compiler would fuse into slower gathers; the program gives the net's own float32 frame."""
    from vfimamba import export as vexport
    from vfimamba.model import Config, VFIMambaNet
    torch.manual_seed(3)
    net = VFIMambaNet(Config(F=8)).eval().cuda()
    net.set_scan_backend("triton")
    g = torch.Generator().manual_seed(0)
    img0 = torch.rand(1, 3, 64, 96, generator=g)
    x, t = torch.cat([img0, torch.roll(img0, 2, dims=3)], 1).cuda(), torch.full((1,), 0.5, device="cuda")
    ep = vexport.export(net, x, t)
    targets = [str(n.target) for gm in ep.graph_module.modules() if isinstance(gm, torch.fx.GraphModule)
               for n in gm.graph.nodes if n.op == "call_function"]
    blocks = sum(isinstance(m, SS2D) for m in net.modules())
    assert sum("vfimamba.cross_scan" in s for s in targets) == blocks
    assert sum("vfimamba.cross_merge" in s for s in targets) == blocks
    assert not any("aten.flip" in s for s in targets)  # the PyTorch layout's flips are gone
    assert all(m.opaque_layout is None for m in net.modules() if isinstance(m, SS2D))
    with torch.no_grad():
        want = net(x, t, scale=0, local=True)[3]
        got = ep.module()(x, t)
    assert got.shape == (1, 3, 64, 96)
    assert (got - want).abs().max().item() < 1e-5
