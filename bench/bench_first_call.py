#!/usr/bin/env python3
"""What the user waits for before and around the network: import, model load, the first call against
later ones (with Triton's kernel cache cold, then warm, in a second process), the time interpolate()
spends beyond the network, and which heavy parts of torch the eager path imports.

    python3 -m bench.bench_first_call [--device cuda] [--models vfimamba_s,vfimamba,rife]
        [--res 720p] [--weights-s W.pkl] [--trace] [--results bench/results/first_call.md]

Each (model, cache state) runs in a fresh interpreter. "cold" starts with an empty cache folder
(XDG_CACHE_HOME points at a new temporary folder, so Triton and the CPU scan build from scratch);
"warm" is a second process over the same folder. Weights: VFIMamba_S from --weights-s when given,
else random (saved once as a state dict; the loader takes any with the right keys), VFIMamba (F=32)
and RIFE random. Frames: a smooth random texture and the same shifted by 6 pixels, never zeros.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
HEAVY = ("torch._dynamo", "torch._inductor", "torch.fx", "sympy", "torch.distributed")

CHILD = r'''
import json, statistics, sys, time
t0 = time.perf_counter()
import torch
t_torch = time.perf_counter() - t0
base = set(sys.modules)
if TRACE:
    import builtins, traceback
    _imp = builtins.__import__
    _done = []
    def _hook(name, globals=None, locals=None, fromlist=(), level=0):
        mod = _imp(name, globals, locals, fromlist, level)
        if not _done:
            new = [m for m in sys.modules if m not in base and any(m == p or m.startswith(p + ".") for p in HEAVY)]
            if new:
                _done.append(new[0])
                print("TRACE first heavy import:", new[0], "via", name, file=sys.stderr)
                traceback.print_stack(limit=30, file=sys.stderr)
        return mod
    builtins.__import__ = _hook
import numpy as np
W, H = RESXY
rng = np.random.default_rng(0)
import cv2
tex = cv2.resize(rng.integers(0, 256, (H // 8 + 2, W // 8 + 2, 3), dtype=np.uint8), (W + 48, H + 48), interpolation=cv2.INTER_CUBIC)
f0, f1 = np.ascontiguousarray(tex[24:24 + H, 24:24 + W]), np.ascontiguousarray(tex[24:24 + H, 18:18 + W])
t1 = time.perf_counter()
if MODEL == "rife":
    import rife
    model = rife.load(device=DEVICE, weights_path=WEIGHTS)
else:
    import vfimamba
    model = vfimamba.load(WEIGHTS, device=DEVICE, tta=False, compile=COMPILE)
sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
sync()
t_load = time.perf_counter() - t1
t_warm = None
if WARMUP:  # one small pair first: what of the first call's cost is per process, not per frame size
    s = time.perf_counter()
    if WARMUP == "sized" and hasattr(model, "warmup"):
        model.warmup((H, W))  # the interpolator's own warm-up at the frames' size
    else:
        model.interpolate(f0[:96, :128].copy(), f1[:96, :128].copy(), [0.5])
    sync()
    t_warm = time.perf_counter() - s
net_ms = None
if MODEL != "rife":  # the network alone on device tensors, as interpolate() calls it
    from vfimamba.inference import Padder, auto_scale, pad_divisor
    scale = auto_scale(H, W) if model.scale is None else model.scale
    padder = Padder(H, W, pad_divisor(scale))
    both = padder(model._upload([f0, f1]))
    def network():
        with model._precision():
            model.predict(both[0:1], both[1:2], [0.5], scale)
calls, net = [], []
for i in range(N):  # interpolate() and the network alone, alternately, so both see the same clocks
    s = time.perf_counter()
    if i == 0 and PROFILE:
        import cProfile, pstats, io
        prof = cProfile.Profile()
        prof.enable()
    out = model.interpolate(f0, f1, [0.5])
    sync()
    if i == 0 and PROFILE:
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(22)
        print("PROFILE first call, by own time\n" + buf.getvalue()[-5000:], file=sys.stderr)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        print("PROFILE first call, cumulative\n" + buf.getvalue()[-6000:], file=sys.stderr)
    calls.append(time.perf_counter() - s)
    if MODEL != "rife" and i:
        sync(); s = time.perf_counter()
        network()
        sync(); net.append(time.perf_counter() - s)
assert out[0].shape == f0.shape and out[0].dtype == np.uint8 and 0 < out[0].mean() < 255
if net:
    net_ms = statistics.median(net[1:]) * 1e3
heavy = sorted(m for m in set(sys.modules) - base if any(m == p or m.startswith(p + ".") for p in HEAVY))
print("RESULT" + json.dumps(dict(
    import_torch_s=t_torch, load_s=t_load, warmup_ms=None if t_warm is None else t_warm * 1e3, first_ms=calls[0] * 1e3, second_ms=calls[1] * 1e3,
    later_ms=statistics.median(calls[2:]) * 1e3, net_ms=net_ms, heavy=len(heavy), heavy_first=heavy[:6],
    description=getattr(model, "description", ""))))
'''


def make_weights(model: str, folder: Path, weights_s: str | None) -> str:
    if model == "vfimamba_s" and weights_s:
        return weights_s
    path = folder / f"random_{model}.pkl"
    if not path.exists():
        code = textwrap.dedent(f"""
            import sys, torch
            torch.manual_seed(0)
            if {model!r} == "rife":
                from rife.ifnet import IFNet
                net = IFNet()
            else:
                from vfimamba.model import Config, VFIMambaNet
                net = VFIMambaNet(Config(F={32 if model == 'vfimamba' else 16}))
            torch.save(net.state_dict(), {str(path)!r})
        """)
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return str(path)


def run_child(model, weights, device, res, cache, n, trace, warmup=False, profile=False, compile=False):
    code = (f"REPO={str(REPO)!r}\nTRACE={trace}\nHEAVY={HEAVY!r}\nRESXY={RES[res]!r}\nMODEL={model!r}\n"
            f"WEIGHTS={weights!r}\nDEVICE={device!r}\nN={n}\nWARMUP={warmup!r}\nPROFILE={profile}\n"
            f"COMPILE={compile}\n" + CHILD)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    env.pop("TRITON_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900,
                          cwd=REPO)
    for tag in ("TRACE", "PROFILE"):
        if tag in proc.stderr:
            print(proc.stderr[proc.stderr.index(tag):][:12000], file=sys.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode or not lines:
        print(proc.stdout[-3000:], proc.stderr[-6000:], file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT"):])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="vfimamba_s,vfimamba,rife")
    ap.add_argument("--res", default="720p", choices=sorted(RES))
    ap.add_argument("--weights-s", default="")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--trace", action="store_true", help="print the stack of the first heavy import")
    ap.add_argument("--states", default="cold,warm", help="cold, warm, warm+warmup (a small pair first), warm+sizedwarmup (interp.warmup at the frames' size), "
                    "warm+profile (cProfile of the first call); with --compile: compile=True processes")
    ap.add_argument("--compile", action="store_true", help="vfimamba.load(compile=True)")
    ap.add_argument("--cache", default="", help="the cache folder (XDG_CACHE_HOME) to start from instead of an empty "
                    "one per model: a folder an earlier run filled makes even the first state warm")
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "first_call.md"))
    ap.add_argument("--machine", default="")
    args = ap.parse_args()
    import torch
    machine = args.machine or (f"{torch.cuda.get_device_name()} + {os.cpu_count()} CPU cores"
                               if args.device == "cuda" else f"CPU only, {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory(prefix="first-call-") as tmp:
        tmp = Path(tmp)
        for model in args.models.split(","):
            weights = make_weights(model, tmp, args.weights_s)
            cache = Path(args.cache) if args.cache else tmp / f"cache-{model}"
            cache.mkdir(parents=True, exist_ok=True)
            for state in args.states.split(","):
                r = run_child(model, weights, args.device, args.res, cache, args.calls, args.trace and state == "cold",
                              warmup="sized" if "sizedwarmup" in state else "warmup" in state,
                              profile="profile" in state, compile=args.compile)
                if args.compile:
                    state += " compile=True"
                if r:
                    rows.append((model, state, r))
                    print(model, state, json.dumps(r), flush=True)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## {when} on {machine} (torch {torch.__version__}, {args.res}, one t=0.5 frame a call, no TTA)\n",
             "| model | Triton/CPU-scan cache | import torch s | load s | small warm-up ms | 1st call ms | 2nd ms "
             "| later ms (median) | network ms | interpolate - network ms | heavy modules imported |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, state, r in rows:
        net = f"{r['net_ms']:.1f}" if r["net_ms"] is not None else "-"
        over = f"{r['later_ms'] - r['net_ms']:.2f}" if r["net_ms"] is not None else "-"
        wu = f"{r['warmup_ms']:.0f}" if r.get("warmup_ms") is not None else "-"
        lines.append(f"| {model} | {state} | {r['import_torch_s']:.2f} | {r['load_s']:.2f} | {wu} | {r['first_ms']:.0f} | "
                     f"{r['second_ms']:.1f} | {r['later_ms']:.1f} | {net} | {over} | {r['heavy']} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.results:
        with open(args.results, "a") as f:
            f.write(table)


if __name__ == "__main__":
    main()
