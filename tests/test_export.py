"""vfimamba.export: the net as one exported graph whose scans and warps are named operators."""
import pytest
import torch

from vfimamba.backbone import SS2D
from vfimamba.errors import VFIMambaError
from vfimamba.model import Config, VFIMambaNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(3)
    return VFIMambaNet(Config(F=8)).eval()


def _pair(seed=0, h=64, w=96):
    g = torch.Generator().manual_seed(seed)
    img0 = torch.rand(1, 3, h, w, generator=g)
    return torch.cat([img0, torch.roll(img0, 2, dims=3)], 1)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_exported_forward_matches_the_net(net, backend):
    """The program gives the net's own frame (exact float32 path) on the traced inputs and on new
    ones, calls the scan operator once per SS2D block and the warp operator for every warp, and
    leaves the net as it was."""
    from vfimamba import export as vexport
    from vfimamba.scan import available_backends
    if backend not in available_backends("cpu"):
        pytest.skip(f"scan backend {backend!r} not available here")
    net.set_scan_backend(backend)
    x, t = _pair(0), torch.full((1,), 0.5)
    ep = vexport.export(net, x, t)
    targets = [str(n.target) for g in ep.graph_module.modules() if isinstance(g, torch.fx.GraphModule)
               for n in g.graph.nodes if n.op == "call_function"]  # autocast regions are subgraphs
    blocks = sum(isinstance(m, SS2D) for m in net.modules())
    assert sum("vfimamba.selective_scan" in s for s in targets) == blocks
    assert sum("vfimamba.grid_sample" in s for s in targets) >= 4  # both frames, at least two levels
    assert not any("aten.grid_sampler" in s for s in targets)
    assert all(m.opaque_scan is None and m.opaque_layout is None for m in net.modules() if isinstance(m, SS2D))
    assert net.sampler is torch.nn.functional.grid_sample and net.opaque_warp is None
    run = ep.module()
    with torch.no_grad():
        for seed, ts in ((0, 0.5), (1, 0.25)):
            x, t = _pair(seed), torch.full((1,), ts)
            want = net(x, t, scale=0, local=True)[3]
            got = run(x, t)
            assert got.shape == (1, 3, 64, 96)
            assert (got - want).abs().max().item() < 1e-5, (seed, ts)
    assert not torch.equal(run(_pair(0), torch.full((1,), 0.5)), run(_pair(1), torch.full((1,), 0.5)))


def test_export_restores_the_net_after_an_error(net):
    from vfimamba import export as vexport
    blocks = [m for m in net.modules() if isinstance(m, SS2D)]
    # what the blocks held before (not None: the operators are None where Triton is missing)
    marks = [(object(), object()) for _ in blocks]
    warp_mark = object()
    for m, (scan_mark, layout_mark) in zip(blocks, marks):
        m.opaque_scan, m.opaque_layout = scan_mark, layout_mark
    net.opaque_warp = warp_mark
    try:
        with pytest.raises(Exception):
            vexport.export(net, torch.rand(1, 6, 64, 90), torch.full((1,), 0.5))  # 90: not a multiple of 32
        assert all(m.opaque_scan is s and m.opaque_layout is lay for m, (s, lay) in zip(blocks, marks))
        assert net.opaque_warp is warp_mark
    finally:
        for m in blocks:
            m.opaque_scan = m.opaque_layout = None
        net.opaque_warp = None
    assert net.sampler is torch.nn.functional.grid_sample


def test_export_rejects_wrong_shapes(net):
    from vfimamba import export as vexport
    with pytest.raises(VFIMambaError, match=r"expected imgs \(P, 6, H, W\) and timestep \(P,\), got \(1, 3, 64, 96\)"):
        vexport.export(net, torch.rand(1, 3, 64, 96), torch.full((1,), 0.5))


def test_exported_autocast_region_keeps_the_operators(net):
    """Under autocast the traced region is a subgraph; the scans and warps are the operators there,
    and the program gives what the net gives under the same autocast."""
    from vfimamba import export as vexport
    net.set_scan_backend("torch")
    x, t = _pair(2), torch.full((1,), 0.5)
    ep = vexport.export(net, x, t, autocast_dtype=torch.bfloat16)
    targets = [str(n.target) for g in ep.graph_module.modules() if isinstance(g, torch.fx.GraphModule)
               for n in g.graph.nodes if n.op == "call_function"]
    assert sum("vfimamba.selective_scan" in s for s in targets) == sum(isinstance(m, SS2D) for m in net.modules())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = net(x, t, scale=0, local=True)[3].float()
    got = ep.module()(x, t).float()
    assert (got - want).abs().max().item() < 1e-3
