"""Milliseconds per generated frame for each model the CLI offers, at several sizes.

    python3 -m bench.bench_models [--models blend,flow,rife,vfimamba] [--sizes 480p,720p,1080p] [--device auto]

Times `interpolate(frame0, frame1, [0.5])` through `splice.models.load_interpolator` (what the CLI runs),
on two frames of the drawn sample scene, after one warm-up call; the median of --repeats runs.
Peak GPU memory is reported on CUDA. Appends a dated, machine-labelled table to
bench/results/models.md. vfimamba needs a checkpoint (--ckpt or ckpt/).
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]

from bench.bench_pipeline import append_results, machine  # noqa: E402
from splice.models import load_interpolator  # noqa: E402
from splice.sample import draw  # noqa: E402

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080), "2160p": (3840, 2160)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="blend,flow,rife")
    p.add_argument("--sizes", default="480p,720p,1080p")
    p.add_argument("--device", default="auto")
    p.add_argument("--ckpt")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import torch
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    rows = []
    for name in args.models.split(","):
        model = load_interpolator(name, args.device, log=lambda *a: None, ckpt=args.ckpt)
        for size in args.sizes.split(","):
            w, h = SIZES[size]
            f0 = cv2.resize(draw(100), (w, h), interpolation=cv2.INTER_AREA)
            f1 = cv2.resize(draw(103), (w, h), interpolation=cv2.INTER_AREA)
            model.interpolator.interpolate(f0, f1, [0.5])   # warm-up: allocation, autotuning
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                model.interpolator.interpolate(f0, f1, [0.5])   # returns host uint8: synchronised
                times.append((time.perf_counter() - start) * 1000)
            memory = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if cuda else "-"
            rows.append((model.description, size, statistics.median(times), memory))
            print(f"{model.description} {size}: {statistics.median(times):.1f} ms")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {stamp} on {machine()}\n", "| model | size | ms per frame (median) | peak GPU MiB |", "|---|---|---|---|"]
    lines += [f"| {d} | {s} | {t:.1f} | {m} |" for d, s, t, m in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    append_results("models", "# Models: ms per generated frame\n\nMade by `python3 -m bench.bench_models` (one timestep per call, "
                       "the way the CLI calls models, including upload, padding and conversion).\n", text)


if __name__ == "__main__":
    main()
