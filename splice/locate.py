"""--frame-a / --frame-b: a frame index, a time, or a still image of the frame to find in the video."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .errors import UserError
from .media import VideoSource, to_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
THUMB_WIDTH = 160
CANDIDATES = 8
MIN_MATCH_PSNR = 25.0   # dB; a re-encoded or JPEG-80 still of the frame scores well above 30

_TIME = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)(s?)$")


@dataclass
class FrameChoice:
    index: int
    how: str                         # "index", "time", "image" or "default"
    spec: str
    match: dict = field(default_factory=dict)   # for images: psnr, runner_up, ...


def frame_at_time(source: VideoSource, seconds: Fraction) -> int:
    """The frame on screen at `seconds` from the first frame (the last one that starts by then);
    for variable-rate input, the slot (see media.VideoSource)."""
    if source.variable_rate:
        return min(max(int(seconds * source.rate + Fraction(1, 10**6)), 0), source.frame_count - 1)
    t = source.index.pts[0] + seconds / source.time_base
    k = int(np.searchsorted(np.asarray(source.index.pts, dtype=np.float64), float(t) + 1e-6, side="right")) - 1
    return max(k, 0)


def parse_time(spec: str) -> Fraction | None:
    """'10.4s', '10.4', '1:02.5', '00:00:10.400' -> seconds; None if it is not a time."""
    m = _TIME.match(spec.strip())
    if not m:
        return None
    hours, minutes, secs, unit = m.groups()
    if unit == "" and hours is None and minutes is None:
        return None   # a bare number is a frame index, or handled by the caller
    return Fraction(int(hours or 0) * 3600 + int(minutes or 0) * 60) + Fraction(secs)


def resolve_frame(spec: str | None, name: str, source: VideoSource, default: int) -> FrameChoice:
    """Everything but images (those are located together, in one pass over the video)."""
    if spec is None:
        return FrameChoice(default, "default", "")
    text = spec.strip()
    if re.fullmatch(r"\d+", text):
        k = int(text)
        if k >= source.frames_in_file:
            raise UserError(f"--frame-{name.lower()} {k} is past the end of the video "
                            f"(frames 0..{source.frames_in_file - 1}, {float(source.duration):.2f} s)")
        return FrameChoice(source.slot_of_frame(k), "index", spec)
    t = parse_time(text)
    if t is not None:
        end = source.time_of(source.frame_count - 1)
        if t > end + 1 / source.rate:
            raise UserError(f"--frame-{name.lower()} {spec} is past the end of the video ({float(source.duration):.2f} s)")
        return FrameChoice(frame_at_time(source, t), "time", spec)
    if Path(text).suffix.lower() in IMAGE_SUFFIXES:
        if not Path(text).is_file():
            raise UserError(f"--frame-{name.lower()}: image file not found: {spec}")
        return FrameChoice(-1, "image", spec)
    raise UserError(f"--frame-{name.lower()} {spec!r} is not a frame index (250), a time "
                    f"(10.4s, 00:00:10.400) or an image file (.png, .jpg)")


def _quietly(call, *args):
    """call(*args) with OpenCV's own log lines held back (a damaged image would print one beside
    the error line that says so), its log level put back after."""
    from cv2.utils import logging as cv_logging
    level = cv_logging.getLogLevel()
    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_SILENT)
    try:
        return call(*args)
    finally:
        cv_logging.setLogLevel(level)


def _read_image(path: str, size: tuple[int, int], rotation: int) -> np.ndarray:
    """The still as RGB in the video's stored orientation and size (a still is upright, as shown)."""
    bgr = _quietly(cv2.imread, path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"Cannot read the image {path}; give a PNG or JPEG still of the frame")
    rgb = np.ascontiguousarray(np.rot90(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), k=-(rotation // 90)))
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def _thumb(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (THUMB_WIDTH, max(8, round(h * THUMB_WIDTH / w)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def locate_images(source: VideoSource, choices: list[FrameChoice], progress: bool = True) -> None:
    """Find the frame each image shows: a pass over the whole video on small thumbnails, then the
    closest candidates compared at full size. Fills in choice.index and choice.match."""
    todo = [c for c in choices if c.how == "image"]
    if not todo:
        return
    images = [_read_image(c.spec, (source.width, source.height), source.rotation) for c in todo]
    thumbs = [_thumb(im) for im in images]
    thumb_h, thumb_w = thumbs[0].shape[:2]
    errors = np.zeros((len(todo), source.frame_count), np.float64)
    # The bar is closed (by `with`) before an error can propagate, so the error gets its own line.
    with tqdm(total=source.frame_count, desc="locating", unit="frame", disable=not progress) as bar:
        for k, frame in source.frames(0, source.frame_count):
            t = to_rgb(frame.reformat(width=thumb_w, height=thumb_h, interpolation="AREA")).astype(np.float32)
            for n, th in enumerate(thumbs):
                errors[n, k] = np.mean((t - th) ** 2)
            bar.update(1)
    for n, choice in enumerate(todo):
        candidates = sorted(np.argsort(errors[n])[:CANDIDATES].tolist())
        scores = {}
        for k in candidates:
            for _, frame in source.frames(k, k + 1):
                scores[k] = psnr(to_rgb(frame), images[n])
        ranked = sorted(scores, key=lambda k: (-scores[k], k))
        best = ranked[0]
        # A frame repeated by frame-rate conversion matches equally well: take the first of the run.
        runner_up = next((k for k in ranked[1:] if scores[k] < scores[best] - 1e-9), None)
        choice.index = best
        choice.match = {"psnr_db": round(scores[best], 3),
                        "runner_up": runner_up,
                        "runner_up_psnr_db": None if runner_up is None else round(scores[runner_up], 3),
                        "candidates": {int(k): round(v, 3) for k, v in scores.items()}}
        if scores[best] < MIN_MATCH_PSNR:
            raise UserError(f"The image {choice.spec} matches no frame of the video well enough (best: frame "
                            f"{best} at {scores[best]:.1f} dB PSNR, need {MIN_MATCH_PSNR:.0f} dB); "
                            "give a still exported from this video")
