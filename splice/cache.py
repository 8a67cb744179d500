"""Where downloaded weights live: a user cache, as pip and whisper keep theirs.

    $INTERPOLATE_VIDEO_CACHE, else $XDG_CACHE_HOME/interpolate_video, else ~/.cache/interpolate_video

VFIMamba checkpoints are also looked for in ckpt/ of a source checkout first, since the README's
download commands put them there.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "INTERPOLATE_VIDEO_CACHE"
CHECKOUT_CKPT = Path(__file__).resolve().parents[1] / "ckpt"


def cache_dir() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "interpolate_video"


def checkpoint_folders() -> list[Path]:
    """Where VFIMamba checkpoints are looked for, in order."""
    return [CHECKOUT_CKPT, cache_dir()]
