"""The refiner: a 4-level U-Net that turns the warped frames plus warped backbone features into a
residual added to the mask-blended frame."""
import torch
import torch.nn as nn

from .layers import conv_prelu, deconv_prelu, join


class Conv2(nn.Module):
    def __init__(self, cin, cout, stride=2):
        super().__init__()
        self.conv1 = conv_prelu(cin, cout, 3, stride, 1)
        self.conv2 = conv_prelu(cout, cout, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x))


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
        s0 = self.down0(join([img0, img1, warped0, warped1, mask, flow, c0[0], c1[0]], self.down0.conv1))
        s1 = self.down1(join([s0, c0[1], c1[1]], self.down1.conv1))
        s2 = self.down2(join([s1, c0[2], c1[2]], self.down2.conv1))
        s3 = self.down3(join([s2, c0[3], c1[3]], self.down3.conv1))
        x = self.up0(join([s3, c0[4], c1[4]], self.up0))
        x = self.up1(join([x, s2], self.up1))
        x = self.up2(join([x, s1], self.up2))
        x = self.up3(join([x, s0], self.up3))
        return torch.sigmoid(self.conv(x))
