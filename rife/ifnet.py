"""The Practical-RIFE v4.25/v4.26 flow network (IFNet), written from the published architecture.

Five IFBlocks refine a pair of flows (middle frame -> frame0, middle frame -> frame1) and a
blending mask from coarse to fine. Each block works on its inputs downsampled by its entry of the
scale list (16, 8, 4, 2, 1 at scale 1.0) and then by 4 more inside, so the input size must
divide by 64 / scale; the caller pads to a multiple of max(128, 128 / scale) as the reference
does. A small encoder gives each input frame 4 feature channels that are warped along with the
frames. Module and parameter names follow the reference so its flownet.pkl loads strictly.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: output pixel p samples `image` at p + flow(p), bilinear, edges clamped."""
    b, _, h, w = flow.shape
    # grid_sample with align_corners=True maps -1 and +1 to the centres of the first and last
    # pixels, so pixel x sits at -1 + 2x / (w - 1). The grid stays float32 even under fp16
    # autocast: in half precision, coordinates near the edges of a 1080p frame would be off by
    # up to a quarter pixel.
    flow = flow.float()
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, w).expand(b, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, h, 1).expand(b, h, w)
    gx = xs + flow[:, 0] / ((w - 1.0) / 2.0)
    gy = ys + flow[:, 1] / ((h - 1.0) / 2.0)
    grid = torch.stack((gx, gy), dim=3)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    # At factor 1 bilinear resampling (align_corners=False) returns its input exactly; skipping it
    # saves full-resolution copies in the last block.
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def conv_lrelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class ResConv(nn.Module):
    """3x3 conv whose output is scaled per channel by a learned `beta` and added to its input."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))
        self.relu = nn.LeakyReLU(0.2)

    def forward(self, x):
        return self.relu(self.conv(x) * self.beta + x)


class Encoder(nn.Module):
    """Per-frame features: 3 RGB channels in, 4 channels out at the same resolution."""

    def __init__(self):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2)

    def forward(self, x):
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


class IFBlock(nn.Module):
    """One refinement step: predicts 4 flow channels, 1 mask logit and 8 feature channels.

    The body runs at 1/4 of the block's working resolution (two stride-2 convs); the head brings
    it back with a stride-2 transposed conv and a 2x pixel shuffle (52 = 13 channels x 2 x 2).
    """

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv0 = nn.Sequential(conv_lrelu(cin, c // 2, 2), conv_lrelu(c // 2, c, 2))
        self.convblock = nn.Sequential(*[ResConv(c) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 13, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, parts: list[torch.Tensor], flow, scale: float):
        """`parts`: the inputs at full resolution, in channel order (the reference concatenates them
        first). Bilinear resizing works channel by channel, so each part is resized on its own and
        only the small results are concatenated: the same result up to float rounding (PyTorch's
        CPU kernel may order its sums differently for other channel counts: outputs within 4e-5),
        without a 28-32-channel tensor at full resolution (1 GB for a 4K frame)."""
        if flow is not None:
            parts = [*parts, flow]
        # in the type the concatenation would have had (under fp16 autocast some parts are half)
        common = functools.reduce(torch.promote_types, (p.dtype for p in parts))
        small = [resize(p.to(common), 1.0 / scale) for p in parts]
        if flow is not None:
            # Flow vectors are in pixels, so they shrink with the image.
            small[-1] = small[-1] / scale
        x = self.lastconv(self.convblock(self.conv0(torch.cat(small, 1))))
        x = resize(x, scale)
        return x[:, :4] * scale, x[:, 4:5], x[:, 5:]


class IFNet(nn.Module):
    # Input channels: block0 sees both frames (3+3), both encoder features (4+4) and the timestep
    # (1); later blocks add the current mask (1), the previous block's features (8) and flow (4).
    def __init__(self):
        super().__init__()
        self.block0 = IFBlock(3 + 3 + 4 + 4 + 1, c=192)
        self.block1 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=128)
        self.block2 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=96)
        self.block3 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=64)
        self.block4 = IFBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, c=32)
        self.encode = Encoder()

    @staticmethod
    def scale_list(scale: float = 1.0) -> list[float]:
        return [16 / scale, 8 / scale, 4 / scale, 2 / scale, 1 / scale]

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor,
                scale: float = 1.0) -> torch.Tensor:
        """img0, img1: (1 or B, 3, H, W) in [0, 1]; timestep: (B,) in (0, 1). Returns (B, 3, H, W).

        One pair of frames can be combined with B timesteps: the frames and their features are
        computed once and broadcast over the batch.
        """
        b = timestep.shape[0]
        _, _, h, w = img0.shape
        f0 = self.encode(img0).expand(b, -1, -1, -1)
        f1 = self.encode(img1).expand(b, -1, -1, -1)
        img0 = img0.expand(b, -1, -1, -1)
        img1 = img1.expand(b, -1, -1, -1)
        t = timestep.to(img0.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)

        blocks = [self.block0, self.block1, self.block2, self.block3, self.block4]
        flow = mask = feat = None
        warped0, warped1 = img0, img1
        for block, s in zip(blocks, self.scale_list(scale)):
            if flow is None:
                flow, mask, feat = block([img0, img1, f0, f1, t], None, s)
            else:
                parts = [warped0, warped1, warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4]), t, mask, feat]
                dflow, mask, feat = block(parts, flow, s)
                flow = flow + dflow
            warped0 = warp(img0, flow[:, :2])
            warped1 = warp(img1, flow[:, 2:4])
        mask = torch.sigmoid(mask)
        return warped0 * mask + warped1 * (1 - mask)
