"""Whole-CLI wall time and peak memory against the I/O floor.

    python3 -m bench.bench_pipeline INPUT.mp4 [INPUT2.mp4 ...] [--model rife] [--device auto]

For each input it runs the real command line (default options: auto indent, audio) as a child
process, reads its per-stage timings from --report, then measures the I/O floor: decoding
exactly the source frames the splice shows and encoding 3n frames, with no analysis, no model and
no audio (the same reader and writer the tool uses). Prints a table and appends it, dated and
labelled with the machine, to bench/results/pipeline.md.

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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("inputs", nargs="*")
    p.add_argument("--model", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--floor-only", metavar="REPORT")
    args = p.parse_args()
    if args.floor_only:
        return floor(args.floor_only)
    rows = []
    for path in args.inputs:
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "r.json")
            cli = [sys.executable, "interpolate_video.py", "--input", path, "--output", os.path.join(tmp, "o.mp4"),
                   "--model", args.model, "--device", args.device, "--report", report, "--quiet"]
            wall, rss, _ = timed(cli)
            rep = json.loads(Path(report).read_text())
            fwall, frss, _ = timed([sys.executable, "-m", "bench.bench_pipeline", "--floor-only", report])
        t = rep["timings"]
        rows.append({
            "input": f"{Path(path).name} ({rep['size'][0]}x{rep['size'][1]}, {rep['fps']:.3g} fps, "
                     f"{rep['frame_count'] / rep['fps']:.0f} s)",
            "model": rep["model"]["name"], "cli_s": wall, "rss": rss, "floor_s": fwall, "floor_rss": frss,
            "stages": {k: t.get(k, 0) for k in ("probe", "locate", "model_load", "analyse", "audio", "generate", "write")},
        })
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {stamp} on {machine()}\n",
             "| input | model | CLI wall s | peak RSS MiB | I/O floor s (RSS MiB) | CLI / floor | CLI - floor - generate s | stages s (probe / model load / analyse / audio / generate / write incl. generate) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["stages"]
        lines.append(f"| {r['input']} | {r['model']} | {r['cli_s']:.1f} | {r['rss']} | {r['floor_s']:.1f} ({r['floor_rss']}) | "
                     f"{r['cli_s'] / r['floor_s']:.2f} | {r['cli_s'] - r['floor_s'] - s['generate']:.1f} | "
                     f"{s['probe']:.2f} / {s['model_load']:.2f} / {s['analyse']:.2f} / {s['audio']:.2f} / {s['generate']:.2f} / {s['write']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    append_results("pipeline", "# Pipeline: whole CLI against the I/O floor\n\nMade by `python3 -m bench.bench_pipeline`. "
                           "The floor decodes exactly the frames the splice shows and encodes 3n frames (no analysis, "
                           "no model, no audio); both run as separate processes; peak RSS is each process's own (wait4).\n", text)


if __name__ == "__main__":
    main()
