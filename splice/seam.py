"""Is the bridge visible? The seam score, the number of generated frames for `auto`, and the guard.

Everything here works on analysis frames (small grey frames from `indent.analysis_frame` /
`indent.analysis_frame_of`, 256 pixels wide) with the indent search's DIS flow
(`indent.optical_flow`, `indent.warp`): one bridge costs about 2 s of source (decoded small) and
60 + 3m + 1 flows, the natural motion's in threads as the indent search's (d14.mp4's bridge:
1.9 s on a 2-core CPU shared with other work, load about 6; 3.2 s before the threads).

**Motion of a step** (`step_motion`): the 90th percentile of the DIS flow length between two
frames, in pixels of the 256-pixel-wide frame (the same statistic the indent search uses: it
looks at the moving part, the face, not the still background).

**Natural motion** (`natural_motion`): that statistic over consecutive source frames around the
junction (about a second on each side: the footage the viewer sees just before and just after
the bridge); its median (the clip's usual pace) and 95th percentile (the largest step the
footage itself makes, bar the odd outlier), and the median residual of the same pairs (mean
absolute grey difference after warping one frame onto the other: how much the footage changes
in a frame beyond what motion explains, the noise floor of the unexplained part). Pairs of
repeated frames (frame-rate conversion repeats one picture; residual under `REPEAT_RESIDUAL`)
are left out, since they say nothing about the pace.

**The seam score** (`seam_score`) of a bridge is measured on the output frames across it: the
last copied frame before it, the generated frames, the first copied frame after it.

    steps       = motion of each of the m+1 steps across the bridge
    ratio       = max(steps) / natural p95
    pace        = mean(steps) / natural median
    unexplained = for each generated frame, the per-pixel smaller of its residuals against the
                  two endpoints warped onto it (flow from the generated frame to each endpoint),
                  averaged over the frame, over the natural residual; the largest over the
                  generated frames

The ratio uses the largest step because a viewer sees the one jerk, not the average, and the
natural 95th percentile because footage that moves unevenly (a head turn in a talking head)
already holds steps well above its median that nobody calls a seam: a bridge whose largest step
is within what the footage itself does (ratio <= about 1) does not stand out; 2 is a step twice
the clip's own largest. `pace` says the other side: well under 1 is a bridge in slow motion
(too many frames for the motion). `unexplained` catches what motion statistics cannot: a
crossfade (a ghost of both endpoints), a morph between two different pictures. A faithful
interpolation is a warp of its endpoints and scores about 1 or less; a crossfade of two
different scenes scores many times that.

**`--interp-frames auto`** (`choose_generated_frames`): m such that the bridge moves at the
clip's natural pace, m = ceil(motion(left, right) / natural median - 0.2) - 1, within [1, cap].
With auto, the indent search compares pairs whose m differs, so it scores each pair with
`auto_pair_score` (see there), and the analysis frames of `choose_auto` cover every (i, m).

The flow lengths come from DIS at 256 pixels wide, which follows steps up to about 20 px
(8% of the width) and under-measures larger ones: a bridge whose steps exceed that scores lower
than it is (the unexplained part, which rises when the flow fails, still shows it).

**The guard** (`assess_bridge`): endpoints no interpolator can connect. The right endpoint is
warped onto the left by DIS flow; a pixel still more than 20 grey levels off is unexplained,
specks under 5 px are opened away. Hard when the largest connected unexplained region is over
15% of the frame, all of them over 50%, the p90 flow over 25% of the width, or the 32-bin grey
histograms correlate under 0.5. Calibrated with bench/bench_quality.py (its guard table in
bench/results/quality.md) on 256-px frames of the six clips in the shared media:

    pairs                         n    region max  unexplained max  motion max  corr min  hard
    real, 0.5-3 s apart          187   0.031       0.066            0.236       0.918     0
    real, 5 s apart               32   0.125       0.234            0.118       0.949     0
    real, 8-12 s apart            48   0.118       0.429            0.103       0.929     0
    another clip's frame          60   (q50 0.665)  (q50 0.754)      -           (q50 0.06) 60
    shifted 30% / 20% / 10%       18   (q50 0.141)  ...                                   16 / 2 / 0
    rotated 45 / 20 / 10 degrees  18   (q50 0.109)                                        10 / 3 / 0
    a shape entering, 50/30/15%   18   (q50 0.191 / 0.158 / 0.060)                        13 / 9 / 0

So no ordinary pair of any clip triggers it, even 12 s apart (the largest real values, 0.125 and
0.429, are s18.mp4's travelling camera), every scene cut does, and a shape covering a third of the
frame does about half the time (when it is as bright as what it covers, it is partly explained).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from .indent import PairScore, analysis_workers, optical_flow, score_indents, score_pair, warp

MOTION_PERCENTILE = 90
REPEAT_RESIDUAL = 0.5      # grey levels: a pair this close is one picture shown twice
MIN_NATURAL_STEP = 0.25    # px: the pace assumed for footage that barely moves
MIN_NATURAL_RESIDUAL = 0.5  # grey levels: the floor of the unexplained part's scale


def flow_length(flow: np.ndarray) -> np.ndarray:
    return np.hypot(flow[..., 0], flow[..., 1])


def step_motion(a: np.ndarray, b: np.ndarray) -> float:
    """The motion of one step: 90th percentile of the DIS flow length from a to b, in pixels."""
    return float(np.percentile(flow_length(optical_flow(a, b)), MOTION_PERCENTILE))


def _residual_map(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """|target - source warped onto target's grid| per pixel (grey levels, float32)."""
    flow = optical_flow(target, source)
    return np.abs(target.astype(np.float32) - warp(source, flow).astype(np.float32))


@dataclass(frozen=True)
class Natural:
    """The clip's own frame-to-frame motion around a junction."""
    median: float      # px per frame, the usual pace
    p95: float         # px per frame, the largest ordinary step
    residual: float    # grey levels, median residual of a consecutive pair after warping
    pairs: int         # consecutive pairs measured (repeats left out)
    repeats: int       # repeated-frame pairs left out

    @property
    def step(self) -> float:
        """The pace `auto` aims for (px per frame), floored for footage that barely moves."""
        return max(self.median, MIN_NATURAL_STEP)

    @property
    def residual_scale(self) -> float:
        return max(self.residual, MIN_NATURAL_RESIDUAL)

    def as_json(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def junction_runs(left: int, right: int, rate, frame_count: int) -> tuple[range, range]:
    """The source frames whose natural motion frames a bridge from `left` to `right`: about a second
    of them up to and including `left`, and from `right` on (the footage shown around it)."""
    r = max(2, round(float(rate)))
    return range(max(0, left - r), left + 1), range(right, min(frame_count, right + r + 1))


def natural_motion(runs: Sequence[Sequence[np.ndarray]]) -> Natural:
    """The natural motion over runs of consecutive source analysis frames (e.g. the second before
    the bridge and the second after it). Pairs are taken only within a run."""
    lefts = [a for run in runs for a in run[:-1]]
    rights = [b for run in runs for b in run[1:]]
    motions, residuals, repeats = [], [], 0
    if lefts:
        for s in score_indents(lefts, rights, workers=analysis_workers()):
            if s.residual < REPEAT_RESIDUAL and s.motion < 0.5:
                repeats += 1
                continue
            motions.append(s.motion)
            residuals.append(s.residual)
    if not motions:   # a still picture: nothing but repeats (or a single frame)
        return Natural(0.0, 0.0, 0.0, 0, repeats)
    return Natural(float(np.median(motions)), float(np.percentile(motions, 95)),
                   float(np.median(residuals)), len(motions), repeats)


@dataclass(frozen=True)
class SeamScore:
    steps: list            # px, the motion of each step across the bridge (m+1 values)
    natural: Natural
    unexplained_frames: list   # per generated frame, residual / natural residual

    @property
    def ratio(self) -> float:
        """Largest step across the bridge over the clip's natural 95th percentile step."""
        return max(self.steps) / max(self.natural.p95, MIN_NATURAL_STEP)

    @property
    def pace(self) -> float:
        """Mean step across the bridge over the clip's natural median step."""
        return float(np.mean(self.steps)) / self.natural.step

    @property
    def unexplained(self) -> float:
        return max(self.unexplained_frames, default=0.0)

    def as_json(self) -> dict:
        return {"ratio": round(self.ratio, 3), "pace": round(self.pace, 3),
                "unexplained": round(self.unexplained, 3),
                "steps": [round(s, 3) for s in self.steps],
                "unexplained_frames": [round(u, 3) for u in self.unexplained_frames],
                "natural": self.natural.as_json()}

    def describe(self) -> str:
        n = self.natural
        return (f"seam: largest step {max(self.steps):.2f} px = {self.ratio:.2f}x the clip's p95 "
                f"({n.p95:.2f} px; median {n.median:.2f}), pace {self.pace:.2f}x, "
                f"unexplained {self.unexplained:.2f}x the natural residual")


def seam_score(frames: Sequence[np.ndarray], natural: Natural) -> SeamScore:
    """The seam score of a bridge from the output analysis frames across it: frames[0] is the
    last copied frame before it, frames[-1] the first copied frame after it, the rest generated."""
    if len(frames) < 2:
        raise ValueError("a bridge needs at least its two endpoints")
    steps = [step_motion(a, b) for a, b in zip(frames[:-1], frames[1:])]
    left, right = frames[0], frames[-1]
    scale = natural.residual_scale
    unexplained = [float(np.mean(np.minimum(_residual_map(g, left), _residual_map(g, right)))) / scale
                   for g in frames[1:-1]]
    return SeamScore(steps, natural, unexplained)


# --- --interp-frames auto -------------------------------------------------------------------

AUTO_SLACK = 0.2  # steps: a motion of 4.1 natural steps takes 4 steps (flow lengths are not exact)


def frames_for_motion(motion: float, natural: Natural, cap: int, floor: int = 1) -> int:
    """m = ceil(motion / natural step - AUTO_SLACK) - 1 within [floor, cap]: m+1 steps at about the
    natural pace (each at most 1.05 natural steps when the slack is used)."""
    if cap < 1:
        raise ValueError(f"the cap is {cap}; a bridge needs room for at least one frame")
    m = math.ceil(motion / natural.step - AUTO_SLACK) - 1
    return int(min(max(m, floor, 1), cap))


def choose_generated_frames(left: np.ndarray, right: np.ndarray, natural: Natural, cap: int) -> int:
    """How many frames to generate between two analysis frames for `--interp-frames auto`: enough
    that each step moves about as far as the clip's natural median step; at least 1, at most `cap`
    (the caller passes the smaller of plan.AUTO_CAP and what the layout allows)."""
    return frames_for_motion(step_motion(left, right), natural, cap)


def auto_pair_score(pair: PairScore, m: int, natural: Natural) -> float:
    """The indent score of a pair bridged with m frames under `auto`, comparable across pairs
    whose m differs.

    With a fixed m the indent search ranks pairs by motion + residual (indent.py): larger motion
    and unexplained change are harder to interpolate, whatever m is. Under auto, m grows with the
    motion, so the bridge keeps its pace, and the only new risk is a bridge whose motion is too
    large even for the capped m: the part of the motion it must cover faster than the footage's
    own 95th percentile step is a jerk, and is counted a second time:

        score = motion + residual + max(0, motion - (m + 1) * natural p95)

    For uncapped bridges the excess is 0 and the ranking is the fixed-m one."""
    excess = max(0.0, pair.motion - (m + 1) * max(natural.p95, MIN_NATURAL_STEP))
    return pair.motion + pair.residual + excess


@dataclass(frozen=True)
class AutoChoice:
    indent: int
    frames: int
    score: float
    pair: PairScore
    scores: list = field(default_factory=list)   # auto_pair_score per indent (first pass)


def choose_auto(left_frames, right_frames, first_pass, natural: Natural, cap_for: Callable[[int], int],
                refine: int = 8, indents=None, m0: int = 1) -> AutoChoice:
    """The indent and m for `--interp-frames auto`.

    left_frames[i] is A+i; right_frames[k] is the right endpoint for i + m = k + 1, i.e. the
    indent analysis frames decoded for m = 1 (then B-j = B-(n-2-k)), which hold every right
    endpoint any (i, m) with j >= 1 can use. first_pass[i] scores (left[i], right[i]) (the m = 1
    diagonal, what `indent.score_indents` returns). cap_for(i) is the most frames indent i allows
    (min(plan.AUTO_CAP, layout)). `indents` limits the candidates (default: every i of first_pass;
    the three may then be dicts keyed by index).

    Each indent's m follows from its first-pass motion; the `refine` best indents are then
    rescored on their true pair (left[i], right[i + m - 1]), m re-chosen from that pair's motion
    and the pair rescored once more if m changed, and the best of these wins (ties: the smaller
    indent).

    When the layout needs at least m0 > 1 frames (A and B close together), the analysis frames are
    those decoded for m = m0: right_frames[k] is the right endpoint for i + m = k + m0, first_pass
    scores the m = m0 diagonal, and no m under m0 is chosen."""
    indents = list(range(len(first_pass)) if indents is None else indents)

    def pick(i: int, pair: PairScore) -> int:
        return frames_for_motion(pair.motion, natural, cap_for(i), floor=m0)

    def pair_for(i: int, m: int) -> PairScore:
        return first_pass[i] if m == m0 else score_pair(left_frames[i], right_frames[i + m - m0])

    provisional = {i: auto_pair_score(first_pass[i], pick(i, first_pass[i]), natural) for i in indents}
    order = sorted(indents, key=lambda i: (round(provisional[i], 6), i))[:max(1, refine)]
    best = None
    for i in order:
        m = pick(i, first_pass[i])
        pair = pair_for(i, m)
        m2 = pick(i, pair)
        if m2 != m:
            m, pair = m2, pair_for(i, m2)
        s = auto_pair_score(pair, m, natural)
        if best is None or (round(s, 6), i) < (round(best.score, 6), best.indent):
            best = AutoChoice(i, m, s, pair)
    return AutoChoice(best.indent, best.frames, best.score, best.pair, [provisional[i] for i in indents])


# --- the guard ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Guard:
    """Thresholds of `assess_bridge` (the calibration is in the module docstring)."""
    bad_level: float = 20.0            # grey levels: a pixel this far off after warping is unexplained
    open_size: int = 5                 # px: unexplained specks smaller than this are ignored
    max_region: float = 0.15           # largest connected unexplained region, of the frame
    max_bad_fraction: float = 0.50     # all unexplained pixels together, of the frame
    max_motion_fraction: float = 0.25  # p90 flow length over the frame width
    min_correlation: float = 0.5       # grey-histogram correlation (cv2.compareHist)


GUARD = Guard()


@dataclass(frozen=True)
class Verdict:
    hard: bool
    reasons: list
    motion: float            # px, p90 flow length between the endpoints
    motion_fraction: float   # motion / frame width
    residual: float          # grey levels after warping
    residual_ratio: float    # residual / natural residual
    bad_fraction: float      # unexplained pixels (residual over bad_level, specks removed)
    region: float            # the largest connected unexplained region
    correlation: float       # grey-histogram correlation

    def as_json(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "the endpoints can be bridged"


def assess_bridge(left: np.ndarray, right: np.ndarray, natural: Natural, guard: Guard = GUARD) -> Verdict:
    """Whether two endpoints (analysis frames) are too different for any interpolator.

    The right frame is warped onto the left by DIS flow; a pixel still `bad_level` grey levels
    off is unexplained by motion, and specks under `open_size` pixels (edges, noise) are removed
    by a morphological opening. Hard when: one connected unexplained region covers more than
    `max_region` of the frame (an object entering, a large pose change), or all of them more than
    `max_bad_fraction` (another shot); the motion is more than `max_motion_fraction` of the width
    (another framing); or the grey histograms correlate under `min_correlation` (a scene change).
    """
    flow = optical_flow(left, right)
    diff = np.abs(left.astype(np.float32) - warp(right, flow).astype(np.float32))
    motion = float(np.percentile(flow_length(flow), MOTION_PERCENTILE))
    residual = float(diff.mean())
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (guard.open_size, guard.open_size))
    mask = cv2.morphologyEx((diff > guard.bad_level).astype(np.uint8), cv2.MORPH_OPEN, kernel)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    region = float(stats[1:, cv2.CC_STAT_AREA].max()) / mask.size if count > 1 else 0.0
    bad = float(mask.mean())
    hists = [cv2.calcHist([f], [0], None, [32], [0, 256]) for f in (left, right)]
    corr = float(cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_CORREL))
    width = left.shape[1]
    reasons = []
    if region > guard.max_region:
        reasons.append(f"one region of {region:.0%} of the picture is not explained by motion "
                       f"(over {guard.max_region:.0%}: an object entering or a large pose change)")
    if bad > guard.max_bad_fraction:
        reasons.append(f"{bad:.0%} of the picture is not explained by motion "
                       f"(over {guard.max_bad_fraction:.0%}: another shot)")
    if motion / width > guard.max_motion_fraction:
        reasons.append(f"the endpoints are {motion / width:.0%} of the frame width apart "
                       f"(over {guard.max_motion_fraction:.0%})")
    if corr < guard.min_correlation:
        reasons.append(f"their brightness histograms correlate only {corr:.2f} "
                       f"(under {guard.min_correlation:.2f}: a scene change)")
    return Verdict(bool(reasons), reasons, motion, motion / width, residual,
                   residual / natural.residual_scale, bad, region, corr)


# --- checking the bridges of a timeline ------------------------------------------------------

@dataclass
class BridgeCheck:
    """What was measured about one bridge before and after it was generated, and what was done."""
    number: int              # 1-based, in output order
    out: int                 # output index of its first generated frame
    count: int
    left: int
    right: int
    natural: Natural
    verdict: Verdict
    action: str = "none"     # none | warned | crossfaded
    seam: "SeamScore | None" = None

    def as_json(self) -> dict:
        return {"bridge": self.number, "out": self.out, "generated": self.count, "left": self.left,
                "right": self.right,
                "guard": {**self.verdict.as_json(), "action": self.action},
                "seam": None if self.seam is None else self.seam.as_json()}

    def where(self) -> str:
        return (f"bridge {self.number} (output frames {self.out}-{self.out + self.count - 1}, "
                f"source {self.left} to {self.right})")


def check_bridges(bridges, analysis_frames: Callable[[int, int], list], rate, frame_count: int) -> list:
    """The guard's verdict for every bridge (plan.Bridge) of a timeline, with the natural motion
    around each junction; `analysis_frames(start, stop)` gives analysis frames of source frames
    start .. stop-1."""
    checks = []
    for number, b in enumerate(bridges, 1):
        before, after = junction_runs(b.left, b.right, rate, frame_count)
        run0 = analysis_frames(before.start, before.stop)
        run1 = analysis_frames(after.start, after.stop)
        natural = natural_motion([run0, run1])
        checks.append(BridgeCheck(number, b.out, b.count, b.left, b.right, natural,
                                  assess_bridge(run0[-1], run1[0], natural)))
    return checks
