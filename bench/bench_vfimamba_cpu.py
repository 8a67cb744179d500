"""CPU timing of the VFIMamba port: ms per frame, and the scan backends vs the sequential loop.

    python3 -m bench.bench_vfimamba_cpu                 # VFIMamba_S (fixture weights) at 720p + scan
    python3 -m bench.bench_vfimamba_cpu --models s f32  # also VFIMamba (F=32, random weights)
    python3 -m bench.bench_vfimamba_cpu --scan --sizes 854x480 1920x1080 --models s f32

Appends one dated line per measurement to bench/results/vfimamba_cpu.md (unless --no-record).
The scan comparison times the compiled kernel ("cpu"; "cpu, out=delta" writing its output over
delta, as the network calls it), the vectorised PyTorch scan ("torch") and the sequential loop
(selective_scan_reference), each kernel as the best of 3 calls; the models run with --scan-backend
(default auto: "cpu" where it builds). On a shared machine the numbers move with the load, so the
load average is recorded.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from vfimamba.checkpoint import load_net  # noqa: E402
from vfimamba.inference import Padder, VFIMambaInterpolator  # noqa: E402
from vfimamba.model import Config, VFIMambaNet  # noqa: E402
from vfimamba.scan import (available_backends, resolve_backend, selective_scan,  # noqa: E402
                           selective_scan_reference)

FIX = REPO.parent / "shared" / "fixtures" / "vfimamba"
RESULTS = REPO / "bench" / "results" / "vfimamba_cpu.md"


def machine():
    tunables = os.environ.get("GLIBC_TUNABLES")  # malloc's settings change the CPU timings (splice/worker.py)
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, load avg {os.getloadavg()[0]:.1f}"
            + (f", GLIBC_TUNABLES={tunables}" if tunables else ""))


def record(line: str, enabled: bool):
    print(line, flush=True)
    if enabled:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        new = not RESULTS.exists()
        with RESULTS.open("a") as f:
            if new:
                f.write("# VFIMamba on CPU\n\nOne line per run of bench/bench_vfimamba_cpu.py (scan backend torch).\n\n")
            f.write(f"- {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC: {line}\n")


def frames(w, h):
    """A real-looking pair: fixture frames (BGR) upscaled to (w, h), RGB; else smooth noise."""
    import cv2
    if (FIX / "inputs.npz").is_file():
        z = np.load(FIX / "inputs.npz")
        out = []
        for k in ("img0_192x256", "img1_192x256"):
            bgr = (z[k][0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
            out.append(np.ascontiguousarray(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, ::-1]))
        return out
    rng = np.random.default_rng(0)
    f0 = cv2.resize(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8), (w, h))
    return f0, np.roll(f0, 4, axis=1)


def bench_model(which, w, h, repeat, rec, backend):
    if which == "s":
        path = FIX / "weights_VFIMamba_S.pkl"
        net, src = (load_net(str(path)), "fixture weights") if path.is_file() else (VFIMambaNet(Config(16)).eval(), "random weights")
    else:
        torch.manual_seed(0)
        net, src = VFIMambaNet(Config(32)).eval(), "random weights"
    backend = resolve_backend(backend, "cpu")
    net.set_scan_backend(backend)
    interp = VFIMambaInterpolator(net, tta=False, scan_backend=backend)
    f0, f1 = frames(w, h)
    interp.interpolate(f0[:96, :128], f1[:96, :128], [0.5])  # warm-up at a small size
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = interp.interpolate(f0, f1, [0.5])
        times.append(time.perf_counter() - t)
    assert out[0].shape == (h, w, 3)
    record(f"{net.cfg.name} (F={net.cfg.F}, {src}) {w}x{h}, scan {backend}, 1 timestep, TTA off: "
           f"{min(times) * 1e3:.0f} ms/frame (best of {repeat}; all: {', '.join(f'{x:.1f}s' for x in times)}) "
           f"[{machine()}]", rec)


def bench_scan(F, w, h, rec, ref_steps, ref_repeat=3):
    pad = Padder(h, w, 32).pad
    hp, wp = h + pad[2] + pad[3], w + pad[0] + pad[1]
    d = 4 * 2 * (8 * F)  # K=4 directions x d_inner (= 2 * stage-3 width 8F)
    L = 2 * (hp // 8) * (wp // 8)  # both frames interleaved at stride 8
    g, n = 4, 16
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(1, d, L, generator=gen)
    # Decays like a freshly initialised Mamba: softplus(delta + bias) in about [1e-3, 1e-1], A = -(1..16).
    delta = torch.randn(1, d, L, generator=gen) * 0.5
    bias = torch.log(torch.expm1(torch.exp(torch.rand(d, generator=gen) * (np.log(0.1) - np.log(1e-3)) + np.log(1e-3))))
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    B = torch.randn(1, g, n, L, generator=gen)
    C = torch.randn(1, g, n, L, generator=gen)
    D = torch.ones(d)
    best, outs = {}, {}
    for backend in available_backends("cpu"):  # "cpu" (when it builds) and "torch"
        # "cpu, out=delta": y written over a copy of delta, as the network calls the kernel (a fresh
        # output of this size costs a page fault per 4 KiB)
        for name, reuse in [(backend, False)] + ([("cpu, out=delta", True)] if backend == "cpu" else []):
            times = []
            for _ in range(3):
                dl = delta.clone() if reuse else delta  # (untimed: in the network delta is already there)
                t = time.perf_counter()
                outs[name] = selective_scan(u, dl, A, B, C, D, bias, backend=backend, out=dl if reuse else None)
                times.append(time.perf_counter() - t)
            best[name] = min(times)
    steps = L if ref_steps <= 0 else min(L, ref_steps)
    runs = []
    for _ in range(ref_repeat):  # best of several: on a shared host one run of the loop can take 2x another
        t = time.perf_counter()
        ref = selective_scan_reference(u[..., :steps], delta[..., :steps], A, B[..., :steps], C[..., :steps], D, bias)
        runs.append((time.perf_counter() - t) * L / steps)  # a sequential loop: linear in L
    t_ref = min(runs)
    how = ("measured" if steps == L else f"timed on the first {steps} steps, scaled to L") + \
        f", best of {ref_repeat}" + (f" ({', '.join(f'{x:.1f}' for x in runs)} s)" if ref_repeat > 1 else "")
    parts = [f"{name} {sec * 1e3:.0f} ms ({t_ref / sec:.1f}x, max |diff| "
             f"{(ref - outs[name][..., :steps]).abs().max().item():.1e})" for name, sec in best.items()]
    record(f"scan 1x{d}x{L} (F={F} stage 3 at {w}x{h}): sequential reference {t_ref * 1e3:.0f} ms ({how}); "
           f"{'; '.join(parts)} [{machine()}]", rec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["s"], choices=["s", "f32"])
    ap.add_argument("--scan", nargs="*", type=int, default=[16], help="F values for the scan comparison")
    ap.add_argument("--sizes", nargs="*", default=["1280x720"], help="frame sizes for the models (WxH)")
    ap.add_argument("--scan-size", default="1280x720", help="frame size whose stage-3 scan is timed")
    ap.add_argument("--scan-backend", default="auto", help="scan backend for the models: auto, cpu or torch")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--ref-steps", type=int, default=0, help="time the reference on this many steps only (0: all)")
    ap.add_argument("--ref-repeat", type=int, default=3, help="time the reference this many times and keep the best")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    w, h = (int(x) for x in a.scan_size.split("x"))
    for F in a.scan:
        bench_scan(F, w, h, not a.no_record, a.ref_steps, max(1, a.ref_repeat))
    for size in a.sizes:
        w, h = (int(x) for x in size.split("x"))
        for m in a.models:
            bench_model(m, w, h, a.repeat, not a.no_record, a.scan_backend)


if __name__ == "__main__":
    main()
