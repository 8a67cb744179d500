"""interpolate_video's library: smooth jump cuts with generated frames.

    import splice
    model = splice.load_interpolator("auto")          # once
    video = splice.open_video("talk.mp4")
    splice.splice_video(model, video, "clip.mp4", frame_a="6s", frame_b="23.3s")   # the 15-s splice
    splice.edit_video(model, video, "edit.mp4", keep=["0-12.5s", "18.2s-40s"])     # a whole edit

The command line (`interpolate-video`, splice.cli) is a thin layer over these.

The names below are imported when first used, so that `import splice.models` (what a model's own
process needs: splice.worker) does not pay for PyAV and the rest of the pipeline.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# public name -> the module that defines it
_EXPORTS = {
    "VERSION": "version", "EditJob": "api", "SpliceJob": "api", "edit_video": "api", "open_video": "api",
    "prepare_edit": "api", "prepare_splice": "api", "render_job": "api", "splice_video": "api",
    "UserError": "errors", "LoadedModel": "models", "load_interpolator": "models", "EncodeOptions": "render",
}

__all__ = ["load_interpolator", "open_video", "splice_video", "edit_video", "prepare_splice", "prepare_edit",
           "render_job", "EncodeOptions", "LoadedModel", "SpliceJob", "EditJob", "UserError", "__version__"]


def __getattr__(name: str):
    if name == "__version__":
        name = "VERSION"
    if name not in _EXPORTS:
        raise AttributeError(f"module 'splice' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .api import (EditJob, SpliceJob, edit_video, open_video, prepare_edit, prepare_splice,
                      render_job, splice_video)
    from .errors import UserError
    from .models import LoadedModel, load_interpolator
    from .render import EncodeOptions
    from .version import VERSION
    __version__ = VERSION
