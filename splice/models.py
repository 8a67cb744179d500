"""The frame generators behind --model, and how `auto` picks one.

Every model is an `Interpolator`: given two RGB uint8 frames (H, W, 3) and a list of timesteps in
(0, 1), it returns one RGB uint8 frame per timestep. The pipeline knows nothing else about models.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np


class Interpolator(Protocol):
    name: str

    def interpolate(self, frame0: np.ndarray, frame1: np.ndarray,
                    timesteps: Sequence[float]) -> list[np.ndarray]: ...


class ModelError(Exception):
    """A model cannot be used as asked (missing weights, bad checkpoint, no CUDA); one line for the user."""


@dataclass
class BlendInterpolator:
    """A plain crossfade: the floor any real model must beat."""
    name: str = "blend"

    def interpolate(self, frame0, frame1, timesteps):
        a, b = frame0.astype(np.float32), frame1.astype(np.float32)
        return [np.clip((1 - t) * a + t * b + 0.5, 0, 255).astype(np.uint8) for t in timesteps]


class FlowInterpolator:
    """Weights-free interpolation from OpenCV's DIS optical flow, computed both ways.

    Each intermediate frame at time t pulls frame0 along t of the flow and frame1 along 1-t of the
    reverse flow (both flows sampled at the target pixel, the usual linear-motion shortcut) and
    blends the two by distance in time. Good for the small motions of a talking head; it ghosts
    where things appear or disappear, which the learned models handle.
    """
    name = "flow"

    def __init__(self, max_side: int = 1024):
        self.max_side = max_side

    def _flows(self, g0, g1):
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(g0, g1, None), dis.calc(g1, g0, None)

    def interpolate(self, frame0, frame1, timesteps):
        h, w = frame0.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = (max(8, round(w * scale)), max(8, round(h * scale)))
        g0 = cv2.cvtColor(cv2.resize(frame0, small, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(cv2.resize(frame1, small, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        f01, f10 = self._flows(g0, g1)
        if scale != 1.0:
            f01 = cv2.resize(f01, (w, h), interpolation=cv2.INTER_LINEAR) / scale
            f10 = cv2.resize(f10, (w, h), interpolation=cv2.INTER_LINEAR) / scale
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        a, b = frame0.astype(np.float32), frame1.astype(np.float32)
        out = []
        for t in timesteps:
            # Backward warping: the pixel at p in frame t came from p - t*F01(p) in frame0 and from
            # p - (1-t)*F10(p) in frame1 (flows sampled at p, a standard linear-motion shortcut).
            w0 = cv2.remap(a, gx - t * f01[..., 0], gy - t * f01[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            w1 = cv2.remap(b, gx - (1 - t) * f10[..., 0], gy - (1 - t) * f10[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            out.append(np.clip((1 - t) * w0 + t * w1 + 0.5, 0, 255).astype(np.uint8))
        return out


MODEL_NAMES = ("auto", "vfimamba", "rife", "flow", "blend")


@dataclass
class LoadedModel:
    interpolator: Interpolator
    name: str
    description: str
    why: str


def resolve_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    return device


def load_model(name: str, device: str = "auto", ckpt: str | None = None, offline: bool = False,
               tta: bool | None = None, log=print) -> LoadedModel:
    """The interpolator for --model `name`; `auto` takes VFIMamba when a checkpoint is present,
    else RIFE (fetching its weights once, unless offline), else the weights-free flow model."""
    if name == "blend":
        return LoadedModel(BlendInterpolator(), "blend", "crossfade (no motion)", "asked for with --model blend")
    if name == "flow":
        return LoadedModel(FlowInterpolator(), "flow", "OpenCV DIS optical flow (no weights)",
                           "asked for with --model flow")
    if name == "vfimamba" or (name == "auto" and (ckpt or _vfimamba_checkpoint())):
        import vfimamba
        dev = resolve_device(device)
        try:
            model = vfimamba.load(ckpt, device=dev, tta=tta)
        except vfimamba.VFIMambaError as e:
            raise ModelError(str(e)) from None
        why = "asked for with --model vfimamba" if name == "vfimamba" else "a VFIMamba checkpoint is present"
        if dev == "cpu":
            log("note: VFIMamba on the CPU is slow: measured on 2 cores, about 9 s (VFIMamba_S) to 36 s "
                "(VFIMamba) per 720p frame, twice that with TTA; a CUDA GPU takes tens of milliseconds")
        return LoadedModel(model, model.name, model.description, why)
    if name == "rife":
        import rife
        try:
            model = rife.load(device=resolve_device(device), cache_dir=_rife_cache(), offline=offline, log=log)
        except rife.RifeError as e:
            raise ModelError(str(e)) from None
        return LoadedModel(model, "rife", model.description, "asked for with --model rife")
    assert name == "auto", name

    def flow_instead(e):
        return LoadedModel(FlowInterpolator(), "flow", "OpenCV DIS optical flow (no weights)",
                           f"no VFIMamba checkpoint and RIFE is unavailable ({e}); falling back to flow")
    try:
        import rife
    except ImportError as e:
        return flow_instead(e)
    try:
        if offline and not rife.weights_available(_rife_cache()):
            raise ModelError("offline and the RIFE weights are not cached")
        model = rife.load(device=resolve_device(device), cache_dir=_rife_cache(), offline=offline, log=log)
        return LoadedModel(model, "rife", model.description,
                           "no VFIMamba checkpoint in ckpt/; RIFE is the best model available")
    except (ModelError, rife.RifeError) as e:
        return flow_instead(e)


def _rife_cache() -> str | None:
    return os.environ.get("INTERPOLATE_VIDEO_CACHE") or None  # None: rife's own default


def _vfimamba_checkpoint() -> str | None:
    try:
        import vfimamba
    except ImportError:
        return None
    return vfimamba.default_checkpoint()
