"""Copying unchanged footage: frame-exact, bit-identical where copied, decodable without a word
from the decoder, on sources with long, short, open and closed GOPs, B-frames, edit lists."""
from fractions import Fraction

import av
import av.logging
import numpy as np
import pytest

from conftest import needs_media
from synthetic import (SAMPLE_RATE, burst_onsets, code_frame, decode_audio, make_video, read_code,
                       tone_with_bursts)

from splice.errors import UserError
from splice.media import VideoSource, to_rgb
from splice.plan import Bridge, Span
from splice.smartcopy import PacketIndex, write_timeline

SIZE = (320, 240)
GENERATED = 3000   # bridge frames carry codes from here on (out index + GENERATED)


def encode(path, frames=200, params="", start=0, codec="libx264", pix_fmt="yuv420p", rate=25,
           size=SIZE):
    """A coded test source; `start` is the first frame's pts in frames (negative: an edit list)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = *size, pix_fmt
        if codec == "libx264":
            v.options = {"crf": "12", "preset": "veryfast", "x264-params": params}
        for k in range(frames):
            f = av.VideoFrame.from_ndarray(code_frame(k, *size), format="rgb24")
            f.pts, f.time_base = k + start, Fraction(1, rate)
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    return str(path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smartcopy")
    cache = {}

    def make(name, **kw):
        if name not in cache:
            suffix = kw.pop("suffix", ".mkv" if kw.get("codec") in ("libvpx-vp9", "mjpeg") else ".mp4")
            cache[name] = encode(folder / f"{name}{suffix}", **kw)
        return cache[name]
    return make


def bridge_frames(bridge, left, right):
    return [code_frame(GENERATED + bridge.out + k, *SIZE) for k in range(bridge.count)]


class Logged:
    """Everything libav says at warning level or worse while the block runs. (Only around
    single-threaded decoding: a decoder thread that logs while the file is being closed would
    wait for the interpreter forever.)"""

    def __enter__(self):
        self.level = av.logging.get_level()
        av.logging.set_level(av.logging.WARNING)
        self.capture = av.logging.Capture(local=False)
        self.logs = self.capture.__enter__()
        return self

    def __exit__(self, *exc):
        self.capture.__exit__(*exc)
        av.logging.set_level(self.level)

    @property
    def problems(self):
        return [(name, msg.strip()) for level, name, msg in self.logs if level <= av.logging.WARNING]


def decode(path):
    """Every frame of the file, in order, with its time; and libav's complaints while decoding."""
    with Logged() as log, av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "NONE"
        frames = [(f.pts * s.time_base, f.to_ndarray(), to_rgb(f)) for f in c.decode(s)]
        start = (s.start_time or 0) * s.time_base  # read while open: PyAV 18 refuses a closed file's streams
    return frames, start, log.problems


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def check(out, source_path, timeline, report, rate=Fraction(25)):
    """The output is exactly the timeline: its frames, their times, copied ones bit-identical to
    the source's own decode, encoded ones close to it, and no decoder complaint."""
    src, _, src_problems = decode(source_path)
    frames, _, problems = decode(out)
    assert problems == []
    total = sum(e.count for e in timeline)
    assert len(frames) == total
    first = frames[0][0]
    assert [t - first for t, _, _ in frames] == [Fraction(k) / rate for k in range(total)]
    copied = 0
    for entry, info in zip(timeline, report):
        assert info["copied"] + info["encoded"] == entry.count
        copied_src = range(*info["copied_src"]) if info.get("copied_src") else range(0)
        assert len(copied_src) == info["copied"]
        for k in range(entry.count):
            _, yuv, rgb = frames[entry.out + k]
            if isinstance(entry, Bridge):
                assert read_code(rgb) == GENERATED + entry.out + k
                continue
            s = entry.src + k
            _, src_yuv, src_rgb = src[s]
            assert read_code(rgb) == read_code(src_rgb), (entry, k)
            if s in copied_src:
                assert np.array_equal(yuv, src_yuv), f"copied output frame {entry.out + k} differs"
                copied += 1
            else:
                assert psnr(rgb, src_rgb) >= 35
    return copied


TIMELINE = [Span(0, 10, 70), Bridge(70, 3, 79, 90), Span(73, 95, 80)]


@pytest.mark.parametrize("params", [
    "keyint=30:bframes=3:b-pyramid=normal",          # short closed GOPs, B-pyramid
    "keyint=30:bframes=2:b-pyramid=none:ref=4",       # plain B-frames
    "keyint=45:bframes=0",                            # no reordering at all
    "keyint=60:min-keyint=60:scenecut=0:bframes=3",   # long GOPs
    "keyint=30:bframes=3:sps-id=4",                   # parameter set ids other than 0
])
def test_closed_gops_are_copied_exactly(sources, tmp_path, params):
    path = sources(params.replace(":", "_").replace("=", ""), params=params)
    source = VideoSource(path)
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, source, TIMELINE, bridge_frames, crf=17, preset="ultrafast")
    assert [r["copied"] > 0 for r in report] == [True, False, True]
    assert report[1]["why"] == "generated"
    copied = check(out, path, TIMELINE, report)
    assert copied == report[0]["copied"] + report[2]["copied"] >= 70


def test_ten_bit_source_into_ten_bit_output(sources, tmp_path):
    path = sources("10bit", pix_fmt="yuv420p10le", params="keyint=30:bframes=3")
    source = VideoSource(path)
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, source, TIMELINE, bridge_frames, preset="ultrafast", pix_fmt="yuv420p10le")
    assert report[0]["copied"] > 0 and report[2]["copied"] > 0
    check(out, path, TIMELINE, report)
    eight = write_timeline(str(tmp_path / "8.mp4"), source, TIMELINE, bridge_frames, preset="ultrafast")
    assert eight[0]["copied"] == 0 and "yuv420p10le is not the output's yuv420p" in eight[0]["why"]


def test_copied_runs_start_at_idr_and_end_at_clean_cuts(sources):
    source = VideoSource(sources("closed", params="keyint=30:bframes=3:b-pyramid=normal"))
    index = PacketIndex(source)
    run = index.run_within(10, 80)
    assert run.first in index.starts and run.first >= 10 and run.stop <= 80
    # every packet of the run shows a frame of the run, and all of the run's frames are there
    assert sorted(index.ranks[run.p0:run.p1]) == list(range(run.first, run.stop))
    with av.open(source.path) as c:
        keys = [p.pts for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe]
    assert source.index.pts[run.first] in keys


def test_open_gop_copies_only_from_the_idr(sources, tmp_path):
    """Open-GOP recovery points have leading pictures that refer to the group before: a copy can
    start only at the stream's IDR; later spans are encoded, and say why."""
    path = sources("open", params="keyint=40:open-gop=1:bframes=3:b-pyramid=normal")
    source = VideoSource(path)
    timeline = [Span(0, 0, 100), Bridge(100, 2, 99, 130), Span(102, 130, 60)]
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, source, timeline, bridge_frames, crf=17, preset="ultrafast")
    assert report[0]["copied"] >= 90 and report[0]["copied_src"][0] == 0
    assert report[2]["copied"] == 0 and "no IDR" in report[2]["why"]
    check(out, path, timeline, report)
    with pytest.raises(UserError) as e:
        write_timeline(str(tmp_path / "on.mp4"), source, timeline, bridge_frames, preset="ultrafast",
                       mode="on")
    assert "\n" not in str(e.value) and "no IDR" in str(e.value)
    assert not (tmp_path / "on.mp4").exists() or (tmp_path / "on.mp4").stat().st_size == 0


@pytest.mark.parametrize("start", [-7, 100])
def test_edit_list_and_late_start(sources, tmp_path, start):
    """start -7: the first 7 coded frames sit before the edit list's start and are not shown;
    start 100: the video starts 4 s into the file's clock."""
    path = sources(f"start{start}", params="keyint=30:bframes=3", start=start)
    source = VideoSource(path)
    assert source.frame_count == 200 - max(0, -start)
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, source, TIMELINE, bridge_frames, crf=17, preset="ultrafast")
    assert report[0]["copied"] > 0 and report[2]["copied"] > 0
    check(out, path, TIMELINE, report)


def test_jump_back_and_mkv_output(sources, tmp_path):
    path = sources("closed", params="keyint=30:bframes=3:b-pyramid=normal")
    source = VideoSource(path)
    timeline = [Span(0, 100, 60), Bridge(60, 2, 159, 20), Span(62, 20, 70)]
    out = str(tmp_path / "out.mkv")
    report = write_timeline(out, source, timeline, bridge_frames, crf=17, preset="ultrafast")
    assert report[0]["copied"] > 0 and report[2]["copied"] > 0
    check(out, path, timeline, report)


@pytest.mark.parametrize("output", ["out.mp4", "out.mkv"])
def test_transport_stream_source(sources, tmp_path, output):
    """MPEG-TS (broadcast and camcorder recordings, AVCHD's .mts) carries H.264 as an Annex B byte
    stream, its parameter sets in band and the clock starting late: copied all the same."""
    path = sources("ts", params="keyint=30:bframes=3:b-pyramid=normal", suffix=".ts")
    source = VideoSource(path)
    index = PacketIndex(source)
    assert index.config.length_size == 0 and index.config.sps and index.config.pps
    out = str(tmp_path / output)
    report = write_timeline(out, source, TIMELINE, bridge_frames, crf=17, preset="ultrafast", mode="on")
    assert report[0]["copied"] > 0 and report[2]["copied"] > 0
    check(out, path, TIMELINE, report)


def test_sound_is_muxed_with_copied_video(tmp_path):
    path = make_video(tmp_path / "with_sound.mp4", frames=200, gop=30)   # B-frames, sound
    source = VideoSource(path)
    total = sum(e.count for e in TIMELINE)
    sound = tone_with_bursts(total / 25)
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, source, TIMELINE, bridge_frames, crf=17, preset="ultrafast", audio=sound)
    assert report[0]["copied"] > 0
    check(out, str(path), TIMELINE, report)
    got, rate = decode_audio(out)
    assert rate == SAMPLE_RATE
    assert abs(got.shape[1] - sound.shape[1]) <= 2048   # AAC priming and padding
    onsets = burst_onsets(got)
    assert len(onsets) == 7 and all(abs(t - round(t)) < 0.003 for t in onsets)


def test_off_encodes_everything(sources, tmp_path):
    path = sources("closed", params="keyint=30:bframes=3:b-pyramid=normal")
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, VideoSource(path), TIMELINE, bridge_frames, preset="ultrafast", mode="off")
    assert [r["copied"] for r in report] == [0, 0, 0]
    assert report[0]["why"] == "copying is off"
    check(out, path, TIMELINE, report)


@pytest.mark.parametrize("kind,kw,why", [
    ("vp9", dict(codec="libvpx-vp9"), "vp9, not H.264"),
    ("mjpeg", dict(codec="mjpeg", pix_fmt="yuvj420p"), "mjpeg, not H.264"),
    ("yuv444", dict(pix_fmt="yuv444p", params="keyint=30"), "pixel format yuv444p"),
])
def test_uncopyable_sources_fall_back_or_fail(sources, tmp_path, kind, kw, why):
    path = sources(kind, frames=180, **kw)
    source = VideoSource(path)
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, source, TIMELINE, bridge_frames, preset="ultrafast")
    assert [r["copied"] for r in report] == [0, 0, 0]
    assert why in report[0]["why"]
    codes = [read_code(rgb) for _, _, rgb in decode(out)[0]]
    assert codes == list(range(10, 80)) + [GENERATED + 70 + k for k in range(3)] + list(range(95, 175))
    with pytest.raises(UserError) as e:
        write_timeline(str(tmp_path / "on.mp4"), source, TIMELINE, bridge_frames, mode="on")
    assert why in str(e.value) and "\n" not in str(e.value)


def test_unknown_mode(sources, tmp_path):
    source = VideoSource(sources("closed", params="keyint=30:bframes=3:b-pyramid=normal"))
    with pytest.raises(UserError, match="'sometimes' is not one of auto, on, off"):
        write_timeline(str(tmp_path / "x.mp4"), source, TIMELINE, bridge_frames, mode="sometimes")


def frame_digests(path, keep=()):
    """A digest of every decoded frame's planes (and the RGB of the frames in `keep`), streaming."""
    import hashlib
    digests, kept = [], {}
    with Logged() as log, av.open(str(path)) as c:
        c.streams.video[0].thread_type = "NONE"
        for k, f in enumerate(c.decode(c.streams.video[0])):
            digests.append(hashlib.sha1(f.to_ndarray().tobytes()).hexdigest())
            if k in keep:
                kept[k] = to_rgb(f)
    return digests, kept, log.problems


@pytest.mark.parametrize("name", ["d6.mp4", "s18.mp4"])
def test_real_clip(tmp_path, name):
    path = str(needs_media(name))
    source = VideoSource(path)
    n, w, h = source.frame_count, source.width, source.height
    a, b, c = n // 3, n // 4, n // 5
    timeline = [Span(0, 0, a), Bridge(a, 3, a - 1, n // 2), Span(a + 3, n // 2, b),     # forward
                Bridge(a + 3 + b, 2, n // 2 + b - 1, n // 4), Span(a + 5 + b, n // 4, c)]  # back
    grey = [np.full((h, w, 3), 128, np.uint8)] * 3
    out = str(tmp_path / "out.mp4")
    report = write_timeline(out, source, timeline, lambda br, left, right: grey[:br.count], crf=17, preset="ultrafast")
    assert sum(r["copied"] for r in report) > 0, report
    shown = {}   # output index -> source index, for every output frame showing the source
    for e in timeline:
        if isinstance(e, Span):
            shown.update({e.out + k: e.src + k for k in range(e.count)})
    copied_out = {e.out + k for e, r in zip(timeline, report) if r["copied"]
                  for k in range(e.count) if r["copied_src"][0] <= e.src + k < r["copied_src"][1]}
    encoded_out = set(shown) - copied_out
    got, got_rgb, problems = frame_digests(out, keep=encoded_out)
    want, want_rgb, _ = frame_digests(path, keep={shown[k] for k in encoded_out})
    assert problems == []
    assert len(got) == sum(e.count for e in timeline)
    assert all(got[k] == want[shown[k]] for k in copied_out)
    assert len(copied_out) == sum(r["copied"] for r in report)
    assert all(psnr(got_rgb[k], want_rgb[shown[k]]) >= 35 for k in encoded_out)


def test_cli_splice_copies_and_still_verifies(video_factory, run_cli, tmp_path):
    from splice.verify import verify
    video = video_factory()   # 425 frames at 25 fps, GOPs of 30 with B-frames, sound
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video, "--output", out, "--frame-a", 130, "--frame-b", 290, "--time-indent", "0",
                "--model", "flow", "--preset", "veryfast", "--quiet")
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert rep["copy_unchanged"] == "auto"
    assert [c["out"] for c in rep["copy"]] == [e["out"] for e in rep["timeline"]]
    assert sum(c["copied"] for c in rep["copy"]) > 250
    assert verify(str(out), rep).problems == []
    off = run_cli("--input", video, "--output", tmp_path / "off.mp4", "--frame-a", 130, "--frame-b", 290,
                  "--time-indent", "0", "--model", "flow", "--preset", "veryfast", "--quiet",
                  "--copy-unchanged", "off")
    assert off.returncode == 0 and sum(c["copied"] for c in off.report["copy"]) == 0
    assert off.report["timeline"] == rep["timeline"]


def test_cli_on_fails_in_one_line_when_nothing_can_be_copied(video_factory, run_cli, tmp_path):
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--model", "blend", "--quiet",
                "--pix-fmt", "yuv420p10le", "--copy-unchanged", "on", report=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert "yuv420p is not the output's yuv420p10le" in r.stderr
    assert not out.exists()


def test_stretches_encoded_at_once_come_out_as_one_at_a_time(sources, tmp_path):
    """With several encoders working ahead, the output is packet for packet the one-encoder
    output, and the bridges are still generated one at a time, in timeline order."""
    import threading
    import time
    path = sources("parallel", frames=300, params="keyint=40:bframes=3")
    source = VideoSource(path)
    timeline = [Span(0, 0, 50), Bridge(50, 2, 49, 60), Span(52, 62, 50), Bridge(102, 3, 111, 130),
                Span(105, 132, 40), Bridge(145, 2, 171, 190), Span(147, 192, 60)]
    calls, busy = [], []

    def slow_bridges(bridge, left, right):
        busy.append(threading.current_thread().name)
        assert len(busy) == 1, "two bridges generated at once"
        time.sleep(0.05 * (3 - len(calls)))   # the earlier bridges take longer
        calls.append(bridge.out)
        busy.pop()
        return bridge_frames(bridge, left, right)
    outs = {}
    for workers in (1, 3):
        calls.clear()
        out = str(tmp_path / f"w{workers}.mp4")
        report = write_timeline(out, source, timeline, slow_bridges, crf=17, preset="ultrafast", workers=workers)
        assert calls == [50, 102, 145]
        assert check(out, path, timeline, report) > 100
        with av.open(out) as c:
            outs[workers] = [(p.pts, p.dts, bytes(p)) for p in c.demux(c.streams.video[0]) if p.size]
    assert outs[3] == outs[1]


def test_encoded_stretches_keep_the_requested_crf_and_preset(sources, tmp_path):
    """The encoders of the stretches between copied runs take the output's own settings (opening
    an encoder empties its options, so they cannot be read back from the writer's): every x264
    header in the output is either the copied source's or says the crf and preset asked for."""
    import re
    path = sources("settings", frames=200, params="keyint=40")
    source = VideoSource(path)
    timeline = [Span(0, 0, 50), Bridge(50, 2, 49, 60), Span(52, 62, 60), Bridge(112, 2, 121, 150), Span(114, 152, 40)]
    out = str(tmp_path / "o.mp4")
    report = write_timeline(out, source, timeline, bridge_frames, crf=29, preset="ultrafast", workers=2)
    assert check(out, path, timeline, report) > 0
    with av.open(out) as c:
        headers = [re.search(rb"options: ([^\x00]*)", bytes(p)).group(1).decode(errors="replace")
                   for p in c.demux(c.streams.video[0]) if b"x264 - core" in bytes(p)]
    ours = [h for h in headers if " crf=12.0 " not in h]   # the source was made at crf 12
    assert len(ours) >= 2, headers   # one per stretch: at least each bridge with the span head after it
    for h in ours:
        assert " crf=29.0 " in h and " subme=0 " in h, h   # subme=0: ultrafast
