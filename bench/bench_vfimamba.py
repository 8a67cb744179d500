#!/usr/bin/env python3
"""VFIMamba on CUDA: ms per frame and peak memory per model, resolution, scan backend and precision,
ours against the official code (when it is present under .ref/VFIMamba), and the accuracy of each
fast variant against the official float32 output on real frames (against our own exact float32
path, which matches the official fixtures, where the official code cannot run).

    python3 -m bench.bench_vfimamba [--res 480p,720p,1080p] [--models vfimamba,vfimamba_s]
        [--variants fp32,tf32,fp16,bf16,fp16-graph] [--frames pair.npz] [--weights-s W.pkl]

One forward = one interpolated frame (t = 0.5, no TTA, scale=0), as the official Trainer_finetune
calls it: net(imgs, local=True, timestep=0.5, scale=0). Inputs are a real frame pair resized to the
resolution (replicate-padded to a multiple of 32), never zeros. cudnn.benchmark on, warm-up, CUDA
events around each call, median. Weights: VFIMamba_S from --weights-s when given (the fixture
weights), otherwise our random initialisation; the official net loads the very same state dict.

Variants of ours:
  fp32        float32, TF32 off (the exact path, matches the fixtures)
  tf32        float32 storage, TF32 convolutions and matmuls
  fp16 / bf16 autocast, channels-last, scan inputs in half (scan state float32), flows float32,
              the convolutions' and projections' weights kept in half precision
  fp16-nocl   fp16 without channels-last
  fp16-nofuse fp16 with PyTorch's ops instead of the fused Triton kernels (layout_triton, act_triton)
  fp16-noact  fp16 with PyTorch's bias add and PReLU after each convolution instead of act_triton's pass
  fp16-graph  fp16 captured in a CUDA graph and replayed (as vfimamba.load runs it on CUDA)
  fp16-graph-nowarp  the same with the backbone features warped by grid_sample, not warp_triton
  fp16-graph-castweights  the same with float32 weights that autocast casts in every forward
Official: "official" = torch defaults (cudnn TF32 on, matmul TF32 off: how the official code runs),
"official-fp32" = TF32 off (the accuracy reference).

Prints a table and appends a dated, machine-labelled markdown table to bench/results/vfimamba_gpu.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]

RES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080), "2160p": (3840, 2160)}
MODELS = {"vfimamba": 32, "vfimamba_s": 16}
VARIANTS = {  # name: (autocast dtype or None, allow tf32, channels_last, half scan inputs, cuda graph)
    "fp32": (None, False, False, False, False),
    "tf32": (None, True, False, False, False),
    "fp16": (torch.float16, True, True, True, False),
    "fp16-nocl": (torch.float16, True, False, True, False),
    "fp16-nofuse": (torch.float16, True, True, True, False),
    "fp16-noact": (torch.float16, True, True, True, False),
    "bf16": (torch.bfloat16, True, True, True, False),
    "fp16-graph": (torch.float16, True, True, True, True),
    "fp16-graph-nowarp": (torch.float16, True, True, True, True),
    "fp16-graph-castweights": (torch.float16, True, True, True, True),
    "bf16-graph": (torch.bfloat16, True, True, True, True),
    "fp16-compile": (torch.float16, True, True, True, False),
    "fp16-compile-graph": (torch.float16, True, True, True, True),
    # the same without rounding the CAB hidden widths up to a multiple of 8 (before 2026-11-26)
    "fp16-nopad": (torch.float16, True, True, True, False),
    "fp16-compile-graph-nopad": (torch.float16, True, True, True, True),
}


def pad32(x):
    h, w = x.shape[-2:]
    ph, pw = (32 - h % 32) % 32, (32 - w % 32) % 32
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="replicate")


def load_pair(path, w, h, dev):
    """A real frame pair (BGR uint8 (2, H, W, 3) in the npz as 'frames', or fixture inputs) at w x h."""
    import cv2
    z = np.load(path)
    if "frames" in z:
        fr = [z["frames"][0], z["frames"][1]]
    else:  # the fixture inputs: float (1, 3, H, W) BGR in [0, 1]
        k0 = sorted(k for k in z if k.startswith("img0_"))[-1]
        fr = [(z[k].transpose(0, 2, 3, 1)[0] * 255).round().astype(np.uint8) for k in (k0, k0.replace("img0", "img1"))]
    ims = [torch.from_numpy(cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC)).permute(2, 0, 1).float() / 255.0
           for f in fr]
    return pad32(torch.cat(ims, 0)[None].to(dev))


def build_ours(F_, weights, dev):
    from vfimamba.checkpoint import load_net
    from vfimamba.model import Config, VFIMambaNet
    if weights and F_ == 16:
        return load_net(weights, dev)
    torch.manual_seed(0)
    return VFIMambaNet(Config(F=F_)).to(dev).eval()


def build_official(F_, state, dev):
    ref = REPO / ".ref" / "VFIMamba"
    if not (ref / "model").is_dir():
        raise RuntimeError(f"official code not found under {ref}")
    try:  # the official code imports itself from its own root: run with PYTHONPATH=.ref/VFIMamba
        import config as cfg  # the official config.py
        from model import mamba_estimation, mamba_extractor
    except ImportError as e:
        raise RuntimeError(f"the official code under {ref} is not importable ({e}); "
                           f"run with PYTHONPATH={ref}") from None
    bcfg, mcfg = cfg.init_model_config(F=F_, depth=[2, 2, 2, 3, 3])
    net = mamba_estimation(mamba_extractor(**bcfg), **mcfg)
    net.load_state_dict(state, strict=True)
    return net.to(dev).eval()


@contextlib.contextmanager
def tf32(on):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def make_fn(net, variant, backend, dev):
    """A callable imgs -> pred for one variant of our net (sets its switches)."""
    ac, _, cl, half, graph = VARIANTS[variant]
    net.set_scan_backend(backend)
    net.set_fast(half_scan=half, channels_last=cl, pad_cabs=not variant.endswith("-nopad"),
                 weight_dtype=ac if cl and not variant.endswith("-castweights") else None)
    from vfimamba.backbone import SS2D
    from vfimamba.layers import ConvPReLU
    for m in net.modules():
        if isinstance(m, SS2D):
            m.fused_layout = not variant.endswith("-nofuse")
        if isinstance(m, ConvPReLU):
            m.fused_act = not variant.endswith(("-nofuse", "-noact"))
    net.fused_warp = not variant.endswith(("-nofuse", "-nowarp"))
    t = torch.full((1,), 0.5, device=dev)

    def fwd(x):
        with torch.autocast("cuda", dtype=ac, enabled=ac is not None):
            return net(x, t, scale=0, local=True)[3]

    net.set_launch_bound(not graph)  # replayed, every convolution takes the fused pass (as the interpolator does)
    if "compile" in variant:  # as compile=True runs it: one graph per shape, kept in the user cache folder
        from vfimamba import compiled
        from vfimamba.cache import user_cache_dir
        made = {}

        def fwd(x):
            key = (tuple(x.shape), x.stride())
            if key not in made:
                made[key] = compiled.forward(net, x, t, scale=0, autocast_dtype=ac,
                                             folder=user_cache_dir() / "inductor" / "vfimamba")
            return made[key](x, t)
    if cl:
        base = fwd
        fwd = lambda x: base(x.contiguous(memory_format=torch.channels_last))  # noqa: E731
    if not graph:
        return fwd
    state = {}

    def replay(x):
        if "g" not in state or state["shape"] != x.shape:
            static = x.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    fwd(static)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = fwd(static)
            state.update(g=g, static=static, out=out, shape=x.shape)
        state["static"].copy_(x)
        state["g"].replay()
        return state["out"]
    return replay


def time_fn(fn, x, warmup, iters):
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        ts = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn(x)
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
    return statistics.median(ts), min(ts), torch.cuda.max_memory_allocated() / 2 ** 20


def profile(a, dev):
    from torch.profiler import ProfilerActivity, profile as tprof
    for spec in a.profile.split(","):
        mname, res, be, vname = spec.split(":")
        net = build_ours(MODELS[mname], a.weights_s, dev)
        w, h = RES[res]
        x = load_pair(a.frames, w, h, dev)
        fn = make_fn(net, vname, be, dev)
        with tf32(VARIANTS[vname][1]), torch.no_grad():
            ms, _, _ = time_fn(fn, x, 3, 5)
            with tprof(activities=[ProfilerActivity.CUDA]) as p:
                for _ in range(3):
                    fn(x)
                torch.cuda.synchronize()
        print(f"\n== profile {spec}: {ms:.2f} ms/frame (3 frames profiled)")
        print(p.key_averages().table(sort_by="cuda_time_total", row_limit=45, max_name_column_width=90))
        del net
        torch.cuda.empty_cache()


def write_table(rows, gpu, iters, results, note=""):
    """Print the rows as a markdown table and append it, dated, to `results` (if given)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    offi = {(r["model"], r["res"]): r["ms"] for r in rows if r["variant"] == "official"}
    lines = [f"\n## {stamp} on {gpu} (torch {torch.__version__}, cudnn.benchmark, median of {iters}, "
             f"one 2x frame: t=0.5, no TTA, scale=0, real frames resized, padded to /32)\n",
             *([note, ""] if note else []),
             "| GPU | model | res | impl | scan | variant | ms/frame | x faster than official | peak MiB | "
             "mean abs diff vs reference (/255) | max (/255) | reference |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = offi.get((r["model"], r["res"]))
        sp = f"{o / r['ms']:.2f}" if o else "-"
        m = f"{r['mean255']:.3f}" if r.get("mean255") is not None else "-"
        mx = f"{r['max255']:.2f}" if r.get("max255") is not None else "-"
        lines.append(f"| {r['gpu']} | {r['model']} | {r['res']} | {r['impl']} | {r['backend']} | {r['variant']} | "
                     f"{r['ms']:.2f} | {sp} | {r['mem']:.0f} | {m} | {mx} | {r.get('ref', 'official fp32') if m != '-' else '-'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if results:
        p = Path(results)
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_text("# VFIMamba on CUDA (bench/bench_vfimamba.py)\n")
        with p.open("a") as f:
            f.write(text)


def table_from_json(paths, results, note):
    """--table-from: the table of a run that was cut short, from the rows its --json kept."""
    rows = [r for p in paths for r in json.loads(Path(p).read_text())]
    write_table(rows, rows[0]["gpu"], "20", results, note)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", default="480p,720p,1080p")
    ap.add_argument("--models", default="vfimamba,vfimamba_s")
    ap.add_argument("--backends", default="", help="default: every CUDA backend available")
    ap.add_argument("--variants", default="fp32,tf32,fp16,bf16,fp16-graph")
    ap.add_argument("--mamba-variants", default="fp32,fp16", help="variants timed with the mamba_ssm scan")
    ap.add_argument("--torch-backend-res", default="720p", help="resolutions at which the slow torch scan is timed")
    fixture = REPO.parent / "shared" / "fixtures" / "vfimamba" / "inputs.npz"
    ap.add_argument("--frames", default=str(fixture) if fixture.is_file() else "",
                    help="npz with 'frames' (2, H, W, 3) BGR uint8, or the fixture inputs.npz")
    ap.add_argument("--weights-s", default="")
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", default="")
    ap.add_argument("--profile", default="", help="MODEL:RES:BACKEND:VARIANT[,...]: print the top CUDA kernels, then exit")
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "vfimamba_gpu.md"))
    ap.add_argument("--table-from", nargs="*", metavar="JSON", help="only append the table of these --json files")
    ap.add_argument("--note", default="", help="with --table-from: a line printed under the heading")
    a = ap.parse_args()
    if not a.frames and not a.table_from:
        ap.error("--frames: no frame pair given, and the shared fixture inputs.npz is not beside the checkout")
    if a.table_from:
        return table_from_json(a.table_from, a.results, a.note)
    if not torch.cuda.is_available():
        sys.exit("bench_vfimamba: needs CUDA")
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    gpu = torch.cuda.get_device_name(0)
    from vfimamba.scan import available_backends
    backends = a.backends.split(",") if a.backends else available_backends("cuda")
    variants = a.variants.split(",")
    print(f"GPU {gpu}; torch {torch.__version__}; backends {backends}; variants {variants}", flush=True)
    rows = []
    if a.profile:
        return profile(a, dev)

    def record(**r):
        rows.append(r)
        if a.json:  # after every row, so that a run cut short by a time limit still leaves its numbers
            Path(a.json).write_text(json.dumps(rows, indent=1))
        acc = f"  vs {r.get('ref', 'official fp32')}: mean {r['mean255']:.3f}/255 max {r['max255']:.2f}/255" if r.get("mean255") is not None else ""
        print(f"{r['model']:10s} {r['res']:6s} {r['impl']:6s} {r['backend']:9s} {r['variant']:12s} "
              f"{r['ms']:8.2f} ms  peak {r['mem']:7.0f} MiB{acc}", flush=True)

    for mname in a.models.split(","):
        F_ = MODELS[mname]
        ours = build_ours(F_, a.weights_s, dev)
        state = {k: v for k, v in ours.state_dict().items()}
        off = None
        if not a.no_official:
            try:
                off = build_official(F_, state, dev)
            except Exception as e:  # noqa: BLE001
                print(f"official {mname}: unavailable ({e!r})", flush=True)
        for res in a.res.split(","):
            w, h = RES[res]
            x = load_pair(a.frames, w, h, dev)
            ref = None
            if off is not None:
                try:
                    with torch.no_grad(), tf32(False):
                        ref = off(x, local=True, timestep=0.5, scale=0)[3].float()
                    for vname, on in (("official", None), ("official-fp32", False)):
                        ctx = tf32(on) if on is not None else contextlib.nullcontext()
                        with ctx:
                            fn = lambda z: off(z, local=True, timestep=0.5, scale=0)[3]  # noqa: E731
                            ms, mn, mem = time_fn(fn, x, a.warmup, a.iters)
                        record(model=mname, res=res, impl="offic", backend="mamba_ssm", variant=vname, ms=ms,
                               min=mn, mem=mem, gpu=gpu)
                except Exception as e:  # noqa: BLE001
                    print(f"official {mname} {res}: failed ({e!r})", flush=True)
                    traceback.print_exc()
            ref_name = "official fp32"
            if ref is None and backends:  # no official code: our exact float32 path (the fixtures' match) instead
                fn = make_fn(ours, "fp32", backends[0], dev)
                with tf32(False), torch.no_grad():
                    ref = fn(x).float()
                ours.set_fast(False, False)
                ref_name = f"ours fp32 ({backends[0]} scan)"
            for be in backends:
                for vname in (["fp32"] if be == "torch" else a.mamba_variants.split(",") if be == "mamba_ssm" else variants):
                    if be == "torch" and res not in a.torch_backend_res.split(","):
                        continue
                    try:
                        fn = make_fn(ours, vname, be, dev)
                        with tf32(VARIANTS[vname][1]), torch.no_grad():
                            out = fn(x).float()
                            acc = {}
                            if ref is not None:
                                d = (out - ref).abs() * 255
                                acc = dict(mean255=d.mean().item(), max255=d.max().item(), ref=ref_name)
                            ms, mn, mem = time_fn(fn, x, a.warmup, a.iters)
                        record(model=mname, res=res, impl="ours", backend=be, variant=vname, ms=ms, min=mn, mem=mem,
                               gpu=gpu, **acc)
                    except Exception as e:  # noqa: BLE001
                        print(f"ours {mname} {res} {be} {vname}: failed ({e!r})", flush=True)
                        traceback.print_exc()
                    finally:
                        ours.set_fast(False, False)
                        torch.cuda.empty_cache()
        del ours, off
        if "torch._dynamo" in sys.modules:  # a compiled variant ran: its graphs hold the net
            sys.modules["torch._dynamo"].reset()
        torch.cuda.empty_cache()

    write_table(rows, gpu, a.iters, a.results)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
