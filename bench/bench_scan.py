"""Selective-scan backends on VFIMamba's real scan shapes, appended to bench/results/scan.md.

    python3 -m bench.bench_scan                 # all backends found, all shapes
    python3 -m bench.bench_scan --sweep         # first times Triton kernel geometries on the
                                                # F=32 720p shapes and uses the fastest
    python3 -m bench.bench_scan --no-write      # print only

Shapes: inside SS2D the scan sees u, delta (b, 4*d_inner, L) and B, C (b, 4, 16, L) with
d_inner = 2*dim and L = 2*h*w (the two frames' tokens side by side).  Stage 3 runs at 1/8 of the
padded frame with dim 8F, stage 4 at 1/16 with dim 16F, three VSS blocks each (depth [2,2,2,3,3]).
Frames are padded to a multiple of 32 (720p -> 736x1280, 1080p -> 1088x1920).  b = 1 (one frame
pair; the fast-TTA batch of VFIMamba doubles it).

Backends: "triton" (vfimamba.scan_triton, default config), "triton-tl" (its plain-Triton variant),
"mamba_ssm" (selective_scan_fn, if importable), "torch" (vfimamba.scan.selective_scan(...,
backend="torch"), if that module exists).  Times are medians of triton.testing.do_bench (CUDA
events, warm-up first).  Each output is checked against a float64 reference computed on a subset
of channels (every group, both ends of each group) by an independent chunked float64 scan.
Bandwidth counts u, delta, B, C read once and the output written once (float32).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scan.md"

N_STATE = 16
GROUPS = 4


def vfimamba_scan_shapes():
    """(label, b, d, L) for F = 32, 16 at 720p and 1080p, stages 3 and 4."""
    out = []
    for F, name in ((32, "VFIMamba"), (16, "VFIMamba_S")):
        for res, (H, W) in (("720p", (720, 1280)), ("1080p", (1080, 1920))):
            Hp, Wp = -(-H // 32) * 32, -(-W // 32) * 32
            for stage, stride, dim in ((3, 8, 8 * F), (4, 16, 16 * F)):
                d = 4 * 2 * dim
                L = 2 * (Hp // stride) * (Wp // stride)
                out.append((f"{name} {res} s{stage}", 1, d, L))
    return out


def make_inputs(b, d, L, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device)  # noqa: E731
    u = r(b, d, L)
    delta = 0.5 * r(b, d, L)
    A = -torch.exp(0.5 * r(d, N_STATE))
    B = r(b, GROUPS, N_STATE, L)
    C = r(b, GROUPS, N_STATE, L)
    D = r(d)
    bias = 0.5 * r(d) - 1.0
    return u, delta, A, B, C, D, bias


def check_channels(d):
    per = d // GROUPS
    idx = []
    for gi in range(GROUPS):
        s = gi * per
        idx += [s, s + 1, s + per // 2, s + per - 2, s + per - 1]
    return torch.tensor(sorted(set(i for i in idx if 0 <= i < d)))


@torch.no_grad()
def reference_f64(u, delta, A, B, C, D, bias, chans, chunk=64):
    """Independent float64 check: chunked closed form h_l = sum_k exp(A (S_l - S_k)) dBu_k + carry."""
    dev = u.device
    chans = chans.to(dev)
    per = u.shape[1] // B.shape[1]
    u = u[:, chans].double()
    dt = torch.nn.functional.softplus(delta[:, chans].double() + bias[chans].double()[:, None])
    A = A[chans].double()                       # (m, n)
    Bx = B[:, chans // per].double()            # (b, m, n, L)
    Cx = C[:, chans // per].double()
    b, m, L = u.shape
    n = A.shape[1]
    h = torch.zeros(b, m, n, dtype=torch.float64, device=dev)
    out = torch.empty(b, m, L, dtype=torch.float64, device=dev)
    tril = torch.ones(chunk, chunk, dtype=torch.bool, device=dev).tril()
    for s in range(0, L, chunk):
        e = min(s + chunk, L)
        c = e - s
        S = dt[:, :, s:e].cumsum(-1)                                   # (b, m, c)
        diff = (S[..., :, None] - S[..., None, :]).masked_fill(~tril[:c, :c], 0.0)
        W = torch.exp(A[None, :, :, None, None] * diff[:, :, None]) * tril[:c, :c]  # (b,m,n,l,k)
        dBu = dt[:, :, None, s:e] * Bx[..., s:e] * u[:, :, None, s:e]                 # (b,m,n,c)
        H = torch.einsum("bmnlk,bmnk->bmnl", W, dBu) + torch.exp(A[None, :, :, None] * S[:, :, None, :]) * h[..., None]
        out[..., s:e] = (H * Cx[..., s:e]).sum(2) + D[chans].double()[:, None] * u[..., s:e]
        h = H[..., -1]
    return out


def backends(only=None):
    found = {}
    from vfimamba.scan_triton import DEFAULT_CONFIG, selective_scan_triton
    found["triton"] = lambda *a, cfg=None: selective_scan_triton(*a, True, config=cfg)
    found["triton-default"] = lambda *a, cfg=None: selective_scan_triton(*a, True)
    found["triton-1w"] = lambda *a, cfg=None: selective_scan_triton(
        *a, True, config=dict(variant="gluon", TPW_N=4, SPT_L=8, num_warps=1))
    found["triton-tl"] = lambda *a, cfg=None: selective_scan_triton(*a, True, config=dict(variant="tl"))
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        found["mamba_ssm"] = lambda u, dl, A, B, C, D, bias, cfg=None: selective_scan_fn(
            u, dl, A, B, C, D, z=None, delta_bias=bias, delta_softplus=True, return_last_state=False)
    except Exception as exc:  # noqa: BLE001
        try:
            import selective_scan_cuda  # the compiled extension alone
            found["mamba_ssm"] = lambda u, dl, A, B, C, D, bias, cfg=None: selective_scan_cuda.fwd(
                u, dl, A, B, C, D, None, bias, True)[0]
            print(f"mamba_ssm: interface not importable ({exc!r}); using selective_scan_cuda.fwd")
        except Exception as exc2:  # noqa: BLE001
            print(f"mamba_ssm: not available ({exc2!r})")
    try:
        from vfimamba.scan import selective_scan
        found["torch"] = lambda u, dl, A, B, C, D, bias, cfg=None: selective_scan(
            u, dl, A, B, C, D, bias, True, backend="torch")
    except Exception as exc:  # noqa: BLE001
        print(f"torch backend: vfimamba.scan not importable ({exc!r})")
    if only:
        found = {k: v for k, v in found.items() if k in only}
    return found, DEFAULT_CONFIG


def bench_ms(fn, warmup=25, rep=100):
    if not torch.cuda.is_available():  # smoke test only (--device cpu under TRITON_INTERPRET=1)
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    import triton.testing
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def copy_rate_gbs(device):
    x = torch.empty(256 * 2 ** 20 if device == "cuda" else 2 ** 20, device=device)  # 1 GiB on a GPU
    y = torch.empty_like(x)
    ms = bench_ms(lambda: y.copy_(x), warmup=10, rep=50)
    return 2 * x.numel() * 4 / ms / 1e6


def scan_bytes(b, d, L):
    return 4 * (3 * b * d * L + 2 * b * GROUPS * N_STATE * L)


def sweep(fns, device, shapes):
    from vfimamba.scan_triton import selective_scan_triton
    cands = [dict(variant="gluon", TPW_N=p, SPT_L=k, num_warps=w) for p, k, w in (
        (4, 8, 1), (4, 8, 2), (4, 4, 1), (4, 4, 2), (4, 16, 1), (8, 16, 1), (8, 8, 1), (2, 8, 1),
        (4, 8, 4), (8, 8, 2), (4, 4, 4), (8, 4, 2))]
    cands += [dict(variant="tl", BLOCK_D=1, BLOCK_L=256, num_warps=4)]
    print(f"\nsweep over {len(cands)} configs on {[s[0] for s in shapes]}")
    results = []
    data = [make_inputs(b, d, L, device, seed=1) for _, b, d, L in shapes]
    chans = [check_channels(d) for _, b, d, L in shapes]
    refs = [reference_f64(*x, ch) for x, ch in zip(data, chans)]
    for cfg in cands:
        try:
            tot = 0.0
            errs = []
            for x, ch, ref in zip(data, chans, refs):
                out = selective_scan_triton(*x, True, config=cfg)
                if device == "cuda":
                    torch.cuda.synchronize()
                errs.append((out[:, ch.to(device)].double() - ref).abs().max().item())
                tot += bench_ms(lambda: selective_scan_triton(*x, True, config=cfg), warmup=10, rep=40)
            ok = max(errs) < 1e-3
            results.append((tot if ok else float("inf"), cfg, max(errs)))
            print(f"  {str(cfg):70s} {tot:8.3f} ms  err {max(errs):.2e}{'' if ok else '  WRONG'}", flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"  {str(cfg):70s} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
    results.sort(key=lambda r: r[0])
    best = results[0]
    print(f"best: {best[1]}  {best[0]:.3f} ms")
    return best[1], results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--only", nargs="*", help="backends to run")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--shapes", default="all", help="'all' or 'f32-720p'")
    ap.add_argument("--sweep-shapes", default="VFIMamba 720p s3,VFIMamba 720p s4",
                    help="comma-separated shape labels the sweep times")
    ap.add_argument("--save-config", help="with --sweep: write the best config (JSON) here and stop")
    ap.add_argument("--config", help="JSON file with the Triton config to time (from --save-config)")
    ap.add_argument("--device", default="cuda", help="cuda; 'cpu' is a smoke test under TRITON_INTERPRET=1")
    args = ap.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("bench_scan: no CUDA device; the GPU backends need one (the torch backend's CPU speed is "
              "benchmarked elsewhere)")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU smoke test ({platform.processor()})"
    import triton
    print(f"{gpu}; torch {torch.__version__}; triton {triton.__version__}; CUDA {torch.version.cuda}")
    fns, default_cfg = backends(args.only)
    if not args.config:
        fns.pop("triton-default", None)  # same as "triton" then
    shapes = vfimamba_scan_shapes()
    if args.shapes == "f32-720p":
        shapes = shapes[:2]
    elif args.shapes == "tiny":
        shapes = [("tiny a", 1, 16, 100), ("tiny b", 2, 8, 37)]
    cfg = None
    sweep_note = ""
    if args.sweep:
        want = [w.strip() for w in args.sweep_shapes.split(",")]
        sshapes = [s for s in shapes if s[0] in want] or shapes[:2]
        cfg, res = sweep(fns, device, sshapes)
        sweep_note = f"Sweep best: {cfg} ({res[0][0]:.3f} ms for {', '.join(s[0] for s in sshapes)})."
        if args.save_config:
            Path(args.save_config).write_text(json.dumps(dict(config=cfg, note=sweep_note)))
            return 0
    elif args.config:
        saved = json.loads(Path(args.config).read_text())
        cfg, sweep_note = saved["config"], saved.get("note", "")
    copy = copy_rate_gbs(device)
    print(f"device-to-device copy: {copy:.0f} GB/s (read + write)")

    rows = []
    for label, b, d, L in shapes:
        x = make_inputs(b, d, L, device, seed=2)
        chans = check_channels(d)
        ref = reference_f64(*x, chans)
        nbytes = scan_bytes(b, d, L)
        for name, fn in fns.items():
            f = (lambda fn=fn, x=x: fn(*x, cfg=cfg)) if name == "triton" else (lambda fn=fn, x=x: fn(*x))
            try:
                out = f()
                if device == "cuda":
                    torch.cuda.synchronize()
                o = out[:, chans.to(device)].double()
                err = (o - ref).abs().max().item()
                rel = ((o - ref).norm() / ref.norm()).item()
                ms = bench_ms(f, warmup=10 if name == "torch" else 25, rep=30 if name == "torch" else 100)
            except Exception as exc:  # noqa: BLE001
                print(f"{label:24s} {name:10s} failed: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            del out
            gbs = nbytes / ms / 1e6
            rows.append((label, b, d, L, name, ms, gbs, err, rel))
            print(f"{label:24s} {b}x{d}x{L:<6d} {name:10s} {ms:8.3f} ms {gbs:7.0f} GB/s "
                  f"({100 * gbs / copy:4.1f}% of copy)  max|err| {err:.2e}  rel {rel:.1e}", flush=True)
        del x
        if device == "cuda":
            torch.cuda.empty_cache()

    # per-frame totals: 3 blocks at stage 3 and 3 at stage 4
    per_frame = {}
    for label, b, d, L, name, ms, *_ in rows:
        model_res = label.rsplit(" ", 1)[0]
        per_frame.setdefault((model_res, name), 0.0)
        per_frame[(model_res, name)] += 3 * ms

    names = list(fns)
    lines = []
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"\n## {stamp} - {gpu} ({platform.node() or 'device'}; torch {torch.__version__}, "
                 f"triton {triton.__version__}, CUDA {torch.version.cuda})\n")
    lines.append(f"Triton config: {cfg or default_cfg}. {sweep_note}  ")
    lines.append(f"Device-to-device copy rate measured in this run: {copy:.0f} GB/s (read + write). "
                 "GB/s below counts u, delta, B, C read once and the output written once (fp32).  ")
    lines.append("Errors: max abs / relative L2 against an independent float64 scan on 20 channels "
                 "(both ends and the middle of each of the 4 groups).\n")
    lines.append("| shape (b x d x L) | backend | median ms | GB/s | % of copy | max abs err | rel err |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for label, b, d, L, name, ms, gbs, err, rel in rows:
        lines.append(f"| {label} ({b}x{d}x{L}) | {name} | {ms:.3f} | {gbs:.0f} | {100 * gbs / copy:.1f} | "
                     f"{err:.1e} | {rel:.1e} |")
    lines.append("\nScan time per frame pair (3 blocks at stage 3 + 3 at stage 4, b = 1), ms:\n")
    lines.append("| model, resolution | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for mr in dict.fromkeys(k[0] for k in per_frame):
        cells = [f"{per_frame[(mr, n)]:.2f}" if (mr, n) in per_frame else "-" for n in names]
        lines.append(f"| {mr} | " + " | ".join(cells) + " |")
    if "mamba_ssm" in names and "triton" in names:
        ms_of = {(r[0], r[4]): r[5] for r in rows}
        sp = [f"{lab}: {ms_of[(lab, 'mamba_ssm')] / ms_of[(lab, 'triton')]:.2f}x"
              for lab in dict.fromkeys(r[0] for r in rows)
              if (lab, "mamba_ssm") in ms_of and (lab, "triton") in ms_of]
        lines.append("\nSpeed-up of triton over mamba_ssm (mamba ms / triton ms): " + "; ".join(sp))
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        new = not RESULTS.exists()
        with open(RESULTS, "a") as fh:
            if new:
                fh.write("# Selective-scan backends on VFIMamba's scan shapes\n\n"
                         "Appended by `python3 -m bench.bench_scan`; newest last.\n")
            fh.write(text)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
