"""Small building blocks shared by the flow heads, the IFBlocks and the refiner."""
import torch.nn as nn


def conv_prelu(cin, cout, kernel_size=3, stride=1, padding=1):
    """3x3 convolution followed by a per-channel PReLU (state-dict names: .0 conv, .1 prelu)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=True), nn.PReLU(cout))


def deconv_prelu(cin, cout):
    """2x upsampling transposed convolution followed by PReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=True), nn.PReLU(cout))
