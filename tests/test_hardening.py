"""Failures a real machine brings: signals, stale temporary files, a full disk, damaged input,
progress bars beside errors, 10-bit output."""
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import ROOT
from splice.errors import UserError
from splice.media import PARTIAL, ClipWriter, VideoSource, atomic_output, remove_stale_partials
from splice.signals import Terminated, terminate_as_interrupt
from synthetic import code_frame, make_video, read_code

FAST = ["--model", "flow", "--preset", "ultrafast", "--time-indent", "0", "--quiet"]


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".partial" in p.name]


def cli(*args):
    return [sys.executable, str(ROOT / "interpolate_video.py"), *map(str, args)]


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_mid_encode_leaves_nothing(video_factory, tmp_path, signum, status):
    src = video_factory(size=(640, 480))
    out = tmp_path / "o.mp4"
    proc = subprocess.Popen(cli("--input", src, "--output", out, "--model", "flow", "--preset", "slow",
                                "--time-indent", "0", "--quiet"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.stat().st_size > 0 for p in partials(tmp_path)):   # encoding has begun
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be stopped"
        partial = partials(tmp_path)[0]
        assert PARTIAL.match(partial.name) and f".{proc.pid}." in partial.name
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert err.strip().splitlines() == [f"stopped by {signal.Signals(signum).name}; nothing was written"], err
    assert not out.exists() and not partials(tmp_path)


def test_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not before
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert caught.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_stale_partial_of_a_dead_process_is_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".clip.{dead.pid}.k2j4x9.partial.mp4"
    mine = tmp_path / f".clip.{os.getpid()}.abcd12.partial.mp4"       # a live writer's
    recent = tmp_path / f".other.{dead.pid}.zz9q.partial.mp4"         # touched a moment ago
    unrelated = tmp_path / ".clip.partial.mp4.bak"
    for p in (stale, mine, recent, unrelated):
        p.write_bytes(b"x" * 100)
    old = time.time() - 3600
    for p in (stale, mine, unrelated):
        os.utime(p, (old, old))
    with atomic_output(str(tmp_path / "clip.mp4")) as tmp:
        assert PARTIAL.match(Path(tmp).name) and f".{os.getpid()}." in tmp
        Path(tmp).write_bytes(b"new")
    assert not stale.exists()
    assert mine.exists() and recent.exists() and unrelated.exists()
    assert (tmp_path / "clip.mp4").read_bytes() == b"new"
    assert remove_stale_partials(tmp_path) == []


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_full_disk_is_one_line(video_factory, run_cli, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if not _mount_tmpfs(small, "256k"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission)")
    try:
        out = small / "o.mp4"
        r = run_cli("--input", video_factory(), "--output", out, *FAST, report=False)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: No space left on the device holding"), r.stderr
        assert "--output" in lines[0]
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


@pytest.mark.parametrize("full", ["output", "stills"])
def test_generated_stills_only_with_the_clip(video_factory, run_cli, tmp_path, full):
    """--save-generated's PNGs are kept only when the whole job succeeds; a full disk under either
    the clip or the stills is one line naming the option to change, and leaves neither, nor the
    stills' folder the run made. A job that succeeds without bridges still leaves the folder."""
    small = tmp_path / "small"
    small.mkdir()
    if not _mount_tmpfs(small, "256k" if full == "output" else "48k"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission)")
    try:
        out = (small if full == "output" else tmp_path) / "o.mp4"
        stills = (tmp_path if full == "output" else small) / "stills"
        r = run_cli("--input", video_factory(), "--output", out, "--save-generated", stills, "--interp-frames", 12,
                    *FAST, report=False)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        option = "--output" if full == "output" else "--save-generated"
        assert len(lines) == 1 and lines[0].startswith("error: No space left on the device holding"), r.stderr
        assert lines[0].endswith(f"choose another {option}"), lines[0]
        assert not out.exists() and not stills.exists() and not partials(out.parent)   # nor the folder it made
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_the_stills_folder_is_made_by_a_job_that_succeeds(video_factory, run_cli, tmp_path):
    src = video_factory()
    deep = tmp_path / "g1" / "deeper"
    r = run_cli("--input", src, "--output", tmp_path / "a.mp4", "--save-generated", deep, "--interp-frames", 3,
                *FAST, report=False)
    assert r.returncode == 0, r.stderr
    assert sorted(p.suffix for p in deep.iterdir()) == [".png"] * 3
    plain = tmp_path / "g2"
    r = run_cli("--input", src, "--output", tmp_path / "b.mp4", "--keep", "0-12s", "--save-generated", plain,
                "--model", "flow", "--preset", "ultrafast", "--quiet", report=False)   # one range: no bridge
    assert r.returncode == 0, r.stderr
    assert plain.is_dir() and list(plain.iterdir()) == []
    refused = tmp_path / "g3"
    r = run_cli("--input", video_factory(frames=300), "--output", tmp_path / "c.mp4", "--save-generated", refused,
                *FAST, report=False)                              # 12 s: too short
    assert r.returncode == 2 and not refused.exists()
    afile = tmp_path / "afile"
    afile.write_text("")
    r = run_cli("--input", src, "--output", tmp_path / "d.mp4", "--save-generated", afile / "x", *FAST, report=False)
    assert r.returncode == 2 and "--save-generated" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_failed_job_removes_only_the_stills_folders_it_made(tmp_path):
    from splice.render import GeneratedStills
    keep = tmp_path / "keep"
    keep.mkdir()
    folder = tmp_path / "new" / ".." / "keep" / "stills"      # through a folder that exists
    with pytest.raises(RuntimeError):
        with GeneratedStills(str(folder), 0) as stills:
            stills(7, np.zeros((8, 8, 3), np.uint8))
            assert folder.is_dir() and not (folder / "000007.png").exists()    # not until the job is done
            raise RuntimeError("the job failed")
    assert keep.is_dir() and list(keep.iterdir()) == [] and not (tmp_path / "new").exists()
    with GeneratedStills(str(folder), 0) as stills:
        stills(7, np.full((8, 8, 3), 200, np.uint8))
    assert sorted(p.name for p in folder.iterdir()) == ["000007.png"]


def test_a_name_that_is_not_utf8_near_the_length_limit(tmp_path):
    name = os.fsdecode(b"\xe9" * 250 + b".mp4")                 # Latin-1 bytes, as old file systems hold
    target = tmp_path / name
    with atomic_output(str(target)) as tmp:
        Path(tmp).write_bytes(b"clip")
    assert target.read_bytes() == b"clip" and not partials(tmp_path)


def encode_coded(path: Path, times, size: tuple[int, int], options: dict) -> Path:
    """H.264 of frames that carry their own index (frame k shown at times[k] / 25 s), with the
    given libx264 options; no sound."""
    width, height = size
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = options
        for k, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(code_frame(k, width, height), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 25)
            for packet in v.encode(f):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
    return path


def test_a_finished_file_keeps_a_gap_at_its_end(tmp_path):
    """A variable-rate recording's own pause near its end is not taken for lost packets."""
    # one frame's time skipped, two frames from the end
    path = encode_coded(tmp_path / "vfr.mp4", [*range(58), 59, 60], (160, 120), {"preset": "ultrafast", "bf": "2"})
    src = VideoSource(str(path))
    assert src.frames_in_file == 60 and not src.index.truncated


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
@pytest.mark.parametrize("ending", ["done", "refused"])
def test_a_reader_that_goes_away_stops_only_the_messages(video_factory, tmp_path, stream, ending):
    """`interpolate-video ... | head -1`: the messages (stdout) or the progress bars (stderr) lose
    their reader; the clip is still made, whole, and the command ends as it would have (0, or 2
    for bad input), never with Python's complaint about a broken pipe. Buffered streams, as a
    user's are: what a buffer held when the reader left is flushed at the end."""
    out = tmp_path / "o.mp4"
    frames = 425 if ending == "done" else 300              # 12 s: too short, refused after the first line
    cmd = [sys.executable, str(ROOT / "interpolate_video.py"), "--input", str(video_factory(frames=frames)),
           "--output", str(out), "--model", "flow", "--preset", "ultrafast"]
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, stream: subprocess.PIPE}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, **pipes)
    getattr(proc, stream).close()                 # the reader is gone before the first line
    assert proc.wait(timeout=300) == (0 if ending == "done" else 2)
    if ending == "refused":
        assert not out.exists()
        return
    with av.open(str(out)) as c:
        codes = [read_code(f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]
    assert len(codes) == 375 and codes[:3] == [0, 1, 2] and codes[-1] == 424


def test_an_output_name_near_the_length_limit(video_factory, run_cli, tmp_path):
    """The temporary file beside the output adds to its name; a name the file system takes (255
    bytes, here 2-byte characters) is still written."""
    out = tmp_path / ("é" * 124 + ".mp4")
    assert len(out.name.encode()) == 252
    r = run_cli("--input", video_factory(), "--output", out, *FAST, report=False)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and not partials(tmp_path)


def damaged_copy(src: Path, folder: Path) -> Path:
    """The video with 20 kB of noise written over the middle of the file."""
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20000] = np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    bad = folder / "damaged.mp4"
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("sound", ["audio", "no-audio"])
def test_damaged_input_is_one_line(video_factory, run_cli, tmp_path, sound):
    bad = damaged_copy(Path(video_factory()), tmp_path)
    out = tmp_path / "o.mp4"
    # A and B on either side of the damage: the whole span between is decoded.
    extra = ["--no-audio"] if sound == "no-audio" else []
    r = run_cli("--input", bad, "--output", out, "--frame-a", 150, "--frame-b", 290, *FAST, *extra, report=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "damaged" in lines[0]
    assert not out.exists() and not partials(tmp_path)


def test_a_progress_bar_never_shares_the_error_line(video_factory, run_cli, tmp_path):
    src = Path(video_factory())
    bad = damaged_copy(src, tmp_path)
    still = tmp_path / "a.png"
    with av.open(str(src)) as c:
        for k, frame in enumerate(c.decode(c.streams.video[0])):
            if k == 150:
                frame.to_image().save(still)
                break
    out = tmp_path / "o.mp4"
    # Locating the still decodes the whole video, with a progress bar, and meets the damage.
    r = run_cli("--input", bad, "--output", out, "--frame-a", still, "--model", "flow", "--preset", "ultrafast",
                "--time-indent", "0", report=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.rstrip("\n").split("\n")
    assert lines[-1].startswith("error: ") and "damaged" in lines[-1] and "\r" not in lines[-1], r.stderr[-500:]
    assert sum("error: " in line for line in lines) == 1


def test_what_the_clip_does_not_keep_is_noted(video_factory, tmp_path):
    """An odd size, colour finer than 4:2:0 and transparency each get a note; a plain source none."""
    assert VideoSource(str(video_factory(frames=10, audio=False))).notes() == []
    odd = VideoSource(str(video_factory(frames=10, size=(321, 241), audio=False, pix_fmt="yuv444p"))).notes()
    assert odd == ["the source is 321x241; the clip is 322x242 (4:2:0 needs even sizes: the last row or column "
                   "is repeated)",
                   "the source's colour has more detail than 4:2:0 (yuv444p); the clip is 4:2:0, which every "
                   "player decodes"]
    clear = tmp_path / "alpha.mov"
    with av.open(str(clear), "w") as c:
        s = c.add_stream("qtrle", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "argb"
        for k in range(10):
            for packet in s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 4), np.uint8), format="argb")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    notes = VideoSource(str(clear)).notes()
    assert len(notes) == 2 and notes[1] == "the source has transparency (argb); the clip is opaque", notes
    woven = encode_coded(tmp_path / "interlaced.mkv", range(10), (64, 48),
                         {"x264-params": "interlaced=1:tff=1", "preset": "ultrafast"})
    notes = VideoSource(str(woven)).notes()
    assert len(notes) == 1 and notes[0].startswith("the source is interlaced;"), notes


@pytest.mark.parametrize("gop", ["closed", "open"])
def test_avi_with_b_frames_is_frame_exact(tmp_path, gop):
    """AVI keeps decode times only: with B-frames the decoder's frames carry their packets' times,
    out of order. Frames are then counted from an IDR picture decoding starts at (an open GOP's
    recovery point would count its leading pictures wrong), and never copied."""
    from splice.smartcopy import PacketIndex, copy_blocker
    path = encode_coded(tmp_path / "b.avi", range(200), (320, 240), {
        "crf": "12", "preset": "veryfast", "x264-params": f"keyint=30:bframes=2:scenecut=0:open-gop={int(gop == 'open')}"})
    with av.open(str(path)) as c:
        times = [f.pts for f in c.decode(c.streams.video[0])]
    assert times != sorted(times)                         # what the file gives
    src = VideoSource(str(path))
    assert src.decode_order and src.frame_count == 200
    assert len(src.index.keyframe_pts) == (7 if gop == "closed" else 1)
    for start in (0, 47, 61, 150, 187, 196):              # from the start, and after seeks
        stop = min(start + 5, 200)
        assert [read_code(f.to_ndarray(format="rgb24")) for _, f in src.frames(start, stop)] == list(range(start, stop))
    assert "no presentation times" in copy_blocker(src, PacketIndex(src))
    # Cut short inside its last packets: the pictures that might have been lost are left out.
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    for nth in (-3, -2, -1):
        pos, size = packets[nth]
        cut = tmp_path / "cut.avi"
        cut.write_bytes(path.read_bytes()[:pos + size // 2])
        short = VideoSource(str(cut))
        n = short.frame_count
        assert short.decode_order and short.index.truncated and 190 <= n < 200
        assert [read_code(f.to_ndarray(format="rgb24")) for _, f in short.frames(n - 4, n)] == list(range(n - 4, n))


@pytest.mark.parametrize("sound", [False, True])
def test_a_fragmented_recording_cut_short_ends_at_its_last_whole_frame(video_factory, run_cli, tmp_path, sound):
    """Fragmented MP4 (OBS, browsers' recorders) survives a crash mid-write: the file then ends
    inside a packet. The video ends before the first frame a lost packet shows (without sound the
    demuxer returns the broken packet marked corrupt; with sound it stops at a sound sample and
    the lost picture leaves a gap); everything before it splices, at a constant rate."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(video_factory(frames=500, audio=sound))) as c, av.open(
            str(whole), "w", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in c.streams}
        for packet in c.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    with av.open(str(whole)) as c:       # the file is cut inside the 450th picture's data
        pos, size = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size][449]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:pos + size // 2])
    src = VideoSource(str(cut))
    assert 440 <= src.frame_count <= 449 and not src.variable_rate and src.index.truncated
    last = src.frame_count - 1
    assert [read_code(f.to_ndarray(format="rgb24")) for _, f in src.frames(last - 3, last + 1)] == \
        list(range(last - 3, last + 1))
    out = tmp_path / "o.mp4"
    r = run_cli("--input", cut, "--output", out, *FAST)
    assert r.returncode == 0, r.stderr
    assert r.report["b"]["index"] == src.frame_count - 125
    with av.open(str(out)) as c:
        codes = [read_code(f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]
    assert len(codes) == 375 and codes[-1] == last


def test_a_still_before_the_recording_is_passed_over(tmp_path):
    """Files from downloaders can carry cover art as a one-frame video track ahead of the recording."""
    plain = make_video(tmp_path / "plain.mp4", frames=60, gop=10)
    path = tmp_path / "cover.mkv"
    with av.open(str(plain)) as c, av.open(str(path), "w") as out:
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        streams = {s.index: out.add_stream_from_template(s) for s in c.streams}
        for packet in cover.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
                                   .reformat(format="yuvj420p")):
            out.mux(packet)
        for packet in c.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    src = VideoSource(str(path))
    assert src.stream_index == 1 and src.frame_count == 60 and (src.width, src.height) == (320, 240)
    assert [read_code(f.to_ndarray(format="rgb24")) for _, f in src.frames(33, 41)] == list(range(33, 41))
    assert src.audio is not None


def _decoded(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = (v.codec_context.pix_fmt, v.codec_context.profile)
        frames = list(c.decode(v))
    return info, frames


@pytest.mark.parametrize("size,pix_fmt", [((320, 240), "yuv420p10le"), ((321, 241), "yuv444p10le")])
def test_ten_bit_output(video_factory, tmp_path, size, pix_fmt):
    src = VideoSource(str(video_factory(frames=30, size=size, audio=False, pix_fmt=pix_fmt)))
    assert src.bit_depth == 10
    assert any("10-bit" in line and "--pix-fmt yuv420p10le" in line for line in src.notes("yuv420p"))
    assert not any("10-bit" in line for line in src.notes("yuv420p10le"))
    out = tmp_path / "ten.mp4"
    writer = ClipWriter(str(out), src, crf=8, audio=False, preset="ultrafast", pix_fmt="yuv420p10le")
    for k, frame in src.frames(0, 10):
        writer.write_source(frame)
    # A smooth 10-bit ramp (one code value a column): an 8-bit path would round it in steps of 4.
    # (Written only at an even size: the odd-sized source is 4:4:4 and gets padded.)
    w, h = size
    ramp = np.tile(300 + np.arange(w, dtype=np.uint16), (h, 1))
    even = pix_fmt == "yuv420p10le"
    if even:
        frame_ramp = av.VideoFrame.from_ndarray(np.concatenate([ramp, np.full((h // 2, w), 512, np.uint16)]),
                                                format=pix_fmt)
        frame_ramp.color_range = src.colour["color_range"] or 1
        writer.write_source(frame_ramp)
    generated = code_frame(500, *size)
    writer.write_rgb(generated)
    writer.close()
    (out_fmt, profile), frames = _decoded(out)
    assert out_fmt == "yuv420p10le" and profile == "High 10"
    codes = [read_code(f.to_ndarray(format="rgb24")[:h, :w]) for f in frames]
    assert codes[:10] == list(range(10)) and codes[-1] == 500 and len(codes) == 11 + even
    if even:
        got = frames[10].to_ndarray()[:h, :w].astype(float)
        assert np.abs(got[:, 8:-8] - ramp[:, 8:-8]).mean() < 0.5
        assert len(np.unique(got[h // 2, 8:-8].astype(int) & 3)) == 4
    # A generated RGB frame lands on the same colours.
    rgb = frames[-1].to_ndarray(format="rgb24")[:h, :w].astype(float)
    assert np.abs(rgb - generated).mean() < 3


def test_unknown_pix_fmt(video_factory, tmp_path):
    src = VideoSource(str(video_factory(frames=30, audio=False)))
    with pytest.raises(UserError, match="--pix-fmt 'yuv444p' is not one of yuv420p, yuv420p10le"):
        ClipWriter(str(tmp_path / "x.mp4"), src, crf=17, audio=False, pix_fmt="yuv444p")


def _two_soundtracks(path: Path) -> Path:
    """The synthetic video with a second audio stream: a 1 kHz tone, no bursts."""
    src = VideoSource(str(make_video(path.with_name("one.mp4"), frames=425, audio=True)))
    with av.open(src.path) as c, av.open(str(path), "w") as out:
        v_in, a_in = c.streams.video[0], c.streams.audio[0]
        v = out.add_stream_from_template(v_in)
        a = out.add_stream_from_template(a_in)
        tone = out.add_stream("aac", rate=48000, layout="mono")
        for packet in c.demux(v_in, a_in):
            if packet.dts is None:
                continue
            packet.stream = v if packet.stream.type == "video" else a
            out.mux(packet)
        t = np.arange(48000 * 18) / 48000
        sound = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
        for start in range(0, sound.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start:start + 1024]), format="fltp",
                                           layout="mono")
            f.sample_rate, f.pts = 48000, start
            for p in tone.encode(f):
                out.mux(p)
        for p in tone.encode():
            out.mux(p)
    return path


def test_audio_stream_choice_and_its_note(run_cli, tmp_path):
    from synthetic import burst_onsets, decode_audio
    src = _two_soundtracks(tmp_path / "two.mkv")
    out = tmp_path / "o.mp4"
    r = run_cli("--input", src, "--output", out, *[a for a in FAST if a != "--quiet"])
    assert r.returncode == 0, r.stderr
    assert "note: the sound is audio stream 0 (aac, 48000 Hz); 1 other audio stream ignored" in r.stdout
    assert r.report["audio_stream"] == 0 and r.report["audio_streams_ignored"] == 1
    assert burst_onsets(decode_audio(out)[0])           # the bursts of stream 0
    out2 = tmp_path / "o2.mp4"
    r = run_cli("--input", src, "--output", out2, *FAST, "--audio-stream", 1)
    assert r.returncode == 0, r.stderr
    assert r.report["audio_stream"] == 1
    audio, sr = decode_audio(out2)
    assert audio.shape[0] == 1 and not burst_onsets(audio)    # the plain tone
    spectrum = np.abs(np.fft.rfft(audio[0, sr:2 * sr]))
    assert abs(np.argmax(spectrum) - 1000) <= 2
    out3 = tmp_path / "o3.mp4"
    r = run_cli("--input", src, "--output", out3, *FAST, "--audio-stream", 2)
    assert r.returncode == 2 and r.stderr.strip() == "error: --audio-stream 2: the input has audio streams 0..1"
    assert not out3.exists()


def test_ten_bit_from_the_command_line(video_factory, run_cli, tmp_path):
    src = video_factory(frames=425, audio=False, pix_fmt="yuv420p10le")
    out = tmp_path / "o.mp4"
    r = run_cli("--input", src, "--output", out, *[a for a in FAST if a != "--quiet"])
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("note: the source is 10-bit") for line in r.stdout.splitlines()), r.stdout
    assert any("10-bit" in n for n in r.report["notes"]) and r.report["pix_fmt"] == "yuv420p"
    out10 = tmp_path / "o10.mp4"
    r = run_cli("--input", src, "--output", out10, *FAST, "--pix-fmt", "yuv420p10le")
    assert r.returncode == 0, r.stderr
    assert r.report["notes"] == [] and r.report["pix_fmt"] == "yuv420p10le"
    (pix_fmt, profile), _ = _decoded(out10)
    assert (pix_fmt, profile) == ("yuv420p10le", "High 10")
    bad = tmp_path / "bad.mp4"
    r = run_cli("--input", src, "--output", bad, *FAST, "--pix-fmt", "rgb24")
    assert r.returncode == 2 and r.stderr.startswith("error: --pix-fmt 'rgb24' is not one of") and not bad.exists()


def test_a_gap_in_the_audio_is_reported(run_cli, tmp_path):
    """A recording whose sound stops for 0.2 s at 3 s (its timestamps jump): silence there, a note
    and a report entry, and the sound after the gap stays on its timestamps."""
    from synthetic import burst_onsets, decode_audio, tone_with_bursts
    plain = make_video(tmp_path / "plain.mp4", frames=425, audio=False)
    src = tmp_path / "gap.mp4"
    with av.open(str(plain)) as c, av.open(str(src), "w") as out:
        v = out.add_stream_from_template(c.streams.video[0])
        a = out.add_stream("aac", rate=48000, layout="stereo")
        for packet in c.demux(c.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = v
            out.mux(packet)
        sound = tone_with_bursts(18)
        for start in range(0, sound.shape[1], 1024):
            if 3 * 48000 <= start < 3.2 * 48000:
                continue                                   # nothing recorded for 0.2 s
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start:start + 1024]), format="fltp",
                                           layout="stereo")
            f.sample_rate, f.pts = 48000, start
            for p in a.encode(f):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    o = tmp_path / "o.mp4"
    r = run_cli("--input", src, "--output", o, *[x for x in FAST if x != "--quiet"])
    assert r.returncode == 0, r.stderr
    gaps = r.report["audio_gaps"]
    assert len(gaps) == 1 and abs(gaps[0]["at"] - 3.0) < 0.03 and abs(gaps[0]["seconds"] - 0.2) < 0.03, gaps
    assert "note: the source's audio has a" in r.stdout and "gap at 3.0" in r.stdout
    # Output 0-5 s is source 0-5 s: the burst after the gap is still at 4 s.
    onsets = [t for t in burst_onsets(decode_audio(o)[0]) if t < 4.9]
    assert all(abs(t - round(t)) < 0.003 for t in onsets) and abs(onsets[-1] - 4.0) < 0.003, onsets
