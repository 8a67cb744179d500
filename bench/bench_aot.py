#!/usr/bin/env python3
"""An ahead-of-time compiled forward (vfimamba.export + AOTInductor): how long the export and the
compilation take, and what a *later* process pays to load the package and reach full speed, with
its ms per frame and its difference from the eager net.

    python3 -m bench.bench_aot [--device cuda] [--model vfimamba_s] [--res 720p | --size 96x64]
        [--weights-s W.pkl] [--frames pair.npz] [--results bench/results/aot.md]

The net runs as the interpolator runs it: on CUDA the fp16 fast path (half weights, channels-last,
Triton scan, autocast), on the CPU float32 with the C++ scan. One program per frame size. The later
process loads the package with torch's own loader (`torch._C._aoti.AOTIModelPackageLoader`), not
`torch._inductor.package.load_package`, which first compiles probe programs to detect the CPU's
vector instructions (2.6 s on a 2-core CPU, more than 50 s on one GPU host) for a warning only.
On CUDA the loaded forward is also timed replayed from a CUDA graph.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The later process: everything it does is timed from its start.
LOADER = r"""
import json, statistics, sys, time
t0 = time.perf_counter()
import torch
t_import = time.perf_counter() - t0
from vfimamba.export import register_ops
register_ops()
pkg, ref_path, dev = sys.argv[1], sys.argv[2], sys.argv[3]
t1 = time.perf_counter()
loader = torch._C._aoti.AOTIModelPackageLoader(pkg, "model", False, 1, 0 if dev == "cuda" else -1)
t_load = time.perf_counter() - t1
saved = torch.load(ref_path)
x, t, ref = (saved[k].to(dev) for k in ("x", "t", "ref"))
if saved["channels_last"]:
    x = x.contiguous(memory_format=torch.channels_last)
run = lambda a, b: loader.boxed_run([a, b])[0]

def sync():
    if dev == "cuda":
        torch.cuda.synchronize()

with torch.no_grad():
    t1 = time.perf_counter(); out = run(x, t); sync(); first = time.perf_counter() - t1
    diff = ((out.float() - ref).abs() * 255)
    def median_ms(fn, n):
        ts = []
        for _ in range(n):
            sync(); a = time.perf_counter(); fn(x, t); sync(); ts.append((time.perf_counter() - a) * 1e3)
        return statistics.median(ts)
    later = median_ms(run, 10)
    full_speed = time.perf_counter() - t0
    graph_ms = None
    if dev == "cuda":
        sx, st = x.clone(), t.clone()
        side = torch.cuda.Stream(); side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            run(sx, st)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            gout = run(sx, st)
        def replay(a, b):
            sx.copy_(a); st.copy_(b); g.replay(); return gout
        graph_ms = median_ms(replay, 20)
heavy = [m for m in ("torch._dynamo", "torch._inductor", "sympy") if m in sys.modules]
print("RESULT" + json.dumps(dict(import_torch_s=t_import, load_s=t_load, first_s=first, later_ms=later,
      graph_ms=graph_ms, full_speed_s=full_speed, mean255=diff.mean().item(), max255=diff.max().item(), heavy=heavy)))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="vfimamba_s", choices=["vfimamba", "vfimamba_s"])
    ap.add_argument("--res", default="720p")
    ap.add_argument("--size", default="", help="WxH instead of --res (a small one for a CPU)")
    ap.add_argument("--weights-s", default="")
    fixture = REPO.parent / "shared" / "fixtures" / "vfimamba" / "inputs.npz"
    ap.add_argument("--frames", default=str(fixture) if fixture.is_file() else "")
    ap.add_argument("--folder", default="", help="where the package goes (default: a temporary folder)")
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "aot.md"))
    a = ap.parse_args()
    if not a.frames:
        ap.error("--frames: no frame pair given, and the shared fixture inputs.npz is not beside the checkout")
    import torch
    from bench.bench_vfimamba import MODELS, RES, build_ours, load_pair, tf32
    from vfimamba import export as vexport
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_aot: --device cuda needs CUDA")
    w, h = (int(v) for v in a.size.split("x")) if a.size else RES[a.res]
    size = f"{w}x{h}" if a.size else a.res
    cuda = dev.type == "cuda"
    net = build_ours(MODELS[a.model], a.weights_s, dev)
    net.set_scan_backend("triton" if cuda else "cpu")
    x = load_pair(a.frames, w, h, dev)
    t = torch.full((1,), 0.5, device=dev)
    half = torch.float16 if cuda else None
    with tf32(cuda), torch.no_grad():
        if cuda:
            net.set_fast(half_scan=True, channels_last=True, weight_dtype=half)
            net.set_launch_bound(False)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=half or torch.float16, enabled=half is not None):
            ref = net(x, t, scale=0, local=True)[3].float()
            eager_ms = []
            for _ in range(5):
                if cuda:
                    torch.cuda.synchronize()
                t1 = time.perf_counter()
                net(x, t, scale=0, local=True)
                if cuda:
                    torch.cuda.synchronize()
                eager_ms.append((time.perf_counter() - t1) * 1e3)
            eager_ms = sorted(eager_ms)[2]
        t1 = time.perf_counter()
        ep = vexport.export(net, x, t, autocast_dtype=half)
        export_s = time.perf_counter() - t1
    import torch._inductor
    with tempfile.TemporaryDirectory(prefix="aot-") as tmp:
        folder = Path(a.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        pkg = folder / f"{a.model}_{size}_{dev.type}.pt2"
        t1 = time.perf_counter()
        torch._inductor.aoti_compile_and_package(ep, package_path=str(pkg))
        compile_s = time.perf_counter() - t1
        ref_path = folder / "ref.pt"
        torch.save(dict(x=x.cpu().contiguous(), t=t.cpu(), ref=ref.cpu(), channels_last=cuda), ref_path)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        p = subprocess.run([sys.executable, "-c", LOADER, str(pkg), str(ref_path), dev.type],
                           capture_output=True, text=True, env=env)
        mb = pkg.stat().st_size / 2 ** 20
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    machine = (f"{torch.cuda.get_device_name()} + {os.cpu_count()} CPU cores" if cuda
               else f"CPU only, {os.cpu_count()} cores")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"\n## {stamp} on {machine} (torch {torch.__version__})\n\n"
            "| model | size | precision | export s | AOT compile s | package MiB | later process: import torch s | "
            "load s | first call s | full speed at s | ms/frame | replayed ms/frame | eager ms/frame (op by op) | mean / max diff vs eager (/255) | compiler modules imported |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    prec = "fp16" if cuda else "fp32"
    if p.returncode or not lines:
        why = f"the later process failed (exit status {p.returncode}): {(p.stderr.strip().splitlines() or ['?'])[-1]}"
        row = f"| {a.model} | {size} | {prec} | {export_s:.1f} | {compile_s:.1f} | {mb:.0f} | {why} ||||||||| \n"
    else:
        r = json.loads(lines[-1][len("RESULT"):])
        g = f"{r['graph_ms']:.2f}" if r["graph_ms"] is not None else "-"
        row = (f"| {a.model} | {size} | {prec} | {export_s:.1f} | {compile_s:.1f} | {mb:.0f} | {r['import_torch_s']:.2f} | "
               f"{r['load_s']:.2f} | {r['first_s']:.2f} | {r['full_speed_s']:.2f} | {r['later_ms']:.2f} | {g} | "
               f"{eager_ms:.2f} | {r['mean255']:.4f} / {r['max255']:.3f} | {', '.join(r['heavy']) or 'none'} |\n")
    text = head + row
    print(text)
    if a.results:
        with open(a.results, "a") as f:
            if f.tell() == 0:
                f.write("# Ahead-of-time compiled VFIMamba forwards (bench/bench_aot.py)\n")
            f.write(text)


if __name__ == "__main__":
    main()
