"""Variable frame rate: a 30 fps recording with dropped frames is played at a constant 30 fps,
each output frame the source frame on screen at its time, and the sound stays with the picture."""
from fractions import Fraction

import av
import numpy as np
import pytest

from splice.media import VideoSource
from synthetic import SAMPLE_RATE, burst_onsets, code_frame, decode_audio, decode_codes, tone_with_bursts

RATE = 30
FRAMES = 600                                    # 20 s of source time
DROPPED = {40, 41, 95, 170, 171, 172, 260, 380, 381, 500}   # none on a whole second
FAST = ["--model", "flow", "--preset", "ultrafast", "--time-indent", "0", "--quiet"]


def make_vfr_video(path, size=(320, 240)):
    """Frame k (its barcode) at k/30 s, some of them missing; audio bursts at every whole second."""
    width, height = size
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=RATE)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"crf": "12", "preset": "ultrafast", "g": "30"}
        a = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        sound = tone_with_bursts(FRAMES / RATE + 0.5)
        for start in range(0, sound.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start:start + 1024]),
                                           format="fltp", layout="stereo")
            f.sample_rate, f.pts, f.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            for p in a.encode(f):
                out.mux(p)
        for k in range(FRAMES):
            if k in DROPPED:
                continue
            f = av.VideoFrame.from_ndarray(code_frame(k, width, height), format="rgb24")
            f.pts, f.time_base = k, Fraction(1, RATE)
            for p in v.encode(f):
                out.mux(p)
        for stream in (v, a):
            for p in stream.encode():
                out.mux(p)
    return path


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory):
    return make_vfr_video(tmp_path_factory.mktemp("vfr") / "vfr.mp4")


def test_slots(vfr_video):
    src = VideoSource(str(vfr_video))
    assert src.variable_rate and src.rate == RATE
    assert src.frame_count == FRAMES and src.frames_in_file == FRAMES - len(DROPPED)
    assert src.repeated_slots == len(DROPPED) and src.skipped_frames == 0
    codes = _codes(src, 35, 100)
    # A dropped frame's slot repeats the last frame before it.
    assert codes == [max(j for j in range(k + 1) if j not in DROPPED) for k in range(35, 100)]
    assert src.time_of(90) == 3 and src.absolute_time(90) == 3
    assert src.source_frame(42) == 40 and src.slot_of_frame(40) == 42
    assert any("variable frame rate" in line for line in src.notes())


def _codes(src, start, stop):
    from synthetic import read_code
    from splice.media import to_rgb
    return [read_code(to_rgb(frame)) for _, frame in src.frames(start, stop)]


def test_constant_rate_input_is_unchanged(video_factory):
    src = VideoSource(str(video_factory()))
    assert not src.variable_rate and src.frame_count == src.frames_in_file == 425
    assert src.source_frame(100) == 100 and src.slot_of_frame(100) == 100
    assert src.time_of(100) == 4 and not src.notes()


@pytest.mark.parametrize("a,b", [("6s", "12s"), ("174", "353")])
def test_sound_stays_with_the_picture(vfr_video, run_cli, tmp_path, a, b):
    out = tmp_path / "out.mp4"
    r = run_cli("--input", vfr_video, "--output", out, "--frame-a", a, "--frame-b", b, *FAST)
    assert r.returncode == 0, r.stderr
    codes = decode_codes(out)
    assert len(codes) == 450
    # Given as times, A and B are the frames on screen then; given as file indices, the frames
    # they name (file frame 174 is the one stamped 180: six frames before it were dropped; 353 is 360).
    assert codes[150] == 180 and codes[300] == 360
    audio, sr = decode_audio(out)
    assert abs(audio.shape[1] / sr - 15.0) <= 1 / RATE
    # Every burst (a whole second of source time S) sounds within half a frame of the output
    # frame that shows source frame 30*S.
    # Output 0..5.03 s is source 1..6.03 s (up to A), output 5.13..15 s is source 7.13..17 s
    # (B-146 on, after the 3 generated frames).
    onsets = [t for t in burst_onsets(audio, sr) if t > 0.1]
    assert len(onsets) == 14 and abs(onsets[4] - 5) < 0.002 and abs(onsets[9] - 10) < 0.002, onsets
    for t in onsets:
        second = round(t + 1) if t < 5.1 else round(t + 2)
        q = codes.index(RATE * second)
        assert abs(t - q / RATE) <= 0.5 / RATE + 0.002, (t, q, second)
    rep = r.report
    assert rep["fps"] == RATE and rep["frame_count"] == FRAMES and rep["source_frames"] == FRAMES - len(DROPPED)
    assert rep["variable_rate"] is True
    assert any("variable frame rate" in note and "10 repeated" in note for note in rep["notes"]), rep["notes"]


def make_mkv(path, dropped=frozenset(), frames=120):
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=RATE)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        v.options = {"preset": "ultrafast"}
        for k in range(frames):
            if k in dropped:
                continue
            f = av.VideoFrame.from_ndarray(code_frame(k, 160, 120), format="rgb24")
            f.pts, f.time_base = k, Fraction(1, RATE)
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    return path


def test_millisecond_timestamps(tmp_path):
    """MKV rounds timestamps to 1 ms (33/34 ms steps at 30 fps): that is not a variable rate, and
    with dropped frames the rounding does not move a frame to the wrong slot."""
    steady = VideoSource(str(make_mkv(tmp_path / "steady.mkv")))
    assert not steady.variable_rate and steady.frame_count == 120
    dropped = {10, 11, 50, 77}
    vfr = VideoSource(str(make_mkv(tmp_path / "vfr.mkv", dropped)))
    assert vfr.variable_rate and vfr.rate == RATE and vfr.frame_count == 120
    assert _codes(vfr, 0, 120) == [max(j for j in range(k + 1) if j not in dropped) for k in range(120)]
