"""End to end on synthetic videos whose frames carry their own index."""
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from splice.plan import GeneratedFrame, SourceFrame, plan_splice
from synthetic import (BURST_SECONDS, burst_onsets, code_frame, decode_audio, decode_codes,
                       read_code)

FAST = ["--model", "flow", "--preset", "veryfast", "--quiet"]


def expected_layout(report):
    plan = plan_splice(Fraction(report["rate"]), report["frame_count"], report["a"]["index"],
                       report["b"]["index"], report["indent"]["i"], report["m"])
    return plan, plan.outputs()


def assert_layout(out_path, report):
    plan, layout = expected_layout(report)
    codes = decode_codes(out_path)
    assert len(codes) == 3 * plan.n
    for k, item in enumerate(layout):
        if isinstance(item, SourceFrame):
            assert codes[k] == item.index, f"output frame {k} shows source {codes[k]}, expected {item.index}"
    assert codes[plan.n] == plan.a and codes[2 * plan.n] == plan.b
    return plan, codes


def test_layout_audio_and_report_at_25fps(video_factory, run_cli, tmp_path):
    src = video_factory()
    out = tmp_path / "out.mp4"
    gen = tmp_path / "gen"
    r = run_cli("--input", src, "--output", out, "--frame-a", 131, "--frame-b", 290,
                "--time-indent", "0.4", "--interp-frames", 3, "--save-generated", gen, *FAST)
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert (rep["n"], rep["indent"]["i"], rep["m"], rep["j"]) == (125, 10, 3, 111)
    assert rep["endpoints"]["left"]["index"] == 141 and rep["endpoints"]["right"]["index"] == 179
    assert rep["a"]["output_time"] == 5.0 and rep["b"]["output_time"] == 10.0
    assert rep["model"]["name"] == "flow"
    plan, codes = assert_layout(out, rep)

    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert v.average_rate == 25
        pts = sorted(p.pts * v.time_base for p in c.demux(v) if p.size)
    assert pts == [Fraction(k, 25) for k in range(375)]        # constant rate, A at 5 s, B at 10 s

    # Generated frames: written as PNGs named by output index, and equal to what was encoded.
    names = sorted(p.name for p in gen.iterdir())
    assert names == ["000136.png", "000137.png", "000138.png"]
    with av.open(str(out)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    for k in (136, 137, 138):
        png = cv2.cvtColor(cv2.imread(str(gen / f"{k:06d}.png")), cv2.COLOR_BGR2RGB)
        mse = np.mean((png.astype(float) - decoded[k].astype(float)) ** 2)
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 35

    # Audio: as long as the video (within a frame), and cut at the same source times.
    audio, sr = decode_audio(out)
    assert abs(audio.shape[1] / sr - 15.0) <= 1 / 25
    r_ = Fraction(25)
    seg1_start = Fraction(plan.a - plan.n) / r_            # source time of output 0
    seg1_end = Fraction(plan.n + plan.indent + 1) / r_      # output time where the bridge starts
    seg2_out = seg1_end + Fraction(plan.generated) / r_     # output time of source B-j
    seg2_src = Fraction(plan.right) / r_
    expected = [float(s - seg1_start) for s in range(1, 20) if seg1_start <= s and s - seg1_start < seg1_end - Fraction(1, 20)]
    expected += [float(seg2_out + s - seg2_src) for s in range(1, 20) if s >= seg2_src and seg2_out + s - seg2_src < 15 - BURST_SECONDS]
    found = burst_onsets(audio, sr)
    assert len(found) == len(expected), (found, expected)
    assert np.allclose(found, expected, atol=0.003), (found, expected)


@pytest.mark.parametrize("rate", [Fraction(30000, 1001), Fraction(24), Fraction(30)])
def test_layout_at_other_rates(video_factory, run_cli, tmp_path, rate):
    src = video_factory(rate=rate, frames=int(17 * rate), audio=False)
    out = tmp_path / "out.mp4"
    r = run_cli("--input", src, "--output", out, "--frame-a", "6s", "--frame-b", "00:00:11.000",
                "--time-indent", "0", *FAST)
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert rep["a"]["index"] == int(6 * rate) and rep["b"]["index"] == int(11 * rate)
    assert rep["indent"]["i"] == 0 and rep["audio"] is False
    plan, _ = assert_layout(out, rep)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.average_rate == rate
        assert not c.streams.audio
        duration = len([p for p in c.demux(v) if p.size]) / rate
    assert abs(duration - 15) <= 1 / rate


def test_auto_indent_picks_the_lowest_score(video_factory, run_cli, tmp_path):
    src = video_factory()
    r = run_cli("--input", src, "--output", tmp_path / "o.mp4", "--frame-a", 140, "--frame-b", 280,
                "--interp-frames", 3, *FAST)
    assert r.returncode == 0, r.stderr
    ind = r.report["indent"]
    assert ind["mode"] == "auto" and len(ind["scores"]) == 125 - 2 - 3 + 1
    assert ind["i"] == int(np.argmin(ind["scores"]))
    assert ind["score"] == min(ind["scores"])


def test_rotated_and_odd_sized_input(video_factory, run_cli, tmp_path):
    src = video_factory(size=(321, 241), rotation=90, pix_fmt="yuv444p", audio=False)
    out = tmp_path / "rot.mp4"
    r = run_cli("--input", src, "--output", out, "--frame-a", 130, "--frame-b", 295, "--time-indent", "0", *FAST)
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as c:
        frame = next(c.decode(c.streams.video[0]))
        assert frame.rotation == 90                      # shown upright, like the input
        assert (frame.width, frame.height) == (322, 242)  # 4:2:0 needs even sizes: one edge row/column added
        assert (frame.to_ndarray(format="rgb24")[:241, :321] == 0).any()
    plan, layout = expected_layout(r.report)
    with av.open(str(out)) as c:
        codes = [read_code(f.to_ndarray(format="rgb24")[:241, :321]) for f in c.decode(c.streams.video[0])]
    for k, item in enumerate(layout):
        if isinstance(item, SourceFrame):
            assert codes[k] == item.index


@pytest.mark.parametrize("suffix,quality", [(".png", None), (".jpg", 80)])
def test_frames_given_as_images(video_factory, run_cli, tmp_path, suffix, quality):
    src = video_factory()
    paths = {}
    with av.open(str(src)) as c:
        for k, f in enumerate(c.decode(c.streams.video[0])):
            if k in (150, 296):
                bgr = cv2.cvtColor(f.to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR)
                paths[k] = tmp_path / f"f{k}{suffix}"
                params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else []
                cv2.imwrite(str(paths[k]), bgr, params)
    r = run_cli("--input", src, "--output", tmp_path / "o.mp4", "--frame-a", paths[150], "--frame-b", paths[296],
                "--time-indent", "0", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.report["a"]["index"] == 150 and r.report["b"]["index"] == 296
    assert r.report["a"]["how"] == "image" and r.report["a"]["match"]["psnr_db"] > 30


def test_defaults_are_five_seconds_in_and_five_before_the_end(video_factory, run_cli, tmp_path):
    src = video_factory()
    r = run_cli("--input", src, "--output", tmp_path / "o.mp4", "--time-indent", "0", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.report["a"]["index"] == 125 and r.report["b"]["index"] == 425 - 125


def test_a_failure_leaves_no_output(video_factory, tmp_path, monkeypatch):
    import splice
    from splice.models import FlowInterpolator

    def broken(self, *a, **k):
        raise RuntimeError("model crashed")
    monkeypatch.setattr(FlowInterpolator, "interpolate", broken)
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError):
        splice.splice_video(splice.load_interpolator("flow"), str(video_factory()), str(out), time_indent="0",
                            encode=splice.EncodeOptions(preset="ultrafast"))
    assert list(tmp_path.iterdir()) == []


def test_generated_frames_lie_between_their_endpoints(video_factory, tmp_path):
    """The flow model at t=1/2 of two coded frames is close to both, nearer neither by much."""
    from splice.models import FlowInterpolator
    a, b = code_frame(10, 320, 240), code_frame(11, 320, 240)
    mid = FlowInterpolator().interpolate(a, b, [0.5])[0]
    assert mid.shape == a.shape and mid.dtype == np.uint8
    diff_a = np.abs(mid.astype(int) - a).mean()
    diff_b = np.abs(mid.astype(int) - b).mean()
    assert diff_a > 0 and diff_b > 0 and abs(diff_a - diff_b) < 0.5 * max(diff_a, diff_b)


def test_vfimamba_wiring_with_fixture_weights(video_factory, run_cli, tmp_path):
    """Random-but-fixed weights give meaningless pixels: this checks wiring, sizes and layout."""
    from conftest import SHARED
    ckpt = SHARED / "fixtures" / "vfimamba" / "weights_VFIMamba_S.pkl"
    if not ckpt.exists():
        pytest.skip(f"{ckpt} is absent: the VFIMamba fixtures sit beside the project checkout (../shared)")
    out, gen = tmp_path / "o.mp4", tmp_path / "gen"
    r = run_cli("--input", video_factory(), "--output", out, "--model", "vfimamba", "--ckpt", ckpt,
                "--device", "cpu", "--frame-a", 130, "--frame-b", 290, "--time-indent", "0",
                "--interp-frames", 3, "--save-generated", gen, "--preset", "ultrafast", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.report["model"]["name"] == "vfimamba_s" and "F=16" in r.report["model"]["description"]
    assert r.report["model"]["why"] == "asked for with --model vfimamba"
    assert_layout(out, r.report)
    names = sorted(p.name for p in gen.iterdir())
    assert names == ["000126.png", "000127.png", "000128.png"]
    assert cv2.imread(str(gen / names[0])).shape == (240, 320, 3)


def test_mkv_output_with_audio(video_factory, run_cli, tmp_path):
    from splice.verify import verify
    out = tmp_path / "out.mkv"
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", 130, "--frame-b", 290,
                "--time-indent", "0", *FAST)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    result = verify(str(out), r.report)
    assert result.ok, result.problems
    assert abs(result.facts.audio_duration - 15) <= 1 / 25


def test_audio_is_interleaved_with_the_video(video_factory, run_cli, tmp_path):
    """The sound is encoded in a thread but muxed in step with the picture: in file order, no audio
    packet lags the video by more than half a second or runs ahead of it by more than one second."""
    import av
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--frame-a", 130, "--frame-b", 290,
                "--time-indent", "0", *FAST)
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as c:
        order = [(p.stream.type, float(p.pts * p.time_base)) for p in c.demux() if p.pts is not None]
    kinds = {k for k, _ in order}
    assert kinds == {"video", "audio"}
    video_so_far = 0.0
    audio_packets = 0
    for kind, t in order:
        if kind == "video":
            video_so_far = max(video_so_far, t)
        else:
            audio_packets += 1
            assert t <= video_so_far + 1.0, f"audio at {t:.2f} s is stored before the video reaches {t - 1:.2f} s"
            if audio_packets > 1 and video_so_far < 14.4:
                assert t >= video_so_far - 0.5, f"audio at {t:.2f} s is stored after video at {video_so_far:.2f} s"


def test_audio_encoder_stops_when_the_clip_is_abandoned(video_factory, tmp_path, monkeypatch):
    import threading
    import splice
    from splice.models import FlowInterpolator

    def broken(self, *a, **k):
        raise RuntimeError("model crashed")
    monkeypatch.setattr(FlowInterpolator, "interpolate", broken)
    with pytest.raises(RuntimeError):
        splice.splice_video(splice.load_interpolator("flow"), str(video_factory()), str(tmp_path / "o.mp4"),
                            time_indent="0", encode=splice.EncodeOptions(preset="ultrafast"))
    assert not [t for t in threading.enumerate() if t.name.startswith("aac encoder")]
    assert list(tmp_path.iterdir()) == []
