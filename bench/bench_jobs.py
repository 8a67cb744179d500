"""Many jobs with one model load, and a long edit: what the user waits for, whole commands.

    python3 -m bench.bench_jobs [--input d6.mp4] [--model auto] [--long outputs/long600.mp4]

1. Five splices of one input (five A/B pairs) run as five commands, then as one `--jobs` run:
   wall time of each way, and the saving per job.
2. An edit of a 10-minute 720p 25 fps video with 5 junctions (six kept ranges): wall time and
   peak RSS of the command (made with `python3 -m splice.sample OUT 600` when absent).
Appends a dated table, labelled with the machine, to bench/results/jobs.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

from bench.bench_pipeline import append_results, machine, timed

ROOT = Path(__file__).resolve().parents[1]
D6 = ROOT.parent / "shared" / "media" / "d6.mp4"
PAIRS = [(180, 700), (160, 650), (200, 720), (170, 600), (190, 680)]   # d6: 30 fps, 1008 frames
LONG_KEEP = ["0-90s", "95s-180s", "186s-300s", "305s-420s", "424s-540s", "547s-600s"]


def cli(*args) -> list[str]:
    return [sys.executable, "interpolate_video.py", *map(str, args)]


def long_video(path: str) -> Path:
    """The 10-minute 720p 25 fps test video at `path`, drawn (splice.sample) when absent."""
    long = Path(path)
    if not long.exists():
        from splice.sample import make_sample
        long.parent.mkdir(parents=True, exist_ok=True)
        make_sample(str(long), 600, "ultrafast")
    return long


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--input", default=str(D6))
    p.add_argument("--model", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--ckpt", help="a VFIMamba checkpoint, for --model vfimamba")
    p.add_argument("--long", default=str(ROOT / "outputs" / "long600.mp4"))
    p.add_argument("--skip-long", action="store_true")
    args = p.parse_args()
    common = ["--model", args.model, "--device", args.device, "--quiet"] + (["--ckpt", args.ckpt] if args.ckpt else [])
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = "# Many jobs per model load, and long edits\n\nMade by `python3 -m bench.bench_jobs`: whole " \
             "commands, wall time and each command's own peak RSS (wait4).\n"
    append_results("jobs", header, f"\n## {stamp} on {machine()}\n\n| what | model | | | |\n|---|---|---|---|---|\n")

    def row(text):   # written as soon as measured: a long run cut short keeps what it has
        print(text, flush=True)
        append_results("jobs", header, text + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        singles = []
        for k, (a, b) in enumerate(PAIRS):
            wall, rss, _ = timed(cli("--input", args.input, "--output", f"{tmp}/s{k}.mp4", "--frame-a", a,
                                     "--frame-b", b, *common))
            singles.append(wall)
        jobs = Path(tmp) / "jobs.jsonl"
        jobs.write_text("".join(json.dumps({"input": args.input, "output": f"{tmp}/j{k}.mp4", "frame_a": str(a),
                                            "frame_b": str(b)}) + "\n" for k, (a, b) in enumerate(PAIRS)))
        jwall, jrss, _ = timed(cli("--jobs", jobs, "--report", f"{tmp}/summary.json", *common))
        summary = json.loads(Path(f"{tmp}/summary.json").read_text())
        model = summary["model"]["name"] if summary.get("model") else "?"
        row(f"| 5 splices of {Path(args.input).name} | {model} | 5 commands: {sum(singles):.1f} s "
                    f"({' / '.join(f'{s:.1f}' for s in singles)}) | one --jobs run: {jwall:.1f} s (peak RSS {jrss} MiB) | "
                    f"{(sum(singles) - jwall) / len(PAIRS):.1f} s saved per job |")
        if not args.skip_long:
            long = long_video(args.long)
            report = f"{tmp}/long.json"
            keep = [x for r in LONG_KEEP for x in ("--keep", r)]
            wall, rss, _ = timed(cli("--input", long, "--output", f"{tmp}/long_edit.mp4", *keep, "--report", report,
                                     *common))
            rep = json.loads(Path(report).read_text())
            t = rep["timings"]
            row(f"| edit of {long.name} (10 min 720p 25 fps), 5 junctions, {rep['output_frames']} frames | "
                        f"{rep['model']['name']} | {wall:.1f} s wall | peak RSS {rss} MiB | stages: analyse "
                        f"{t.get('analyse', 0):.1f}, model load {t.get('model_load', 0):.1f}, audio {t.get('audio', 0):.1f}, "
                        f"generate {t.get('generate', 0):.1f}, write {t.get('write', 0):.1f} s |")


if __name__ == "__main__":
    main()
