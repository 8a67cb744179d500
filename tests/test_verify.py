"""The verification module (splice/verify.py) on a good splice and on deliberately broken ones."""
import json
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import ROOT
from splice import verify as V
import splice as lib
from synthetic import read_code

RATE = Fraction(25)


def reencode(good, bad, frames_of):
    """Write `bad` from the decoded frames of `good`, rearranged by frames_of(list) (no audio)."""
    with av.open(str(good)) as c:
        vs = c.streams.video[0]
        rate = Fraction(vs.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(vs)]
    frames = frames_of(frames)
    with av.open(str(bad), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        v.options = {"crf": "12", "preset": "veryfast"}
        for k, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = k, 1 / rate
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    return bad


def shifted_copy(good, bad):
    """Every frame one later: drop the first frame and repeat the last (same count, same times)."""
    return reencode(good, bad, lambda frames: frames[1:] + frames[-1:])


@pytest.fixture(scope="module")
def splice(video_factory, tmp_path_factory):
    """A good splice of a coded synthetic clip (25 fps, 17 s, 320x240): (output path, report)."""
    src = video_factory(rate=RATE, frames=425, size=(320, 240))
    folder = tmp_path_factory.mktemp("verify")
    out, rep = folder / "good.mp4", folder / "good.json"
    report = lib.splice_video(lib.load_interpolator("flow"), str(src), str(out), frame_a="131", frame_b="290",
                              time_indent="0.4", interp_frames=3, encode=lib.EncodeOptions(preset="veryfast"), report=str(rep))
    return out, report, rep


def test_good_output_passes(splice):
    out, report, _ = splice
    result = V.verify(str(out), report)
    assert result.ok, result.problems
    n = result.n
    assert n == 125 and report["a"]["index"] == 131 and report["b"]["index"] == 290
    f = result.facts
    assert (f.frame_count, f.rate, f.duration) == (375, RATE, 15.0)
    assert f.frame_times[n] == 5.0 and f.frame_times[2 * n] == 10.0
    assert abs(f.audio_duration - 15.0) <= 1 / 25
    kinds = [c.kind for c in result.frames]
    assert kinds.count("generated") == 3 and [c.output_index for c in result.frames if c.kind == "generated"] == [136, 137, 138]
    assert result.frames[n].source_index == 131 and result.frames[2 * n].source_index == 290
    assert all(c.psnr >= V.MIN_COPY_PSNR for c in result.frames if c.kind == "source")
    s = V.summary(result)
    assert s["ok"] and s["frame_count"] == 375 and s["rate"] == "25/1" and s["failing_copies"] == []
    assert s["a_time_s"] == 5.0 and s["b_time_s"] == 10.0 and s["generated_output_indices"] == [136, 137, 138]
    json.dumps(s)   # plain numbers, printable as JSON
    assert V.frame_offsets(str(out), report) == {}


def test_frame_at_time_and_neighbours(splice):
    out, report, _ = splice
    for seconds, k, source_index in ((5.0, 125, 131), (5.039, 125, 131), (10.0, 250, 290), (0.0, 0, 6)):
        idx, start, rgb = V.frame_at_time(str(out), seconds)
        assert idx == k and start == k / 25
        assert read_code(rgb) == source_index
        near = V.neighbour_psnr(rgb, report["input"], source_index, radius=1)
        assert set(near) == {-1, 0, 1} and max(near, key=near.get) == 0 and near[0] >= V.MIN_COPY_PSNR
    assert V.frame_at_time(str(out), 5.04)[0] == 126
    assert [read_code(x) for x in V.clip_frames(str(out), 124, 127)] == [130, 131, 132]


def test_frame_differences_show_the_cut_and_jumps_find_it(splice):
    out, _, _ = splice
    diffs = V.frame_differences(str(out))
    assert diffs.shape == (374,) and np.all(diffs >= 0)
    # A hard cut (the generated frames replaced by a jump) stands out against steady footage.
    steady = np.full(100, 1.0)
    steady[60] = 9.0
    assert V.jumps(steady) == [60]
    assert V.jumps(np.full(50, 2.0)) == []


def test_runs():
    assert V.runs([9, 3, 4, 5]) == [(3, 5), (9, 9)]
    assert V.runs([]) == []


def test_shifted_output_fails_naming_the_frames(splice, tmp_path):
    out, report, rep = splice
    bad = shifted_copy(out, tmp_path / "shifted.mp4")
    result = V.verify(str(bad), report)
    assert not result.ok
    n = result.n
    # The frame count and timestamps are right: only the pictures are one frame late.
    assert result.facts.frame_count == 3 * n and result.facts.frame_times[n] == 5.0
    text = "\n".join(result.problems)
    assert f"output frame 0 is not source frame {131 - n}" in text
    assert f"output frame {n} is not source frame 131" in text          # Frame A's place
    assert f"output frame {2 * n} is not source frame 290" in text      # Frame B's place
    assert "the report says audio but the clip has none" in text
    failing = [c.output_index for c in result.frames if c.kind == "source" and c.psnr < V.MIN_COPY_PSNR]
    assert len(failing) >= 3 * n - 3 - 3        # every copy but those next to the bridge and the repeated last
    offsets = V.frame_offsets(str(bad), report)
    assert set(offsets.values()) == {1} and len(offsets) >= 3 * n - 3 - 3
    diagnosis = V.shift_diagnosis(str(bad), result, report["input"])
    assert [d["output_frames"] for d in diagnosis] == [(0, 135), (139, 373)]
    assert all(d["offsets"] == [1] for d in diagnosis)    # 135 shows the generated frame 136: unmatched
    assert diagnosis[0]["unmatched"] == 1 and diagnosis[1]["unmatched"] == 0
    assert V.summary(result)["failing_copies"][0][0] == 0

    # The command line says so too, with exit status 1.
    proc = subprocess.run([sys.executable, "-m", "splice.verify", str(bad), "--report", str(rep)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1 and "FAIL: output frame 0 is not source frame 6" in proc.stdout
    assert proc.stdout.strip().endswith("FAILED")


def test_cli_passes_a_good_output(splice):
    out, _, rep = splice
    proc = subprocess.run([sys.executable, "-m", "splice.verify", str(out), "--report", str(rep)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "375 frames at 25 fps, 15.000 s" in proc.stdout and proc.stdout.strip().endswith("OK")


def test_short_output_fails(splice, tmp_path):
    out, report, _ = splice
    bad = reencode(out, tmp_path / "short.mp4", lambda frames: frames[:-10])
    result = V.verify(str(bad), dict(report, audio=False))
    assert not result.ok
    assert "365 frames, expected 375" in result.problems
    assert any(p.startswith("duration 14.600 s") for p in result.problems)
