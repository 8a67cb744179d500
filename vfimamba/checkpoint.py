"""Loading official VFIMamba checkpoints (.pkl files holding a DDP state dict) safely.

torch.load runs with weights_only=True: a .pkl downloaded from the internet is a pickle, and a plain
pickle can run arbitrary code when it is loaded. weights_only only rebuilds tensors and containers.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile

import torch

from .errors import VFIMambaError
from .model import Config, VFIMambaNet

# A key present in both configs whose shape tells them apart: (F, 3, 3, 3).
_PROBE = "feature_bone.block0.conv.0.weight"


def _first(names, n=3):
    names = sorted(names)
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _refusal_reason(e: Exception) -> str:
    """What the weights-only unpickler objected to, in a few words (torch's own message goes on to
    suggest loading the file unsafely, which we never repeat)."""
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
    what = re.split(r"\. | was not ", m.group(1).strip())[0].rstrip(".") if m else ""
    return f"weights-only unpickling rejected it: {what}" if what else "weights-only unpickling rejected it"


def read_state_dict(path: str, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a plain {name: float32 tensor} dict, the official way.

    Like the official convert(), keys lose their "module." prefix (DDP) and those containing
    "attn_mask" or "HW" are dropped; unlike it, keys without the prefix are accepted too.
    mmap: map the file instead of reading it (zip-format files, torch.save's default): the tensors
    are read from the page cache when first used, which saves reading and copying 264 MB for a
    net that goes to the GPU at once (0.2-0.5 s -> 0.05 s for torch.load on a 2-core CPU). Such
    tensors stay backed by the file, so a net kept on the CPU should not use them.
    """
    if not os.path.isfile(path):
        raise VFIMambaError(f"VFIMamba checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing them
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True,
                             mmap=mmap and zipfile.is_zipfile(path))  # the legacy format cannot be mapped
    except pickle.UnpicklingError as e:
        raise VFIMambaError(f"refusing to load {path}: it is not a plain tensor checkpoint "
                            f"({_refusal_reason(e)}), and unpickling anything else could run code; "
                            f"use an official VFIMamba .pkl") from None
    except Exception as e:  # truncated file, not a torch file at all, ...
        raise VFIMambaError(f"cannot read {path} as a PyTorch checkpoint: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise VFIMambaError(f"{path} is not a VFIMamba checkpoint: expected a dict of tensors, got {type(obj).__name__}")
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
        raise VFIMambaError(f"{path} is not a VFIMamba checkpoint: no {_PROBE}")
    if w.shape[0] not in (16, 32):
        raise VFIMambaError(f"{path}: unsupported VFIMamba width F={w.shape[0]} (expected 16 or 32)")
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
        raise VFIMambaError(f"{path} is not a VFIMamba checkpoint ({'; '.join(problems)})")


def load_net(path: str, device="cpu") -> VFIMambaNet:
    """Build the right config for `path`, load it strictly, return it in eval mode on `device`."""
    sd = read_state_dict(path, mmap=torch.device(device).type != "cpu")   # copied to the device at once
    cfg = infer_config(sd, path)
    with torch.device("meta"):
        net = VFIMambaNet(cfg)
    check_keys(net, sd, path)
    net.load_state_dict(sd, strict=True, assign=True)
    return net.to(device).eval()
