"""The clip's soundtrack: cut at the same source times as the picture.

The picture shows source frames A-n .. A+i, then m generated frames, then B-j .. B+n-1. The sound
follows the two source spans exactly; under the generated frames it crossfades (equal power) from
the sound that follows A+i into the sound that leads up to B-j, so both sides stay continuous and
in sync. The clip's first and last few milliseconds fade in and out so that it does not click.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .media import VideoSource, read_audio
from .plan import SplicePlan

DECLICK_SECONDS = 0.005


def _samples(seconds: Fraction, rate: int) -> int:
    return round(Fraction(seconds) * rate)


def _ramp(length: int) -> np.ndarray:
    """0 -> 1 over `length` samples, equal-power (sin^2 + cos^2 = 1 under a crossfade)."""
    return np.sin(np.linspace(0, np.pi / 2, length + 2, dtype=np.float64)[1:-1]).astype(np.float32)


def splice_audio(source: VideoSource, plan: SplicePlan) -> np.ndarray:
    """float32 (channels, samples) of exactly the clip's length, 3n/r seconds."""
    info = source.audio
    sr = info.sample_rate
    r = Fraction(plan.rate)
    total = _samples(plan.total / r, sr)
    # Sample counts follow the picture: each boundary is rounded once, on the output clock.
    first_end = _samples(len(plan.before) / r, sr)
    bridge_end = _samples((len(plan.before) + plan.generated) / r, sr)
    before = read_audio(source.path, info, source.absolute_time(plan.before.start), first_end)
    after_start = source.absolute_time(plan.right)
    bridge = bridge_end - first_end
    after = read_audio(source.path, info, after_start - Fraction(bridge, sr), total - first_end)
    if bridge:
        # The sound that continues past A+i, fading out, over the sound that leads into B-j, fading in.
        outgoing = read_audio(source.path, info,
                              source.absolute_time(plan.before.start) + Fraction(first_end, sr), bridge)
        fade_in = _ramp(bridge)
        after[:, :bridge] = after[:, :bridge] * fade_in + outgoing * fade_in[::-1]
    else:
        # A hard cut: a few milliseconds of fade on each side instead of a click.
        _declick(before, at_end=True, rate=sr)
        _declick(after, at_end=False, rate=sr)
    clip = np.concatenate([before, after], axis=1)
    _declick(clip, at_end=False, rate=sr)
    _declick(clip, at_end=True, rate=sr)
    assert clip.shape[1] == total
    return clip


def _declick(audio: np.ndarray, at_end: bool, rate: int) -> None:
    length = min(audio.shape[1], max(1, round(DECLICK_SECONDS * rate)))
    ramp = _ramp(length)
    if at_end:
        audio[:, audio.shape[1] - length:] *= ramp[::-1]
    else:
        audio[:, :length] *= ramp
