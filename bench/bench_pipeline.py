"""Whole-CLI wall time and peak memory against the I/O floor.

    python3 -m bench.bench_pipeline INPUT.mp4 [INPUT2.mp4 ...] [--models flow,rife,vfimamba]
                                    [--device auto] [--ckpt VFIMamba.pkl] [--batch 20]

For each input and each model it runs the real command line (default options: auto indent,
audio) as a child process, reads its per-stage timings from --report, then measures the I/O
floor: decoding exactly the source frames the splice shows and encoding 3n frames, with no
analysis, no model and no audio (the same reader and writer the tool uses). Each model's row
says how much longer than `--model flow` it took (flow is always run, first).

With --batch N (default 20, 0 for none), the last model also runs N splices of the first input
(N A/B pairs) as one `--jobs` run and as a 1-job `--jobs` run: the marginal time of one splice,
(wall(N) - wall(1)) / (N - 1), against the floor of one splice. Prints the tables and appends
them, dated and labelled with the machine, to bench/results/pipeline.md.

`--floor-only REPORT.json` (internal) times the floor for the plan in that report.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} + {os.cpu_count()} CPU cores"
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores (CPU only)"


def append_results(name: str, header: str, text: str) -> Path:
    """Append a dated table to bench/results/NAME.md, starting the file with `header` if it is new."""
    results = ROOT / "bench" / "results" / f"{name}.md"
    results.parent.mkdir(parents=True, exist_ok=True)
    if not results.exists():
        results.write_text(header)
    with open(results, "a") as f:
        f.write(text)
    return results


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB) and stderr of a command (its own peak, read with wait4)."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{text[-2000:]}")
    return wall, usage.ru_maxrss // 1024, text


def floor(report_path: str) -> None:
    """Decode exactly the source frames the report's timeline shows and encode as many frames as
    the output has (the bridges' frames are stand-ins: the frame before them again)."""
    from splice.media import ClipWriter, VideoSource
    from splice.plan import Span
    from splice.verify import timeline_of
    rep = json.loads(Path(report_path).read_text())
    start = time.perf_counter()
    source = VideoSource(rep["input"])
    with tempfile.TemporaryDirectory() as tmp:
        writer = ClipWriter(os.path.join(tmp, "floor.mp4"), source, rep["crf"], audio=False)
        last = None
        for entry in timeline_of(rep, source):
            if isinstance(entry, Span):
                for _, last in source.frames(entry.src, entry.src + entry.count):
                    writer.write_source(last)
            else:
                for _ in range(entry.count):      # stand-ins for generated frames: no model
                    writer.write_source(last)
        writer.close()
    print(json.dumps({"floor_seconds": round(time.perf_counter() - start, 3)}))


def batch_pairs(rate: float, frame_count: int, count: int) -> list[tuple[int, int]]:
    """`count` different A/B pairs: A from 5 s on and B up to 5 s before the end, 3 frames apart."""
    n = round(5 * rate)
    return [(n + 3 * k, frame_count - n - 3 * k) for k in range(count)]


def marginal_job(path: str, common: list[str], count: int, tmp: str) -> dict:
    """Wall time of `count` splices in one --jobs run against one, and the floor of one."""
    from splice.media import VideoSource
    source = VideoSource(path)
    pairs = batch_pairs(float(source.rate), source.frame_count, count)
    walls = {}
    for size in (1, count):
        jobs = Path(tmp) / f"jobs{size}.jsonl"
        jobs.write_text("".join(json.dumps({"input": path, "output": f"{tmp}/b{size}_{k}.mp4", "frame_a": str(a),
                                            "frame_b": str(b), "report": f"{tmp}/b{size}_{k}.json"}) + "\n"
                                for k, (a, b) in enumerate(pairs[:size])))
        walls[size], _, _ = timed([sys.executable, "interpolate_video.py", "--jobs", str(jobs), *common])
    fwall, _, _ = timed([sys.executable, "-m", "bench.bench_pipeline", "--floor-only", f"{tmp}/b1_0.json"])
    model = json.loads(Path(f"{tmp}/b1_0.json").read_text())["model"]["name"]
    return {"model": model, "one": walls[1], "many": walls[count], "count": count,
            "marginal": (walls[count] - walls[1]) / (count - 1), "floor": fwall}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("inputs", nargs="*")
    p.add_argument("--models", "--model", default="auto", help="comma-separated; flow is added first")
    p.add_argument("--device", default="auto")
    p.add_argument("--ckpt", help="a VFIMamba checkpoint, for --models vfimamba")
    p.add_argument("--batch", type=int, default=20, help="splices in the --jobs run (0: none)")
    p.add_argument("--floor-only", metavar="REPORT")
    args = p.parse_args()
    if args.floor_only:
        return floor(args.floor_only)
    models = ["flow"] + [m for m in args.models.split(",") if m and m != "flow"]
    extra = ["--device", args.device] + (["--ckpt", args.ckpt] if args.ckpt else [])
    rows = []
    for path in args.inputs:
        for name in models:
            with tempfile.TemporaryDirectory() as tmp:
                report = os.path.join(tmp, "r.json")
                cli = [sys.executable, "interpolate_video.py", "--input", path, "--output", os.path.join(tmp, "o.mp4"),
                       "--model", name, *extra, "--report", report, "--quiet"]
                wall, rss, _ = timed(cli)
                rep = json.loads(Path(report).read_text())
                fwall, frss, _ = timed([sys.executable, "-m", "bench.bench_pipeline", "--floor-only", report])
            t = rep["timings"]
            if name == "flow":
                flow_wall = wall
            rows.append({
                "input": f"{Path(path).name} ({rep['size'][0]}x{rep['size'][1]}, {rep['fps']:.3g} fps, "
                         f"{rep['frame_count'] / rep['fps']:.0f} s)",
                "model": rep["model"]["name"], "cli_s": wall, "rss": rss, "floor_s": fwall, "floor_rss": frss,
                "flow_s": wall if name == "flow" else flow_wall,
                "stages": {k: t.get(k, 0) for k in ("probe", "locate", "model_load", "model_wait", "analyse", "audio", "generate", "write")},
            })
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {stamp} on {machine()}\n",
             "| input | model | CLI wall s | CLI - flow s | peak RSS MiB | I/O floor s (RSS MiB) | CLI / floor | CLI - floor - generate s | stages s (probe / model load, in the background / waited for it / analyse / audio / generate / write incl. generate) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["stages"]
        lines.append(f"| {r['input']} | {r['model']} | {r['cli_s']:.1f} | {r['cli_s'] - r['flow_s']:+.1f} | {r['rss']} | "
                     f"{r['floor_s']:.1f} ({r['floor_rss']}) | "
                     f"{r['cli_s'] / r['floor_s']:.2f} | {r['cli_s'] - r['floor_s'] - s['generate']:.1f} | "
                     f"{s['probe']:.2f} / {s['model_load']:.2f} / {s['model_wait']:.2f} / {s['analyse']:.2f} / {s['audio']:.2f} / {s['generate']:.2f} / {s['write']:.2f} |")
    if args.batch > 1 and args.inputs:
        with tempfile.TemporaryDirectory() as tmp:
            b = marginal_job(args.inputs[0], ["--model", models[-1], *extra, "--quiet"], args.batch, tmp)
        lines += ["", f"One splice of {Path(args.inputs[0]).name} in a batch ({b['model']}): one `--jobs` run of "
                  f"{b['count']} splices against one of 1.", "",
                  "| 1 job s | jobs s | marginal s per splice | floor of one splice s | marginal / floor |",
                  "|---|---|---|---|---|",
                  f"| {b['one']:.1f} | {b['many']:.1f} ({b['count']}) | {b['marginal']:.2f} | {b['floor']:.2f} | "
                  f"{b['marginal'] / b['floor']:.2f} |"]
    text = "\n".join(lines) + "\n"
    print(text)
    append_results("pipeline", "# Pipeline: whole CLI against the I/O floor\n\nMade by `python3 -m bench.bench_pipeline`. "
                           "The floor decodes exactly the frames the splice shows and encodes 3n frames (no analysis, "
                           "no model, no audio); both run as separate processes; peak RSS is each process's own (wait4).\n", text)


if __name__ == "__main__":
    main()
