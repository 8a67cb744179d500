"""VFIMamba: the whole network (backbone -> coarse flow heads -> local IFBlocks -> U-Net refiner).

Attribute names (feature_bone, block, local_block, unet) are those of the official state dict.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import CAB, SS2D, FeatureExtractor
from .layers import FUSE_MIN_ELEMENTS, TRITON_BACKENDS, ConvPReLU, triton_kernels
from .flow import Head, IFBlock
from .refine import Unet
from .warp import warp


@dataclass(frozen=True)
class Config:
    F: int = 16
    depths: tuple = (2, 2, 2, 3, 3)
    local_num: int = 2

    @property
    def dims(self):
        return tuple(self.F * 2 ** i for i in range(len(self.depths)))

    @property
    def name(self):
        return {16: "VFIMamba_S", 32: "VFIMamba"}.get(self.F, f"VFIMamba_F{self.F}")


def _rounds_to(master: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether half-precision parameter `p` holds `master` rounded to its dtype, in whatever layout
    or device: then `master` is the float32 value behind it. Values loaded into `p` since (or a
    new tensor put in its place) are not, whatever memory they share with what was there."""
    return (p.dtype != torch.float32 and master.shape == p.shape
            and torch.equal(master.to(device=p.device, dtype=p.dtype), p.data))


def _merge(img0, img1, flow, mask, sampler):
    """Both frames warped by their halves of the flow, the mask squashed to a weight, and their blend."""
    m = torch.sigmoid(mask)
    warped0, warped1 = warp(img0, flow[:, :2], sampler), warp(img1, flow[:, 2:4], sampler)
    return warped0, warped1, m, warped0 * m + warped1 * (1 - m)


def _resize(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class VFIMambaNet(nn.Module):
    def __init__(self, cfg: Config = Config()):
        super().__init__()
        self.cfg = cfg
        dims, n = cfg.dims, len(cfg.depths)
        self.feature_bone = FeatureExtractor(dims, cfg.depths, conv_stages=3)
        # Coarse heads from the deepest features: stride 16 then 8. The first sees img0, img1, t (7
        # channels); later ones add both warped images, the mask logit and the current flow (18).
        scales = [4 * 2 ** i for i in range(n - 2)]  # [4, 8, 16]
        self.flow_num_stage = n - 3
        self.block = nn.ModuleList(
            Head(dims[-1 - i], scales[-1 - i], 4 * cfg.F, 7 if i == 0 else 18) for i in range(self.flow_num_stage))
        self.local_block = nn.ModuleList(IFBlock(17, 4 * cfg.F, scale=2 - i) for i in range(cfg.local_num))
        self.unet = Unet(2 * cfg.F)
        self.sampler = F.grid_sample  # what warps sample with (export.opaque_ops swaps it)
        self.channels_last = False    # set_fast
        self.fused_warp = True        # the feature warps through warp_triton where it can run (set_scan_backend)
        self.opaque_warp = None       # warp_triton's kernel as a custom operator, while export.opaque_ops holds
        self._fast_settings = None    # what set_fast last set
        self.fast_generation = 0      # bumped by every set_fast that changes something

    def set_scan_backend(self, backend: str):
        for m in self.modules():
            if isinstance(m, SS2D):
                m.scan_backend = backend
            if isinstance(m, ConvPReLU):
                m.fused_act = backend in TRITON_BACKENDS
        self.fused_warp = backend in TRITON_BACKENDS

    def set_launch_bound(self, on: bool = True):
        """on: the forward runs op by op, so small convolutions keep PyTorch's bias add and PReLU
        (cheaper to launch); off: it is replayed from a CUDA graph, and every one takes the fused pass."""
        for m in self.modules():
            if isinstance(m, ConvPReLU):
                m.fuse_min_elements = FUSE_MIN_ELEMENTS if on else 0

    def set_fast(self, half_scan: bool = False, channels_last: bool = False, pad_cabs: bool = True,
                 weight_dtype: torch.dtype | None = None):
        """Fast-path switches. half_scan: under autocast, the scan gets its inputs in half precision
        (its state stays float32). channels_last: weights and conv activations in NHWC, which also
        removes the backbone's NHWC<->NCHW copies, and (unless pad_cabs is False) the CABs' hidden
        widths and the odd input widths of the first convolutions of the backbone, the flow heads,
        the IFBlocks and the refiner rounded up to a multiple of 8 (zero weights; their inputs
        then come with zero channels added, see layers.join). weight_dtype: the convolutions' and projections'
        weights and biases kept in that dtype, for running under autocast to it (which would
        otherwise cast each of them again in every forward: 171 small kernels a VFIMamba frame);
        the float32 values are kept aside and come back with weight_dtype=None. All off = the exact
        float32 path.

        Asking for what is already set changes nothing (a CUDA graph captured before keeps reading
        the same weights); any change bumps `fast_generation`, which tells an interpolator that
        shares this net that its graphs are stale."""
        settings = (half_scan, channels_last, pad_cabs, weight_dtype)
        mf = torch.channels_last if channels_last else torch.contiguous_format
        for m in self.modules():
            if isinstance(m, SS2D):
                m.half_scan = half_scan
            if hasattr(m, "mf"):
                m.mf = mf
        self.to(memory_format=mf)  # first: the half weights below are made in the weights' layout
        weights_changed = self._set_weight_dtype(weight_dtype)
        if settings == self._fast_settings and not weights_changed:
            return self
        for m in self.modules():  # after the weights: the padded copies are made from them
            if isinstance(m, CAB):
                m.pad_hidden(8 if channels_last and pad_cabs else None)
            if isinstance(m, ConvPReLU):
                m.pad_input(8 if channels_last and pad_cabs else None)
        self.channels_last = channels_last
        self._fast_settings = settings
        self.fast_generation += 1
        return self

    def _matmul_params(self):
        """The parameters autocast casts for its half-precision matmuls and convolutions, by name:
        the weights and biases of every convolution and linear layer, and SS2D's stacked
        projections. Norms, PReLU slopes, skip scales and the scan's A, D and delta bias stay float32."""
        for name, m in self.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                yield from ((f"{name}.{k}", p) for k, p in (("weight", m.weight), ("bias", m.bias)) if p is not None)
            elif isinstance(m, SS2D):
                yield from ((f"{name}.{k}", getattr(m, k)) for k in ("x_proj_weight", "dt_projs_weight"))

    def _set_weight_dtype(self, dtype) -> bool:
        """Those parameters in `dtype` (None: float32 again, from the values kept aside), each in its
        current layout and device; True if any changed. A kept float32 value counts only while its
        parameter holds it rounded (in any layout, on any device, in a deep copy): one loaded into
        since (load_state_dict, also with assign=True) is taken from its live values instead, so
        a kept value can never bring back old weights."""
        # name -> its float32 values
        masters = self.__dict__.setdefault("_float32_params", {})
        changed = False
        for name, p in self._matmul_params():
            entry = masters.pop(name, None)
            if entry is not None and not _rounds_to(entry, p):
                entry, changed = None, True  # stale: its parameter holds other values now (the CABs' copies too)
            target = torch.float32 if dtype is None else dtype
            source = entry if entry is not None else p.data
            if p.dtype != target:
                fresh = torch.empty_like(p.data, dtype=target)  # keeps the parameter's device and layout
                fresh.copy_(source)
                p.data = fresh
                changed = True
            if dtype is not None:
                masters[name] = (source if source.dtype == torch.float32 else p.data.float()).to(p.device)
        return changed

    @staticmethod
    def _pairs(feats, repeats):
        """Split [frame0 features; frame1 features] and repeat each pair `repeats` times (one per timestep)."""
        out0, out1 = [], []
        for f in feats:
            p = f.shape[0] // 2
            f0, f1 = f[:p], f[p:]
            if repeats > 1:
                f0, f1 = f0.repeat_interleave(repeats, 0), f1.repeat_interleave(repeats, 0)
            out0.append(f0)
            out1.append(f1)
        return out0, out1

    def _feature_warp(self, flow):
        """How the backbone features are warped: on the fast path (channels-last on CUDA, Triton
        there, no gradients) by warp_triton, which reads the half-precision channels-last features
        and writes them so, in one pass each; else by warp() (float32 NCHW). Inside a compilation
        only as export.opaque_ops's operator (the compiler cannot trace a Triton launch)."""
        kernels = None
        if self.fused_warp and self.channels_last and flow.is_cuda and not torch.is_grad_enabled():
            kernels = self.opaque_warp if torch.compiler.is_compiling() else triton_kernels("warp_triton")
        if kernels is None:
            return lambda f, fl: warp(f, fl, self.sampler)
        return kernels.warp

    def _warp_features(self, f0s, f1s, flow):
        c0, c1 = [], []
        warp_feature = self._feature_warp(flow)
        for f0, f1 in zip(f0s, f1s):
            c0.append(warp_feature(f0, flow[:, 0:2]))
            c1.append(warp_feature(f1, flow[:, 2:4]))
            flow = F.interpolate(flow, scale_factor=0.5, mode="bilinear", align_corners=False,
                                 recompute_scale_factor=False) * 0.5
        return c0, c1

    def forward(self, imgs, timestep=0.5, scale=0.0, local=True, repeats=1):
        """imgs (P, 6, H, W): frame0 and frame1 (BGR, [0,1]) stacked on channels.

        timestep: a float, or a tensor with P * repeats entries. With repeats > 1 every pair is
        evaluated at `repeats` timesteps (output pair-major) while the backbone runs once per pair.
        scale > 0 estimates the coarse flow on frames resized by `scale` (for 2K/4K), as officially.
        Returns (flows, masks, merged, pred) like the official forward: with local=True the lists hold
        the local stages only; masks are after the sigmoid.
        """
        x_full = imgs
        if scale > 0:
            imgs = _resize(imgs, scale)
        feats = self.feature_bone(imgs[:, :3], imgs[:, 3:6])
        if repeats > 1:
            imgs = imgs.repeat_interleave(repeats, 0)
            x_full = x_full.repeat_interleave(repeats, 0)
        img0, img1 = imgs[:, :3], imgs[:, 3:6]
        f0s, f1s = self._pairs(feats, repeats)
        t = torch.as_tensor(timestep, dtype=imgs.dtype, device=imgs.device).reshape(-1, 1, 1, 1)
        t = torch.ones_like(img0[:, :1]) * t

        flows, masks, merged = [], [], []
        flow = mask = None
        warped0, warped1 = img0, img1
        for i in range(self.flow_num_stage):
            feat = torch.cat([f0s[-1 - i], f1s[-1 - i]], 1)
            if flow is None:
                flow, mask = self.block[i](feat, torch.cat([img0, img1, t], 1))
                flow, mask = flow.float(), mask.float()  # flows stay float32 under autocast
            else:
                flow_d, mask_d = self.block[i](feat, torch.cat([img0, img1, warped0, warped1, mask, t], 1), flow)
                flow, mask = flow + flow_d.float(), mask + mask_d.float()
            warped0, warped1, m, blend = _merge(img0, img1, flow, mask, self.sampler)
            flows.append(flow)
            masks.append(m)
            merged.append(blend)

        if scale > 0:
            # Back to full resolution: new backbone features, flow and mask upsampled.
            img0, img1 = x_full[:, :3], x_full[:, 3:6]
            feats = self.feature_bone(img0[::repeats], img1[::repeats])
            f0s, f1s = self._pairs(feats, repeats)
            up = img0.shape[3] / flow.shape[3]
            flow = _resize(flow, up) * up
            mask = _resize(mask, up)
            warped0, warped1, _, blend = _merge(img0, img1, flow, mask, self.sampler)
            merged.append(blend)

        if local:
            flows, masks, merged = [], [], []
            for blk in self.local_block:
                flow_d, mask_d = blk(torch.cat([img0, img1, warped0, warped1, mask], 1), flow)
                flow, mask = flow + flow_d.float(), mask + mask_d.float()
                warped0, warped1, m, blend = _merge(img0, img1, flow, mask, self.sampler)
                flows.append(flow)
                masks.append(m)
                merged.append(blend)

        c0, c1 = self._warp_features(f0s, f1s, flow)
        res = self.unet(img0, img1, warped0, warped1, mask, flow, c0, c1)[:, :3] * 2 - 1
        pred = torch.clamp(merged[-1] + res.float(), 0, 1)
        return flows, masks, merged, pred
