"""Loading official VFIMamba checkpoints (.pkl files holding a DDP state dict) safely.

torch.load runs with weights_only=True: a .pkl downloaded from the internet is a pickle, and a plain
pickle can run arbitrary code when it is loaded. weights_only only rebuilds tensors and containers.
"""
from __future__ import annotations

import os
import pickle

import torch

from splice.models import ModelError

from .model import Config, VFIMambaNet

# A key present in both configs whose shape tells them apart: (F, 3, 3, 3).
_PROBE = "feature_bone.block0.conv.0.weight"


def _first(names, n=3):
    names = sorted(names)
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a plain {name: float32 tensor} dict, the official way.

    Like the official convert(), keys lose their "module." prefix (DDP) and those containing
    "attn_mask" or "HW" are dropped; unlike it, keys without the prefix are accepted too.
    """
    if not os.path.isfile(path):
        raise ModelError(f"VFIMamba checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"refusing to load {path}: it is not a plain tensor checkpoint "
                         f"(weights_only unpickling rejected it: {first})") from None
    except Exception as e:  # truncated file, not a torch file at all, ...
        raise ModelError(f"cannot read {path} as a PyTorch checkpoint: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} is not a VFIMamba checkpoint: expected a dict of tensors, got {type(obj).__name__}")
    prefixed = any(str(k).startswith("module.") for k in obj)
    sd = {}
    for k, v in obj.items():
        k = str(k)
        if prefixed:
            if not k.startswith("module."):
                continue
            k = k[len("module."):]
        if "attn_mask" in k or "HW" in k:
            continue
        sd[k] = v.float() if v.is_floating_point() else v
    return sd


def infer_config(sd: dict[str, torch.Tensor], path: str = "checkpoint") -> Config:
    w = sd.get(_PROBE)
    if w is None or w.dim() != 4:
        raise ModelError(f"{path} is not a VFIMamba checkpoint: no {_PROBE}")
    if w.shape[0] not in (16, 32):
        raise ModelError(f"{path}: unsupported VFIMamba width F={w.shape[0]} (expected 16 or 32)")
    return Config(F=int(w.shape[0]))


def check_keys(net: torch.nn.Module, sd: dict, path: str = "checkpoint"):
    """One clear line naming the first missing / unexpected / mis-shaped keys, instead of a traceback."""
    own = net.state_dict()
    missing = own.keys() - sd.keys()
    unexpected = sd.keys() - own.keys()
    shapes = [k for k in own.keys() & sd.keys() if tuple(own[k].shape) != tuple(sd[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if shapes:
        k = sorted(shapes)[0]
        problems.append(f"shape mismatch: {k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}")
    if problems:
        raise ModelError(f"{path} is not a VFIMamba checkpoint ({'; '.join(problems)})")


def load_net(path: str, device="cpu") -> VFIMambaNet:
    """Build the right config for `path`, load it strictly, return it in eval mode on `device`."""
    sd = read_state_dict(path)
    cfg = infer_config(sd, path)
    with torch.device("meta"):
        net = VFIMambaNet(cfg)
    check_keys(net, sd, path)
    net.load_state_dict(sd, strict=True, assign=True)
    return net.to(device).eval()
