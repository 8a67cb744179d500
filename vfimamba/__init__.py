"""VFIMamba (NeurIPS 2024, MCG-NJU/VFIMamba) video frame interpolation: a clean-room PyTorch port
that loads the official checkpoints and needs no CUDA extension.

    import vfimamba
    interp = vfimamba.load("VFIMamba.pkl", device="cuda")     # precision: fp16 there by default
    mids = interp.interpolate(rgb0, rgb1, [0.25, 0.5, 0.75])

Everything this package cannot do as asked raises VFIMambaError with a one-line message.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from . import triton_key
from .errors import VFIMambaError

__all__ = ["load", "find_checkpoint", "default_checkpoint", "VFIMambaError", "VFIMambaInterpolator", "VFIMambaNet", "Config",
           "selective_scan", "available_backends"]

# The model's names are imported on first use: `import vfimamba` (which the CLI does to look for a
# checkpoint) then costs nothing when the answer is RIFE or flow, instead of importing PyTorch.
_LAZY = {"VFIMambaInterpolator": "inference", "VFIMambaNet": "model", "Config": "model",
         "selective_scan": "scan", "available_backends": "scan"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

REPO_ROOT = Path(__file__).resolve().parents[1]
_URL = "https://huggingface.co/MCG-NJU/VFIMamba_ckpts/resolve/main"
DOWNLOAD_HINT = (f"download it with: wget -P ckpt {_URL}/VFIMamba.pkl "
                 f"(or the smaller VFIMamba_S: wget -P ckpt {_URL}/VFIMamba_S.pkl)")
CHECKPOINT_NAMES = ("VFIMamba.pkl", "VFIMamba_S.pkl")


def find_checkpoint(folders) -> str | None:
    """The first of VFIMamba.pkl, VFIMamba_S.pkl found in `folders` (searched in order), else None."""
    for folder in folders:
        for name in CHECKPOINT_NAMES:
            p = Path(folder) / name
            if p.is_file():
                return str(p)
    return None


def default_checkpoint() -> str | None:
    """find_checkpoint() in the checkout's ckpt/ folder."""
    return find_checkpoint([REPO_ROOT / "ckpt"])


def load(ckpt_path: str | None = None, device: str = "cpu", precision: str | None = None,
         tta: bool | None = None, scale: float | None = None, scan_backend: str = "auto",
         compile: bool = False, cuda_graphs: bool = True) -> VFIMambaInterpolator:
    """Load an official checkpoint and wrap it as an Interpolator.

    tta: None = the official demos' default (on for VFIMamba, off for VFIMamba_S).
    scale: flow-estimation scale; None picks it from the frame size (0.5 for 2K, 0.25 for 4K).
    scan_backend: "auto", "torch", "mamba_ssm" or "triton".
    precision: None = "fp16" on CUDA with a CUDA scan kernel (within ~0.05/255 mean, <0.4/255 max
    of the official float32 output on real frames), "fp32" elsewhere; "fp32" = exact float32 (TF32
    off, as the fixtures); "fp16", "bf16", "tf32": that precision (falls back with a warning where
    CUDA or a CUDA scan is missing).
    compile: on CUDA, TorchInductor compiles each input shape's forward as one graph, replayed as a
    CUDA graph (about half a minute per frame size the first time; from torch 2.13 saved in the
    user cache folder, so a later process loads it; see vfimamba/compiled.py). The default
    replays graphs too, so it saves about 2 ms a 720p VFIMamba frame on an H200: see the README.
    cuda_graphs: on CUDA, capture each input shape's forward once as a CUDA graph and replay it
    (the same kernels without the CPU's launch cost; about 1 GiB of GPU memory held per shape at
    720p, for the last few shapes). False runs every call op by op.
    """
    import torch

    from .layers import TRITON_BACKENDS   # (imports only torch)
    if str(device).startswith("cuda") and scan_backend in TRITON_BACKENDS:
        triton_key.start()   # every Triton kernel's first launch needs it: it overlaps the rest of the load

    from .checkpoint import load_net
    from .inference import VFIMambaInterpolator, check_precision, normalise_scale, prefetch_gpu_libraries
    from .scan import resolve_backend

    if ckpt_path is None:
        ckpt_path = default_checkpoint()
        if ckpt_path is None:
            raise VFIMambaError(f"no VFIMamba checkpoint in {REPO_ROOT / 'ckpt'}; {DOWNLOAD_HINT}")
    if not Path(ckpt_path).is_file():
        raise VFIMambaError(f"VFIMamba checkpoint not found: {ckpt_path}; {DOWNLOAD_HINT}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise VFIMambaError(f"device={device!r} is not a device name (use 'cpu' or 'cuda')") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VFIMambaError(f"device={device!r} was asked for but CUDA is not available; use device='cpu'")
    try:
        backend = resolve_backend(scan_backend, dev)
        scale = None if scale is None else normalise_scale(scale)
        check_precision(precision)
    except ValueError as e:
        raise VFIMambaError(str(e)) from None
    libraries = prefetch_gpu_libraries(dev)
    net = load_net(ckpt_path, dev)
    net.set_scan_backend(backend)
    model = VFIMambaInterpolator(net, ckpt_path=_display_path(ckpt_path), device=dev, tta=tta, scale=scale,
                                 scan_backend=backend, precision=precision, compile=compile,
                                 cuda_graphs=cuda_graphs)
    if libraries is not None:
        libraries.join()   # done before any graph capture can start (a capture forbids other work on the GPU)
    return model


def _display_path(p: str) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)
