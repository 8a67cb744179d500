"""The seam score, `--interp-frames auto` and the guard, on synthetic motion with a known answer."""
import cv2
import numpy as np
import pytest

from conftest import needs_media
from splice import seam
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
