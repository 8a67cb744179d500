"""Every bad input: one clear line on stderr, exit status 2, and no output file."""
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import needs_media
from synthetic import make_video

FAST = ["--model", "flow", "--preset", "ultrafast", "--time-indent", "0", "--quiet"]


def assert_refused(r, out: Path, *phrases):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".partial" in p.name]


def test_missing_input(run_cli, tmp_path):
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", tmp_path / "nope.mp4", "--output", out, *FAST), out,
                   "Input file not found", "nope.mp4")


def test_not_a_video(run_cli, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is text, not a video\n" * 50)
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", bad, "--output", out, *FAST), out, "Cannot read", "as a video")


def test_empty_file(run_cli, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", empty, "--output", out, *FAST), out, "empty.mp4 is empty (0 bytes)")


def test_unfinished_mp4(video_factory, run_cli, tmp_path):
    """A recording stopped before its index was written: the MP4 ends inside its media data."""
    whole = Path(video_factory()).read_bytes()
    assert whole.index(b"mdat") < whole.index(b"moov")      # the index comes last (no faststart)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) * 3 // 5])
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", cut, "--output", out, *FAST), out,
                   "cut.mp4 is an unfinished MP4/MOV: it has no index ('moov' box)", "repair tool")


def test_a_still_image_of_the_mp4_family_is_not_called_unfinished(run_cli, tmp_path):
    """HEIF and AVIF stills share MP4's boxes but keep their index in 'meta', not 'moov'."""
    def box(kind, payload=b""):
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload
    still = tmp_path / "photo.heic"
    still.write_bytes(box(b"ftyp", b"heic\0\0\0\0mif1heic") + box(b"meta", bytes(4)) + box(b"mdat", bytes(64)))
    out = tmp_path / "o.mp4"
    r = run_cli("--input", still, "--output", out, *FAST)
    assert_refused(r, out, "photo.heic")
    assert "unfinished" not in r.stderr


def test_a_pipe_is_refused_without_waiting(video_factory, run_cli, tmp_path):
    """The video is read several times, which a pipe cannot give; a FIFO with no writer would
    also block the first open forever."""
    fifo = tmp_path / "video.pipe"
    os.mkfifo(fifo)
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", fifo, "--output", out, *FAST, timeout=60), out,
                   "video.pipe is a pipe or a device, not a file", "save it to a file first")


def test_no_video_stream(run_cli, tmp_path):
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("aac", rate=48000, layout="mono")
        for k in range(50):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, k * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", audio_only, "--output", out, *FAST), out, "has no video stream")


def test_too_short_real_clip(run_cli, tmp_path):
    d0 = needs_media("d0.mp4")
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", d0, "--output", out, *FAST), out,
                   "The video is 3.12 s long (78 frames)", "needs at least")


def test_too_short_synthetic(run_cli, tmp_path):
    src = make_video(tmp_path / "short.mp4", frames=250, audio=False)
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", src, "--output", out, *FAST), out, "The video is 10.00 s long")


@pytest.mark.parametrize("a,b,phrase", [
    ("100", "300", "Frame A is at 4.00 s (frame 100); it needs 5 s of footage before it"),
    ("130", "301", "Frame B is at 12.04 s; it needs 5 s of footage after it"),
    ("130", "9999", "--frame-b 9999 is past the end of the video"),
    ("20s", "300", "--frame-a 20s is past the end of the video"),
    ("250", "200", "Frame B (frame 200, 8.00 s) must come after Frame A (frame 250, 10.00 s)"),
    ("200", "250", "the middle 5 s needs them at least 122 frames"),
    ("soon", "250", "is not a frame index (250), a time"),
])
def test_a_and_b_out_of_range(video_factory, run_cli, tmp_path, a, b, phrase):
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", a, "--frame-b", b,
                "--interp-frames", 3, *FAST)
    assert_refused(r, out, phrase)


def test_indent_too_large(video_factory, run_cli, tmp_path):
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", 130, "--frame-b", 290,
                "--model", "flow", "--time-indent", "4.9", "--interp-frames", 3)
    assert_refused(r, out, "use an indent of at most 120 frames")


def test_image_that_matches_nothing(video_factory, run_cli, tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    img = tmp_path / "elsewhere.png"
    cv2.imwrite(str(img), noise)
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", img, *FAST)
    assert_refused(r, out, "matches no frame of the video well enough", "dB PSNR")


def test_damaged_image(video_factory, run_cli, tmp_path):
    """OpenCV logs its own complaint about a broken PNG: held back, so the error stays one line."""
    img = tmp_path / "broken.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not the rest of a PNG" * 4)
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", img, *FAST)
    assert_refused(r, out, "Cannot read the image", "broken.png")


def test_missing_image(video_factory, run_cli, tmp_path):
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", tmp_path / "gone.png", *FAST)
    assert_refused(r, out, "image file not found")


def test_unwritable_output_folder(video_factory, run_cli, tmp_path):
    out = Path("/proc/interpolate_video_test/o.mp4")     # /proc takes no new files, even from root
    r = run_cli("--input", video_factory(), "--output", out, *FAST, report=False)
    assert r.returncode == 2 and "output folder" in r.stderr and not out.exists()
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    probe = readonly / "probe"
    try:
        probe.write_text("x")
        probe.unlink()
        root_ignores_modes = True
    except PermissionError:
        root_ignores_modes = False
    if not root_ignores_modes:
        out = readonly / "o.mp4"
        r = run_cli("--input", video_factory(), "--output", out, *FAST, report=False)
        assert_refused(r, out, "Cannot write to the output folder")


def test_output_is_the_input(video_factory, run_cli, tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(Path(video_factory()).read_bytes())
    before = src.read_bytes()
    r = run_cli("--input", src, "--output", src, *FAST, report=False)
    assert r.returncode == 2 and "is the input file" in r.stderr
    assert src.read_bytes() == before


def test_bad_output_suffix(video_factory, run_cli, tmp_path):
    out = tmp_path / "o.gif"
    assert_refused(run_cli("--input", video_factory(), "--output", out, *FAST), out, "must end in")


def test_vfimamba_without_checkpoint(video_factory, run_cli, tmp_path):
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--model", "vfimamba",
                "--ckpt", tmp_path / "VFIMamba.pkl", "--time-indent", "0")
    assert_refused(r, out, "wget")
