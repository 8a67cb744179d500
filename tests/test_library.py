"""The library and the command line around it: one model load for many jobs, the documented API,
and an installed `interpolate-video` command."""
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import splice
from splice import cli, models
from splice.plan import Span
from splice.verify import timeline_of
from synthetic import decode_codes

FAST = ["--model", "flow", "--preset", "ultrafast", "--quiet"]


def test_the_documented_api_loads_once_and_makes_a_splice_and_an_edit(video_factory, tmp_path):
    model = splice.load_interpolator("flow")
    assert model.name == "flow" and model.why == "asked for with --model flow"
    video = splice.open_video(str(video_factory()))
    fast = splice.EncodeOptions(preset="ultrafast", audio=False)
    clip = splice.splice_video(model, video, str(tmp_path / "clip.mp4"), frame_a="131", frame_b="290",
                               time_indent="0.4", encode=fast)
    edit = splice.edit_video(model, video, str(tmp_path / "edit.mp4"), keep=["0-4s", "8s-12s"], encode=fast)
    assert clip["a"]["index"] == 131 and clip["output_frames"] == 375
    codes = decode_codes(tmp_path / "clip.mp4")
    assert codes[125] == 131 and codes[250] == 290
    assert edit["ranges"] == [[0, 100], [200, 300]] and edit["output_frames"] == 200
    codes = decode_codes(tmp_path / "edit.mp4")
    for e in timeline_of(edit):
        if isinstance(e, Span):
            assert codes[e.out:e.out + e.count] == list(range(e.src, e.src + e.count))
    # any object with interpolate() will do as the model
    plain = splice.splice_video(models.BlendInterpolator(), video, str(tmp_path / "blend.mp4"), frame_a="131",
                                frame_b="290", time_indent="0", encode=fast)
    assert plain["model"]["name"] == "blend"


def test_a_model_still_loading_is_waited_for_at_the_first_bridge(video_factory, tmp_path):
    """render_job takes a function for a model that is still loading: the footage before the first
    bridge is written before it is called, and the report says how long it was waited for."""
    video = splice.open_video(str(video_factory()))
    job = splice.prepare_splice(video, frame_a="131", frame_b="290", time_indent="0", interp_frames=3)
    fast = splice.EncodeOptions(preset="ultrafast", audio=False)
    out = tmp_path / "clip.mp4"
    written = []

    def arriving():
        written.extend(p.stat().st_size for p in tmp_path.iterdir() if ".partial" in p.name)
        return splice.load_interpolator("blend", log=lambda *a: None)
    report = splice.render_job(arriving, job, str(out), fast)
    assert len(written) == 1 and written[0] > 0        # called once, with frames already in the file
    assert report["model"]["name"] == "blend" and report["timings"]["model_wait"] >= 0
    codes = decode_codes(out)
    assert codes[:126] == list(range(6, 132))           # 5 s before A, then A at 5 s
    assert codes[-125:] == list(range(290, 415))        # B at 10 s and the 5 s from it

    def failing():
        raise splice.UserError("the model could not be loaded")
    with pytest.raises(splice.UserError, match="could not be loaded"):
        splice.render_job(failing, job, str(tmp_path / "never.mp4"), fast)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_the_command_imports_only_what_the_parser_needs_before_the_model_process_starts():
    """The model's process starts right after the options are parsed; PyAV, OpenCV, NumPy and the
    pipeline are imported after it (they cost 0.2-0.4 s that would delay the model)."""
    code = ("import sys; import splice.cli as c; c.build_parser().parse_args(['--input', 'x.mp4', '--output', 'y.mp4']); "
            "print(sorted(m for m in ('av', 'cv2', 'numpy', 'tqdm', 'splice.api', 'splice.media', 'torch') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_head_start_for_a_gpu_is_taken_only_where_it_can_help():
    """load_interpolator first starts CUDA's driver and context in a thread (models._prefetch), for
    the models that need PyTorch on "auto" or "cuda" only, and only with a CUDA build of PyTorch
    (a CPU build would leave a context nobody uses on the GPU); where no CUDA driver answers, that
    thread ends at once and the load goes on as before."""
    import ctypes
    import threading
    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("this machine has a CUDA driver")
    except OSError:
        pass
    import torch
    assert models._torch_has_cuda() == (torch.version.cuda is not None)

    def prefetching():
        return [t for t in threading.enumerate() if t.name == "gpu-prefetch"]
    for t in prefetching():
        t.join(10)
    for names, device in ((("flow",), "auto"), (models.AUTO, "cpu"), (("vfimamba",), "cuda:1")):
        models._prefetch(names, device)
        assert prefetching() == [], (names, device)
    models._prefetch(models.AUTO, "auto")
    threads = prefetching()
    assert len(threads) <= (1 if models._torch_has_cuda() else 0)   # (it may have ended already)
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert models._cuda_context(ctypes) is False


def test_auto_says_why_for_every_candidate(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERPOLATE_VIDEO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(splice.cache, "CHECKOUT_CKPT", tmp_path / "no-ckpt")
    model = splice.load_interpolator("auto", offline=True, log=lambda *a: None)
    assert model.name == "flow"
    names = [(c["name"], c["taken"]) for c in model.candidates]
    assert names == [("vfimamba", False), ("rife", False), ("flow", True)]
    assert "no VFIMamba checkpoint" in model.candidates[0]["reason"]
    assert "not cached" in model.candidates[1]["reason"] and "downloads are off" in model.candidates[1]["reason"]


def test_cuda_asked_for_without_cuda_fails_for_every_model(run_cli, video_factory, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from test_errors import assert_refused
    for model in ("auto", "flow", "blend", "rife"):
        out = tmp_path / "o.mp4"
        r = run_cli("--input", video_factory(), "--output", out, "--model", model, "--device", "cuda",
                    "--time-indent", "0", "--quiet")
        assert_refused(r, out, "--device cuda", "no CUDA GPU")


def test_jobs_share_one_model_load_and_report_the_failure(video_factory, tmp_path, monkeypatch, capsys):
    src = str(video_factory())
    jobs = tmp_path / "jobs.jsonl"
    lines = [
        {"input": src, "output": str(tmp_path / "one.mp4"), "frame_a": "131", "frame_b": "290", "time_indent": "0"},
        {"input": str(tmp_path / "missing é.mp4"), "output": str(tmp_path / "two.mp4")},
        {"input": src, "output": str(tmp_path / "three.mp4"), "keep": ["0-4s", "8s-12s"], "no_audio": True},
    ]
    # As a Windows editor saves it: a byte-order mark, CRLF line ends and a non-ASCII path.
    jobs.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\r\n").encode())
    loads = []
    real = models.REGISTRY["flow"]
    monkeypatch.setitem(models.REGISTRY, "flow", lambda opts, log: loads.append(1) or real(opts, log))
    summary = tmp_path / "summary.json"
    code = cli.main(["--jobs", str(jobs), "--model", "flow", "--preset", "ultrafast", "--quiet",
                     "--report", str(summary)])
    out, err = capsys.readouterr()
    assert code == 2
    assert loads == [1]                                           # the model was loaded once
    assert (tmp_path / "one.mp4").exists() and (tmp_path / "three.mp4").exists()
    assert not (tmp_path / "two.mp4").exists()
    assert err.strip().splitlines() == [f"error: job 2 (line 2, {tmp_path / 'missing é.mp4'}): "
                                        f"Input file not found: {tmp_path / 'missing é.mp4'}"]
    assert "jobs: 2 of 3 done" in out
    data = json.loads(summary.read_text())
    assert [j["ok"] for j in data["jobs"]] == [True, False, True] and data["model_loads"] == 1
    one = json.loads((tmp_path / "summary.job1.json").read_text())
    three = json.loads((tmp_path / "summary.job3.json").read_text())
    assert one["kind"] == "splice" and one["a"]["index"] == 131
    assert three["kind"] == "edit" and three["audio"] is False and three["output_frames"] == 200
    codes = decode_codes(tmp_path / "three.mp4")
    assert codes[:99] == list(range(99)) and codes[-1] == 299


@pytest.mark.parametrize("line,phrase", [
    ('{"input": "a.mp4", "output": "b.mp4", "model": "rife"}', "'model' applies to the whole run"),
    ('{"input": "a.mp4", "output": "b.mp4", "colour": 3}', "unknown option 'colour'"),
    ('{"input": "a.mp4", "output": "b.mp4", "crf": "high"}', "'crf' cannot be 'high'"),
    ('{"input": "a.mp4"', "is not valid JSON"),
    ('["a.mp4"]', "is not a JSON object"),
])
def test_bad_job_lines_each_get_one_line(tmp_path, capsys, line, phrase):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(line + "\n")
    assert cli.main(["--jobs", str(jobs), "--model", "flow", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: job 1 (line 1") and phrase in err[0], err


def test_cli_checks_options_before_decoding(run_cli, video_factory, tmp_path):
    from test_errors import assert_refused
    src = video_factory()
    out = tmp_path / "o.mp4"
    for args, phrase in ((["--crf", "-5"], "--crf -5 is out of range"), (["--crf", "99"], "--crf 99 is out of range"),
                         (["--preset", "bogus"], "--preset 'bogus' is not an x264 preset"),
                         (["--time-indent", "1e400"], "--time-indent"),
                         (["--report", str(tmp_path / "nowhere" / "r.json")], "--report folder"),
                         (["--interp-frames", "x"], "argument --interp-frames")):
        r = run_cli("--input", src, "--output", out, *args, "--model", "flow", "--quiet", report=False)
        assert_refused(r, out, phrase)


def test_version(run_cli):
    r = run_cli("--version", report=False)
    assert r.returncode == 0 and r.stdout.strip() == f"interpolate-video {splice.__version__}"


@pytest.mark.skipif(os.environ.get("INTERPOLATE_VIDEO_SKIP_INSTALL") == "1", reason="asked to skip")
def test_pip_install_gives_the_console_command(tmp_path, video_factory):
    """A fresh venv (seeing this machine's packages, so nothing is downloaded): `pip install .`,
    then `interpolate-video --version` and a splice through the console command."""
    import shutil
    from conftest import ROOT
    source = tmp_path / "checkout"      # built from a copy, so the build leaves nothing in the checkout
    def skip(folder, names):  # hidden folders, weights, outputs and build leftovers stay behind
        top = Path(folder) == Path(ROOT)
        return [n for n in names if n in ("__pycache__", "build") or n.endswith(".egg-info")
                or (top and (n.startswith(".") or n in ("outputs", "ckpt")))]
    shutil.copytree(ROOT, source, ignore=skip)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert pip.returncode == 0, pip.stderr[-2000:]
    exe = env_dir / "bin" / "interpolate-video"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"interpolate-video {splice.__version__}"
    out = tmp_path / "o.mp4"
    run = subprocess.run([str(exe), "--input", str(video_factory()), "--output", str(out), "--frame-a", "131",
                          "--frame-b", "290", "--time-indent", "0", *FAST], capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    codes = decode_codes(out)
    assert len(codes) == 375 and codes[125] == 131 and codes[250] == 290
    where = subprocess.run([str(py), "-c", "import splice, sys; print(splice.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert str(env_dir) in where.stdout      # the installed copy, not the checkout


def test_a_gpu_model_is_warmed_up_beside_the_first_span(video_factory, tmp_path):
    """A model on a GPU pays its first-call set-up in a thread while the first span is written; the
    real call (made where the bridge's stretch is encoded) waits for it. (A stand-in with
    device.type 'cuda': no GPU needed.)"""
    import threading
    from types import SimpleNamespace

    class Stand(models.BlendInterpolator):
        device = SimpleNamespace(type="cuda")
        calls: list = []

        def warmup(self, size, timesteps):
            self.calls.append(("warmup", size, list(timesteps), threading.current_thread().name))

        def interpolate(self, frame0, frame1, timesteps):
            self.calls.append(("interpolate", frame0.shape[:2], list(timesteps), threading.current_thread().name))
            return super().interpolate(frame0, frame1, timesteps)
    stand = Stand()
    splice.splice_video(stand, str(video_factory()), str(tmp_path / "o.mp4"), frame_a="131", frame_b="290",
                        time_indent="0", interp_frames=3, encode=splice.EncodeOptions(preset="ultrafast", audio=False))
    assert [c[0] for c in stand.calls] == ["warmup", "interpolate"]
    assert stand.calls[0][1] == (240, 320) and stand.calls[0][2] == [0.25, 0.5, 0.75]
    assert stand.calls[0][3] == "model warm-up" and stand.calls[1][3] != "model warm-up"


def test_analysis_frames_decode_each_neighbourhood_once(video_factory):
    """The looks around one cut share what the first one decoded on its way from the keyframe."""
    import numpy as np
    from splice.api import AnalysisFrames
    from splice.indent import analysis_frame_of
    from splice.media import VideoSource
    source = VideoSource(str(video_factory()))
    asked = []

    class Counting:   # the source, noting what it is asked to decode
        rate, frame_count = source.rate, source.frame_count

        def frames(self, start, stop):
            asked.append((start, stop))
            yield from source.frames(start, stop)
    frames = AnalysisFrames(Counting())
    frames(200, 210)
    assert asked == [(150, 222)]            # from 2 s (50 frames at 25 fps) before to 0.5 s past
    again = frames(180, 220)                # within what was decoded: nothing more
    assert asked == [(150, 222)]
    later = list(frames.iterate(215, 230))  # partly new: from 2 s before the first frame not yet kept
    assert asked == [(150, 222), (172, 242)]
    direct = {k: analysis_frame_of(f) for k, f in source.frames(180, 230)}
    for k, small in [*zip(range(180, 220), again), *zip(range(215, 230), later)]:
        assert np.array_equal(small, direct[k]), k
    end = source.frame_count
    frames(end - 3, end)                    # never past the end
    assert asked[-1] == (end - 53, end)


def test_analysis_frames_prefetch_decodes_looks_at_once(video_factory, monkeypatch):
    """prefetch() decodes several looks in threads, each as far as the look itself would, and the
    looks then decode nothing; a look that fails there is left to the look itself."""
    import threading
    import numpy as np
    from splice.api import AnalysisFrames
    from splice.errors import UserError
    from splice.indent import analysis_frame_of
    from splice.media import VideoSource
    source = VideoSource(str(video_factory()))
    asked, threads, lock = [], set(), threading.Lock()

    class Counting:
        rate, frame_count, width, height = source.rate, source.frame_count, source.width, source.height

        def frames(self, start, stop):
            with lock:
                asked.append((start, stop))
                threads.add(threading.current_thread().name)
            if start == end - 60:
                raise UserError("damaged")
            yield from source.frames(start, stop)
    end = source.frame_count
    frames = AnalysisFrames(Counting())
    frames.prefetch([(60, 70), (200, 210), (60, 70), (end - 10, end), (5, 5)], workers=3)
    assert sorted(asked) == [(10, 82), (150, 222), (end - 60, end)]    # the same reach as a look
    assert len(threads) >= 2 and threading.current_thread().name not in threads
    got = frames(200, 210) + frames(60, 70)
    assert len(asked) == 3                                            # all kept
    direct = {k: analysis_frame_of(f) for k, f in source.frames(60, 210)}
    for k, small in zip([*range(200, 210), *range(60, 70)], got):
        assert np.array_equal(small, direct[k]), k
    with pytest.raises(UserError, match="damaged"):
        frames(end - 10, end)
    # never more than half the cache at once: of three looks of 72 frames, room for two
    import splice.api
    from splice.indent import analysis_size
    w, h = analysis_size(source.width, source.height)
    monkeypatch.setattr(splice.api, "ANALYSIS_CACHE_BYTES", 2 * 150 * w * h)
    asked.clear()
    AnalysisFrames(Counting()).prefetch([(300, 310), (400, 410), (500, 510)], workers=3)
    assert sorted(asked) == [(250, 322), (350, 422)]


def test_sound_reader_gives_the_timeline_sound_and_stops_when_closed(video_factory):
    """SoundReader reads the same sound as timeline_audio; closed (the job failed first), its
    reading ends early instead of decoding the rest of the soundtrack."""
    import threading
    import numpy as np
    from splice.audio import timeline_audio
    from splice.media import VideoSource
    from splice.plan import Span
    from splice.render import SoundReader
    source = VideoSource(str(video_factory()))
    timeline = [Span(0, 0, 100), Span(100, 200, 150)]
    want = timeline_audio(source, timeline, source.rate)
    assert np.array_equal(SoundReader(source, timeline).result(), want)
    stop = threading.Event()
    stop.set()
    assert timeline_audio(source, timeline, source.rate, stop=stop) is None
    reader = SoundReader(source, timeline)
    reader.close()
    got = reader.result()
    assert got is None or np.array_equal(got, want)   # None unless it finished before the close


def test_sound_reader_starts_the_encoding_and_close_stops_it(video_factory):
    """With encode=True the reader hands over an AAC encoder already at work on exactly the
    timeline's sound (its packets cover every sample, on one 1024-sample grid); closed, the
    encoder's threads end."""
    import av
    import numpy as np
    from splice.audio import timeline_audio
    from splice.media import VideoSource
    from splice.plan import Span
    from splice.render import SoundReader
    source = VideoSource(str(video_factory()))
    timeline = [Span(0, 0, 100), Span(100, 200, 150)]
    want = timeline_audio(source, timeline, source.rate)
    encoder = SoundReader(source, timeline, encode=True).result()
    assert np.array_equal(encoder.samples, want)
    packets = []
    while (p := encoder.next_packet(block=True)) is not None:
        packets.append(p)
    assert encoder.error is None
    pts = [p.pts for p in packets]
    assert pts == list(range(pts[0], pts[0] + 1024 * len(pts), 1024))
    assert pts[0] <= 0 and pts[-1] + 1024 >= want.shape[1]
    decoder = av.CodecContext.create("aac", "r")
    decoder.extradata = encoder.extradata
    decoded = sum(f.samples for p in packets for f in decoder.decode(p))
    assert decoded == 1024 * len(packets)

    reader = SoundReader(source, timeline, encode=True)
    reader._thread.join()
    running = reader.encoder
    reader.close()
    assert reader.result() is None
    assert running is not None and not any(t.is_alive() for t in running.threads)
