"""Make a sample input: 20 s of a drawn 'talking head' at 1280x720, 25 fps, with sound.

    python3 -m splice.sample outputs/sample.mp4 [SECONDS]

For trying the tool on a machine with no footage of its own. The face sways, blinks and moves its
mouth in time with a voice-like buzz, so the splice has motion to bridge and sound to cut.
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

RATE, SECONDS, SIZE, SAMPLE_RATE = 25, 20, (1280, 720), 48000


def mouth_opening(t: float) -> float:
    """0 (closed) .. 1 (open): syllables about 4 a second, with pauses between phrases."""
    phrase = (np.sin(2 * np.pi * 0.23 * t) > -0.3)
    return float(phrase) * 0.5 * (1 + np.sin(2 * np.pi * 4.1 * t + 1.3 * np.sin(2 * np.pi * 0.7 * t)))


def draw(k: int) -> np.ndarray:
    w, h = SIZE
    t = k / RATE
    img = np.empty((h, w, 3), np.uint8)
    img[:] = np.linspace(60, 150, w, dtype=np.uint8)[None, :, None]        # a lit wall
    cv2.rectangle(img, (80, 420), (400, 720), (110, 80, 55), -1)           # a shelf
    cx = int(w / 2 + 40 * np.sin(2 * np.pi * 0.15 * t))                   # the head sways
    cy = int(h / 2 + 10 * np.sin(2 * np.pi * 0.31 * t))
    cv2.ellipse(img, (cx, cy + 330), (260, 140), 0, 180, 360, (50, 70, 120), -1)   # shoulders
    cv2.ellipse(img, (cx, cy), (150, 190), 0, 0, 360, (225, 180, 150), -1)         # face
    blink = (t % 3.7) < 0.12
    for ex in (-55, 55):
        cv2.ellipse(img, (cx + ex, cy - 40), (22, 3 if blink else 12), 0, 0, 360, (40, 40, 40), -1)
    opening = mouth_opening(t)
    cv2.ellipse(img, (cx, cy + 85), (45, int(4 + 26 * opening)), 0, 0, 360, (120, 30, 40), -1)
    cv2.putText(img, f"{t:5.2f} s", (w - 260, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    return img


def voice(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.array([mouth_opening(x) for x in t[::480]]).repeat(480)[: len(t)]
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    buzz = sum(np.sin(h * phase) / h for h in range(1, 8))
    return (0.25 * envelope * buzz).astype(np.float32)[None, :].repeat(2, axis=0)


def make_sample(path: str, seconds: int = SECONDS, preset: str = "veryfast") -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(path, "w") as out:
        v = out.add_stream("libx264", rate=RATE)
        v.width, v.height, v.pix_fmt = *SIZE, "yuv420p"
        v.options = {"crf": "18", "preset": preset}
        a = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        sound = voice(seconds)
        for start in range(0, sound.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start:start + 1024]),
                                           format="fltp", layout="stereo")
            f.sample_rate, f.pts, f.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            for p in a.encode(f):
                out.mux(p)
        for k in range(RATE * seconds):
            f = av.VideoFrame.from_ndarray(draw(k), format="rgb24")
            f.pts, f.time_base = k, Fraction(1, RATE)
            for p in v.encode(f):
                out.mux(p)
        for stream in (v, a):
            for p in stream.encode():
                out.mux(p)
    return path


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "outputs/sample.mp4"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else SECONDS   # e.g. 600 for a 10-minute input
    print(f"wrote {make_sample(target, seconds, 'veryfast' if seconds <= 60 else 'ultrafast')}")
