"""Flow estimation: coarse multi-scale heads on the backbone's motion features, then local IFBlocks.

Every head predicts 5 channels: the flows from the target time to frame0 (0:2) and to frame1 (2:4),
in pixels of the full input, and the logit of the blending mask (4). Each stage adds a residual.
"""
import torch.nn as nn
import torch.nn.functional as F

from .layers import conv_prelu, join


def _resize(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class Head(nn.Module):
    """Coarse flow head at stride `scale` (16 or 8) working at stride 4.

    The pair's stacked features are pixel-shuffled 4x (channels 2*dim -> 2*dim/16) and joined with the
    images (and, after the first head, the warped images, mask, timestep and current flow).
    """

    def __init__(self, dim, scale, c, in_else):
        super().__init__()
        self.upsample = nn.Sequential(nn.PixelShuffle(2), nn.PixelShuffle(2))
        self.scale = scale
        self.conv = nn.Sequential(conv_prelu(2 * dim // 16 + in_else, c), conv_prelu(c, c), conv_prelu(c, 5))

    def forward(self, feat, x, flow=None):
        feat = self.upsample(feat)
        if self.scale != 4:
            x = _resize(x, 4.0 / self.scale)
        parts = [feat, x]
        if flow is not None:
            if self.scale != 4:
                flow = _resize(flow, 4.0 / self.scale) * (4.0 / self.scale)
            parts.append(flow)
        out = self.conv(join(parts, self.conv[0]))
        if self.scale != 4:
            out = _resize(out, self.scale // 4)
            return out[:, :4] * (self.scale // 4), out[:, 4:5]
        return out[:, :4], out[:, 4:5]


class IFBlock(nn.Module):
    """Local refinement (RIFE-style): images, warped images, mask and flow in; flow/mask residuals out."""

    def __init__(self, in_planes, c, scale):
        super().__init__()
        self.conv0 = nn.Sequential(conv_prelu(in_planes, c // 2, 3, 2, 1), conv_prelu(c // 2, c, 3, 2, 1))
        self.convblock = nn.Sequential(*[conv_prelu(c, c) for _ in range(8)])
        self.lastconv = nn.ConvTranspose2d(c, 5, 4, 2, 1)
        self.scale = scale

    def forward(self, x, flow):
        s = self.scale
        if s != 1:
            x = _resize(x, 1.0 / s)
            flow = _resize(flow, 1.0 / s) * (1.0 / s)
        x = self.conv0(join([x, flow], self.conv0[0]))
        x = self.convblock(x) + x
        out = _resize(self.lastconv(x), s * 2)
        return out[:, :4] * (s * 2), out[:, 4:5]
