"""Interpolation quality on real footage (the gap task), and the seam score of real bridges.

    python3 -m bench.bench_quality [CLIP.mp4 ...] [--models blend,flow,rife] [--samples 4]
                                   [--gaps 2,4,8,16,32] [--skip gap,seam,synthetic,guard]

**Gap task.** At evenly spaced i, each model sees frames i and i+g and predicts the frames at
t = 1/2 (g = 2) or t = 1/4, 1/2, 3/4 (g >= 4) of the gap, scored against the real frames on luma
by PSNR, SSIM, and two perceptual metrics from torchmetrics that need no weights: MS-SSIM
(multi-scale structure, Wang et al. 2003) and VIF (pixel-domain visual information fidelity,
Sheikh & Bovik 2006; it punishes blur and ghosting, which PSNR forgives). These clips hold
repeated frames from frame-rate conversion (a 25 fps source shown at 30 fps repeats one frame in
six); a span holding such a repeat has no true t, so results are also given on the clean subset
(no repeated pair anywhere in the span), and the repeats found are reported.

**Seam.** Real splices of d6.mp4 and d14.mp4 at several A/B pairs with m = 1, 3 and auto: the
indent is chosen as `--time-indent auto` does (for auto, `seam.choose_auto`), each model generates
the bridge from the full-size endpoints, and `seam.seam_score` measures it on the output frames
across it (nothing is encoded: these are the frames the splice would write).

**Synthetic.** A texture moving at 2 px per frame, spliced across jumps of D px: the seam score
for m = 1, 3 and auto with the flow model (the motion is known, so ratio 1 is the right answer).

**Guard.** The measures of `seam.assess_bridge` on real pairs at gaps of 0.5 to 12 s on every
clip in ../shared/media, and on synthetic scene cuts (frames of two different clips), shifted and
rotated copies and a large shape entering: the calibration of its thresholds.

Default clips: the real ones in ../shared/media. Appends its tables to bench/results/quality.md.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from bench.bench_pipeline import machine  # noqa: E402
from splice import plan, seam  # noqa: E402
from splice.indent import analysis_frame, analysis_frame_of, best_indent, score_indents  # noqa: E402
from splice.locate import psnr  # noqa: E402
from splice.media import VideoSource, to_rgb  # noqa: E402
from splice.models import load_interpolator  # noqa: E402
from splice.plan import frames_in_five_seconds, plan_splice, valid_indents  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
REPEAT_PSNR = 48.0   # dB between consecutive frames: the same picture, re-encoded
METRICS = ("psnr", "ssim", "ms_ssim", "vif")


def luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luma (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5)."""
    x = luma(a).astype(np.float64)
    y = luma(b).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def scores(pred: np.ndarray, target: np.ndarray) -> tuple[float, ...]:
    import torch
    from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure,
                                               visual_information_fidelity)
    x = torch.from_numpy(luma(pred)).float()[None, None] / 255
    y = torch.from_numpy(luma(target)).float()[None, None] / 255
    with torch.no_grad():
        ms = float(multiscale_structural_similarity_index_measure(x, y, data_range=1.0))
        vif = float(visual_information_fidelity(x, y))
    return psnr(pred, target), ssim(pred, target), ms, vif


def gap_task(clips, loaded, samples, gaps):
    rows, repeats_found = {}, {}
    for clip in clips:
        source = VideoSource(clip)
        span = max(gaps)
        starts = np.linspace(10, source.frame_count - span - 2, samples).astype(int)
        repeats = pairs = 0
        for i in starts:
            frames = [to_rgb(f) for _, f in source.frames(i, i + span + 1)]
            same = [psnr(frames[k], frames[k + 1]) >= REPEAT_PSNR for k in range(span)]
            repeats += sum(same)
            pairs += span
            for g in gaps:
                ts = [0.5] if g == 2 else [0.25, 0.5, 0.75]
                targets = [frames[round(t * g)] for t in ts]
                dirty = any(same[:g])
                for name, model in loaded.items():
                    preds = model.interpolator.interpolate(frames[0], frames[g], ts)
                    for pred, target in zip(preds, targets):
                        s = scores(pred, target)
                        for subset in ("all",) if dirty else ("all", "clean"):
                            rows.setdefault((name, g, subset), []).append(s)
        repeats_found[Path(clip).name] = f"{repeats} of {pairs} consecutive pairs"
    return rows, repeats_found


def gap_table(rows) -> list[str]:
    lines = ["| model | gap | subset | predictions | PSNR dB | SSIM | MS-SSIM | VIF |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, g, subset), values in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        v = np.array(values)
        lines.append(f"| {name} | {g} | {subset} | {len(v)} | {v[:, 0].mean():.2f} | {v[:, 1].mean():.4f} | "
                     f"{v[:, 2].mean():.4f} | {v[:, 3].mean():.4f} |")
    return lines


def analysis(source, start, stop):
    return [analysis_frame_of(f) for _, f in source.frames(start, stop)]


def natural_at(source, left, right):
    before, after = seam.junction_runs(left, right, source.rate, source.frame_count)
    return seam.natural_motion([analysis(source, before.start, before.stop),
                                analysis(source, after.start, after.stop)])


def plan_bridge(source, a, b, m):
    """(indent, m) as the CLI's --time-indent auto picks them, for a fixed m or m = 'auto'."""
    rate, count = source.rate, source.frame_count
    n = frames_in_five_seconds(rate)
    m0 = 1 if m == "auto" else m
    indents = valid_indents(rate, count, a, b, m0)
    last = indents[-1]
    left = analysis(source, a, a + last + 1)
    right = analysis(source, b - (n - 1 - m0), b - (n - 1 - m0 - last) + 1)
    first = score_indents(left, right)
    if m != "auto":
        return best_indent(first), m
    r = round(float(rate))
    natural = seam.natural_motion([left[:r + 1], right[-(r + 1):]])
    choice = seam.choose_auto(left, right, first, natural, lambda i: min(plan.AUTO_CAP, n - 2 - i))
    return choice.indent, choice.frames


def seam_task(loaded, pairs):
    rows = []
    for clip, ab in pairs.items():
        source = VideoSource(str(clip))
        for (a, b), m in itertools.product(ab, (1, 3, "auto")):
            i, frames = plan_bridge(source, a, b, m)
            plan = plan_splice(source.rate, source.frame_count, a, b, i, frames)
            (_, lf), = source.frames(plan.left, plan.left + 1)
            (_, rf), = source.frames(plan.right, plan.right + 1)
            l_rgb, r_rgb = to_rgb(lf), to_rgb(rf)
            natural = natural_at(source, plan.left, plan.right)
            guard = seam.assess_bridge(analysis_frame(l_rgb), analysis_frame(r_rgb), natural)
            for name, model in loaded.items():
                gen = model.interpolator.interpolate(l_rgb, r_rgb, [float(t) for t in plan.timesteps])
                s = seam.seam_score([analysis_frame(x) for x in (l_rgb, *gen, r_rgb)], natural)
                rows.append((Path(clip).name, a, b, m, i, frames, name, s, guard))
    return rows


def seam_table(rows) -> list[str]:
    lines = ["| clip | A, B | m asked | indent | m | model | ratio | pace | unexplained | natural median / p95 px | guard |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for clip, a, b, m, i, frames, name, s, guard in rows:
        lines.append(f"| {clip} | {a}, {b} | {m} | {i} | {frames} | {name} | {s.ratio:.2f} | {s.pace:.2f} | "
                     f"{s.unexplained:.2f} | {s.natural.median:.2f} / {s.natural.p95:.2f} | "
                     f"{'hard' if guard.hard else 'ok'} |")
    summary = collections.defaultdict(list)
    for clip, a, b, m, i, frames, name, s, guard in rows:
        summary[(name, str(m))].append((s.ratio, s.pace, s.unexplained, frames))
    lines += ["", "Mean over the pairs above:", "",
              "| model | m asked | bridges | mean m | ratio mean | ratio max | pace mean | unexplained mean | unexplained max |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (name, m), v in sorted(summary.items()):
        v = np.array(v)
        lines.append(f"| {name} | {m} | {len(v)} | {v[:, 3].mean():.1f} | {v[:, 0].mean():.2f} | {v[:, 0].max():.2f} | "
                     f"{v[:, 1].mean():.2f} | {v[:, 2].mean():.2f} | {v[:, 2].max():.2f} |")
    return lines


def moving_texture(seed=1, height=144, width=256, length=2000):
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((height, length)).astype(np.float32), (0, 0), 3)
    canvas = ((noise - noise.min()) / (noise.max() - noise.min()) * 200 + 28).astype(np.uint8)
    return lambda k: np.ascontiguousarray(canvas[:, 2 * k: 2 * k + width])   # 2 px per frame


def synthetic_task(model, jumps=(2, 8, 24, 48)):
    frame = moving_texture()
    natural = seam.natural_motion([[frame(k) for k in range(0, 31)], [frame(k) for k in range(400, 431)]])
    rgb = lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)  # noqa: E731
    lines = ["| jump px | m asked | m | ratio | pace | unexplained |", "|---|---|---|---|---|---|"]
    for jump, m in itertools.product(jumps, (1, 3, "auto")):
        left, right = frame(100), frame(100 + jump // 2)
        frames = seam.choose_generated_frames(left, right, natural, plan.AUTO_CAP) if m == "auto" else m
        ts = [k / (frames + 1) for k in range(1, frames + 1)]
        gen = [luma(g) for g in model.interpolate(rgb(left), rgb(right), ts)]
        s = seam.seam_score([left, *gen, right], natural)
        lines.append(f"| {jump} | {m} | {frames} | {s.ratio:.2f} | {s.pace:.2f} | {s.unexplained:.2f} |")
    return lines


def guard_task(seed=0):
    """The guard's measures on ordinary real pairs and on synthetic hard bridges."""
    rng = np.random.default_rng(seed)
    clips = {}
    for path in sorted(MEDIA.glob("*.mp4")):
        source = VideoSource(str(path))
        fr = analysis(source, 0, source.frame_count)
        r = round(float(source.rate))
        clips[path.stem] = (fr, r, seam.natural_motion([fr[:r + 1], fr[-r - 1:]]))
    measured = collections.defaultdict(list)

    def measure(kind, left, right, natural):
        v = seam.assess_bridge(left, right, natural)
        measured[kind].append((v.region, v.bad_fraction, v.motion_fraction, v.correlation, v.hard))
    for name, (fr, r, natural) in clips.items():
        for gap_s in (0.5, 1, 2, 3, 5, 8, 12):
            g = round(gap_s * r)
            if g >= len(fr):
                continue
            kind = f"real, gap {'<= 3' if gap_s <= 3 else ('5' if gap_s == 5 else '8-12')} s"
            for k in rng.choice(len(fr) - g, size=min(8, len(fr) - g), replace=False):
                measure(kind, fr[k], fr[k + g], natural)
                measure(f"real {name} (all gaps)", fr[k], fr[k + g], natural)
    for a, b in itertools.permutations(clips, 2):
        fa, fb = clips[a][0], clips[b][0]
        for _ in range(2):
            left = fa[rng.integers(len(fa))]
            other = cv2.resize(fb[rng.integers(len(fb))], left.shape[::-1], interpolation=cv2.INTER_AREA)
            measure("cut: another clip", left, other, clips[a][2])
    for name, (fr, r, natural) in clips.items():
        for _ in range(3):
            left = fr[rng.integers(len(fr))]
            h, w = left.shape
            for shift in (0.1, 0.2, 0.3):
                m = np.float32([[1, 0, shift * w], [0, 1, 0]])
                measure(f"shift {shift:.0%}", left, cv2.warpAffine(left, m, (w, h), borderMode=cv2.BORDER_REFLECT), natural)
            for angle in (10, 20, 45):
                m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
                measure(f"rotate {angle} deg", left, cv2.warpAffine(left, m, (w, h), borderMode=cv2.BORDER_REFLECT), natural)
            for area in (0.15, 0.3, 0.5):
                covered = left.copy()
                radius = int(np.sqrt(area * w * h / np.pi))
                cx = int(rng.integers(radius, w - radius + 1)) if w > 2 * radius else w // 2
                disc = np.zeros_like(covered)
                cv2.circle(disc, (cx, h - radius // 2), radius, 255, -1)
                tex = (rng.random((h, w)) * 60 + 150).astype(np.uint8)
                covered[disc > 0] = tex[disc > 0]
                measure(f"shape entering, {area:.0%} of the frame", left, covered, natural)
    g = seam.GUARD
    lines = [f"Thresholds: region > {g.max_region}, unexplained > {g.max_bad_fraction}, motion > "
             f"{g.max_motion_fraction} of the width, histogram correlation < {g.min_correlation} "
             f"(a pixel is unexplained {g.bad_level:.0f} grey levels off after warping, specks under "
             f"{g.open_size} px removed).", "",
             "| pairs | n | largest region q50 / q90 / max | unexplained q50 / q90 / max | motion q50 / max | "
             "histogram corr min / q50 | hard |", "|---|---|---|---|---|---|---|"]
    for kind, v in measured.items():
        v = np.array(v, float)
        q = lambda c, qs: " / ".join(f"{np.quantile(v[:, c], x):.3f}" for x in qs)  # noqa: E731
        lines.append(f"| {kind} | {len(v)} | {q(0, (.5, .9, 1))} | {q(1, (.5, .9, 1))} | {q(2, (.5, 1))} | "
                     f"{q(3, (0, .5))} | {int(v[:, 4].sum())} of {len(v)} |")
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("clips", nargs="*")
    p.add_argument("--models", default="blend,flow,rife")
    p.add_argument("--samples", type=int, default=4, help="positions i per clip for the gap task")
    p.add_argument("--gaps", default="2,4,8,16,32")
    p.add_argument("--device", default="auto")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: gap, seam, synthetic, guard")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    clips = args.clips or [str(MEDIA / n) for n in ("d6.mp4", "d14.mp4", "s18.mp4")]
    clips = [c for c in clips if Path(c).exists()]
    if not clips:
        raise SystemExit("no clips: pass some, or put the shared media beside the checkout")
    gaps = [int(g) for g in args.gaps.split(",")]
    loaded = {name: load_interpolator(name, args.device, log=lambda *a: None) for name in args.models.split(",")}
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"\n## {stamp} on {machine()}\n"]
    started = time.perf_counter()
    if "gap" not in skip:
        rows, repeats = gap_task(clips, loaded, args.samples, gaps)
        lines += [f"Gap task. Clips: {', '.join(Path(c).name for c in clips)}; {args.samples} positions each; "
                  f"gaps {', '.join(map(str, gaps))} (t = 1/2 for 2, else 1/4, 1/2, 3/4); luma metrics. "
                  f"Repeated frames found (consecutive PSNR >= {REPEAT_PSNR:.0f} dB): "
                  + "; ".join(f"{k}: {v}" for k, v in repeats.items()) + ". Clean: no repeat in the span.\n",
                  *gap_table(rows)]
    if "seam" not in skip:
        pairs = {MEDIA / "d6.mp4": [(150, 858), (300, 600), (450, 800)],
                 MEDIA / "d14.mp4": [(150, 386), (170, 340), (220, 386)]}
        pairs = {k: v for k, v in pairs.items() if k.exists()}
        if pairs:
            lines += ["", "Seam score of real splices (indent as `--time-indent auto` picks it; "
                      f"auto: `seam.choose_auto`, cap {plan.AUTO_CAP}). ratio: largest step / natural p95; "
                      "pace: mean step / natural median; unexplained: residual / natural residual.", "",
                      *seam_table(seam_task(loaded, pairs))]
    if "synthetic" not in skip and "flow" in loaded:
        lines += ["", "Seam score on synthetic motion (a texture moving 2 px per frame, spliced across a jump; "
                  "flow model):", "", *synthetic_task(loaded["flow"].interpolator)]
    if "guard" not in skip and MEDIA.exists():
        lines += ["", "Guard calibration (`seam.assess_bridge` on 256-px analysis frames of every clip in "
                  "the shared media):", "", *guard_task()]
    lines.append("\nModels: " + "; ".join(f"{k}: {v.description}" for k, v in loaded.items())
                 + f". Took {time.perf_counter() - started:.0f} s on a shared machine.")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / "quality.md"
    if not out.exists():
        out.write_text("# Interpolation quality on real clips (the gap task)\n\nMade by `python3 -m bench.bench_quality`.\n")
    with open(out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
