"""Check a finished clip against its source and its report: does it keep the contract?

    python3 -m splice.verify OUT.mp4 --report REPORT.json      (exit 1 when a check fails)

The contract: 3n frames at the source rate (15 s), Frame A at output frame n (5 s), Frame B at
output frame 2n (10 s), every other output frame a faithful copy of the source frame the plan
names (PSNR >= 35 dB after encoding), the generated frames in between, and the audio as long
as the picture. demo.ipynb calls these functions; so can anyone from Python.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from .locate import psnr
from .media import VideoSource, to_rgb
from .plan import GeneratedFrame, SourceFrame, plan_splice

MIN_COPY_PSNR = 35.0


@dataclass
class ClipFacts:
    frame_count: int
    rate: Fraction
    width: int
    height: int
    duration: float            # seconds, from the frame count and rate
    audio_duration: float | None
    codec: str
    pix_fmt: str
    frame_times: list[float]   # pts of each frame, seconds


def probe_clip(path: str) -> ClipFacts:
    with av.open(path) as c:
        v = c.streams.video[0]
        times = sorted(float(p.pts * v.time_base) for p in c.demux(v) if p.size and p.pts is not None)
        rate = Fraction(v.average_rate)
        audio = None
        if c.streams.audio:
            a = c.streams.audio[0]
            samples = 0
            c.seek(0)
            for frame in c.decode(a):
                samples += frame.samples
            audio = samples / a.codec_context.sample_rate
        return ClipFacts(len(times), rate, v.codec_context.width, v.codec_context.height,
                         float(len(times) / rate), audio, v.codec_context.name,
                         v.codec_context.pix_fmt, times)


@dataclass
class FrameCheck:
    output_index: int
    kind: str                 # "source" or "generated"
    source_index: int | None  # the source frame it should show (generated: None)
    psnr: float               # against that source frame; generated: against the nearer endpoint
    psnr_left: float | None = None
    psnr_right: float | None = None


@dataclass
class Verification:
    facts: ClipFacts
    frames: list[FrameCheck]
    problems: list[str] = field(default_factory=list)
    n: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def frame(self, k: int) -> FrameCheck:
        return self.frames[k]


def output_frames(path: str):
    with av.open(path) as c:
        for frame in c.decode(c.streams.video[0]):
            yield frame


def check_frames(output: str, source: VideoSource, plan) -> list[FrameCheck]:
    """PSNR of every output frame against the source frame the plan says it shows."""
    layout = plan.outputs()
    checks: list[FrameCheck] = []
    windows = iter([plan.before, plan.after])
    wanted = None
    source_frames = iter(())
    left = right = None
    for k, frame in enumerate(output_frames(output)):
        if k >= len(layout):
            break
        out = to_rgb(frame)[: source.height, : source.width]
        item = layout[k]
        if isinstance(item, SourceFrame):
            if wanted is None or item.index != wanted:
                window = next(windows)
                source_frames = source.frames(window.start, window.stop)
            idx, src = next(source_frames)
            assert idx == item.index
            wanted = idx + 1
            rgb = to_rgb(src)
            if idx == plan.left:
                left = rgb
            checks.append(FrameCheck(k, "source", idx, psnr(out, rgb)))
        else:
            if right is None:
                _, r = next(source.frames(plan.right, plan.right + 1))
                right = to_rgb(r)
            pl, pr = psnr(out, left), psnr(out, right)
            checks.append(FrameCheck(k, "generated", None, max(pl, pr), pl, pr))
    return checks


def verify(output: str, report: dict | str, min_psnr: float = MIN_COPY_PSNR) -> Verification:
    """Every check of the contract; `problems` lists each broken one in a sentence."""
    if isinstance(report, str):
        with open(report) as f:
            report = json.load(f)
    source = VideoSource(report["input"])
    plan = plan_splice(source.rate, source.frame_count, report["a"]["index"], report["b"]["index"],
                       report["indent"]["i"], report["m"])
    facts = probe_clip(output)
    result = Verification(facts, [], n=plan.n)
    problems = result.problems
    if facts.frame_count != plan.total:
        problems.append(f"{facts.frame_count} frames, expected {plan.total}")
    if facts.rate != plan.rate:
        problems.append(f"frame rate {facts.rate}, expected {plan.rate}")
    expected_times = [float(Fraction(k) / plan.rate) for k in range(plan.total)]
    if facts.frame_count == plan.total and max(abs(a - b) for a, b in zip(facts.frame_times, expected_times)) > 1e-3:
        problems.append("frame timestamps are not k / rate")
    if abs(facts.duration - 15) > float(1 / plan.rate) + 1e-9:
        problems.append(f"duration {facts.duration:.3f} s, expected 15 s within one frame")
    if report.get("audio"):
        if facts.audio_duration is None:
            problems.append("the report says audio but the clip has none")
        elif abs(facts.audio_duration - facts.duration) > float(1 / plan.rate):
            problems.append(f"audio lasts {facts.audio_duration:.3f} s, video {facts.duration:.3f} s")
    result.frames = check_frames(output, source, plan)
    for check in result.frames:
        if check.kind == "source" and check.psnr < min_psnr:
            problems.append(f"output frame {check.output_index} is not source frame {check.source_index} "
                            f"({check.psnr:.1f} dB < {min_psnr} dB)")
    for name, k, want in (("A", plan.n, plan.a), ("B", 2 * plan.n, plan.b)):
        if k < len(result.frames) and result.frames[k].source_index != want:
            problems.append(f"Frame {name} is not at output frame {k}")
        # The frame shown at exactly 5 s / 10 s must be A / B: check the decoded timestamps too.
        if facts.frame_count > k and abs(facts.frame_times[k] - float(Fraction(k) / plan.rate)) > 1e-3:
            problems.append(f"Frame {name} is shown at {facts.frame_times[k]:.4f} s")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--report", required=True, help="the JSON written by interpolate_video.py --report")
    p.add_argument("--min-psnr", type=float, default=MIN_COPY_PSNR)
    args = p.parse_args(argv)
    result = verify(args.output, args.report, args.min_psnr)
    copies = [c.psnr for c in result.frames if c.kind == "source"]
    n = result.n
    print(f"{result.facts.frame_count} frames at {result.facts.rate} fps, {result.facts.duration:.3f} s; "
          f"audio {result.facts.audio_duration}")
    print(f"A at output {n}: {result.frames[n].psnr:.1f} dB; B at output {2 * n}: {result.frames[2 * n].psnr:.1f} dB; "
          f"copied frames: min {min(copies):.1f} dB, mean {np.mean(copies):.1f} dB")
    for problem in result.problems:
        print(f"FAIL: {problem}")
    print("OK" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
