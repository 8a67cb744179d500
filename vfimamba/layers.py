"""Small building blocks shared by the backbone, the flow heads, the IFBlocks and the refiner."""
import importlib

import torch
import torch.nn as nn
import torch.nn.functional as F

_TRITON_MODULES: dict = {}
# The scan backends with which the net runs Triton kernels of its own (the layout and bias + PReLU
# passes): a user who picks another backend gets no Triton at all.
TRITON_BACKENDS = ("triton", "auto")
# Below this many output elements a pair stays with PyTorch's ops when the forward is launched op by
# op: there it is bound by launches on the CPU, not by memory traffic, and a Triton launch costs the
# CPU more than PyTorch's two (on an H200 the fused pass made VFIMamba 1080p 12 % faster, but 720p
# slower when taken for every pair). A forward replayed from a CUDA graph pays no launches, so there
# every pair is fused (VFIMambaNet.set_launch_bound).
FUSE_MIN_ELEMENTS = 1 << 22


def triton_kernels(name: str):
    """vfimamba.<name> (a module of Triton kernels), imported at first use since Triton is optional;
    None where Triton is missing or cannot be imported (the PyTorch ops then do the same work)."""
    if name not in _TRITON_MODULES:
        try:
            _TRITON_MODULES[name] = importlib.import_module(f"{__package__}.{name}")
        except Exception:  # noqa: BLE001  (a broken Triton install is as good as none)
            _TRITON_MODULES[name] = None
    return _TRITON_MODULES[name]


class PaddedCopies(nn.Module):
    """For modules that keep zero-padded copies of some of their weights (the fast path's widths
    rounded up for fp16 tensor cores): the copies follow what the weights go through. A state dict
    loaded into the weights reaches them in place, so that a CUDA graph captured before keeps
    reading the same memory, now with the new values; .to(), .cuda(), .half() and the like move and
    convert them with the weights. A subclass names the attributes that hold them (a tensor, a
    tuple of tensors, or None) and says which part of each copy mirrors which weight."""

    _padded_attrs: tuple = ()

    def __init__(self, *args):
        super().__init__(*args)
        self.register_load_state_dict_post_hook(PaddedCopies._weights_loaded)  # after the children's weights

    def _mirrors(self):
        """(the part of a padded copy, the weight it holds) pairs; none while nothing is padded."""
        return ()

    @staticmethod
    def _zero_padded(t: torch.Tensor, dim: int, extra: int) -> torch.Tensor:
        """A copy of t with `extra` zeros added at the end of `dim`, in t's memory layout."""
        pad = [0] * (2 * t.dim())
        pad[2 * (t.dim() - 1 - dim) + 1] = extra  # F.pad lists dimensions from the last one
        out = F.pad(t.detach(), pad)
        if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _weights_loaded(self, incompatible_keys=None):
        with torch.no_grad():
            for part, weight in self._mirrors():
                part.copy_(weight)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        for name in self._padded_attrs:
            held = getattr(self, name)
            if isinstance(held, torch.Tensor):
                setattr(self, name, fn(held))
            elif held is not None:
                setattr(self, name, tuple(fn(t) for t in held))
        return out


class ConvPReLU(PaddedCopies, nn.Sequential):
    """Convolutions (Conv2d or ConvTranspose2d), each followed by a per-channel PReLU; state-dict
    names as nn.Sequential's (.0 conv, .1 prelu, .2 conv, ...).

    On CUDA with channels-last weights (the fast path), without gradients and outside a compilation, each
    pair runs as the convolution without its bias, then one Triton pass that adds the bias and
    applies the PReLU in place (act_triton): PyTorch would spend a broadcast add and PReLU's
    generic strided kernel on it. fused_act = False keeps PyTorch's ops (VFIMambaNet.set_scan_backend
    sets it from the scan backend, benchmarks switch it)."""

    fused_act = True
    fuse_min_elements = FUSE_MIN_ELEMENTS
    # The first convolution's weight with zero input channels added (pad_input), or None. It is used
    # for inputs that come with those extra (zero) channels: see join().
    _in_weight = None
    _padded_attrs = ("_in_weight",)

    @property
    def in_width(self) -> int:
        """How many channels an input should have: the first convolution's, or more while pad_input
        holds (the extra ones zero; join() makes such inputs)."""
        return self[0].in_channels if self._in_weight is None else self._in_weight.shape[1]

    def pad_input(self, multiple: int | None):
        """Round the first convolution's input width (3 images, 17, 50, 71 or 81 channels of
        stacked images, flows and features) up to a multiple of `multiple` with zero weights (None:
        back to the plain weight). An input with the extra channels all zero gives the same sums;
        fp16 tensor-core convolutions in NHWC then need no padded copy of it, which cuDNN makes
        otherwise in every call (nhwcAddPaddingKernel)."""
        conv = self[0]
        extra = -conv.in_channels % multiple if multiple else 0
        if not extra or conv.groups != 1 or conv.padding_mode != "zeros":
            self._in_weight = None
            return
        self._in_weight = self._zero_padded(conv.weight, self._input_axis(), extra)

    def _input_axis(self) -> int:
        return 1 if isinstance(self[0], nn.Conv2d) else 0  # Conv2d: (out, in, ...); ConvTranspose2d: (in, out, ...)

    def _mirrors(self):
        if self._in_weight is None:
            return ()
        return ((self._in_weight.narrow(self._input_axis(), 0, self[0].in_channels), self[0].weight),)

    def forward(self, x):
        mods = list(self)
        i = 0
        while i < len(mods):
            conv = mods[i]
            weight = conv.weight
            if i == 0 and self._in_weight is not None and x.shape[1] == self._in_weight.shape[1] != conv.in_channels:
                weight = self._in_weight
            act = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.PReLU) else None
            kernels = triton_kernels("act_triton") if act is not None and self._fuse(x, conv, act) else None
            if kernels is None:
                x = conv(x) if weight is conv.weight else _conv(conv, x, weight, conv.bias)
                i += 1
                continue
            y = _conv(conv, x, weight, None)
            if y.is_contiguous(memory_format=torch.channels_last):
                x = kernels.bias_prelu_(y, conv.bias, act.weight)
            else:   # the convolution chose another layout: PyTorch's ops, the same values
                x = act(y + conv.bias.view(1, -1, 1, 1).to(y.dtype))
            i += 2
        return x

    def _fuse(self, x, conv, act) -> bool:
        # channels-last weights: the fast path (VFIMambaNet.set_fast); the exact path keeps PyTorch's
        # ops, and so do small outputs (fuse_min_elements)
        return (self.fused_act and x.is_cuda and x.dim() == 4 and type(conv) in (nn.Conv2d, nn.ConvTranspose2d)
                and conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.bias is not None
                and conv.padding_mode == "zeros" and act.weight.numel() == conv.out_channels
                and not torch.compiler.is_compiling() and not torch.is_grad_enabled()
                and _out_elements(conv, x) >= self.fuse_min_elements)


def _conv(conv, x, weight, bias):
    """What `conv` (nn.Conv2d or nn.ConvTranspose2d) does to x, with this weight and bias."""
    if isinstance(conv, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, weight, bias, conv.stride, conv.padding, conv.output_padding,
                                  conv.groups, conv.dilation)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def join(parts, conv: ConvPReLU):
    """torch.cat(parts, 1) as `conv` reads it best. On the fast path (channels-last weights, in
    half precision or run under autocast to it) that is channels-last in the precision the
    convolution computes in, with zero channels after the parts up to conv.in_width: float32 parts
    (the images, mask and flow) are converted as they are copied in, to the values the
    convolution's own cast would have made, and cuDNN gets a width it needs no padded copy of.
    Otherwise (the exact float32 path) a plain cat."""
    weight, device = conv[0].weight, parts[0].device
    # under autocast the convolution computes in autocast's dtype, whatever its weight's
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else weight.dtype
    if dtype not in (torch.float16, torch.bfloat16) or not weight.is_contiguous(memory_format=torch.channels_last):
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    n, _, h, w = parts[0].shape
    if any(t.dim() != 4 or t.shape[0] != n or t.shape[2:] != (h, w) or t.device != device for t in parts):
        raise ValueError(f"join: parts {[tuple(t.shape) for t in parts]} differ in batch, size or device")
    channels = sum(t.shape[1] for t in parts)
    out = torch.empty((n, max(channels, conv.in_width), h, w), dtype=dtype, device=device,
                      memory_format=torch.channels_last)
    start = 0
    for t in parts:
        out.narrow(1, start, t.shape[1]).copy_(t)
        start += t.shape[1]
    if start < out.shape[1]:
        out.narrow(1, start, out.shape[1] - start).zero_()
    return out


def _out_elements(conv, x) -> int:
    """How many elements `conv` makes of x (N, C, H, W), from the shape arithmetic of nn.Conv2d and
    nn.ConvTranspose2d."""
    n, _, *size = x.shape
    out = []
    for i, length in enumerate(size):
        k, s, p, d = conv.kernel_size[i], conv.stride[i], conv.padding[i], conv.dilation[i]
        if isinstance(conv, nn.ConvTranspose2d):
            out.append((length - 1) * s - 2 * p + d * (k - 1) + conv.output_padding[i] + 1)
        else:
            out.append((length + 2 * p - d * (k - 1) - 1) // s + 1)
    return n * conv.out_channels * out[0] * out[1]


def conv_prelu(cin, cout, kernel_size=3, stride=1, padding=1):
    """3x3 convolution followed by a per-channel PReLU (state-dict names: .0 conv, .1 prelu)."""
    return ConvPReLU(nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=True), nn.PReLU(cout))


def deconv_prelu(cin, cout):
    """2x upsampling transposed convolution followed by PReLU."""
    return ConvPReLU(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=True), nn.PReLU(cout))
