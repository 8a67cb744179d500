from fractions import Fraction

import pytest

from splice.plan import (GeneratedFrame, PlanError, SourceFrame, frames_in_five_seconds, max_indent,
                         plan_splice, valid_indents)

RATES = [(Fraction(25), 125), (Fraction(30), 150), (Fraction(30000, 1001), 150), (Fraction(24), 120)]


@pytest.mark.parametrize("rate,n", RATES)
def test_n_is_five_seconds_of_frames(rate, n):
    assert frames_in_five_seconds(rate) == n


@pytest.mark.parametrize("rate,n", RATES)
@pytest.mark.parametrize("indent,m", [(0, 3), (7, 3), (0, 0), (12, 1)])
def test_layout_frame_by_frame(rate, n, indent, m):
    frames, a, b = 5 * n, n + 40, 3 * n + 17
    plan = plan_splice(rate, frames, a, b, indent, m)
    out = plan.outputs()
    j = n - 1 - indent - m
    assert plan.tail == j and len(out) == 3 * n
    expected = ([SourceFrame(k) for k in range(a - n, a + indent + 1)]
                + [GeneratedFrame(a + indent, b - j, Fraction(t, m + 1)) for t in range(1, m + 1)]
                + [SourceFrame(k) for k in range(b - j, b + n)])
    assert out == expected
    assert out[n] == SourceFrame(a) and out[2 * n] == SourceFrame(b)
    assert out[0] == SourceFrame(a - n) and out[-1] == SourceFrame(b + n - 1)
    assert plan.first_generated == n + indent + 1


def test_timesteps_are_even_fractions():
    plan = plan_splice(Fraction(25), 1000, 200, 500, 0, 3)
    assert plan.timesteps == [Fraction(1, 4), Fraction(1, 2), Fraction(3, 4)]


@pytest.mark.parametrize("rate,n", RATES)
def test_edges_of_validity(rate, n):
    m, frames = 3, 4 * n
    last = frames - 1
    b_ok = last - n + 1
    plan_splice(rate, frames, n, b_ok, 0, m)                       # A exactly 5 s in, B+n-1 the last frame
    with pytest.raises(PlanError, match="needs 5 s of footage before it"):
        plan_splice(rate, frames, n - 1, b_ok, 0, m)
    with pytest.raises(PlanError, match="needs 5 s of footage after it"):
        plan_splice(rate, frames, n, b_ok + 1, 0, m)
    plan = plan_splice(rate, frames, n, b_ok, max_indent(rate, m), m)  # j == 1
    assert plan.tail == 1
    with pytest.raises(PlanError, match="leaves no footage before Frame B"):
        plan_splice(rate, frames, n, b_ok, max_indent(rate, m) + 1, m)  # j == 0
    a = n + 5
    plan_splice(rate, frames, a, a + n - m, 0, m)                  # A+i == B-j-1: the closest pair
    with pytest.raises(PlanError, match="apart"):
        plan_splice(rate, frames, a, a + n - m - 1, 0, m)           # A+i == B-j
    with pytest.raises(PlanError, match="must come after"):
        plan_splice(rate, frames, 2 * n, 2 * n, 0, m)
    with pytest.raises(PlanError, match="outside the video"):
        plan_splice(rate, frames, n, frames, 0, m)
    with pytest.raises(PlanError, match="must be 0 or more"):
        plan_splice(rate, frames, n, b_ok, -1, m)


def test_error_names_the_numbers():
    with pytest.raises(PlanError) as e:
        plan_splice(Fraction(25), 1000, 80, 500, 0, 3)
    assert str(e.value).startswith("Frame A is at 3.20 s (frame 80); it needs 5 s of footage before it")


def test_valid_indents():
    assert valid_indents(Fraction(25), 1000, 200, 500, 3) == range(0, 121)
    assert valid_indents(Fraction(25), 1000, 100, 500, 3) == range(0)
    assert list(valid_indents(Fraction(25), 1000, 200, 500, 123)) == [0]
    assert valid_indents(Fraction(25), 1000, 200, 500, 124) == range(0)


def test_messages_at_29_97_fps_name_the_frame_and_its_exact_start():
    """At 29.97 fps frame 150 starts at 5.005 s: '5.00 s' would contradict the frame on screen at 5 s."""
    with pytest.raises(PlanError) as e:
        plan_splice(Fraction(30000, 1001), 1000, 149, 500, 0, 3)
    assert str(e.value) == ("Frame A is at 4.972 s (frame 149); it needs 5 s of footage before it (150 frames): "
                            "the earliest Frame A is frame 150, which starts at 5.005 s")
    with pytest.raises(PlanError, match=r"at most 120 frames \(--time-indent 4.80 or less\)"):
        plan_splice(Fraction(25), 1000, 200, 700, 130, 3)
