"""The refiner: a 4-level U-Net that turns the warped frames plus warped backbone features into a
residual added to the mask-blended frame."""
import torch
import torch.nn as nn

from .layers import conv_prelu, deconv_prelu


class Conv2(nn.Module):
    def __init__(self, cin, cout, stride=2):
        super().__init__()
        self.conv1 = conv_prelu(cin, cout, 3, stride, 1)
        self.conv2 = conv_prelu(cout, cout, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x))


def _join(parts, like):
    """torch.cat(parts, 1), in the dtype and layout of `like` when that is a half-precision
    channels-last map (the fast path): the images, mask and flow (float32) are converted first, so the
    result is what the next convolution reads as it is. Otherwise (float32: the exact path) a plain
    cat. The values are those the convolution's own cast would have made."""
    if like.dtype in (torch.float16, torch.bfloat16) and like.is_contiguous(memory_format=torch.channels_last):
        parts = [t if t.dtype == like.dtype else t.to(like.dtype) for t in parts]
        return torch.cat([t.contiguous(memory_format=torch.channels_last) for t in parts], 1)
    return torch.cat(parts, 1)


class Unet(nn.Module):
    """c = 2F: the width of one pair of stride-1 features. Inputs at each level are concatenated with
    both frames' backbone features warped to the target time (c0, c1)."""

    def __init__(self, c, out=3):
        super().__init__()
        self.down0 = Conv2(17 + c, 2 * c)
        self.down1 = Conv2(4 * c, 4 * c)
        self.down2 = Conv2(8 * c, 8 * c)
        self.down3 = Conv2(16 * c, 16 * c)
        self.up0 = deconv_prelu(32 * c, 8 * c)
        self.up1 = deconv_prelu(16 * c, 4 * c)
        self.up2 = deconv_prelu(8 * c, 2 * c)
        self.up3 = deconv_prelu(4 * c, c)
        self.conv = nn.Conv2d(c, out, 3, 1, 1)

    def forward(self, img0, img1, warped0, warped1, mask, flow, c0, c1):
        s0 = self.down0(_join([img0, img1, warped0, warped1, mask, flow, c0[0], c1[0]], c0[0]))
        s1 = self.down1(_join([s0, c0[1], c1[1]], c0[1]))
        s2 = self.down2(_join([s1, c0[2], c1[2]], c0[2]))
        s3 = self.down3(_join([s2, c0[3], c1[3]], c0[3]))
        x = self.up0(_join([s3, c0[4], c1[4]], c0[4]))
        x = self.up1(_join([x, s2], s2))
        x = self.up2(_join([x, s1], s1))
        x = self.up3(_join([x, s0], s0))
        return torch.sigmoid(self.conv(x))
