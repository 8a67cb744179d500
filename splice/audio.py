"""The output's soundtrack: cut at the same source times as the picture.

The picture is a timeline of source spans and generated bridges (splice.plan). The sound follows
every span exactly; under a bridge it crossfades (equal power) from the sound that continues past
the span before it into the sound that leads up to the span after it, so both sides stay
continuous and in sync. Where two spans meet with no bridge (a hard cut), each side fades over a
few milliseconds, and so do the output's first and last milliseconds, so that nothing clicks.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .media import AudioGap, VideoSource, read_audio
from .plan import Bridge, Entry, Span

DECLICK_SECONDS = 0.005


def _samples(seconds: Fraction, rate: int) -> int:
    return round(Fraction(seconds) * rate)


def _ramp(length: int) -> np.ndarray:
    """0 -> 1 over `length` samples, equal-power (sin^2 + cos^2 = 1 under a crossfade)."""
    return np.sin(np.linspace(0, np.pi / 2, length + 2, dtype=np.float64)[1:-1]).astype(np.float32)


def timeline_audio(source: VideoSource, timeline: list[Entry], rate: Fraction,
                   gaps: list[AudioGap] | None = None, stop=None) -> np.ndarray | None:
    """float32 (channels, samples) of exactly the output's length (its frames at `rate`). Gaps in
    the source's audio that the output uses (kept as silence) are appended to `gaps`, once each.
    `stop` (a threading.Event): once it is set, reading ends early and None is returned."""
    found: list[AudioGap] = []
    info = source.audio
    sr = info.sample_rate
    r = Fraction(rate)

    def at(k: int) -> int:    # output frame k's first sample: each boundary is rounded once, on the output clock
        return _samples(Fraction(k) / r, sr)
    end = timeline[-1].out + timeline[-1].count
    clip = np.zeros((info.channels, at(end)), np.float32)
    for n, e in enumerate(timeline):
        if not isinstance(e, Span):
            continue
        prev = timeline[n - 1] if n > 0 else None
        after = timeline[n + 1] if n + 1 < len(timeline) else None
        s0, s1 = at(e.out), at(e.out + e.count)
        lead = s0 - at(prev.out) if isinstance(prev, Bridge) else 0                  # fades in under the bridge before
        tail = at(after.out + after.count) - s1 if isinstance(after, Bridge) else 0  # fades out under the bridge after
        sound = read_audio(source.path, info, source.absolute_time(e.src) - Fraction(lead, sr), lead + s1 - s0 + tail,
                           found, stop)
        if stop is not None and stop.is_set():
            return None
        core = sound[:, lead:lead + s1 - s0]
        if isinstance(prev, Span):
            _declick(core, at_end=False, rate=sr)
        if isinstance(after, Span):
            _declick(core, at_end=True, rate=sr)
        clip[:, s0:s1] = core
        if lead:
            clip[:, s0 - lead:s0] += sound[:, :lead] * _ramp(lead)
        if tail:
            clip[:, s1:s1 + tail] += sound[:, lead + s1 - s0:] * _ramp(tail)[::-1]
    _declick(clip, at_end=False, rate=sr)
    _declick(clip, at_end=True, rate=sr)
    if gaps is not None:
        gaps.extend({(round(g.at, 4), round(g.seconds, 4)): g for g in found}.values())
    return clip


def _declick(audio: np.ndarray, at_end: bool, rate: int) -> None:
    length = min(audio.shape[1], max(1, round(DECLICK_SECONDS * rate)))
    ramp = _ramp(length)
    if at_end:
        audio[:, audio.shape[1] - length:] *= ramp[::-1]
    else:
        audio[:, :length] *= ramp
