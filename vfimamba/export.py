"""The net as one exported graph (torch.export), the input of an ahead-of-time compilation
(AOTInductor) whose package a later process loads without tracing the net again.

torch.export traces every op, and two of the net's cannot be traced as they are: the selective
scan (its Triton, C++ and mamba_ssm kernels run outside PyTorch's ops, and the PyTorch one picks
its chunk sizes from the data) and the warps' grid_sample (traceable, but Inductor's own gather
for it was slower than PyTorch's CUDA kernel). While `export()` traces, both are custom operators
(`vfimamba::selective_scan`, `vfimamba::grid_sample`) with shape-only fake implementations: the
graph calls them by name, whichever backend the net's scan uses, so a process that runs a package
built from it must have them registered first (`register_ops()`). Where Triton runs, SS2D's two
layout kernels (layout_triton: the four-direction cross-scan and the merge) are operators too
(`vfimamba::cross_scan`, `vfimamba::cross_merge`): the compiler cannot trace a Triton launch, and
fused the PyTorch ops of the merge, with the LayerNorm after them, into a gather of 2.4 ms a
VFIMamba 720p frame on an H100, against the kernel's 0.6 ms. So is warp_triton's channels-last
feature warp (`vfimamba::warp_features`), which spares grid_sample's copies to and from float32
NCHW around each of the ten feature warps.

Defining and calling custom operators imports TorchDynamo and the rest of the compiler stack
(seconds), so the eager path never imports this module.
"""
from __future__ import annotations

import contextlib
import functools
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from . import scan
from .backbone import SS2D
from .errors import VFIMambaError
from .layers import triton_kernels
from .model import VFIMambaNet

NAMESPACE = "vfimamba"


@functools.cache
def register_ops() -> SimpleNamespace:
    """Register the operators (once per process: torch's operator registry is process-wide and
    refuses a second definition) and return stand-ins for scan.selective_scan and F.grid_sample
    with their signatures that call them, `layout`: the cross_scan and cross_merge that SS2D
    traces, and `feature_warp`: the warp the net's fast path traces for its backbone features
    (each None where Triton is missing: the PyTorch ops are traced then)."""

    @torch.library.custom_op(f"{NAMESPACE}::selective_scan", mutates_args=())
    def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor, delta_bias: torch.Tensor, delta_softplus: bool, backend: str,
                       out_dtype: torch.dtype) -> torch.Tensor:
        return scan.selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus, backend, out_dtype=out_dtype)

    @selective_scan.register_fake
    def _(u, delta, A, B, C, D, delta_bias, delta_softplus, backend, out_dtype):
        return u.new_empty(u.shape, dtype=out_dtype)  # (b, d, l), as selective_scan returns

    @torch.library.custom_op(f"{NAMESPACE}::grid_sample", mutates_args=())
    def grid_sample(img: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str,
                    align_corners: bool) -> torch.Tensor:
        return F.grid_sample(img, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)

    @grid_sample.register_fake
    def _(img, grid, mode, padding_mode, align_corners):
        return img.new_empty((img.shape[0], img.shape[1], grid.shape[1], grid.shape[2]))

    @torch.library.custom_op(f"{NAMESPACE}::cross_scan", mutates_args=())
    def cross_scan(x: torch.Tensor) -> torch.Tensor:
        return triton_kernels("layout_triton").cross_scan(x)

    @cross_scan.register_fake
    def _(x):
        b2, d, h, w = x.shape
        return x.new_empty((b2 // 2, 4, d, 2 * h * w))

    @torch.library.custom_op(f"{NAMESPACE}::cross_merge", mutates_args=())
    def cross_merge(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return triton_kernels("layout_triton").cross_merge(y, h, w)

    @cross_merge.register_fake
    def _(y, h, w):
        return y.new_empty((2 * y.shape[0], h, w, y.shape[2]))

    @torch.library.custom_op(f"{NAMESPACE}::warp_features", mutates_args=())
    def warp_features(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return triton_kernels("warp_triton").warp(img, flow)

    @warp_features.register_fake
    def _(img, flow):
        return torch.empty_like(img, memory_format=torch.channels_last)  # warp_triton's output layout

    # the Triton kernels where Triton is there to run them (else the PyTorch ops are traced)
    layout = (SimpleNamespace(cross_scan=_cross_scan_op, cross_merge=_cross_merge_op)
              if triton_kernels("layout_triton") else None)
    feature_warp = SimpleNamespace(warp=_warp_features_op) if triton_kernels("warp_triton") else None
    return SimpleNamespace(selective_scan=_scan_op, grid_sample=_sampler_op, layout=layout, feature_warp=feature_warp)


# The stand-ins call the operators by name from module-level functions, not through the objects
# that defined them: a saved compiled function pickles what the traced net refers to, and the
# operators' definitions hold torch's registration handle, which cannot be pickled.
def _scan_op(u, delta, A, B, C, D, delta_bias, delta_softplus=True, backend="auto", out_dtype=torch.float32):
    return torch.ops.vfimamba.selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus, backend, out_dtype)


def _sampler_op(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    return torch.ops.vfimamba.grid_sample(img, grid, mode, padding_mode, align_corners)


def _cross_scan_op(x):
    return torch.ops.vfimamba.cross_scan(x)


def _cross_merge_op(y, h, w):
    return torch.ops.vfimamba.cross_merge(y, h, w)


def _warp_features_op(img, flow):
    return torch.ops.vfimamba.warp_features(img, flow)


@contextlib.contextmanager
def opaque_ops(net: VFIMambaNet):
    """For the duration: `net`'s scans and warps go through the custom operators (this net only;
    what it used before comes back afterwards, also on an error)."""
    ops = register_ops()
    blocks = [m for m in net.modules() if isinstance(m, SS2D)]
    saved = [(m.opaque_scan, m.opaque_layout) for m in blocks], net.sampler, net.opaque_warp
    for m in blocks:
        m.opaque_scan, m.opaque_layout = ops.selective_scan, ops.layout
    net.sampler, net.opaque_warp = ops.grid_sample, ops.feature_warp
    try:
        yield
    finally:
        for m, s in zip(blocks, saved[0]):
            m.opaque_scan, m.opaque_layout = s
        net.sampler, net.opaque_warp = saved[1:]


class _Forward(torch.nn.Module):
    """imgs (P, 6, H, W), timestep (P * repeats,) -> the interpolated frames (P * repeats, 3, H, W),
    as predict() runs the net, under autocast to `autocast_dtype` when one is given."""

    def __init__(self, net: VFIMambaNet, scale: float, autocast_dtype: torch.dtype | None, repeats: int = 1,
                 own_autocast: bool = False):
        super().__init__()
        self.net, self.scale, self.repeats = net, scale, repeats
        # own_autocast: a float32 forward opens a disabled autocast region of its own, so that it
        # computes the same under any autocast of the caller (compiled.py traces it under one).
        self.own_autocast = own_autocast
        # The dtype is kept by its name: a saved compiled function (compiled.py) pickles this module,
        # and torch's pickler of its guards saves a module's plain attributes as "missing" by their
        # identity, so a torch.dtype kept here would blank that dtype in every tensor saved with it
        # (the file then fails to load: "argument 'dtype' must be torch.dtype, not _Missing").
        self.autocast_name = None if autocast_dtype is None else str(autocast_dtype).removeprefix("torch.")

    def forward(self, imgs, timestep):
        if self.autocast_name is not None:
            ctx = torch.autocast(imgs.device.type, dtype=getattr(torch, self.autocast_name))
        elif self.own_autocast:
            ctx = torch.autocast(imgs.device.type, enabled=False)
        else:
            ctx = contextlib.nullcontext()  # a disabled autocast would still be traced as a region
        with ctx:
            return self.net(imgs, timestep, scale=self.scale, local=True, repeats=self.repeats)[3]


def export(net: VFIMambaNet, imgs: torch.Tensor, timestep: torch.Tensor, *, scale: float = 0.0,
           autocast_dtype: torch.dtype | None = None) -> torch.export.ExportedProgram:
    """The forward for inputs shaped like `imgs` and `timestep` (fixed shapes: one program per frame
    size and batch), as one graph with the scans and warps as `vfimamba::` operators. The net's
    fast-path switches (set_fast) are traced as they are set."""
    if imgs.dim() != 4 or imgs.shape[1] != 6 or timestep.dim() != 1:
        raise VFIMambaError(f"export: expected imgs (P, 6, H, W) and timestep (P,), got {tuple(imgs.shape)} "
                            f"and {tuple(timestep.shape)}")
    training = net.training
    try:
        with opaque_ops(net), torch.no_grad():
            return torch.export.export(_Forward(net.eval(), scale, autocast_dtype), (imgs, timestep))
    finally:
        net.train(training)
