"""The feature extractor: three convolutional stages, then two stages of mixed-SSM blocks.

Both frames go through it as one batch [frame0; frame1]. In the SSM stages the two frames are
*interleaved* pixel by pixel into one sequence (frame0 p0, frame1 p0, frame0 p1, ...), so that the
scan mixes information across frames as it moves across space: that is VFIMamba's "mixed SSM".
Each sequence is scanned in four directions: row-major, column-major, and both reversed.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import scan
from .layers import TRITON_BACKENDS, ConvPReLU, PaddedCopies, join, triton_kernels


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation (RCAN style): rescale channels by a gate computed from their means."""

    def __init__(self, dim, squeeze=16):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, dim // squeeze, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim // squeeze, dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.attention(x)


class CAB(PaddedCopies):
    """Convolutional attention block used as the second branch of each SSM block.

    Widths use floor division (dim // 3, dim // 30), which the checkpoints depend on.
    """

    _padded_attrs = ("_padded",)

    def __init__(self, dim, compress=3, squeeze=30):
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(dim, dim // compress, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(dim // compress, dim, 3, 1, 1),
            ChannelAttention(dim, squeeze),
        )
        self._padded = None  # (w0, b0, w2): the two convs with the hidden width rounded up, or None

    def pad_hidden(self, multiple: int | None):
        """Round the hidden width (dim // 3: 85, 170 in VFIMamba) up to a multiple of `multiple` with
        zero filters (None: back to the plain convs). The extra channels are exactly 0 before and
        after the GELU and meet zero weights, so the result is the same; fp16 tensor-core convs in
        NHWC then need no padding copies of their input and output (cuDNN adds them otherwise)."""
        conv0, conv2 = self.cab[0], self.cab[2]
        hidden = conv0.out_channels
        extra = -hidden % multiple if multiple else 0
        if not extra:
            self._padded = None
            return
        self._padded = (self._zero_padded(conv0.weight, 0, extra), self._zero_padded(conv0.bias, 0, extra),
                        self._zero_padded(conv2.weight, 1, extra))

    def _mirrors(self):
        if self._padded is None:
            return ()
        conv0, conv2 = self.cab[0], self.cab[2]
        w0, b0, w2 = self._padded
        hidden = conv0.out_channels
        return (w0[:hidden], conv0.weight), (b0[:hidden], conv0.bias), (w2[:, :hidden], conv2.weight)

    def forward(self, x):
        if self._padded is None:
            return self.cab(x)
        w0, b0, w2 = self._padded
        h = self.cab[1](F.conv2d(x, w0, b0, padding=1))
        return self.cab[3](F.conv2d(h, w2, self.cab[2].bias, padding=1))


class SS2D(nn.Module):
    """2-D selective scan over the interleaved frame pair, in 4 directions (K = 4).

    The four directions keep separate projections, stored stacked (x_proj_weight, dt_projs_*),
    and their scan channels are concatenated as 4 * d_inner channels with B/C shared per direction.
    """

    K = 4

    def __init__(self, d_model, d_state=16, d_conv=3, expand=2.0):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16)
        di, K = self.d_inner, self.K

        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.conv2d = nn.Conv2d(di, di, d_conv, padding=(d_conv - 1) // 2, groups=di, bias=True)
        self.x_proj_weight = nn.Parameter(torch.empty(K, self.dt_rank + 2 * d_state, di))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, di, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, di))
        self.A_logs = nn.Parameter(torch.empty(K * di, d_state))
        self.Ds = nn.Parameter(torch.empty(K * di))
        self.out_norm = nn.LayerNorm(di)  # default eps 1e-5: the config's eps=1e-6 is never used
        self.out_proj = nn.Linear(di, d_model, bias=False)
        self.scan_backend = "auto"
        # Fast-path switches (VFIMambaNet.set_fast): hand the scan its inputs in the autocast dtype
        # (the kernels keep the state in float32), and the memory layout of the conv inputs.
        self.half_scan = False
        self.fused_layout = True   # layout_triton's kernels where they can run (same values)
        self.opaque_scan = None    # the scan as a custom operator, while export.opaque_ops holds
        self.opaque_layout = None  # the layout kernels as custom operators, likewise (compiled graphs)
        self.mf = torch.contiguous_format
        if not self.A_logs.is_meta:  # built on the meta device, a checkpoint fills every value
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        # Mamba's initialisation; only matters for random-weight runs (benchmarks). Skipped on the
        # meta device: there some of these ops run through torch's Python reference kernels, which
        # import the compiler stack (TorchDynamo, sympy: seconds) for values nobody reads.
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.x_proj_weight, -self.d_inner ** -0.5, self.d_inner ** -0.5)
        nn.init.uniform_(self.dt_projs_weight, -bound, bound)
        dt = torch.exp(torch.rand(self.K, self.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        dt = dt.clamp(min=1e-4)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    @staticmethod
    def _interleave(x):
        """(2b, C, H, W) as [frame0; frame1] -> (b, C, 2HW), position 2p + f = frame f, pixel p."""
        b2, c = x.shape[:2]
        b = b2 // 2
        x = x.reshape(b2, c, -1)
        return torch.stack([x[:b], x[b:]], dim=-1).reshape(b, c, -1)

    @staticmethod
    def _cross_scan_torch(x):
        """(2b, di, H, W) -> (b, K, di, 2HW): the interleaved pair row-major, column-major, and both reversed."""
        seq_hw = SS2D._interleave(x)
        seq_wh = SS2D._interleave(x.transpose(2, 3))
        xs = torch.stack([seq_hw, seq_wh], dim=1)
        return torch.cat([xs, xs.flip(-1)], dim=1)

    @staticmethod
    def _merge_torch(y, H, W):
        """(b, K, di, 2HW) scanned directions -> (2b, H, W, di), the frames apart again."""
        b, _, di, L = y.shape

        def unscan_wh(t):
            # The official merge undoes the column-major order by viewing each channel's 2HW sequence
            # as two (W, H) blocks and transposing them. That is not the exact inverse of the
            # interleaving, but the weights were trained with it, so it is reproduced as is.
            return t.reshape(b, di, 2, W, H).transpose(-1, -2).reshape(b, di, L)

        m = y[:, 0] + y[:, 2].flip(-1) + unscan_wh(y[:, 1]) + unscan_wh(y[:, 3].flip(-1))
        m = m.transpose(1, 2).reshape(b, H * W, 2, di)
        return torch.cat([m[:, :, 0], m[:, :, 1]], dim=0).view(2 * b, H, W, di)

    def _layout_kernels(self, x):
        """layout_triton's cross_scan and cross_merge for this call, or None for the PyTorch ops: CUDA
        tensors with the Triton scan (a user who picks another backend gets no Triton at all), no
        gradients (the kernels have no backward), and indices that fit the kernels' 32-bit
        arithmetic. Inside a compilation only as the custom operators of export.opaque_ops (the
        compiler cannot trace a Triton launch)."""
        b2, di, H, W = x.shape
        if not (self.fused_layout and x.is_cuda and self.scan_backend in TRITON_BACKENDS
                and not (x.requires_grad and torch.is_grad_enabled()) and 6 * di * H * W < 2 ** 31):
            return None
        return self.opaque_layout if torch.compiler.is_compiling() else triton_kernels("layout_triton")

    def _scan(self, x):
        """(2b, di, H, W) -> (2b, H, W, di): the four-direction selective scan of the interleaved pair.
        On CUDA with Triton the cross-scan and the merge are one kernel each (layout_triton: the
        same values, a pass each instead of about ten), in compiled graphs too."""
        b2, di, H, W = x.shape
        b, L, K = b2 // 2, 2 * H * W, self.K
        kernels = self._layout_kernels(x)
        xs = kernels.cross_scan(x) if kernels else self._cross_scan_torch(x)  # (b, K, di, L)

        proj = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(proj, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)

        cast = (lambda t: t) if self.half_scan and self.scan_backend in ("triton", "mamba_ssm") else (lambda t: t.float())
        delta = cast(dts).reshape(b, K * di, L)
        u = cast(xs).reshape(b, K * di, L)
        args = (u, delta, -torch.exp(self.A_logs.float()), cast(Bs), cast(Cs),
                self.Ds.float(), self.dt_projs_bias.float().reshape(-1))
        if (self.opaque_scan is None and self.scan_backend == "cpu" and delta.is_contiguous()
                and not delta.requires_grad and not torch.compiler.is_compiling()):
            # the CPU kernel writes y over delta, which nothing reads afterwards: a new output the size
            # of delta would cost a page fault per 4 KiB of it
            y = scan.selective_scan(*args, delta_softplus=True, backend="cpu", out=delta)
        else:
            # in the inputs' precision (half on the fast path): the scan still sums in float32, but
            # writes half the bytes, and the merge reads half (the LayerNorm after it computes in float32)
            y = (self.opaque_scan or scan.selective_scan)(*args, delta_softplus=True, backend=self.scan_backend,
                                                          out_dtype=u.dtype)
        y = y.view(b, K, di, L)
        return kernels.cross_merge(y, H, W) if kernels else self._merge_torch(y, H, W)

    def forward(self, x):
        """x: (2b, H, W, C) channels-last -> same shape."""
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2).contiguous(memory_format=self.mf)))
        y = self._scan(x)  # (2b, H, W, di)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)


class VSSBlock(nn.Module):
    """Mixed-SSM block: x = s1*x + SS2D(LN(x)); x = s2*x + CAB(LN(x)), with learned skip scales."""

    def __init__(self, dim, d_state=16, expand=2.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = SS2D(dim, d_state=d_state, expand=expand)
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.conv_blk = CAB(dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.skip_scale2 = nn.Parameter(torch.ones(dim))
        self.mf = torch.contiguous_format  # channels_last in the fast path: no NHWC<->NCHW copies

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = x * self.skip_scale + self.self_attention(self.ln_1(x))
        c = self.conv_blk(self.ln_2(x).permute(0, 3, 1, 2).contiguous(memory_format=self.mf)).permute(0, 2, 3, 1)
        x = x * self.skip_scale2 + c
        return x.permute(0, 3, 1, 2).contiguous(memory_format=self.mf)


class MambaStage(nn.Module):
    def __init__(self, dim, depth):
        super().__init__()
        self.blocks = nn.ModuleList(VSSBlock(dim) for _ in range(depth))

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


class PatchEmbed(nn.Module):
    """Downsampling into an SSM stage: LayerNorm over the input channels, then a stride-2 3x3 conv."""

    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, 2, 1)
        self.norm = nn.LayerNorm(cin)
        self.mf = torch.contiguous_format

    def forward(self, x):
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous(memory_format=self.mf)
        return self.proj(x)


class ConvStage(nn.Module):
    def __init__(self, cin, cout, depth):
        super().__init__()
        layers = []
        for i in range(depth):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, 1, 1), nn.PReLU(cout)]
        self.conv = ConvPReLU(*layers)

    def forward(self, x):
        return self.conv(x)


class FeatureExtractor(nn.Module):
    """Five stages at strides 1, 2, 4, 8, 16; returns every stage's output for both frames."""

    def __init__(self, dims=(16, 32, 64, 128, 256), depths=(2, 2, 2, 3, 3), conv_stages=3, in_chans=3):
        super().__init__()
        self.num_stages = len(dims)
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i == 0:
                setattr(self, "block0", ConvStage(in_chans, dim, depth))
            elif i < conv_stages:
                setattr(self, f"patch_embed{i}", ConvPReLU(nn.Conv2d(dims[i - 1], dim, 3, 2, 1), nn.PReLU(dim)))
                setattr(self, f"block{i}", ConvStage(dim, dim, depth))
            else:
                setattr(self, f"patch_embed{i}", PatchEmbed(dims[i - 1], dim))
                setattr(self, f"block{i}", MambaStage(dim, depth))

    def forward(self, img0, img1):
        x = torch.cat([img0, img1], 0)
        if self.block0.conv.in_width != x.shape[1]:  # the fast path: half precision, zero channels added
            x = join([x], self.block0.conv)
        feats = []
        for i in range(self.num_stages):
            if i > 0:
                x = getattr(self, f"patch_embed{i}")(x)
            x = getattr(self, f"block{i}")(x)
            feats.append(x)
        return feats
