"""interpolate_video's library: smooth jump cuts with generated frames.

    import splice
    model = splice.load_interpolator("auto")          # once
    video = splice.open_video("talk.mp4")
    splice.splice_video(model, video, "clip.mp4", frame_a="6s", frame_b="23.3s")   # the 15-s splice
    splice.edit_video(model, video, "edit.mp4", keep=["0-12.5s", "18.2s-40s"])     # a whole edit

The command line (`interpolate-video`, splice.cli) is a thin layer over these.
"""
from .api import (VERSION, EditJob, SpliceJob, edit_video, open_video, prepare_edit, prepare_splice,
                  render_job, splice_video)
from .errors import UserError
from .models import LoadedModel, load_interpolator
from .render import EncodeOptions

__version__ = VERSION
__all__ = ["load_interpolator", "open_video", "splice_video", "edit_video", "prepare_splice", "prepare_edit",
           "render_job", "EncodeOptions", "LoadedModel", "SpliceJob", "EditJob", "UserError", "__version__"]
