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

# The bridge options' vocabulary. It lives here, with no heavy imports, because the command line's
# parser needs it before the model's process is started (seam.py, which applies it, imports numpy
# and OpenCV).
AUTO_CAP = 12     # the most frames `--interp-frames auto` generates (0.4-0.5 s at 25-30 fps), before the layout's limit
HARD_BRIDGE = ("warn", "crossfade", "fail")   # --hard-bridge: what to do with endpoints no interpolator can bridge


def parse_interp_frames(value) -> "int | str":
    """--interp-frames: a whole number of frames (0 or more), or 'auto'."""
    text = str(value).strip()
    if text == "auto":
        return "auto"
    try:
        m = int(text)
    except ValueError:
        raise ValueError(f"--interp-frames {text!r} is neither 'auto' nor a whole number of frames") from None
    if m < 0:
        raise ValueError(f"--interp-frames is {m}; it must be 0 or more, or 'auto'")
    return m


class PlanError(UserError):
    pass


def frames_in_five_seconds(rate: Fraction) -> int:
    """n = round(5 r), halves rounded up so that the result never depends on float noise."""
    return math.floor(Fraction(SECONDS_EACH_SIDE) * Fraction(rate) + Fraction(1, 2))


def seconds(index: int, rate: Fraction) -> str:
    """A frame's start time for messages: two decimals when exact, else three (at 29.97 fps frame
    150 starts at 5.005 s, which "5.00 s" would hide)."""
    t = Fraction(index) / Fraction(rate)
    return f"{float(t):.2f} s" if (t * 100).denominator == 1 else f"{float(t):.3f} s"


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
        raise PlanError(f"Frame A is at {seconds(a, rate)} (frame {a}); it needs 5 s of footage before it "
                        f"({n} frames): the earliest Frame A is frame {n}, which starts at {seconds(n, rate)}")
    if b + n - 1 > last:
        raise PlanError(f"Frame B is at {seconds(b, rate)}; it needs 5 s of footage after it and the "
                        f"video is {end} long (pick a frame at or before "
                        f"{seconds(frame_count - n, rate)}, frame {frame_count - n})")
    if generated > n - 2:
        raise PlanError(f"--interp-frames {generated} is too many: the middle 5 s holds A, at least one "
                        f"frame before B and at most {n - 2} generated frames at {float(rate):.3g} fps")
    j = n - 1 - indent - generated
    if j < 1:
        most = max_indent(rate, generated)
        raise PlanError(f"An indent of {seconds(indent, rate)} ({indent} frames) with {generated} "
                        f"generated frames leaves no footage before Frame B in the middle 5 s; "
                        f"use an indent of at most {most} frames (--time-indent {seconds(most, rate)[:-2]} or less)")
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


def shortest_splice(rate: Fraction, generated: int) -> int:
    """The fewest source frames a splice can be made from: n before A, n from A to B less the m
    generated frames, n from B on (3n - m)."""
    return 3 * frames_in_five_seconds(rate) - generated


def splice_indents(rate: Fraction, frame_count: int, a: int, b: int, generated: int) -> range:
    """Every valid indent; raises PlanError with the reason when A and B admit none."""
    plan_splice(rate, frame_count, a, b, 0, generated)
    return range(0, max_indent(rate, generated) + 1)


# ---------------------------------------------------------------------------------------------
# Edits: a cut list of kept ranges, every junction smoothed.
#
# The kept ranges R_k = [s_k, e_k) (source frames, end exclusive) are shown in the order given.
# The output has exactly sum(e_k - s_k) frames: junction k, between R_k and R_{k+1}, rolls by
# d_k frames (R_k ends at e_k + d_k, R_{k+1} starts at s_{k+1} + d_k: an editor's roll edit, which
# keeps the length) and its m_k generated frames take the place of the p_k frames nearest the end
# of R_k and the m_k - p_k frames nearest the start of R_{k+1}:
#
#     ... source s_k' .. left_k | m_k generated | source right_k .. e_{k+1}' - 1 ...
#     left_k  = e_k + d_k - p_k - 1                 (the last source frame before the bridge, t = 0)
#     right_k = s_{k+1} + d_k + m_k - p_k           (the first source frame after it, t = 1)
#
# Each range keeps at least one source frame of its own between its two bridges.

@dataclass(frozen=True)
class JunctionChoice:
    """How junction k is smoothed: `generated` frames (m), `before` of them (p) in place of the
    earlier range's last frames, and the junction rolled by `roll` frames (d)."""
    generated: int
    before: int
    roll: int = 0


@dataclass(frozen=True)
class EditPlan:
    rate: Fraction
    frame_count: int
    ranges: tuple[tuple[int, int], ...]        # as given (contiguous neighbours merged), end exclusive
    junctions: tuple[JunctionChoice, ...]      # one per junction: len(ranges) - 1

    @property
    def total(self) -> int:
        return sum(e - s for s, e in self.ranges)

    def rolled(self, k: int) -> tuple[int, int]:
        """Range k after the rolls of the junctions on either side of it."""
        s, e = self.ranges[k]
        if k > 0:
            s += self.junctions[k - 1].roll
        if k < len(self.junctions):
            e += self.junctions[k].roll
        return s, e

    def endpoints(self, k: int) -> tuple[int, int]:
        """(left, right): the source frames junction k's bridge goes from (t = 0) and to (t = 1)."""
        j = self.junctions[k]
        return junction_endpoints(self.ranges[k][1], self.ranges[k + 1][0], j)

    def timeline(self) -> list[Entry]:
        entries: list[Entry] = []
        out = 0
        for k in range(len(self.ranges)):
            s, e = self.rolled(k)
            if k > 0:
                j = self.junctions[k - 1]
                s += j.generated - j.before
            if k < len(self.junctions):
                e -= self.junctions[k].before
            entries.append(Span(out, s, e - s))
            out += e - s
            if k < len(self.junctions) and self.junctions[k].generated:
                left, right = self.endpoints(k)
                entries.append(Bridge(out, self.junctions[k].generated, left, right))
                out += self.junctions[k].generated
        assert out == self.total
        return entries


def junction_endpoints(end: int, start: int, j: JunctionChoice) -> tuple[int, int]:
    """left_k and right_k of the formula above, for a junction from a range ending at `end` to one
    starting at `start`."""
    return end + j.roll - j.before - 1, start + j.roll + j.generated - j.before


def normalise_ranges(ranges, frame_count: int, rate: Fraction) -> tuple[tuple[int, int], ...]:
    """Check a cut list and merge neighbours that continue each other (no cut there)."""
    if not ranges:
        raise PlanError("The cut list is empty; keep at least one range (--keep START-END)")
    out: list[tuple[int, int]] = []
    for k, (s, e) in enumerate(ranges):
        where = f"kept range {k + 1} ({_frames(s, e, rate)})"
        if not 0 <= s < frame_count or not 0 < e <= frame_count:
            raise PlanError(f"The {where} is outside the video (frames 0..{frame_count - 1}, "
                            f"{seconds(frame_count, rate)} long)")
        if e <= s:
            raise PlanError(f"The {where} is empty: its end must come after its start")
        if out and s == out[-1][1]:
            out[-1] = (out[-1][0], e)      # continues the previous range: not a cut
            continue
        if out and s < out[-1][1] and e > out[-1][0]:
            raise PlanError(f"The {where} overlaps the range before it ({_frames(*out[-1], rate)}); "
                            f"consecutive ranges must not share frames")
        out.append((s, e))
    return tuple(out)


def _frames(s: int, e: int, rate: Fraction) -> str:
    return f"frames {s}-{e}, {seconds(s, rate)} to {seconds(e, rate)}"


def plan_edit(rate: Fraction, frame_count: int, ranges, junctions) -> EditPlan:
    """Check every limit of an edit and return the plan, or raise PlanError saying which limit.
    `ranges` must already be normalised (`normalise_ranges`); `junctions` has one JunctionChoice each."""
    rate = Fraction(rate)
    ranges = tuple(ranges)
    junctions = tuple(junctions)
    if len(junctions) != len(ranges) - 1:
        raise PlanError(f"{len(ranges)} kept ranges need {len(ranges) - 1} junctions, not {len(junctions)}")
    plan = EditPlan(rate, frame_count, ranges, junctions)
    for k, j in enumerate(junctions):
        if j.generated < 0 or not 0 <= j.before <= j.generated:
            raise PlanError(f"Junction {k + 1}: {j.before} of {j.generated} generated frames before it is impossible")
    for k in range(len(ranges)):
        s, e = plan.rolled(k)
        if s < 0 or e > frame_count:
            raise PlanError(f"Rolling junction {k if s < 0 else k + 1} moves kept range {k + 1} outside the video")
        if k and _overlap(plan.rolled(k - 1), (s, e)):
            raise PlanError(f"Rolling makes kept ranges {k} and {k + 1} share frames")
        take_in = junctions[k - 1].generated - junctions[k - 1].before if k else 0
        take_out = junctions[k].before if k < len(junctions) else 0
        if e - s - take_in - take_out < 1:
            need = take_in + take_out + 1
            raise PlanError(f"The kept range {k + 1} ({_frames(*ranges[k], rate)}) is too short to hold its "
                            f"bridges: it needs at least {need} frames ({seconds(need, rate)}); keep more of it "
                            f"or use fewer --interp-frames")
    return plan


def _overlap(x: tuple[int, int], y: tuple[int, int]) -> bool:
    return x[0] < y[1] and y[0] < x[1]


def junction_options(ranges, k: int, frame_count: int, generated: int, max_roll: int) -> list[JunctionChoice]:
    """Every (roll, before) for junction k that keeps both ranges next to it inside the video and
    at least one frame long on their own (the neighbouring junctions are checked by plan_edit)."""
    (s0, e0), (s1, e1) = ranges[k], ranges[k + 1]
    options = []
    for d in range(-max_roll, max_roll + 1):
        if e0 + d > frame_count or s1 + d < 0 or e0 + d <= s0 or s1 + d >= e1:
            continue
        if _overlap((s0, e0 + d), (s1 + d, e1)):
            continue
        for p in range(generated + 1):
            if e0 + d - s0 - p >= 1 and e1 - s1 - d - (generated - p) >= 1:
                options.append(JunctionChoice(generated, p, d))
    return options


def choose_junctions(plan_rate: Fraction, frame_count: int, ranges, options: list[list[JunctionChoice]],
                     cost) -> tuple[JunctionChoice, ...]:
    """The valid combination of junction choices with the lowest total cost(k, choice): dynamic
    programming over the junctions, since a choice only constrains its neighbours through the
    range between them. Raises PlanError (the first limit hit) when no combination is valid."""
    if not options:
        return ()
    ranges = tuple(ranges)

    def fits(k, prev: JunctionChoice | None, cur: JunctionChoice | None) -> bool:
        # range k between junction k-1 (prev) and junction k (cur) keeps >= 1 frame and stays apart
        s, e = ranges[k]
        if prev is not None:
            s += prev.roll + prev.generated - prev.before
        if cur is not None:
            e += cur.roll - cur.before
        return e - s >= 1

    best = [{c: (cost(0, c), (c,)) for c in options[0] if fits(0, None, c)}]
    for k in range(1, len(options)):
        layer = {}
        for c in options[k]:
            found = [(v[0], v[1]) for p, v in best[-1].items() if fits(k, p, c)]
            if found:
                total, path = min(found, key=lambda x: x[0])
                layer[c] = (total + cost(k, c), path + (c,))
        best.append(layer)
    final = [v for c, v in best[-1].items() if fits(len(ranges) - 1, c, None)]
    if not final:
        # let plan_edit name the limit, with the smallest bridges that could be tried
        plan_edit(plan_rate, frame_count, ranges, [o[0] if o else JunctionChoice(0, 0) for o in options])
        raise PlanError("No combination of bridge positions fits these kept ranges; keep longer ranges")
    return min(final, key=lambda x: x[0])[1]
