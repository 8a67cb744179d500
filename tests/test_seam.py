"""The seam score, `--interp-frames auto` and the guard, on synthetic motion with a known answer."""
import cv2
import numpy as np
import pytest

from conftest import needs_media
from splice import plan, seam
from splice.indent import PairScore, analysis_frame_of, score_pair
from splice.models import BlendInterpolator

H, W = 144, 256
SPEED = 2   # px per frame


def texture(seed: int, width: int = 1200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random((H, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 200 + 28).astype(np.uint8)


CANVAS = texture(1)
OTHER = texture(2)


def other_shot() -> np.ndarray:
    """Another shot: a dark room with a bright window and a lamp, nothing like CANVAS."""
    img = np.full((H, W), 30, np.uint8)
    cv2.rectangle(img, (150, 20), (240, 100), 235, -1)
    cv2.circle(img, (60, 90), 30, 180, -1)
    return cv2.GaussianBlur(img, (0, 0), 2)


def frame(k: float, canvas=CANVAS) -> np.ndarray:
    """Frame k of a pattern moving left at SPEED px per frame (sub-pixel k interpolated)."""
    x = SPEED * k
    m = np.float32([[1, 0, x], [0, 1, 0]])
    return cv2.warpAffine(canvas, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


@pytest.fixture(scope="module")
def natural():
    return seam.natural_motion([[frame(k) for k in range(0, 26)], [frame(k) for k in range(60, 86)]])


def test_natural_motion_is_the_constant_speed(natural):
    assert natural.pairs == 50 and natural.repeats == 0
    assert natural.median == pytest.approx(SPEED, rel=0.1)
    assert natural.p95 == pytest.approx(SPEED, rel=0.15)


def test_natural_motion_leaves_repeated_frames_out():
    run = [frame(0), frame(1), frame(1), frame(2), frame(3), frame(3)]
    n = seam.natural_motion([run])
    assert (n.pairs, n.repeats) == (3, 2)
    assert n.median == pytest.approx(SPEED, rel=0.1)


def test_exact_missing_frames_score_about_one(natural):
    # 25 copied, 26 27 28 generated (the true frames), 29 copied: the bridge moves like the footage
    s = seam.seam_score([frame(k) for k in (25, 26, 27, 28, 29)], natural)
    assert len(s.steps) == 4 and len(s.unexplained_frames) == 3
    assert 0.85 < s.ratio < 1.2
    assert 0.85 < s.pace < 1.2
    assert s.unexplained < 1.5
    j = s.as_json()
    assert set(j) >= {"ratio", "pace", "unexplained", "steps", "unexplained_frames", "natural"}
    assert "seam:" in s.describe() and "\n" not in s.describe()


def test_flow_model_frames_score_about_one(natural):
    from splice.models import FlowInterpolator
    rgb = lambda g: cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)  # noqa: E731
    made = FlowInterpolator().interpolate(rgb(frame(25)), rgb(frame(29)), [0.25, 0.5, 0.75])
    gen = [cv2.cvtColor(g, cv2.COLOR_RGB2GRAY) for g in made]
    s = seam.seam_score([frame(25), *gen, frame(29)], natural)
    assert 0.8 < s.ratio < 1.3 and s.unexplained < 2


def test_too_few_generated_frames_score_high(natural):
    # 12 frames of motion bridged by one generated frame (the true middle one): 6x the natural step
    s = seam.seam_score([frame(25), frame(31), frame(37)], natural)
    assert s.ratio > 4
    assert s.pace > 4


def test_crossfade_of_two_scenes_is_unexplained(natural):
    left, right = frame(25), frame(25, OTHER)
    rgb = [cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) for f in (left, right)]
    fade = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in BlendInterpolator().interpolate(*rgb, [0.25, 0.5, 0.75])]
    s = seam.seam_score([left, *fade, right], natural)
    assert s.unexplained > 10
    exact = seam.seam_score([frame(k) for k in (25, 26, 27, 28, 29)], natural)
    assert s.unexplained > 10 * exact.unexplained


@pytest.mark.parametrize("gap, frames", [(4, 3), (8, 7), (12, 11)])
def test_auto_gives_more_frames_for_larger_motion(natural, gap, frames):
    # gap frames of motion at the natural pace: gap steps, gap - 1 generated frames
    m = seam.choose_generated_frames(frame(25), frame(25 + gap), natural, cap=20)
    assert abs(m - frames) <= 1


def test_auto_gives_one_frame_for_near_identical_endpoints(natural):
    assert seam.choose_generated_frames(frame(25), frame(25), natural, cap=12) == 1
    assert seam.choose_generated_frames(frame(25), frame(25.5), natural, cap=12) == 1


def test_auto_never_exceeds_the_cap(natural):
    assert seam.choose_generated_frames(frame(25), frame(45), natural, cap=5) == 5
    assert seam.frames_for_motion(1000.0, natural, cap=3) == 3
    with pytest.raises(ValueError):
        seam.frames_for_motion(1.0, natural, cap=0)


def test_auto_pair_score_is_the_indent_score_unless_capped(natural):
    pair = PairScore(motion=8.0, residual=1.0)
    assert seam.auto_pair_score(pair, 3, natural) == pytest.approx(9.0)
    # capped at 1 frame: 2 steps of 4 px against a 2 px p95, 8 - 2 * p95 px counted again
    assert seam.auto_pair_score(pair, 1, natural) == pytest.approx(9.0 + 8.0 - 2 * natural.p95)


def test_choose_auto_takes_each_indents_own_m(natural):
    # Left endpoint of indent i is frame 100+i; right_frames[k] (the endpoint for i + m = k + 1) is
    # frame 104+k. So the pair (i, m) is 3 + m frames of motion apart, and m + 1 steps at the
    # natural pace never quite catch up: every indent runs to its cap, and the pair scored is the
    # true one for the chosen m.
    n_indents = 10
    left = [frame(100 + i) for i in range(n_indents)]
    right = [frame(104 + k) for k in range(n_indents + 12)]
    first = [score_pair(left[i], right[i]) for i in range(n_indents)]
    cap = {i: min(12, 18 - i) for i in range(n_indents)}
    choice = seam.choose_auto(left, right, first, natural, cap.__getitem__)
    assert 1 <= choice.frames <= cap[choice.indent]
    assert choice.pair.motion == pytest.approx(SPEED * (3 + choice.frames), rel=0.15)
    assert len(choice.scores) == n_indents


def test_choose_auto_respects_the_layout_cap(natural):
    left = [frame(100 + i) for i in range(5)]
    right = [frame(104 + k) for k in range(20)]   # (3 + m) * 2 px apart: wants 3 frames or more
    first = [score_pair(left[i], right[i]) for i in range(5)]
    choice = seam.choose_auto(left, right, first, natural, lambda i: 2)
    assert choice.frames == 2
    choice = seam.choose_auto(left, right, first, natural, lambda i: 6 - i)
    assert choice.frames <= 6 - choice.indent


# --- the guard ---------------------------------------------------------------------------------

def test_guard_triggers_on_a_scene_cut(natural):
    v = seam.assess_bridge(frame(25), other_shot(), natural)
    assert v.hard and v.reasons
    assert "not explained" in v.describe()
    assert set(v.as_json()) >= {"hard", "reasons", "motion", "bad_fraction", "region", "correlation"}


def test_guard_triggers_on_an_object_entering(natural):
    left = frame(25)
    right = frame(27).copy()
    cv2.circle(right, (W // 2, H), 80, 250, -1)   # a bright blob over the lower middle
    v = seam.assess_bridge(left, right, natural)
    assert v.hard and v.region > seam.GUARD.max_region


def test_guard_does_not_trigger_on_small_motion(natural):
    for gap in (1, 4, 10):
        v = seam.assess_bridge(frame(25), frame(25 + gap), natural)
        assert not v.hard, (gap, v)
    assert seam.assess_bridge(frame(25), frame(25), natural).describe() == "the endpoints can be bridged"


def _analysis_frames(path, ks):
    from splice.media import VideoSource
    source = VideoSource(str(path))
    out = {}
    for k in ks:
        _, f = next(source.frames(k, k + 1))
        out[k] = analysis_frame_of(f)
    return source, out


@pytest.mark.parametrize("name, pairs", [
    ("d6.mp4", [(150, 300), (180, 700), (400, 550), (600, 850)]),
    ("d14.mp4", [(150, 386), (100, 250), (300, 480)]),
])
def test_guard_leaves_ordinary_pairs_of_real_clips_alone(name, pairs):
    path = needs_media(name)
    ks = sorted({k for p in pairs for k in p})
    source, frames = _analysis_frames(path, ks)
    r = round(float(source.rate))
    natural = seam.natural_motion([[analysis_frame_of(f) for _, f in source.frames(ks[0] - r, ks[0] + 1)]])
    for a, b in pairs:
        v = seam.assess_bridge(frames[a], frames[b], natural)
        assert not v.hard, (name, a, b, v.reasons)


# --- wiring: the CLI's --hard-bridge and --interp-frames auto ----------------------------------

CUT_AT = 150   # source frame where the two-shot video changes shot


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory):
    """17 s at 25 fps, 160x120, no sound: a moving texture until frame CUT_AT, then another shot."""
    import av
    from fractions import Fraction
    path = tmp_path_factory.mktemp("two_shots") / "two_shots.mp4"
    room = cv2.resize(other_shot(), (160, 120), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        v.options = {"crf": "12", "preset": "ultrafast", "g": "25"}
        for k in range(425):
            grey = cv2.resize(frame(k), (160, 120), interpolation=cv2.INTER_AREA) if k < CUT_AT else np.roll(room, k % 8, axis=1)
            f = av.VideoFrame.from_ndarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), format="rgb24")
            f.pts, f.time_base = k, Fraction(1, 25)
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    return path


CUT_ARGS = ["--time-indent", "0", "--interp-frames", "3", "--model", "flow", "--preset", "ultrafast", "--quiet"]


def test_hard_bridge_fail_exits_2_with_one_line_and_no_file(two_shots, run_cli, tmp_path):
    out = tmp_path / "out.mp4"
    r = run_cli("--input", two_shots, "--output", out, "--hard-bridge", "fail", *CUT_ARGS)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bridge 1 ")
    assert "not explained by motion" in lines[0] and "nothing was written" in lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists() and r.report is None
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".mp4" or ".tmp" in p.name]


def test_hard_bridge_warn_is_one_line_and_the_default(two_shots, run_cli, tmp_path):
    out = tmp_path / "out.mp4"
    r = run_cli("--input", two_shots, "--output", out, *[a for a in CUT_ARGS if a != "--quiet"])
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stdout.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "bridge 1" in warnings[0]
    seams = [l for l in r.stdout.splitlines() if l.startswith("bridge 1 ") and "seam:" in l]
    assert len(seams) == 1
    (bridge,) = r.report["bridges"]
    assert r.report["hard_bridge"] == "warn"
    assert bridge["guard"]["hard"] and bridge["guard"]["action"] == "warned"
    assert bridge["seam"]["unexplained"] > 3   # a flow morph between two shots


def test_hard_bridge_crossfade_makes_a_crossfade_and_says_so(two_shots, run_cli, tmp_path):
    from splice.media import VideoSource, to_rgb
    out, gen = tmp_path / "out.mp4", tmp_path / "gen"
    r = run_cli("--input", two_shots, "--output", out, "--hard-bridge", "crossfade", "--save-generated", gen,
                *CUT_ARGS)
    assert r.returncode == 0, r.stderr
    rep = r.report
    (bridge,) = rep["bridges"]
    assert bridge["guard"]["action"] == "crossfaded" and bridge["guard"]["reasons"]
    left, right = rep["endpoints"]["left"]["index"], rep["endpoints"]["right"]["index"]
    assert left < CUT_AT <= right and (bridge["left"], bridge["right"]) == (left, right)
    source = VideoSource(str(two_shots))
    (_, lf), = source.frames(left, left + 1)
    (_, rf), = source.frames(right, right + 1)
    a, b = to_rgb(lf).astype(np.float32), to_rgb(rf).astype(np.float32)
    assert rep["m"] == 3
    for k, t in zip(rep["generated_output_indices"], rep["endpoints"]["timesteps"]):
        png = cv2.cvtColor(cv2.imread(str(gen / f"{k:06d}.png")), cv2.COLOR_BGR2RGB).astype(np.float32)
        expected = (1 - t) * a + t * b
        assert np.abs(png - expected).max() <= 1.0, (k, t)
    # and it is not what the flow model would have made
    flow = run_cli("--input", two_shots, "--output", tmp_path / "flow.mp4", "--save-generated", tmp_path / "g2",
                   *CUT_ARGS)
    k = rep["generated_output_indices"][1]
    other = cv2.imread(str(tmp_path / "g2" / f"{k:06d}.png")).astype(np.float32)
    mine = cv2.imread(str(gen / f"{k:06d}.png")).astype(np.float32)
    assert flow.returncode == 0 and np.abs(other - mine).mean() > 2


def test_interp_frames_auto_holds_the_frame_exact_layout(video_factory, run_cli, tmp_path):
    from test_pipeline import assert_layout
    src = video_factory()
    out = tmp_path / "out.mp4"
    r = run_cli("--input", src, "--output", out, "--interp-frames", "auto", "--model", "flow",
                "--preset", "ultrafast", "--quiet")
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert rep["interp_frames"]["mode"] == "auto" and rep["interp_frames"]["m"] == rep["m"]
    assert 1 <= rep["m"] <= min(plan.AUTO_CAP, rep["n"] - 2 - rep["indent"]["i"])
    assert rep["j"] == rep["n"] - 1 - rep["indent"]["i"] - rep["m"] >= 1
    assert len(rep["generated_output_indices"]) == rep["m"]
    assert_layout(out, rep)
    assert rep["bridges"][0]["generated"] == rep["m"] and rep["bridges"][0]["seam"]["steps"]


def test_interp_frames_auto_with_a_fixed_indent(video_factory, run_cli, tmp_path):
    from test_pipeline import assert_layout
    src = video_factory()
    out = tmp_path / "out.mp4"
    r = run_cli("--input", src, "--output", out, "--interp-frames", "auto", "--time-indent", "4.8",
                "--model", "blend", "--preset", "ultrafast", "--quiet")
    assert r.returncode == 0, r.stderr
    rep = r.report
    # indent 120 of n = 125 leaves room for at most 3 generated frames (j >= 1); the barcode's
    # motion asks for more, so auto stops at the layout's limit
    assert rep["indent"]["i"] == 120 and rep["interp_frames"]["cap"] == 3
    assert rep["m"] == 3 and rep["j"] == 1
    assert_layout(out, rep)


def test_interp_frames_rejects_other_words(video_factory, run_cli, tmp_path):
    r = run_cli("--input", video_factory(), "--output", tmp_path / "o.mp4", "--interp-frames", "many", report=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "--interp-frames" in r.stderr and "auto" in r.stderr


def test_interp_frames_auto_in_an_edit_keeps_every_frame_in_place(video_factory, run_cli, tmp_path):
    from test_edit import check_against_timeline
    src = video_factory(frames=300)
    out = tmp_path / "edit.mp4"
    r = run_cli("--input", src, "--output", out, "--keep", "0-100", "--keep", "160-230", "--keep", "240-300",
                "--interp-frames", "auto", "--model", "flow", "--preset", "ultrafast", "--quiet")
    assert r.returncode == 0, r.stderr
    rep = r.report
    check_against_timeline(out, rep, 25, 100 + 70 + 60)
    ms = [j["m"] for j in rep["junctions"]]
    assert all(1 <= m <= plan.AUTO_CAP for m in ms)
    assert [b["generated"] for b in rep["bridges"]] == ms and all(b["seam"] for b in rep["bridges"])


def test_interp_frames_auto_bridges_a_and_b_closer_than_five_seconds(video_factory, run_cli, tmp_path):
    from test_pipeline import assert_layout
    out = tmp_path / "out.mp4"
    # A and B 118 frames apart at n = 125: the layout needs at least 7 generated frames
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", 130, "--frame-b", 248,
                "--model", "blend", "--preset", "ultrafast", "--quiet")
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert rep["interp_frames"]["mode"] == "auto" and 7 <= rep["m"] <= plan.AUTO_CAP
    assert_layout(out, rep)
    refused = tmp_path / "refused.mp4"   # 100 frames apart would need 25, more than auto makes
    r = run_cli("--input", video_factory(), "--output", refused, "--frame-a", 130, "--frame-b", 230,
                "--model", "blend", "--quiet", report=False)
    assert r.returncode == 2 and "at least 113 frames" in r.stderr and not refused.exists()


def test_hard_bridge_fail_refuses_before_the_model_loads(two_shots, run_cli, tmp_path):
    """The guard needs only small frames and refuses before the model is needed: the error is the
    bridge's, not that of a model that could not even load (its load runs meanwhile)."""
    out = tmp_path / "out.mp4"
    args = [a for a in CUT_ARGS if a != "flow"]
    args[args.index("--model") + 1:args.index("--model") + 1] = ["vfimamba", "--ckpt", str(tmp_path / "none.pkl")]
    r = run_cli("--input", two_shots, "--output", out, "--hard-bridge", "fail", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bridge 1 ") and "checkpoint" not in lines[0]
    assert not out.exists()
