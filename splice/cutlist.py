"""Cut lists: which ranges of a recording to keep, from --keep, a text file, an EDL or an OTIO timeline.

A range covers the frames from START up to, not including, END (as editors' out-points and
Python ranges do). Each end is a frame index (`250`) or a time (`12.5s`, `1:02.5`,
`00:00:10.400`), as --frame-a takes them; a time names the frame on screen at that time, so
`--keep 0-10s --keep 10s-20s` is one continuous range. An empty START is the first frame, an
empty END the end of the video.

Files (`--edit FILE`):
  .txt (or anything else): one `START END` range a line; blank lines and `#` comments are skipped.
  .edl: CMX 3600, read by opentimelineio's CMX 3600 adapter at the video's frame rate; each event's
        source in/out timecodes are the range (counted from the start of the video).
  .otio: an OpenTimelineIO timeline; the clips of its first video track, in order, each clip's
        source range. Gaps and transitions between clips are cuts.
"""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from .errors import UserError
from .locate import frame_at_time, parse_time
from .media import VideoSource

SPEC = re.compile(r"^\s*([^-\s]*)\s*-\s*([^-\s]*)\s*$")


def _end(text: str, source: VideoSource, what: str, is_end: bool) -> int:
    text = text.strip()
    if text == "":
        return source.frame_count if is_end else 0
    if re.fullmatch(r"\d+", text):
        k = int(text)
        limit = source.frame_count if is_end else source.frame_count - 1
        if k > limit:
            raise UserError(f"{what}: frame {k} is past the end of the video (frames 0..{source.frame_count - 1})")
        return k
    t = parse_time(text)
    if t is None:
        raise UserError(f"{what}: {text!r} is not a frame index (250) or a time (12.5s, 1:02.5, 00:00:10.400)")
    return seconds_to_frame(t, source, what, is_end)


def seconds_to_frame(t: Fraction, source: VideoSource, what: str, is_end: bool) -> int:
    end = source.time_of(source.frame_count - 1) + 1 / source.rate
    if t >= end:
        if is_end and t <= end + 1 / source.rate:
            return source.frame_count
        raise UserError(f"{what}: {float(t):.3f} s is past the end of the video ({float(end):.3f} s)")
    return frame_at_time(source, t)


def parse_keep(spec: str, source: VideoSource, what: str = "--keep") -> tuple[int, int]:
    """'0-12.5s' -> (first frame, end frame exclusive)."""
    m = SPEC.match(spec)
    if not m:
        raise UserError(f"{what} {spec!r} is not START-END (e.g. 0-12.5s, 18.2s-40s, 250-900)")
    label = f"{what} {spec.strip()}"
    return _end(m.group(1), source, label, False), _end(m.group(2), source, label, True)


def read_cut_list(path: str, source: VideoSource) -> list[tuple[int, int]]:
    """The ranges of an --edit file (see the module docstring for the formats)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--edit: cut list not found: {path}")
    suffix = p.suffix.lower()
    if suffix in (".edl", ".otio"):
        return _read_timeline(p, source, suffix)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--edit: {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as e:
        raise UserError(f"--edit: cannot read {path} as text ({e})") from None
    ranges = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.replace(",", " ").replace("\t", " ").split()
        if len(parts) != 2:
            raise UserError(f"--edit {path}, line {number}: {line.strip()!r} is not 'START END'")
        what = f"--edit {path}, line {number}"
        ranges.append((_end(parts[0], source, what, False), _end(parts[1], source, what, True)))
    if not ranges:
        raise UserError(f"--edit {path} holds no ranges; write one 'START END' a line")
    return ranges


def _read_timeline(p: Path, source: VideoSource, suffix: str) -> list[tuple[int, int]]:
    import opentimelineio as otio
    rate = float(source.rate)
    try:
        text = p.read_text(encoding="utf-8-sig")      # (a byte-order mark, as Windows editors write, dropped)
        if suffix == ".edl":
            timeline = otio.adapters.read_from_string(text, adapter_name="cmx_3600", rate=rate)
        else:
            timeline = otio.adapters.read_from_string(text, adapter_name="otio_json")
    except Exception as e:   # the adapters raise many kinds of errors for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"--edit: cannot read {p} as {'a CMX 3600 EDL' if suffix == '.edl' else 'an OTIO timeline'} "
                        f"({first})") from None
    tracks = [t for t in getattr(timeline, "video_tracks", lambda: [])()] or list(getattr(timeline, "tracks", []))
    if not tracks:
        raise UserError(f"--edit {p} has no video track")
    ranges = []
    for n, item in enumerate(tracks[0], 1):
        if not isinstance(item, otio.schema.Clip):
            continue     # gaps and transitions: a cut
        sr = item.source_range or item.trimmed_range()
        start = Fraction(sr.start_time.to_seconds()).limit_denominator(10 ** 6)
        end = Fraction(sr.end_time_exclusive().to_seconds()).limit_denominator(10 ** 6)
        what = f"--edit {p}, clip {n}"
        ranges.append((seconds_to_frame(start, source, what, False), seconds_to_frame(end, source, what, True)))
    if not ranges:
        raise UserError(f"--edit {p} has no clips on its first video track")
    return ranges
