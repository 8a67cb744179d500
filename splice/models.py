"""The frame generators, a registry of them, and how `auto` picks one.

Every model is an `Interpolator`: given two RGB uint8 frames (H, W, 3) and a list of timesteps in
(0, 1), it returns one RGB uint8 frame per timestep. Nothing else in the application knows about
models. The model packages (vfimamba/, rife/) stand alone, with their own exceptions and option
names; `load_interpolator` is the one place that translates between them and the application.

Adding a model is one module and one line in REGISTRY.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from . import cache
from .errors import UserError

if TYPE_CHECKING:
    import numpy as np

# NumPy and OpenCV are imported where the crossfade and the flow model run: the command imports this
# registry before it starts the model's process, and every 0.1 s there delays the model.


class Interpolator(Protocol):
    name: str
    description: str

    def interpolate(self, frame0: np.ndarray, frame1: np.ndarray,
                    timesteps: Sequence[float]) -> list[np.ndarray]: ...


class Unavailable(Exception):
    """This model cannot be had here (no weights, weights not cached and offline): `auto` goes on to
    the next candidate; asked for by name, it is the user's error."""


@dataclass
class BlendInterpolator:
    """A plain crossfade: the floor any real model must beat."""
    name: str = "blend"
    description: str = "crossfade (no motion)"

    def interpolate(self, frame0, frame1, timesteps):
        import numpy as np
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
    description = "OpenCV DIS optical flow (no weights)"

    def __init__(self, max_side: int = 1024):
        self.max_side = max_side

    def _flows(self, g0, g1):
        import cv2
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(g0, g1, None), dis.calc(g1, g0, None)

    def interpolate(self, frame0, frame1, timesteps):
        import cv2
        import numpy as np
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


@dataclass(frozen=True)
class ModelOptions:
    """One shape of loading options for every model; each loader takes what applies to it."""
    device: str = "auto"             # auto | cuda | cpu
    precision: str | None = None     # None: the model's default; fp32, fp16, ...
    ckpt: str | None = None          # VFIMamba checkpoint
    tta: bool | None = None          # VFIMamba test-time augmentation (None: the model's default)
    offline: bool = False            # never download weights
    compile: bool = False            # VFIMamba: torch.compile + CUDA graphs (worth it for long batches)
    cache_dir: str | None = None     # downloaded weights; None: splice.cache.cache_dir()


@dataclass
class LoadedModel:
    """An interpolator and how it came to be chosen."""
    interpolator: Interpolator
    name: str
    description: str
    why: str
    candidates: list[dict] = field(default_factory=list)  # auto: [{"name", "taken", "reason"}] in order

    def interpolate(self, frame0, frame1, timesteps):
        return self.interpolator.interpolate(frame0, frame1, timesteps)

    def info(self) -> dict:
        return {"name": self.name, "description": self.description, "why": self.why,
                "candidates": self.candidates}


def _torch_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _load_vfimamba(opts: ModelOptions, log) -> Interpolator:
    import vfimamba
    ckpt = opts.ckpt or vfimamba.find_checkpoint([str(p) for p in cache.checkpoint_folders()])
    if ckpt is None:
        folders = " or ".join(str(p) for p in cache.checkpoint_folders())
        raise Unavailable(f"no VFIMamba checkpoint in {folders}; {vfimamba.DOWNLOAD_HINT}")
    device = _torch_device(opts.device)
    model = vfimamba.load(ckpt, device=device, precision=opts.precision, tta=opts.tta, compile=opts.compile)
    if device == "cpu":
        log("note: VFIMamba on the CPU is slow: measured on 2 cores, about 9 s (VFIMamba_S) to 36 s "
            "(VFIMamba) per 720p frame, twice that with TTA; a CUDA GPU takes tens of milliseconds")
    return model


def _load_rife(opts: ModelOptions, log) -> Interpolator:
    import rife
    folder = opts.cache_dir or cache.cache_dir()
    if not rife.weights_available(folder):
        if opts.offline:
            raise Unavailable(f"the RIFE weights are not cached in {folder} and downloads are off (--offline)")
        why = rife.weights.unwritable(rife.weights.cached_path(folder).parent)
        if why:
            fix = "give a writable cache_dir" if opts.cache_dir else f"set {cache.ENV} to a writable folder"
            raise Unavailable(f"the RIFE weights are not cached and the cache folder {folder} cannot be written "
                              f"({why}); {fix}")
    return rife.load(device=_torch_device(opts.device), precision=opts.precision, cache_dir=folder,
                     offline=opts.offline, log=log)


def _load_flow(opts: ModelOptions, log) -> Interpolator:
    return FlowInterpolator()


def _load_blend(opts: ModelOptions, log) -> Interpolator:
    return BlendInterpolator()


# name -> loader(options, log): an Interpolator, or Unavailable with the reason
REGISTRY: dict[str, Callable[[ModelOptions, Callable], Interpolator]] = {
    "vfimamba": _load_vfimamba,
    "rife": _load_rife,
    "flow": _load_flow,
    "blend": _load_blend,
}
# What `auto` tries, best first (bench/results/quality.md and models.md say why).
AUTO = ("vfimamba", "rife", "flow")
# The models that need no PyTorch: loading them takes no time, so the command loads them where it is
# (the others load in a process of their own: splice.worker).
IN_PROCESS = ("flow", "blend")
MODEL_NAMES = ("auto",) + tuple(REGISTRY)


def _model_errors() -> tuple[type[BaseException], ...]:
    """The model packages' own exceptions, translated into one-line user errors here."""
    errors: list[type[BaseException]] = [ValueError]
    for package, name in (("vfimamba", "VFIMambaError"), ("rife", "RifeError")):
        try:
            errors.append(getattr(__import__(package), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def check_device(device: str) -> None:
    """--device cuda on a machine without CUDA fails for every model, before anything is loaded."""
    if device not in ("auto", "cuda", "cpu"):
        raise UserError(f"--device {device!r} is not one of auto, cuda, cpu")
    if device == "cuda":
        try:
            import torch
            ok = torch.cuda.is_available()
        except ImportError:
            ok = False
        if not ok:
            raise UserError("--device cuda was asked for but PyTorch sees no CUDA GPU here; "
                            "use --device cpu (or auto)")


def _cuda_context(ctypes) -> bool:
    """Start the CUDA driver and GPU 0's primary context through the driver's own library, before
    PyTorch does (about 0.3 s on an H100 host): the context is per process, and PyTorch takes the
    one that exists. False where there is no driver or no GPU."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        return (cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
                and cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0)
    except (OSError, AttributeError):
        return False


def _torch_has_cuda() -> bool:
    """The installed PyTorch is a CUDA build, found without importing it (its CUDA library is
    there): a CPU build on a machine with a GPU must not start a context it will never use. (A build
    that keeps that library elsewhere, as some conda packages do, just goes without the head start.)"""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec("torch")
    folders = spec.submodule_search_locations if spec is not None else None
    return any(any(Path(folder, "lib").glob("libtorch_cuda*")) for folder in folders or ())


def _prefetch(names: Sequence[str], device: str) -> None:
    """Start CUDA's driver and GPU 0's context in a thread (for "auto" and "cuda": the GPU PyTorch
    will use) when some of these models need PyTorch and it is a CUDA build, so that it overlaps
    the import of PyTorch (seconds): ctypes releases the GIL during the calls. Nothing happens where
    no GPU answers: the load then says what is wrong, as before. The thread imports nothing (ctypes
    is imported here, first): an import in a thread beside the import of PyTorch could meet it halfway."""
    if device not in ("auto", "cuda") or set(names) <= set(IN_PROCESS) or not _torch_has_cuda():
        return
    import ctypes
    threading.Thread(target=_cuda_context, args=(ctypes,), name="gpu-prefetch", daemon=True).start()


def load_interpolator(name: str = "auto", device: str = "auto", log=print, **options) -> LoadedModel:
    """The interpolator for `name` (see REGISTRY); `auto` tries AUTO in order and takes the first
    that can be had, recording each candidate's reason. Options: see ModelOptions."""
    if name not in MODEL_NAMES:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    names = AUTO if name == "auto" else (name,)
    _prefetch(names, device)
    check_device(device)
    opts = ModelOptions(device=device, **options)
    candidates: list[dict] = []
    for candidate in names:
        try:
            interp = REGISTRY[candidate](opts, log)
        except Unavailable as e:
            if name != "auto":
                raise UserError(str(e)) from None
            candidates.append({"name": candidate, "taken": False, "reason": str(e)})
            continue
        except ImportError as e:
            if name != "auto":
                raise UserError(f"{candidate} cannot be imported ({e}); install the requirements") from None
            candidates.append({"name": candidate, "taken": False, "reason": f"cannot be imported ({e})"})
            continue
        except _model_errors() as e:
            # a checkpoint that is there but broken fails loudly, auto or not; a download that
            # failed lets auto fall back, saying why
            if name == "auto" and candidate == "rife":
                candidates.append({"name": candidate, "taken": False, "reason": str(e)})
                continue
            raise UserError(str(e)) from None
        if name == "auto":
            why = ("the best model available" if not candidates else
                   "; ".join(f"{c['name']}: {c['reason']}" for c in candidates) + f"; {candidate} is next")
        else:
            why = f"asked for with --model {candidate}"
        candidates.append({"name": candidate, "taken": True, "reason": why})
        return LoadedModel(interp, getattr(interp, "name", candidate), getattr(interp, "description", candidate),
                           why, candidates)
    raise UserError("no model could be loaded: " + "; ".join(f"{c['name']}: {c['reason']}" for c in candidates))


