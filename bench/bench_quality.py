"""Interpolation quality on real footage: the "gap" task.

    python3 bench/bench_quality.py [CLIP.mp4 ...] [--models flow,blend,rife] [--samples 12]

At evenly spaced i, each model sees frames i and i+2 and predicts i+1 (t = 1/2), and sees i and
i+4 and predicts i+1, i+2, i+3 (t = 1/4, 1/2, 3/4). Scored by PSNR and SSIM (on luma) against the
real frames. These clips hold repeated frames from frame-rate conversion (a 25 fps source shown
at 30 fps repeats one frame in six); a prediction whose target or endpoints include such a
repeat measures nothing real, so results are also given on the clean subset, and the repeats
found are reported. Default clips: the real ones in ../shared/media.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_pipeline import machine  # noqa: E402
from splice.locate import psnr  # noqa: E402
from splice.media import VideoSource, to_rgb  # noqa: E402
from splice.models import load_model  # noqa: E402

REPEAT_PSNR = 48.0   # dB between consecutive frames: the same picture, re-encoded


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luma (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5)."""
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def run(clips, models, samples, device):
    loaded = {name: load_model(name, device, log=lambda *a: None) for name in models}
    rows = {}
    repeats_found = {}
    for clip in clips:
        source = VideoSource(clip)
        starts = np.linspace(10, source.frame_count - 10, samples).astype(int)
        repeats = 0
        for i in starts:
            frames = [to_rgb(f) for _, f in source.frames(i, i + 5)]
            same = [psnr(frames[k], frames[k + 1]) >= REPEAT_PSNR for k in range(4)]
            repeats += sum(same)
            for name, model in loaded.items():
                m = model.interpolator
                tasks = [("gap2", frames[0], frames[2], [0.5], [frames[1]], same[0] or same[1]),
                         ("gap4", frames[0], frames[4], [0.25, 0.5, 0.75], frames[1:4], any(same))]
                for task, f0, f1, ts, targets, dirty in tasks:
                    for pred, target in zip(m.interpolate(f0, f1, ts), targets):
                        for subset in ("all", "clean") if not dirty else ("all",):
                            rows.setdefault((name, task, subset), []).append((psnr(pred, target), ssim(pred, target)))
        repeats_found[Path(clip).name] = f"{repeats} of {4 * len(starts)} consecutive pairs"
    return rows, repeats_found, {k: v.description for k, v in loaded.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("clips", nargs="*")
    p.add_argument("--models", default="blend,flow,rife")
    p.add_argument("--samples", type=int, default=12, help="positions i per clip")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    clips = args.clips or [str(ROOT.parent / "shared" / "media" / n) for n in ("d6.mp4", "d14.mp4", "s18.mp4")]
    clips = [c for c in clips if Path(c).exists()]
    if not clips:
        raise SystemExit("no clips: pass some, or put the shared media beside the checkout")
    rows, repeats, descriptions = run(clips, args.models.split(","), args.samples, args.device)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {stamp} on {machine()}\n",
             f"Clips: {', '.join(Path(c).name for c in clips)}; {args.samples} positions each. "
             f"Repeated frames found (consecutive PSNR >= {REPEAT_PSNR:.0f} dB): "
             + "; ".join(f"{k}: {v}" for k, v in repeats.items()) + ".\n",
             "| model | task | subset | predictions | PSNR dB | SSIM |", "|---|---|---|---|---|---|"]
    for (name, task, subset), values in sorted(rows.items()):
        v = np.array(values)
        lines.append(f"| {name} | {task} | {subset} | {len(v)} | {v[:, 0].mean():.2f} | {v[:, 1].mean():.4f} |")
    lines.append("\nModels: " + "; ".join(f"{k}: {v}" for k, v in descriptions.items()))
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / "quality.md"
    if not out.exists():
        out.write_text("# Interpolation quality on real clips (the gap task)\n\nMade by `bench/bench_quality.py`.\n")
    with open(out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
