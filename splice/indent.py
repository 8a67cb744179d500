"""Choosing the indent: which pair of endpoints (A+i, B-j) is easiest to bridge.

Every valid indent i gives a pair of source frames the model must connect: A+i on the left and
B-j = B-(n-1-i-m) on the right. An interpolator handles small, smooth motion well and struggles
with large motion and with change that motion cannot explain (a mouth opening, a blink, a
lighting change). So each pair is scored on small grey frames with DIS optical flow:

    motion   = 90th percentile of the flow length, in pixels of a 256-pixel-wide frame
               (the percentile looks at the moving part, the face, not the still background)
    residual = mean absolute grey-level difference left after warping the right frame onto
               the left one with that flow (0..255): the change that motion does not explain
    score    = motion + residual

Lower is easier. The CLI's `--time-indent auto` and find_indent.ipynb both call `score_indents`.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from .media import usable_cores

ANALYSIS_WIDTH = 256


def analysis_size(width: int, height: int) -> tuple[int, int]:
    return ANALYSIS_WIDTH, max(8, round(height * ANALYSIS_WIDTH / width))


def analysis_frame(rgb: np.ndarray) -> np.ndarray:
    """The small grey frame every score is computed on, from an RGB image."""
    h, w = rgb.shape[:2]
    size = analysis_size(w, h)
    return cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)


def analysis_frame_of(frame) -> np.ndarray:
    """The same from a decoded frame: swscale shrinks it straight to grey, skipping full-size RGB
    (the analysis decodes about 2n frames, so this is most of its cost)."""
    width, height = analysis_size(frame.width, frame.height)
    return frame.reformat(width=width, height=height, format="gray", interpolation="AREA").to_ndarray()


@dataclass(frozen=True)
class PairScore:
    motion: float
    residual: float

    @property
    def score(self) -> float:
        return self.motion + self.residual


def optical_flow(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """DIS flow from `left` to `right` (H, W, 2): left(p) matches right(p + flow(p))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(left, right, None)


def warp(right: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`right` pulled back onto the left frame's grid by `flow` (from `optical_flow(left, right)`)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(right, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def score_pair(left: np.ndarray, right: np.ndarray) -> PairScore:
    flow = optical_flow(left, right)
    warped = warp(right, flow)
    motion = float(np.percentile(np.hypot(flow[..., 0], flow[..., 1]), 90))
    residual = float(np.mean(np.abs(left.astype(np.float32) - warped.astype(np.float32))))
    return PairScore(motion, residual)


def score_indents(left_frames, right_frames, workers: int = 1) -> list[PairScore]:
    """left_frames[i] is A+i and right_frames[i] is B-j for indent i (analysis frames).

    With workers > 1 the pairs are scored in threads (OpenCV releases the GIL; DIS itself runs on
    about one core), each as soon as its frames arrive: `right_frames` may be a generator that is
    still decoding. The scores are the same as one at a time."""
    if workers <= 1:
        return [score_pair(l, r) for l, r in zip(left_frames, right_frames)]
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(score_pair, l, r) for l, r in zip(left_frames, right_frames)]
        return [f.result() for f in futures]


def analysis_workers() -> int:
    """Threads for score_indents: the cores this process may use, at most 8."""
    return max(1, min(8, usable_cores()))


def best_indent(scores: list[PairScore]) -> int:
    """The easiest indent; on a tie the smallest, so the splice stays close to A."""
    return min(range(len(scores)), key=lambda i: (round(scores[i].score, 6), i))
