"""Where the package keeps what it builds once per machine (the CPU scan library, Triton kernels)."""
from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/interpolate_video, by default ~/.cache/interpolate_video."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "interpolate_video"
