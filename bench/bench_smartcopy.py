"""Copying unchanged footage against encoding every frame: whole commands, wall time.

    python3 -m bench.bench_smartcopy [--long outputs/long600.mp4] [--input d6.mp4] [--model flow]

1. An edit of a 10-minute 720p 25 fps video with 5 junctions (six kept ranges, as bench_jobs),
   with --copy-unchanged auto and off: wall time, and the share of output frames copied.
2. The 15-s splice of d6.mp4 the same way.
Appends a dated table, labelled with the machine, to bench/results/smartcopy.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

from bench.bench_jobs import D6, LONG_KEEP, cli, long_video
from bench.bench_pipeline import append_results, machine, timed

ROOT = Path(__file__).resolve().parents[1]


def run(label: str, args: list, tmp: str, common: list) -> list[str]:
    rows, walls = [], {}
    for mode in ("off", "auto"):
        report = f"{tmp}/{mode}.json"
        wall, rss, _ = timed(cli(*args, "--output", f"{tmp}/{mode}.mp4", "--copy-unchanged", mode,
                                 "--report", report, *common))
        rep = json.loads(Path(report).read_text())
        copied = sum(e["copied"] for e in rep["copy"])
        walls[mode] = wall
        rows.append(f"| {label} | {mode} | {rep['output_frames']} | {copied} ({100 * copied / rep['output_frames']:.1f} %) "
                    f"| {wall:.1f} s | {rep['timings'].get('write', 0):.1f} s | {rss} MiB |")
    rows.append(f"| {label} | auto / off | | | {walls['auto'] / walls['off']:.3f} | | |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--input", default=str(D6))
    p.add_argument("--long", default=str(ROOT / "outputs" / "long600.mp4"))
    p.add_argument("--model", default="flow")
    p.add_argument("--note", default="", help="said beside the machine (e.g. that others were using it)")
    args = p.parse_args()
    long = long_video(args.long)
    common = ["--model", args.model, "--quiet"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        keep = [x for r in LONG_KEEP for x in ("--keep", r)]
        rows += run(f"edit of {long.name} (10 min 720p 25 fps), 5 junctions", ["--input", long, *keep], tmp, common)
        rows += run(f"15-s splice of {Path(args.input).name}", ["--input", args.input], tmp, common)
    append_results("smartcopy", "# Copying unchanged footage (--copy-unchanged)\n\nMade by `python3 -m bench.bench_smartcopy`: "
                   "whole commands, wall time including start-up and analysis; `write` is the report's "
                   "time spent writing the output.\n",
                   f"\n## {datetime.date.today()}, {machine()}{' (' + args.note + ')' if args.note else ''}\n\n"
                   f"model {args.model}, preset medium, crf 17\n\n"
                   "| job | --copy-unchanged | output frames | copied | wall | write | peak RSS |\n"
                   "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
