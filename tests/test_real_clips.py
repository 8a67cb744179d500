"""End to end on the real talking-head clips in ../shared/media."""
import av
import pytest

from conftest import needs_media
from splice.verify import verify


@pytest.mark.parametrize("name,a,b", [("d6.mp4", None, None), ("d14.mp4", "160", "380")])
def test_real_clip_keeps_every_copied_frame(run_cli, tmp_path, name, a, b):
    src = needs_media(name)
    out = tmp_path / "out.mp4"
    args = ["--input", src, "--output", out, "--model", "flow", "--preset", "veryfast", "--quiet"]
    if a:
        args += ["--frame-a", a, "--frame-b", b]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    rep = r.report
    result = verify(str(out), rep)
    assert result.ok, result.problems
    n = rep["n"]
    assert n == 150 and result.facts.frame_count == 450
    assert result.frames[n].source_index == rep["a"]["index"] and result.frames[n].psnr >= 35
    assert result.frames[2 * n].source_index == rep["b"]["index"] and result.frames[2 * n].psnr >= 35
    assert abs(result.facts.frame_times[n] - 5.0) < 1e-6 and abs(result.facts.frame_times[2 * n] - 10.0) < 1e-6
    copies = [c for c in result.frames if c.kind == "source"]
    assert len(copies) == 450 - rep["m"] and min(c.psnr for c in copies) >= 35
    generated = [c for c in result.frames if c.kind == "generated"]
    assert [c.output_index for c in generated] == rep["generated_output_indices"]
    assert abs(result.facts.audio_duration - 15.0) <= 1 / 30
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"


def test_portrait_clip_too_short_for_a_splice(run_cli, tmp_path):
    src = needs_media("d13.mp4")   # 720x1280, 11.7 s: less than the 15 s a splice needs
    out = tmp_path / "o.mp4"
    r = run_cli("--input", src, "--output", out, "--model", "flow", "--interp-frames", 3, "--quiet")
    assert r.returncode == 2
    assert "The video is 11.73 s long (352 frames); a splice needs at least 14.90 s" in r.stderr
    assert not out.exists()


def test_default_model_is_rife_and_reported(run_cli, tmp_path):
    src = needs_media("d14.mp4")
    out = tmp_path / "out.mp4"
    r = run_cli("--input", src, "--output", out, "--frame-a", "160", "--frame-b", "380", "--preset", "veryfast")
    assert r.returncode == 0, r.stderr
    assert r.report["model"]["name"] == "rife"
    assert "no VFIMamba checkpoint" in r.report["model"]["why"]
    assert "model: rife" in r.stdout
    assert verify(str(out), r.report).ok


def test_real_clip_edit_keeps_every_copied_frame(run_cli, tmp_path):
    """d6.mp4 (30 fps), three kept ranges, one of them a jump back: every copied output frame is its
    source frame (PSNR >= 35 dB) and no nearer a neighbour of it."""
    from splice.verify import frame_offsets
    src = needs_media("d6.mp4")
    out = tmp_path / "edit.mp4"
    r = run_cli("--input", src, "--output", out, "--keep", "2s-9s", "--keep", "20s-26.5s", "--keep", "12s-16s",
                "--interp-frames", 3, "--model", "flow", "--preset", "veryfast", "--quiet")
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert rep["ranges"] == [[60, 270], [600, 795], [360, 480]]
    assert rep["output_frames"] == 210 + 195 + 120
    result = verify(str(out), rep)
    assert result.ok, result.problems
    copies = [c for c in result.frames if c.kind == "source"]
    assert len(copies) == rep["output_frames"] - 6 and min(c.psnr for c in copies) >= 35
    assert frame_offsets(str(out), rep) == {}
    assert abs(result.facts.audio_duration - rep["output_frames"] / 30) <= 1 / 30
