"""Synthetic test videos whose every frame says which source frame it is.

Each frame carries its index as 12 large black/white blocks (bit b is block b, row-major in a
4x3 grid), which survive H.264 at any sane quality, plus a bar that moves a little every frame so
that optical flow has something to follow. Audio is a quiet 220 Hz tone with a loud 20 ms burst
starting at every whole second of source time, so the cut points can be read back from the sound.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

GRID = (3, 4)          # rows, columns
BITS = GRID[0] * GRID[1]
SAMPLE_RATE = 48000
BURST_SECONDS = 0.02


def code_frame(index: int, width: int, height: int) -> np.ndarray:
    rgb = np.zeros((height, width, 3), np.uint8)
    rows, cols = GRID
    for bit in range(BITS):
        r, c = divmod(bit, cols)
        y0, y1 = r * height // rows, (r + 1) * height // rows
        x0, x1 = c * width // cols, (c + 1) * width // cols
        if index >> bit & 1:
            rgb[y0:y1, x0:x1] = 255
    # A grey bar sweeping across: motion for the flow-based scores, never over a block centre.
    x = (index * 3) % max(1, width - 8)
    rgb[:, x:x + 4] = 128
    return rgb


def read_code(rgb: np.ndarray) -> int:
    """The index written by code_frame, read from the centre of each block."""
    height, width = rgb.shape[:2]
    rows, cols = GRID
    gray = rgb.mean(axis=2)
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, cols)
        cy = (2 * r + 1) * height // (2 * rows)
        cx = (2 * c + 1) * width // (2 * cols)
        patch = gray[cy - height // (4 * rows): cy + height // (4 * rows), cx - width // (8 * cols): cx + width // (8 * cols)]
        if np.median(patch) > 128:
            value |= 1 << bit
    return value


def tone_with_bursts(seconds: float) -> np.ndarray:
    """Stereo float32 (2, samples): the test soundtrack."""
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    audio = 0.1 * np.sin(2 * np.pi * 220 * t)
    burst = (t % 1.0) < BURST_SECONDS
    audio[burst] = 0.8 * np.sin(2 * np.pi * 2000 * t[burst])
    return np.stack([audio, audio]).astype(np.float32)


def burst_onsets(audio: np.ndarray, rate: int = SAMPLE_RATE) -> list[float]:
    """Times (s) where a loud burst begins."""
    env = np.abs(audio).max(axis=0)
    loud = env > 0.45
    onsets, last = [], -1.0
    for i in np.flatnonzero(loud):
        t = i / rate
        if t - last > 0.1:
            onsets.append(t)
        last = t
    return onsets


def make_video(path, rate=Fraction(25), frames=425, size=(320, 240), audio=True, rotation=0,
               pix_fmt="yuv420p", gop=30):
    """Write the test video; B-frames and a short GOP so that seeking is exercised."""
    rate = Fraction(rate)
    width, height = size
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        v.options = {"crf": "12", "preset": "veryfast", "g": str(gop), "bf": "2"}
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
            sound = tone_with_bursts(float(frames / rate) + 0.5)
            step = 1024
            for start in range(0, sound.shape[1], step):
                f = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start:start + step]),
                                               format="fltp", layout="stereo")
                f.sample_rate, f.pts, f.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
                for p in a.encode(f):
                    out.mux(p)
        for k in range(frames):
            f = av.VideoFrame.from_ndarray(code_frame(k, width, height), format="rgb24")
            f.pts, f.time_base = k, 1 / rate
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            for p in a.encode():
                out.mux(p)
    return path


def decode_codes(path) -> list[int]:
    with av.open(str(path)) as c:
        return [read_code(f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]


def decode_audio(path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = [f.to_ndarray() for f in c.decode(s)]
        return np.concatenate(chunks, axis=1), s.codec_context.sample_rate
