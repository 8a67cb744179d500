"""The frame layout of a splice: which source frame (or generated frame) each output frame shows.

Pure arithmetic on frame indices, no I/O, so tests can pin it exactly. With r the source rate,
n = round(5 r), A and B the splice points, i the indent and m the number of generated frames:

    output k in [0, n)          source A-n .. A-1
    output k in [n, n+i]        source A .. A+i              (output n is A: A lands at 5 s)
    next m frames               generated between A+i (t=0) and B-j (t=1) at t = 1/(m+1) .. m/(m+1)
    next j = n-1-i-m frames     source B-j .. B-1
    output k in [2n, 3n)        source B .. B+n-1            (output 2n is B: B lands at 10 s)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Union

from .errors import UserError

SECONDS_EACH_SIDE = 5


class PlanError(UserError):
    pass


def frames_in_five_seconds(rate: Fraction) -> int:
    """n = round(5 r), halves rounded up so that the result never depends on float noise."""
    return math.floor(Fraction(SECONDS_EACH_SIDE) * Fraction(rate) + Fraction(1, 2))


def seconds(index: int, rate: Fraction) -> str:
    return f"{float(Fraction(index) / Fraction(rate)):.2f} s"


@dataclass(frozen=True)
class SourceFrame:
    index: int


@dataclass(frozen=True)
class GeneratedFrame:
    left: int        # source index at t = 0
    right: int       # source index at t = 1
    t: Fraction      # position between them


OutputFrame = Union[SourceFrame, GeneratedFrame]


@dataclass(frozen=True)
class Span:
    """`count` output frames from output index `out` on show source frames src .. src+count-1."""
    out: int
    src: int
    count: int

    def as_json(self) -> dict:
        return {"out": self.out, "src": self.src, "count": self.count}


@dataclass(frozen=True)
class Bridge:
    """`count` generated output frames from `out` on, between source frames `left` (t = 0) and
    `right` (t = 1), at t = 1/(count+1) .. count/(count+1)."""
    out: int
    count: int
    left: int
    right: int

    @property
    def timesteps(self) -> list[Fraction]:
        return [Fraction(k, self.count + 1) for k in range(1, self.count + 1)]

    def as_json(self) -> dict:
        return {"out": self.out, "generated": self.count, "left": self.left, "right": self.right}


Entry = Union[Span, Bridge]


def timeline_frames(timeline: list[Entry]) -> list[OutputFrame]:
    """Every output frame of a timeline, in order."""
    frames: list[OutputFrame] = []
    for e in timeline:
        assert e.out == len(frames), (e, len(frames))
        if isinstance(e, Span):
            frames += [SourceFrame(e.src + k) for k in range(e.count)]
        else:
            frames += [GeneratedFrame(e.left, e.right, t) for t in e.timesteps]
    return frames


@dataclass(frozen=True)
class SplicePlan:
    rate: Fraction
    frame_count: int
    a: int
    b: int
    indent: int      # i
    generated: int   # m

    @property
    def n(self) -> int:
        return frames_in_five_seconds(self.rate)

    @property
    def tail(self) -> int:
        """j: how many source frames lead up to B after the generated ones."""
        return self.n - 1 - self.indent - self.generated

    @property
    def left(self) -> int:
        """The source frame the generated frames start from (t = 0): A + i."""
        return self.a + self.indent

    @property
    def right(self) -> int:
        """The source frame the generated frames end at (t = 1): B - j."""
        return self.b - self.tail

    @property
    def total(self) -> int:
        return 3 * self.n

    @property
    def first_generated(self) -> int:
        """Output index of the first generated frame."""
        return self.n + self.indent + 1

    @property
    def timesteps(self) -> list[Fraction]:
        return [Fraction(k, self.generated + 1) for k in range(1, self.generated + 1)]

    @property
    def before(self) -> range:
        """Source frames shown before the generated span: A-n .. A+i."""
        return range(self.a - self.n, self.left + 1)

    @property
    def after(self) -> range:
        """Source frames shown after the generated span: B-j .. B+n-1."""
        return range(self.right, self.b + self.n)

    def timeline(self) -> list[Entry]:
        """Output order: the source before the bridge, the bridge (if m > 0), the source after."""
        before, after = self.before, self.after
        entries: list[Entry] = [Span(0, before.start, len(before))]
        if self.generated:
            entries.append(Bridge(len(before), self.generated, self.left, self.right))
        entries.append(Span(len(before) + self.generated, after.start, len(after)))
        return entries

    def outputs(self) -> list[OutputFrame]:
        frames = timeline_frames(self.timeline())
        assert len(frames) == self.total
        return frames


def max_indent(rate: Fraction, generated: int) -> int:
    """The largest indent that still leaves one source frame (j >= 1) before B."""
    return frames_in_five_seconds(rate) - 2 - generated


def plan_splice(rate: Fraction, frame_count: int, a: int, b: int, indent: int,
                generated: int = 3) -> SplicePlan:
    """Check every limit of the layout and return the plan, or raise PlanError saying which limit."""
    rate = Fraction(rate)
    n = frames_in_five_seconds(rate)
    last = frame_count - 1
    end = seconds(frame_count, rate)
    if generated < 0:
        raise PlanError(f"--interp-frames is {generated}; it must be 0 or more")
    if indent < 0:
        raise PlanError(f"The indent is {indent} frames; it must be 0 or more")
    for name, k in (("A", a), ("B", b)):
        if not 0 <= k <= last:
            raise PlanError(f"Frame {name} is frame {k}, outside the video (frames 0..{last}, {end} long)")
    if b <= a:
        raise PlanError(f"Frame B (frame {b}, {seconds(b, rate)}) must come after "
                        f"Frame A (frame {a}, {seconds(a, rate)})")
    if a < n:
        raise PlanError(f"Frame A is at {seconds(a, rate)}; it needs 5 s of footage before it "
                        f"(pick a frame at or after {seconds(n, rate)}, frame {n})")
    if b + n - 1 > last:
        raise PlanError(f"Frame B is at {seconds(b, rate)}; it needs 5 s of footage after it and the "
                        f"video is {end} long (pick a frame at or before "
                        f"{seconds(frame_count - n, rate)}, frame {frame_count - n})")
    if generated > n - 2:
        raise PlanError(f"--interp-frames {generated} is too many: the middle 5 s holds A, at least one "
                        f"frame before B and at most {n - 2} generated frames at {float(rate):.3g} fps")
    j = n - 1 - indent - generated
    if j < 1:
        raise PlanError(f"An indent of {indent} frames ({seconds(indent, rate)}) with {generated} "
                        f"generated frames leaves no footage before Frame B in the middle 5 s; "
                        f"use an indent of at most {max_indent(rate, generated)} frames")
    if a + indent >= b - j:
        raise PlanError(f"Frames A ({seconds(a, rate)}) and B ({seconds(b, rate)}) are "
                        f"{seconds(b - a, rate)} apart; the middle 5 s needs them at least "
                        f"{n - generated} frames ({seconds(n - generated, rate)}) apart")
    return SplicePlan(rate, frame_count, a, b, indent, generated)


def valid_indents(rate: Fraction, frame_count: int, a: int, b: int, generated: int) -> range:
    """Every indent that gives a valid plan (empty when A and B themselves are invalid)."""
    try:
        plan_splice(rate, frame_count, a, b, 0, generated)
    except PlanError:
        return range(0)
    return range(0, max_indent(rate, generated) + 1)
