"""The library: load a model once, then make as many splices and edits with it as you like.

    import splice
    model = splice.load_interpolator("auto")                  # VFIMamba, else RIFE, else flow
    video = splice.open_video("talk.mp4")
    report = splice.splice_video(model, video, "clip.mp4", frame_a="6s", frame_b="23.3s")
    report = splice.edit_video(model, video, "edit.mp4", keep=["0-12.5s", "18.2s-40s"])

Each call runs forward: the plan is worked out first (A and B or the cut list, the indent or
the bridge positions, scored on small frames; a pure function of those choices, checked once),
then frames are generated and written. The model is only ever passed in.
"""
from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import indent as indent_score
from . import seam
from .cutlist import parse_keep, read_cut_list
from .errors import UserError
from .locate import FrameChoice, locate_images, resolve_frame
from .media import VideoSource, atomic_output, check_output_path
from .models import BlendInterpolator, LoadedModel
from .plan import (EditPlan, JunctionChoice, PlanError, SplicePlan, choose_junctions, frames_in_five_seconds,
                   junction_endpoints, junction_options, normalise_ranges, plan_edit, plan_splice,
                   seconds, shortest_splice, splice_indents)
from .plan import AUTO_CAP, HARD_BRIDGE, Bridge
from .render import EncodeOptions, GeneratedStills, SoundReader, Stopwatch, render
from .version import VERSION


def open_video(path: str, audio_stream: int | None = None) -> VideoSource:
    """Probe a video (its packet index: rate, frames, audio) without decoding more than one frame;
    `audio_stream` picks the N-th audio stream (0 = the first, the default)."""
    if not os.path.exists(path):
        raise UserError(f"Input file not found: {path}")
    return VideoSource(path, audio_stream)


def _source(video) -> VideoSource:
    return video if isinstance(video, VideoSource) else open_video(str(video))


def _quiet(*_args):
    pass


# ---------------------------------------------------------------------------------------------
# The 15-s splice

def choose_frames(source: VideoSource, frame_a, frame_b, interp_frames: int,
                  progress: bool = False) -> tuple[FrameChoice, FrameChoice]:
    """A and B from their specs; by default A is the frame at 5 s and B the frame 5 s before the end."""
    n = frames_in_five_seconds(source.rate)
    shortest = shortest_splice(source.rate, AUTO_CAP if interp_frames == "auto" else interp_frames)
    if source.frame_count < shortest:
        raise UserError(f"The video is {float(source.duration):.2f} s long ({source.frame_count} frames); a splice "
                        f"needs at least {float(shortest / source.rate):.2f} s: 5 s before Frame A, 5 s from A to B "
                        f"and 5 s from Frame B on")
    a = resolve_frame(None if frame_a is None else str(frame_a), "A", source, default=n)
    b = resolve_frame(None if frame_b is None else str(frame_b), "B", source, default=source.frame_count - n)
    locate_images(source, [a, b], progress)
    return a, b


class AnalysisFrames:
    """Analysis frames (small grey, `indent.analysis_frame_of`) of one source, each decoded once.

    A job looks at the frames around each cut several times (the indent or junction scores, the
    motion that sets auto m, the bridge guard), each a few frames within a second or two of the
    others, and every look would decode from the keyframe before it: GOPs of a few seconds make
    that most of the analysis time. So a look also keeps the frames it decodes on the way, up to
    ANALYSIS_LEAD_SECONDS before its first frame, and ANALYSIS_TAIL_SECONDS past its last (the
    bridge guard looks a few frames further than the scores did), and later looks take them from
    here. At most ANALYSIS_CACHE_BYTES are kept, the longest unused out first."""

    def __init__(self, source: VideoSource):
        self.source = source
        self._kept: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0

    def __call__(self, start: int, stop: int, bar=None) -> list:
        """Frames start .. stop-1."""
        return list(self.iterate(start, stop, bar))

    def iterate(self, start: int, stop: int, bar=None):
        """The same, one at a time, decoding only as far as the caller has read."""
        missing = next((k for k in range(start, stop) if k not in self._kept), None)
        for k in range(start, stop if missing is None else missing):
            yield self._take(k, bar)
        if missing is None:
            return
        lead, past = self._reach(missing, stop)
        k = lead - 1
        try:
            for k, frame in self.source.frames(lead, past):
                if missing <= k < stop:
                    self._keep(k, self._kept.get(k) if k in self._kept else indent_score.analysis_frame_of(frame))
                    yield self._take(k, bar)
                elif k not in self._kept:
                    self._keep(k, indent_score.analysis_frame_of(frame))
        except UserError:
            if k < stop - 1:   # only the frames past what was asked for are optional
                raise

    def _reach(self, start: int, stop: int) -> tuple[int, int]:
        """The frames a look at start .. stop-1 decodes and keeps (the lead and the tail around it)."""
        rate = self.source.rate
        lead = max(start - round(ANALYSIS_LEAD_SECONDS * rate), 0)
        return lead, max(stop, min(self.source.frame_count, stop + round(ANALYSIS_TAIL_SECONDS * rate)))

    def prefetch(self, looks, workers: int | None = None) -> None:
        """Decode the frames of several looks ((start, stop) pairs) at once, a thread each (the
        decoder and the shrinking run without the GIL), and keep them as the looks themselves would
        have: the looks around different cuts are independent, and one at a time they leave all but
        a core or two idle. A look that fails here is left for the real look to report."""
        todo = sorted({(a, b) for a, b in looks if a < b and any(k not in self._kept for k in range(a, b))})
        # no more than half the cache, so that nothing decoded here is pushed out before it is read
        width, height = indent_score.analysis_size(self.source.width, self.source.height)
        room, fits = ANALYSIS_CACHE_BYTES // 2 // (width * height), 0
        for a, b in todo:
            lead, past = self._reach(a, b)
            room -= past - lead
            if room < 0:
                break
            fits += 1
        todo = todo[:fits]
        workers = min(len(todo), workers or indent_score.analysis_workers())
        if workers < 2:
            return

        def decode(look):
            got = []
            try:
                for k, frame in self.source.frames(*self._reach(*look)):
                    got.append((k, indent_score.analysis_frame_of(frame)))
            except UserError:
                pass
            return got
        with ThreadPoolExecutor(workers, thread_name_prefix="analysis decoder") as pool:
            for got in pool.map(decode, todo):
                for k, small in got:
                    if k not in self._kept:
                        self._keep(k, small)

    def _take(self, k: int, bar) -> np.ndarray:
        self._kept.move_to_end(k)
        if bar is not None:
            bar.update(1)
        return self._kept[k]

    def _keep(self, k: int, small: np.ndarray) -> None:
        if k not in self._kept:
            self._bytes += small.nbytes
        self._kept[k] = small
        self._kept.move_to_end(k)
        while self._bytes > ANALYSIS_CACHE_BYTES and len(self._kept) > 1:
            _, old = self._kept.popitem(last=False)
            self._bytes -= old.nbytes


# The frames of one look around a cut fall within about 2 s of each other (seam.junction_runs'
# second of motion on each side, the indents or junction options, the bridge's endpoints).
ANALYSIS_LEAD_SECONDS = 2
ANALYSIS_TAIL_SECONDS = 0.5
# 256 MiB holds about 7000 analysis frames of a 16:9 video: the neighbourhoods of some 35 cuts.
ANALYSIS_CACHE_BYTES = 256 << 20


@dataclass
class IndentAnalysis:
    """Everything `--time-indent auto` measured: for indent i (i = indents[i]), the analysis frames
    of its endpoints left[i] (A+i) and right[i] (B-j), their score, and the winner."""
    indents: range
    left: list
    right: list
    scores: list
    best: int

    def info(self) -> dict:
        """The report's indent fields for the winner."""
        s, i = self.scores, self.best
        return {"mode": "auto", "score": round(s[i].score, 4), "motion": round(s[i].motion, 4),
                "residual": round(s[i].residual, 4),
                "score_at_zero": round(s[0].score, 4),
                "scores": [round(x.score, 4) for x in s]}


def analyse_indents(source: VideoSource, a: int, b: int, m: int, progress: bool = False,
                    frames: AnalysisFrames | None = None) -> IndentAnalysis:
    """Score every valid indent's endpoint pair (what `--time-indent auto` and find_indent.ipynb use)."""
    rate = source.rate
    frames = frames or AnalysisFrames(source)
    indents = splice_indents(rate, source.frame_count, a, b, m)   # raises the reason when there is none
    first = plan_splice(rate, source.frame_count, a, b, indents[0], m)
    last = plan_splice(rate, source.frame_count, a, b, indents[-1], m)
    frames.prefetch([(first.left, last.left + 1), (first.right, last.right + 1)])
    with tqdm(total=2 * len(indents), desc="analysing", unit="frame", disable=not progress) as bar:
        left = frames(first.left, last.left + 1, bar)    # A+i for every i
        right = []                                        # B-j for every i

        def decode_right():  # each pair is scored as its right frame is taken
            for frame in frames.iterate(first.right, last.right + 1, bar):
                right.append(frame)
                yield frame
        scores = indent_score.score_indents(left, decode_right(), workers=indent_score.analysis_workers())
    return IndentAnalysis(indents, left, right, scores, indent_score.best_indent(scores))


def parse_indent(spec, rate: Fraction) -> int | None:
    """--time-indent: None for 'auto', else seconds as a whole number of frames."""
    if spec is None or str(spec).strip() == "auto":
        return None
    text = str(spec).strip()
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"--time-indent {text!r} is neither 'auto' nor a number of seconds (0, 0.4, ...)") from None
    if value < 0:
        raise UserError(f"--time-indent {text} is negative; give 0 or more seconds, or 'auto'")
    if value > 3600:
        raise UserError(f"--time-indent {text} s is far past the 5 s the middle of the clip holds; "
                        f"give at most 5 seconds, or 'auto'")
    return int(value * rate + Fraction(1, 2))


@dataclass
class SpliceJob:
    """A 15-s splice, fully decided: what the model will be asked for and where every frame goes."""
    source: VideoSource
    plan: SplicePlan
    a: FrameChoice
    b: FrameChoice
    indent: dict
    kind: str = "splice"
    frames: dict = field(default_factory=dict)    # how m was decided ({"mode": "fixed"} or auto's numbers)
    checks: list | None = None                    # guard_bridges: each bridge's check
    overrides: dict = field(default_factory=dict)  # guard_bridges: bridges made by another model
    analysis: AnalysisFrames | None = field(default=None, repr=False)  # what the analysis decoded, for the guard

    def timeline(self):
        return self.plan.timeline()


def prepare_splice(video, frame_a=None, frame_b=None, time_indent="auto", interp_frames: "int | str" = "auto",
                   progress: bool = False) -> SpliceJob:
    """Resolve A and B, choose the indent (scoring the candidates when 'auto') and return the plan."""
    source = _source(video)
    _check_interp_frames(interp_frames)
    a, b = choose_frames(source, frame_a, frame_b, interp_frames, progress)
    return plan_splice_job(source, a, b, time_indent, interp_frames, progress)


def _check_interp_frames(m) -> None:
    if m == "auto":
        return
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise UserError(f"--interp-frames is {m}; it must be a whole number, 0 or more, or 'auto'")


def plan_splice_job(source: VideoSource, a: FrameChoice, b: FrameChoice, time_indent="auto",
                    interp_frames: "int | str" = "auto", progress: bool = False) -> SpliceJob:
    """The splice for frames A and B already chosen (`choose_frames`)."""
    rate, m = source.rate, interp_frames
    i = parse_indent(time_indent, rate)
    frames = AnalysisFrames(source)
    if m == "auto":
        return _plan_auto_splice(source, a, b, i, time_indent, progress, frames)
    if i is None:
        analysis = analyse_indents(source, a.index, b.index, m, progress, frames)
        i, info = analysis.best, analysis.info()
    else:
        info = {"mode": "fixed", "seconds": float(Fraction(str(time_indent).strip()))}
    plan = plan_splice(rate, source.frame_count, a.index, b.index, i, m)
    return SpliceJob(source, plan, a, b, info, analysis=frames)


def _plan_auto_splice(source: VideoSource, a: FrameChoice, b: FrameChoice, i: int | None, time_indent,
                      progress: bool, frames: AnalysisFrames) -> SpliceJob:
    """--interp-frames auto: m follows from each candidate pair's motion against the clip's natural
    motion (seam.choose_auto), within what the layout allows (j >= 1) and AUTO_CAP."""
    rate, count = source.rate, source.frame_count
    n = frames_in_five_seconds(rate)
    r = max(2, round(float(rate)))
    m0 = max(1, n - (b.index - a.index))       # A and B closer than n frames need a longer bridge
    if m0 > AUTO_CAP:
        plan_splice(rate, count, a.index, b.index, 0, AUTO_CAP)             # raises the reason
    plan_splice(rate, count, a.index, b.index, 0, m0)                       # A and B themselves

    def cap_for(k: int) -> int:
        return max(m0, min(AUTO_CAP, n - 2 - k))
    if i is None:
        analysis = analyse_indents(source, a.index, b.index, m0, progress, frames)  # every (i, m >= m0) pair
        natural = seam.natural_motion([analysis.left[:r + 1], analysis.right[-(r + 1):]])
        choice = seam.choose_auto(analysis.left, analysis.right, analysis.scores, natural, cap_for, m0=m0)
        info = {"mode": "auto", "score": round(choice.score, 4), "motion": round(choice.pair.motion, 4),
                "residual": round(choice.pair.residual, 4), "score_at_zero": round(choice.scores[0], 4),
                "scores": [round(x, 4) for x in choice.scores]}
    else:
        first = plan_splice(rate, count, a.index, b.index, i, m0)           # raises when i does not fit
        left = frames(first.left, first.left + 1)[0]
        rights = frames(first.right, first.right + cap_for(i) - m0 + 1)
        before, after = seam.junction_runs(first.left, first.right, rate, count)
        natural = seam.natural_motion([frames(before.start, before.stop), frames(after.start, after.stop)])
        choice = seam.choose_auto({i: left}, {i + k: f for k, f in enumerate(rights)},
                                  {i: indent_score.score_pair(left, rights[0])}, natural, cap_for, indents=[i],
                                  m0=m0)
        info = {"mode": "fixed", "seconds": float(Fraction(str(time_indent).strip()))}
    plan = plan_splice(rate, count, a.index, b.index, choice.indent, choice.frames)
    m_info = {"mode": "auto", "m": choice.frames, "cap": cap_for(choice.indent),
              "motion": round(choice.pair.motion, 4), "natural": natural.as_json()}
    return SpliceJob(source, plan, a, b, info, frames=m_info, analysis=frames)


# ---------------------------------------------------------------------------------------------
# Edits

@dataclass
class EditJob:
    """An edit, fully decided: the kept ranges, and where each junction's bridge goes."""
    source: VideoSource
    plan: EditPlan
    given: list                    # the ranges as given, in frames (before merging neighbours)
    roll: float                    # the allowed roll, seconds
    scores: list = field(default_factory=list)   # per junction: the chosen pair's PairScore (or None)
    kind: str = "edit"
    checks: list | None = None                    # guard_bridges: each bridge's check
    overrides: dict = field(default_factory=dict)  # guard_bridges: bridges made by another model
    analysis: AnalysisFrames | None = field(default=None, repr=False)  # what the analysis decoded, for the guard

    def timeline(self):
        return self.plan.timeline()


def _tie_break(choice: JunctionChoice) -> float:
    """Among pairs that score the same (a roll and a shift of the bridge can reach one pair of
    frames), prefer no roll and a bridge centred on the junction."""
    return 1e-6 * abs(choice.roll) + 1e-9 * abs(2 * choice.before - choice.generated)


def prepare_edit(video, keep=None, edit: str | None = None, interp_frames: "int | str" = "auto", roll: float = 0,
                 progress: bool = False) -> EditJob:
    """The cut list (`keep`: 'START-END' strings or (start, end) frame pairs; or an `edit` file),
    checked, with each junction's bridge placed where the endpoints are easiest to bridge."""
    source = _source(video)
    rate, m = source.rate, interp_frames
    _check_interp_frames(m)
    if keep and edit:
        raise UserError("give the cut list either as --keep ranges or as an --edit file, not both")
    if edit:
        given = read_cut_list(edit, source)
    else:
        given = [parse_keep(k, source) if isinstance(k, str) else (int(k[0]), int(k[1])) for k in (keep or [])]
    try:
        roll_value = float(roll)
    except (TypeError, ValueError):
        raise UserError(f"--roll {roll!r} is not a number of seconds") from None
    if not 0 <= roll_value <= 60:
        raise UserError(f"--roll {roll} is out of range; give 0 to 60 seconds")
    max_roll = int(Fraction(roll_value).limit_denominator(10 ** 6) * rate + Fraction(1, 2))
    ranges = normalise_ranges(given, source.frame_count, rate)
    frames = AnalysisFrames(source)
    ms = _auto_junction_frames(frames, ranges, max_roll) if m == "auto" else [m] * (len(ranges) - 1)
    options = [junction_options(ranges, k, source.frame_count, ms[k], max_roll) for k in range(len(ranges) - 1)]
    for k, opts in enumerate(options):
        if not opts:
            m = ms[k]
            (s0, e0), (s1, e1) = ranges[k], ranges[k + 1]
            raise PlanError(f"Kept ranges {k + 1} and {k + 2} (frames {s0}-{e0} and {s1}-{e1}) are too short to "
                            f"hold a bridge of {m} frames between them: together they need at least {m + 2} "
                            f"frames ({seconds(m + 2, rate)}); keep more of them or use fewer --interp-frames")
    scores = _score_junctions(frames, ranges, options, progress) if m else [{} for _ in options]

    def cost(k, choice):
        s = scores[k].get(choice)
        return (s.score if s is not None else 0.0) + _tie_break(choice)
    chosen = choose_junctions(rate, source.frame_count, ranges, options, cost)
    plan = plan_edit(rate, source.frame_count, ranges, chosen)
    return EditJob(source, plan, given, roll_value, [scores[k].get(c) for k, c in enumerate(chosen)],
                   analysis=frames)


# Junctions whose frames are decoded at once (AnalysisFrames.prefetch): enough to keep the cores
# busy, few enough that their frames (about 7 s of them each) stay well inside the cache until read.
PREFETCH_JUNCTIONS = 8


def _prefetched(frames: AnalysisFrames, looks: list):
    """Junction numbers 0 .. len(looks)-1, in order, the frames of each group of PREFETCH_JUNCTIONS
    decoded at once (AnalysisFrames.prefetch) as the group is reached; looks[k]: junction k's looks."""
    for k in range(len(looks)):
        if k % PREFETCH_JUNCTIONS == 0:
            frames.prefetch([look for group in looks[k:k + PREFETCH_JUNCTIONS] for look in group])
        yield k


def _auto_junction_frames(frames: AnalysisFrames, ranges, max_roll: int) -> list[int]:
    """--interp-frames auto for an edit: each junction's m from the motion across its cut (the last
    kept frame before it to the first after it) against the natural motion around it, at most
    AUTO_CAP and as many as the two ranges beside it can give up."""
    source = frames.source
    runs = [seam.junction_runs(ranges[k][1] - 1, ranges[k + 1][0], source.rate, source.frame_count)
            for k in range(len(ranges) - 1)]
    out = []
    for k in _prefetched(frames, [[(r.start, r.stop) for r in pair] for pair in runs]):
        cap = AUTO_CAP
        while cap > 1 and not junction_options(ranges, k, source.frame_count, cap, max_roll):
            cap -= 1
        before, after = runs[k]
        run0 = frames(before.start, before.stop)
        run1 = frames(after.start, after.stop)
        out.append(seam.choose_generated_frames(run0[-1], run1[0], seam.natural_motion([run0, run1]), cap))
    return out


def _score_junctions(frames: AnalysisFrames, ranges, options, progress: bool) -> list[dict]:
    """For every junction, the difficulty score of every candidate's endpoint pair (the same score
    as --time-indent auto), decoding only the frames around the junction."""
    out = []
    need = sum(1 for o in options for _ in o)
    with tqdm(total=need, desc="analysing", unit="pair", disable=not progress) as bar:
        ends = []   # per junction: its candidates' endpoint pairs, and the ranges they span
        for k, opts in enumerate(options):
            pairs = {c: junction_endpoints(ranges[k][1], ranges[k + 1][0], c) for c in opts}
            lefts = sorted({p[0] for p in pairs.values()})
            rights = sorted({p[1] for p in pairs.values()})
            ends.append((pairs, lefts, rights))
        looks = [[(lefts[0], lefts[-1] + 1), (rights[0], rights[-1] + 1)] for _, lefts, rights in ends]
        for k in _prefetched(frames, looks):
            pairs, lefts, rights = ends[k]
            small = dict(zip(range(lefts[0], lefts[-1] + 1), frames(lefts[0], lefts[-1] + 1)))
            small.update(zip(range(rights[0], rights[-1] + 1), frames(rights[0], rights[-1] + 1)))
            unique = sorted(set(pairs.values()))
            scored = indent_score.score_indents([small[l] for l, _ in unique], [small[r] for _, r in unique],
                                                workers=indent_score.analysis_workers())
            by_pair = dict(zip(unique, scored))
            out.append({c: by_pair[p] for c, p in pairs.items()})
            bar.update(len(options[k]))
    return out


# ---------------------------------------------------------------------------------------------
# Rendering and reports

def check_report_path(report: str | None) -> None:
    if not report:
        return
    folder = Path(report).parent if str(Path(report).parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"The --report folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"Cannot write the report into {folder} (permission denied); choose another --report path")
    if Path(report).is_dir():
        raise UserError(f"--report {report} is a folder; give a file path such as {Path(report) / 'report.json'}")


def write_report(report: dict, path: str) -> None:
    try:
        with atomic_output(path, "--report") as tmp:
            Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    except OSError as e:
        raise UserError(f"Cannot write the report {path}: {e.strerror or e}") from None


def check_outputs(source_path: str, output: str, report: str | None = None, save_generated: str | None = None) -> None:
    """Everything about the output paths that can be checked before any decoding."""
    check_output_path(source_path, output)
    check_report_path(report)
    if report and os.path.abspath(report) == os.path.abspath(output):
        raise UserError(f"--report {report} is the output video; choose another report path")
    if save_generated:
        # Checked, not made: the folder is made with the first still (render.GeneratedStills), so
        # that a job that fails leaves no folder behind either.
        folder = Path(save_generated)
        try:
            if folder.exists() and not folder.is_dir():
                raise UserError(f"--save-generated {save_generated} is a file, not a folder; choose another path")
            existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
            writable = existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
        except OSError as e:       # a folder on the way that cannot be entered
            raise UserError(f"Cannot use the --save-generated folder {save_generated} ({e.strerror}); "
                            "choose another path") from None
        if not writable:
            raise UserError(f"Cannot create the --save-generated folder {save_generated} ({existing} is not a "
                            "writable folder); choose another path")


def guard_bridges(job: "SpliceJob | EditJob", hard_bridge: str = "warn", log=None) -> None:
    """Check every bridge of a prepared job (seam.assess_bridge, on small frames: no model needed)
    and apply `hard_bridge` to endpoints too different for any interpolator: 'warn' (one line),
    'crossfade' (that bridge becomes a plain crossfade) or 'fail' (a UserError, before anything is
    loaded or written). Fills job.checks and job.overrides; render_job calls it when not done yet."""
    say = log or _quiet
    if hard_bridge not in HARD_BRIDGE:
        raise UserError(f"--hard-bridge {hard_bridge!r} is not one of {', '.join(HARD_BRIDGE)}")
    source = job.source
    frames = job.analysis or AnalysisFrames(source)
    checks = seam.check_bridges([e for e in job.timeline() if isinstance(e, Bridge)], frames,
                                source.rate, source.frame_count)
    job.analysis = None   # nothing looks at the small frames after this
    overrides = {}
    for c in checks:
        if not c.verdict.hard:
            continue
        if hard_bridge == "fail":
            raise UserError(f"{c.where()} joins endpoints too different for any interpolator: "
                            f"{c.verdict.describe()}; nothing was written (--hard-bridge crossfade "
                            f"crossfades them, warn bridges them anyway)")
        if hard_bridge == "crossfade":
            overrides[c.out] = BlendInterpolator()
            c.action = "crossfaded"
            say(f"warning: {c.where()}: {c.verdict.describe()}; crossfading it (--hard-bridge crossfade)")
        else:
            c.action = "warned"
            say(f"warning: {c.where()}: {c.verdict.describe()}; any model will morph here "
                f"(--hard-bridge crossfade or fail)")
    job.checks, job.overrides = checks, overrides


def render_job(model, job: "SpliceJob | EditJob", output: str, encode: EncodeOptions = EncodeOptions(),
               report: str | None = None, save_generated: str | None = None, progress: bool = False,
               log=None, timings: dict | None = None, hard_bridge: str = "warn") -> dict:
    """Generate and write a prepared job; returns its report (also written to `report` as JSON).

    `model`: a LoadedModel, an Interpolator, or a function of no arguments that returns one of
    them, for a model still loading elsewhere: it is called when the first bridge needs it (the
    report's "model_wait" is how long that blocked), so the footage before that bridge is decoded
    and written while the model loads. `timings`: stages the caller timed, added to the report's
    when it is made (a key the caller adds meanwhile, such as "model_load", is included).

    Every bridge is checked first (seam.assess_bridge): endpoints too different for any
    interpolator are, by `hard_bridge`, warned about ('warn'), bridged by a plain crossfade
    ('crossfade'), or refused with a UserError before anything is written ('fail'). Every bridge
    then gets its seam score (seam.seam_score), printed and in the report's "bridges"."""
    say = log or _quiet
    encode.check()
    check_outputs(job.source.path, output, report, save_generated)
    pending = model if callable(model) and not isinstance(model, LoadedModel) and not hasattr(model, "interpolate") \
        else None

    def arrive():
        nonlocal model
        model = pending()
        return model.interpolator if isinstance(model, LoadedModel) else model
    watch = Stopwatch()
    started = time.perf_counter()
    source = job.source
    timeline = job.timeline()
    gaps: list = []
    sound = SoundReader(source, timeline, gaps, encode=True) if encode.audio and source.audio else None
    try:
        if job.checks is None:
            with watch("seam"):
                guard_bridges(job, hard_bridge, say)
        checks, overrides = job.checks, job.overrides
        by_out = {c.out: c for c in checks}

        def measure(bridge, left_rgb, right_rgb, frames):
            with watch("seam"):
                c = by_out[bridge.out]
                c.seam = seam.seam_score([indent_score.analysis_frame(x) for x in (left_rgb, *frames, right_rgb)],
                                         c.natural)
        copy: list = []
        with watch("write"), ExitStack() as stack:
            stills = stack.enter_context(GeneratedStills(save_generated, source.rotation)) if save_generated else None
            with atomic_output(output) as tmp:
                interpolator = None if pending else model.interpolator if isinstance(model, LoadedModel) else model
                generated_at = render(source, timeline, interpolator, tmp, encode, watch, progress,
                                      stills, gaps, overrides=overrides, on_bridge=measure, copy=copy,
                                      sound=sound, arrive=arrive if pending else None)
            if pending is not None and model is pending:      # no bridge asked for it: wait, for the report
                with watch("model_wait"):
                    arrive()
    except BaseException:
        if sound is not None:
            sound.close()
        raise
    for c in checks:
        say(f"{c.where()}: {c.seam.describe()}")
    for g in gaps:
        what = ("cannot be decoded for {} ms at {} s (damaged packets)" if g.damaged else "has a {} ms gap at {} s")
        say("note: the source's audio " + what.format(f"{g.seconds * 1000:.0f}", f"{g.at:.3f}") + "; kept as silence")
    for stage, seconds in (timings or {}).items():
        watch.seconds[stage] = round(watch.seconds.get(stage, 0) + seconds, 3)
    watch.seconds["total"] = round(watch.seconds.get("total", 0) + time.perf_counter() - started, 3)
    info = model.info() if isinstance(model, LoadedModel) else {
        "name": getattr(model, "name", type(model).__name__),
        "description": getattr(model, "description", ""), "why": "given by the caller"}
    make = _splice_report if job.kind == "splice" else _edit_report
    result = make(job, output, encode, info, generated_at, watch.seconds)
    result["hard_bridge"] = hard_bridge
    result["bridges"] = [c.as_json() for c in checks]
    result["audio_gaps"] = [{"at": round(g.at, 6), "seconds": round(g.seconds, 6), "damaged": g.damaged}
                           for g in gaps]
    result["copy_unchanged"] = encode.copy_unchanged
    result["copy"] = copy
    if report:
        write_report(result, report)
    total = result["output_frames"]
    say(f"wrote {output}: {total} frames, {float(total / job.source.rate):.3f} s, in {watch.seconds['total']:.1f} s")
    return result


def _common(job, output, encode, model_info, generated_at, timings) -> dict:
    source = job.source
    rate = source.rate
    timeline = job.timeline()
    total = timeline[-1].out + timeline[-1].count
    return {
        "version": VERSION,
        "kind": job.kind,
        "input": os.path.abspath(source.path),
        "output": os.path.abspath(output),
        "rate": f"{rate.numerator}/{rate.denominator}",
        "fps": float(rate),
        "frame_count": source.frame_count,
        "size": [source.width, source.height],
        "rotation": source.rotation,
        "timeline": [e.as_json() for e in timeline],
        "generated_output_indices": generated_at,
        "model": model_info,
        "output_frames": total,
        "output_duration": float(total / rate),
        "audio": bool(encode.audio and source.audio),
        "audio_stream": source.audio.position if encode.audio and source.audio else None,
        "audio_streams_ignored": source.audio.ignored if source.audio else 0,
        "variable_rate": source.variable_rate,
        "source_frames": source.frames_in_file,
        "notes": source.notes(encode.pix_fmt, encode.audio),
        "pix_fmt": encode.pix_fmt,
        "crf": encode.crf,
        "preset": encode.preset,
        "timings": timings,
    }


def _splice_report(job: SpliceJob, output, encode, model_info, generated_at, timings) -> dict:
    source, plan, rate = job.source, job.plan, job.source.rate

    def frame_info(k):
        return {"index": k, "time": float(source.time_of(k))}
    report = _common(job, output, encode, model_info, generated_at, timings)
    report.update({
        "n": plan.n,
        "a": {**frame_info(plan.a), "how": job.a.how, "spec": job.a.spec, "match": job.a.match or None,
              "output_index": plan.n, "output_time": float(plan.n / rate)},
        "b": {**frame_info(plan.b), "how": job.b.how, "spec": job.b.spec, "match": job.b.match or None,
              "output_index": 2 * plan.n, "output_time": float(2 * plan.n / rate)},
        "indent": {"i": plan.indent, "seconds": float(plan.indent / rate), **job.indent},
        "m": plan.generated,
        "interp_frames": job.frames or {"mode": "fixed"},
        "j": plan.tail,
        "endpoints": {"left": frame_info(plan.left), "right": frame_info(plan.right),
                      "timesteps": [float(t) for t in plan.timesteps]},
    })
    return report


def _edit_report(job: EditJob, output, encode, model_info, generated_at, timings) -> dict:
    plan, rate = job.plan, job.source.rate
    report = _common(job, output, encode, model_info, generated_at, timings)
    junctions = []
    out = 0
    for k, j in enumerate(plan.junctions):
        s, e = plan.rolled(k)
        start_out = out
        out += e - s
        left, right = plan.endpoints(k)
        score = job.scores[k] if k < len(job.scores) else None
        junctions.append({
            "junction": k + 1, "output_index": start_out + (e - s) - j.before,
            "m": j.generated, "before": j.before, "after": j.generated - j.before,
            "roll_frames": j.roll, "roll_seconds": float(Fraction(j.roll) / rate),
            "left": left, "right": right,
            "score": None if score is None else round(score.score, 4),
            "motion": None if score is None else round(score.motion, 4),
            "residual": None if score is None else round(score.residual, 4),
        })
    report.update({
        "ranges_given": [list(r) for r in job.given],
        "ranges": [list(r) for r in plan.ranges],
        "ranges_rolled": [list(plan.rolled(k)) for k in range(len(plan.ranges))],
        "roll_allowed_seconds": job.roll,
        "junctions": junctions,
    })
    return report


def splice_video(model, video, output: str, frame_a=None, frame_b=None, *, time_indent="auto",
                 interp_frames: "int | str" = "auto", encode: EncodeOptions = EncodeOptions(), report: str | None = None,
                 save_generated: str | None = None, progress: bool = False, log=None,
                 hard_bridge: str = "warn") -> dict:
    """The 15-s splice of `video` (a path or an open_video) with an already-loaded `model`: 5 s
    before Frame A, the bridge, 5 s from Frame B on; A at exactly 5 s, B at exactly 10 s."""
    return _prepare_and_render(
        model, video, output, lambda source: prepare_splice(source, frame_a, frame_b, time_indent, interp_frames,
                                                            progress),
        encode, report, save_generated, progress, log, hard_bridge)


def edit_video(model, video, output: str, keep=None, *, edit: str | None = None, roll: float = 0,
               interp_frames: "int | str" = "auto", encode: EncodeOptions = EncodeOptions(), report: str | None = None,
               save_generated: str | None = None, progress: bool = False, log=None,
               hard_bridge: str = "warn") -> dict:
    """The whole edit of `video`: the kept ranges in order, every junction bridged, the timing kept."""
    return _prepare_and_render(
        model, video, output, lambda source: prepare_edit(source, keep, edit, interp_frames, roll, progress),
        encode, report, save_generated, progress, log, hard_bridge)


def _prepare_and_render(model, video, output, prepare, encode, report, save_generated, progress, log,
                        hard_bridge) -> dict:
    """Check the outputs, plan (timed as "analyse"), then render: what splice_video and edit_video share."""
    source = _source(video)
    check_outputs(source.path, output, report, save_generated)
    watch = Stopwatch()
    with watch("analyse"):
        job = prepare(source)
    return render_job(model, job, output, encode, report, save_generated, progress, log, watch.seconds,
                      hard_bridge)
