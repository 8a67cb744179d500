"""The splice from the common containers and codecs: every frame the right source frame, the sound
on its seconds, and unchanged H.264 copied where the container allows.

Each input is written here with PyAV: 17 s at 25 fps whose frames carry their own index
(synthetic.code_frame) and, where the case has sound, the test soundtrack (a burst at every whole
second). The command runs with the weights-free model and no indent, so the layout is exactly
README's table with i = 0.
"""
from fractions import Fraction

import av
import numpy as np
import pytest

from synthetic import SAMPLE_RATE, burst_onsets, code_frame, decode_audio, decode_codes, tone_with_bursts

FRAMES, RATE, SIZE = 425, 25, (320, 240)
FAST = ["--model", "flow", "--preset", "ultrafast", "--time-indent", "0", "--quiet"]

# name: (file, video codec, pixel format, video options, sound codec or None, sound sample format, copied)
CASES = {
    "mkv-h264-opus": ("a.mkv", "libx264", "yuv420p", {"bf": "2", "g": "30"}, "libopus", "flt", True),
    "webm-vp9-opus": ("a.webm", "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8"}, "libopus",
                      "flt", False),
    "mov-prores-pcm": ("a.mov", "prores_ks", "yuv422p10le", {}, "pcm_s16le", "s16", False),
    "avi-mjpeg-mp3": ("a.avi", "mjpeg", "yuvj420p", {}, "libmp3lame", "fltp", False),
    "avi-h264-bframes": ("b.avi", "libx264", "yuv420p", {"bf": "2", "g": "30"}, None, None, False),
    "ts-h264-mp2": ("a.ts", "libx264", "yuv420p", {"bf": "2", "g": "30"}, "mp2", "s16", True),
    "mpg-mpeg2-mp2": ("a.mpg", "mpeg2video", "yuv420p", {}, "mp2", "s16", False),
    "mp4-hevc-aac": ("a.mp4", "libx265", "yuv420p", {"x265-params": "log-level=error"}, "aac", "fltp", False),
    "flv-h264-aac": ("a.flv", "libx264", "yuv420p", {"g": "30"}, "aac", "fltp", True),
    "mkv-ffv1-odd-size": ("a.mkv", "ffv1", "yuv444p", {}, None, None, False),
}


def write_input(path, vcodec, pix_fmt, options, acodec, sample_format, size=SIZE):
    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=RATE)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = dict(options)
        sound = None
        if acodec:
            sound = out.add_stream(acodec, rate=SAMPLE_RATE, layout="stereo")
            sound.format = sample_format
        for k in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(code_frame(k, width, height), format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = k, Fraction(1, RATE)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            audio = tone_with_bursts(FRAMES / RATE)
            step = sound.codec_context.frame_size or 1024
            for start in range(0, audio.shape[1], step):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + step]), format="fltp",
                                                   layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_splice_from(case, run_cli, tmp_path):
    name, vcodec, pix_fmt, options, acodec, sample_format, copied = CASES[case]
    if vcodec not in av.codecs_available or acodec and acodec not in av.codecs_available:
        pytest.skip(f"this PyAV build cannot write {vcodec}/{acodec}")
    size = (321, 241) if "odd-size" in case else SIZE
    src = write_input(tmp_path / name, vcodec, pix_fmt, options, acodec, sample_format, size)
    out = tmp_path / "out.mp4"
    r = run_cli("--input", src, "--output", out, *FAST)
    assert r.returncode == 0, r.stderr
    rep = r.report
    n, a, b, m, j = rep["n"], rep["a"]["index"], rep["b"]["index"], rep["m"], rep["j"]
    assert (n, a, b) == (125, 125, FRAMES - 125) and rep["indent"]["i"] == 0
    codes = decode_codes(out)
    assert len(codes) == 3 * n
    expected = list(range(a - n, a + 1)) + [None] * m + list(range(b - j, b + n))
    assert [c if e is not None else None for c, e in zip(codes, expected)] == expected
    assert any(entry["copied"] for entry in rep["copy"]) == copied, rep["copy"]
    if acodec:
        audio, rate = decode_audio(out)
        onsets = [t for t in burst_onsets(audio.astype(np.float32), rate) if t < 4.9]
        # Output 0-5 s is source 0-5 s: a burst on each second (MP3 in AVI plays 23 ms late in the
        # source itself, as its encoder's delay has nowhere to be written).
        assert len(onsets) == 5 and all(abs(t - k) < 0.03 for k, t in enumerate(onsets)), onsets
    else:
        assert rep["audio"] is False
