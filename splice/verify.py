"""Check a finished output against its source and its report: does it keep the contract?

    python3 -m splice.verify OUT.mp4 --report REPORT.json      (exit 1 when a check fails)

The contract, for any output: exactly the frames of the report's "timeline", at the source rate
with timestamps k / rate, every copied frame a faithful copy of the source frame the timeline
names (PSNR >= 35 dB after encoding), the generated frames where it puts them, and the audio as
long as the picture. For the 15-s splice also: 3n frames (15 s), Frame A at output frame n (5 s),
Frame B at output frame 2n (10 s). demo.ipynb calls these functions; so can anyone from Python.

Beside the checks sit helpers for looking at a clip: `frame_at_time` (the frame on screen at
a time), `clip_frames`, `neighbour_psnr`, `frame_differences` and `jumps` (frame-to-frame change),
`frame_offsets` (copied frames that match a neighbour of their source frame better: a shift by
one that an absolute PSNR floor can miss in calm footage), `shift_diagnosis` and `summary`.
"""
from __future__ import annotations

import argparse
import bisect
import json
import sys
from dataclasses import dataclass, field
from fractions import Fraction

import av
import cv2
import numpy as np

from .locate import psnr
from .media import VideoSource, to_rgb
from .plan import Bridge, SourceFrame, Span, plan_splice, timeline_frames

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
            with av.open(path) as fresh:   # a fresh reader: seeking back is unreliable in some formats (MKV)
                a = fresh.streams.audio[0]
                audio = sum(frame.samples for frame in fresh.decode(a)) / a.codec_context.sample_rate
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


def check_frames(output: str, source: VideoSource, timeline) -> list[FrameCheck]:
    """PSNR of every output frame against the source frame the timeline says it shows (generated
    frames: against the nearer of their two endpoints)."""
    entries = iter(timeline)
    entry, source_frames, left, right, last = None, iter(()), None, None, None
    checks: list[FrameCheck] = []
    for k, frame in enumerate(output_frames(output)):
        while entry is None or k >= entry.out + entry.count:
            entry = next(entries, None)
            if entry is None:
                return checks
            if isinstance(entry, Span):
                source_frames = source.frames(entry.src, entry.src + entry.count)
            else:
                left = last if last is not None and last[0] == entry.left else \
                    (entry.left, to_rgb(next(source.frames(entry.left, entry.left + 1))[1]))
                right = to_rgb(next(source.frames(entry.right, entry.right + 1))[1])
        out = to_rgb(frame)[: source.height, : source.width]
        if isinstance(entry, Span):
            idx, src = next(source_frames)
            assert idx == entry.src + k - entry.out
            rgb = to_rgb(src)
            last = (idx, rgb)
            checks.append(FrameCheck(k, "source", idx, psnr(out, rgb)))
        else:
            pl, pr = psnr(out, left[1]), psnr(out, right)
            checks.append(FrameCheck(k, "generated", None, max(pl, pr), pl, pr))
    return checks


def timeline_of(report: dict, source: VideoSource | None = None):
    """The report's timeline as plan.Span / plan.Bridge entries (older splice reports: from the plan)."""
    if "timeline" in report:
        return [Span(e["out"], e["src"], e["count"]) if "src" in e else
                Bridge(e["out"], e["generated"], e["left"], e["right"]) for e in report["timeline"]]
    source = source or VideoSource(report["input"])
    return plan_splice(source.rate, source.frame_count, report["a"]["index"], report["b"]["index"],
                       report["indent"]["i"], report["m"]).timeline()


def _source_and_timeline(report: dict | str):
    """The report (read if given as a path), its source video and the timeline it describes."""
    if isinstance(report, str):
        with open(report) as f:
            report = json.load(f)
    source = VideoSource(report["input"])
    return report, source, timeline_of(report, source)


def verify(output: str, report: dict | str, min_psnr: float = MIN_COPY_PSNR) -> Verification:
    """Every check of the contract; `problems` lists each broken one in a sentence."""
    report, source, timeline = _source_and_timeline(report)
    rate = source.rate
    total = timeline[-1].out + timeline[-1].count
    splice = report.get("kind", "splice") == "splice"
    n = report.get("n", 0) if splice else 0
    facts = probe_clip(output)
    result = Verification(facts, [], n=n)
    problems = result.problems
    if facts.frame_count != total:
        problems.append(f"{facts.frame_count} frames, expected {total}")
    if facts.rate != rate:
        problems.append(f"frame rate {facts.rate}, expected {rate}")
    expected_times = [float(Fraction(k) / rate) for k in range(total)]
    if facts.frame_count == total and max(abs(a - b) for a, b in zip(facts.frame_times, expected_times)) > 1e-3:
        problems.append("frame timestamps are not k / rate")
    if splice and abs(facts.duration - 15) > float(1 / rate) + 1e-9:
        problems.append(f"duration {facts.duration:.3f} s, expected 15 s within one frame")
    if report.get("audio"):
        if facts.audio_duration is None:
            problems.append("the report says audio but the clip has none")
        elif abs(facts.audio_duration - facts.duration) > float(1 / rate):
            problems.append(f"audio lasts {facts.audio_duration:.3f} s, video {facts.duration:.3f} s")
    result.frames = check_frames(output, source, timeline)
    for check in result.frames:
        if check.kind == "source" and check.psnr < min_psnr:
            problems.append(f"output frame {check.output_index} is not source frame {check.source_index} "
                            f"({check.psnr:.1f} dB < {min_psnr} dB)")
    if splice:
        for name, k, frame in (("A", n, report["a"]["index"]), ("B", 2 * n, report["b"]["index"])):
            if k < len(result.frames) and result.frames[k].source_index != frame:
                problems.append(f"Frame {name} is not at output frame {k}")
            # The frame shown at exactly 5 s / 10 s must be A / B: check the decoded timestamps too.
            if facts.frame_count > k and abs(facts.frame_times[k] - float(Fraction(k) / rate)) > 1e-3:
                problems.append(f"Frame {name} is shown at {facts.frame_times[k]:.4f} s")
    return result


# ---------------------------------------------------------------------------------------------
# Helpers for looking at a clip (demo.ipynb uses them; so can anyone from Python).

def clip_frames(path: str, start: int, stop: int) -> list[np.ndarray]:
    """RGB frames start .. stop-1 of a video (a clip or its source), frame-exact by timestamp,
    as stored (before any display rotation)."""
    return [to_rgb(frame) for _, frame in VideoSource(path).frames(start, stop)]


def frame_at_time(path: str, seconds: float) -> tuple[int, float, np.ndarray]:
    """The frame on screen `seconds` into a clip (the last one that starts by then, on the
    container's clock): (its index, its start time in seconds, its RGB as stored)."""
    clip = VideoSource(path)
    t = Fraction(seconds).limit_denominator(10**6) + Fraction(1, 10**6)
    times = [p * clip.time_base for p in clip.index.pts]
    k = bisect.bisect_right(times, t) - 1
    if k < 0:
        raise ValueError(f"{path} shows nothing at {seconds} s (its first frame starts at {float(times[0]):.4f} s)")
    _, frame = next(clip.frames(k, k + 1))
    return k, float(times[k]), to_rgb(frame)


def neighbour_psnr(rgb: np.ndarray, source_path: str, index: int, radius: int = 2) -> dict[int, float]:
    """PSNR of `rgb` against source frames index-radius .. index+radius, keyed by offset. The right
    frame should win: a frame shifted by one matches its neighbour better than the frame it claims."""
    source = VideoSource(source_path)
    lo, hi = max(0, index - radius), min(source.frame_count, index + radius + 1)
    out = {}
    for k, frame in source.frames(lo, hi):
        ref = to_rgb(frame)
        out[k - index] = float(psnr(rgb[: ref.shape[0], : ref.shape[1]], ref))
    return out


def _luma(frame, width: int) -> np.ndarray:
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p"):
        y = frame.to_ndarray()[: frame.height] if frame.format.name in ("yuv420p", "yuvj420p") \
            else np.frombuffer(frame.planes[0], np.uint8).reshape(frame.height, -1)[:, : frame.width]
    else:
        y = frame.to_ndarray(format="gray")
    h = max(8, round(frame.height * width / frame.width))
    return cv2.resize(y, (width, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def frame_differences(path: str, width: int = 256) -> np.ndarray:
    """Mean absolute luma change (0..255) from each frame of a clip to the next, on frames scaled
    to `width` pixels: element k is the change from frame k to frame k+1. Steady footage gives a
    low, smooth curve; a cut, a dropped or repeated frame, or a bad bridge shows as a spike or dip."""
    diffs, previous = [], None
    with av.open(path) as c:
        for frame in c.decode(c.streams.video[0]):
            y = _luma(frame, width)
            if previous is not None:
                diffs.append(float(np.mean(np.abs(y - previous))))
            previous = y
    return np.asarray(diffs, dtype=np.float64)


def jumps(diffs: np.ndarray, factor: float = 3.0, window: int = 15, floor: float = 1.0) -> list[int]:
    """Indices k where the change from frame k to k+1 is more than `factor` times the median
    change around it (and above `floor` grey levels): where a viewer would see a jump."""
    diffs = np.asarray(diffs, dtype=np.float64)
    found = []
    for k, d in enumerate(diffs):
        around = np.concatenate([diffs[max(0, k - window): k], diffs[k + 1: k + 1 + window]])
        if around.size and d > floor and d > factor * max(np.median(around), 1e-6):
            found.append(k)
    return found


def runs(indices) -> list[tuple[int, int]]:
    """Sorted indices as inclusive (first, last) runs: [3, 4, 5, 9] -> [(3, 5), (9, 9)]."""
    out: list[tuple[int, int]] = []
    for k in sorted(indices):
        if out and k == out[-1][1] + 1:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


def shift_diagnosis(output: str, result: Verification, source_path: str, radius: int = 2,
                    min_psnr: float = MIN_COPY_PSNR) -> list[dict]:
    """For each run of copied frames that fail, which nearby source frame they show instead: the
    first, middle and last frame of the run are compared with the source frames within `radius`
    of the one the plan names. `offsets` lists the offsets that matched (>= min_psnr): [1] means
    'shows the frame after the one the plan names'; `unmatched` counts tried frames that matched
    no nearby source frame (a generated frame, a frame from elsewhere, a damaged one)."""
    bad = [c.output_index for c in result.frames if c.kind == "source" and c.psnr < min_psnr]
    found = []
    for first, last in runs(bad):
        matched, unmatched = set(), 0
        for k in sorted({first, (first + last) // 2, last}):
            [rgb] = clip_frames(output, k, k + 1)
            scores = neighbour_psnr(rgb, source_path, result.frames[k].source_index, radius)
            best = max(scores, key=scores.get)
            if scores[best] >= min_psnr:
                matched.add(best)
            else:
                unmatched += 1
        found.append({"output_frames": (first, last),
                      "source_frames": (result.frames[first].source_index, result.frames[last].source_index),
                      "offsets": sorted(matched), "unmatched": unmatched})
    return found


def frame_offsets(output: str, report: dict | str, radius: int = 1, width: int = 128,
                  margin: float = 0.3) -> dict[int, int]:
    """Copied frames that look more like a neighbour of their source frame than like the frame the
    plan names: {output index: offset}, offset -1 = the frame before, +1 = the frame after.

    An absolute PSNR floor cannot always tell a frame from its neighbour (in calm footage two
    consecutive frames can differ by less than the encoder's noise), so this compares: on small
    luma frames, the mean difference to the named frame against that to each neighbour, and
    reports a frame only where a neighbour is clearly closer (by `margin` grey levels and by a
    third). Repeated source frames (pulldown) tie and are not reported."""
    report, source, timeline = _source_and_timeline(report)
    small: dict[int, np.ndarray] = {}
    for span in (e for e in timeline if isinstance(e, Span)):
        lo, hi = max(0, span.src - radius), min(source.frame_count, span.src + span.count + radius)
        for k, frame in source.frames(lo, hi):
            small.setdefault(k, _luma(frame, width))
    found: dict[int, int] = {}
    layout = timeline_frames(timeline)
    with av.open(output) as c:
        for k, frame in enumerate(c.decode(c.streams.video[0])):
            if k >= len(layout) or not isinstance(layout[k], SourceFrame):
                continue
            idx = layout[k].index
            y = _luma(frame, width)
            if y.shape != small[idx].shape:   # an odd-sized source comes out one row/column larger
                y = _luma_crop(frame, source, width)
            own = float(np.mean(np.abs(y - small[idx])))
            best, best_d = 0, own
            for off in range(-radius, radius + 1):
                if off and idx + off in small:
                    d = float(np.mean(np.abs(y - small[idx + off])))
                    if d < best_d:
                        best, best_d = off, d
            if best and own - best_d > margin and best_d < own * 2 / 3:
                found[k] = best
    return found


def _luma_crop(frame, source: VideoSource, width: int) -> np.ndarray:
    y = frame.to_ndarray(format="gray")[: source.height, : source.width]
    h = max(8, round(y.shape[0] * width / y.shape[1]))
    return cv2.resize(y, (width, h), interpolation=cv2.INTER_AREA).astype(np.float32)


def summary(result: Verification, min_psnr: float = MIN_COPY_PSNR) -> dict:
    """The headline numbers of a verification, for printing or a table."""
    n, f = result.n, result.facts
    copies = [c.psnr for c in result.frames if c.kind == "source"]
    generated = [c for c in result.frames if c.kind == "generated"]

    def at(k):
        return float(result.frames[k].psnr) if n and k < len(result.frames) else None
    bad = [c.output_index for c in result.frames if c.kind == "source" and c.psnr < min_psnr]
    return {
        "ok": result.ok,
        "frame_count": f.frame_count,
        "rate": f"{f.rate.numerator}/{f.rate.denominator}",
        "fps": float(f.rate),
        "size": [f.width, f.height],
        "codec": f.codec,
        "pix_fmt": f.pix_fmt,
        "duration_s": round(f.duration, 6),
        "audio_duration_s": None if f.audio_duration is None else round(f.audio_duration, 6),
        "a_output_index": n or None, "a_time_s": f.frame_times[n] if n and f.frame_count > n else None,
        "a_psnr_db": at(n),
        "b_output_index": 2 * n or None, "b_time_s": f.frame_times[2 * n] if n and f.frame_count > 2 * n else None,
        "b_psnr_db": at(2 * n),
        "copies": len(copies),
        "copy_psnr_min_db": float(min(copies)) if copies else None,
        "copy_psnr_mean_db": float(np.mean(copies)) if copies else None,
        "failing_copies": runs(bad),
        "generated_output_indices": [c.output_index for c in generated],
        "problems": len(result.problems),
    }


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
    if n and len(result.frames) > 2 * n:
        print(f"A at output {n}: {result.frames[n].psnr:.1f} dB; B at output {2 * n}: {result.frames[2 * n].psnr:.1f} dB")
    if copies:
        print(f"copied frames: min {min(copies):.1f} dB, mean {np.mean(copies):.1f} dB")
    for problem in result.problems:
        print(f"FAIL: {problem}")
    print("OK" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
