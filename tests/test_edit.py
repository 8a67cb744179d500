"""Edits: every junction of a cut list smoothed, on synthetic videos whose frames carry their index."""
import json
from fractions import Fraction

import numpy as np
import pytest

from splice.plan import Bridge, Span
from splice.verify import timeline_of, verify
from synthetic import BURST_SECONDS, burst_onsets, decode_audio, decode_codes

FAST = ["--model", "flow", "--preset", "ultrafast", "--quiet"]


def check_against_timeline(out, report, rate, kept_frames, roll_frames=0):
    """The decoded output is the report's timeline frame by frame; its length is the kept frames';
    every bridge sits at its junction (within the roll); returns the timeline."""
    timeline = timeline_of(report)
    codes = decode_codes(out)
    assert len(codes) == report["output_frames"] == kept_frames == sum(e.count for e in timeline)
    for e in timeline:
        if isinstance(e, Span):
            want = list(range(e.src, e.src + e.count))
            assert codes[e.out:e.out + e.count] == want, f"span at output {e.out}"
    ranges = report["ranges"]
    bridges = [e for e in timeline if isinstance(e, Bridge)]
    assert len(bridges) == len(report["junctions"]) == len(ranges) - 1
    boundary = 0
    for k, (bridge, j) in enumerate(zip(bridges, report["junctions"])):
        boundary += ranges[k][1] - ranges[k][0]        # where the cut falls in the output, unrolled
        assert abs(j["roll_frames"]) <= roll_frames
        assert bridge.out == boundary + j["roll_frames"] - j["before"]
        assert bridge.out <= boundary + j["roll_frames"] <= bridge.out + bridge.count
        assert bridge.left == ranges[k][1] + j["roll_frames"] - j["before"] - 1
        assert bridge.right == ranges[k + 1][0] + j["roll_frames"] + bridge.count - j["before"]
        assert codes[bridge.out - 1] == bridge.left and codes[bridge.out + bridge.count] == bridge.right
    return timeline


def expected_bursts(timeline, rate, end_seconds):
    """Output times of the source's whole-second bursts, from the timeline; and the output windows
    under the bridges (crossfades: a burst there is faded, so it is left out of the count)."""
    r = Fraction(rate)
    expected, bridges = [], []
    for e in timeline:
        if isinstance(e, Span):
            lo, hi = Fraction(e.src) / r, Fraction(e.src + e.count) / r
            for s in range(int(lo), int(hi) + 1):
                if lo <= s and s + BURST_SECONDS < hi:
                    expected.append(float(Fraction(e.out) / r + s - lo))
        else:
            bridges.append((float(Fraction(e.out) / r), float(Fraction(e.out + e.count) / r)))
    return expected, bridges


def check_sound(out, timeline, rate):
    audio, sr = decode_audio(out)
    total = timeline[-1].out + timeline[-1].count
    assert abs(audio.shape[1] / sr - total / float(rate)) <= 1 / float(rate)
    expected, bridges = expected_bursts(timeline, rate, total / float(rate))
    near_bridge = lambda t: any(a - 0.05 <= t <= b + 0.05 for a, b in bridges)
    edge = lambda t: t < 0.03 or t > total / float(rate) - 0.03      # the output's 5-ms fades
    found = [t for t in burst_onsets(audio, sr) if not near_bridge(t) and not edge(t)]
    expected = [t for t in expected if not near_bridge(t) and not edge(t)]
    assert len(found) == len(expected), (found, expected)
    assert np.allclose(found, expected, atol=0.003), (found, expected)


@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30), Fraction(30000, 1001)])
def test_two_junctions_with_a_jump_back(video_factory, run_cli, tmp_path, rate):
    src = video_factory(rate=rate, frames=int(16 * rate))
    out = tmp_path / "edit.mp4"
    # indices and times mixed; the third range jumps back before the second
    keeps = ["20-4s", "9.5s-12s", f"{int(5 * rate)}-{int(7 * rate)}"]
    args = ["--input", src, "--output", out, *[a for k in keeps for a in ("--keep", k)], *FAST]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    rep = r.report
    four, nine5, twelve = (int(Fraction(x) * rate) for x in ("4", "9.5", "12"))
    assert rep["kind"] == "edit"
    assert rep["ranges"] == [[20, four], [nine5 if rate != Fraction(30000, 1001) else rep["ranges"][1][0], twelve
                                          if rate != Fraction(30000, 1001) else rep["ranges"][1][1]],
                             [int(5 * rate), int(7 * rate)]]
    kept = sum(e - s for s, e in rep["ranges"])
    timeline = check_against_timeline(out, rep, rate, kept)
    check_sound(out, timeline, rate)
    assert verify(str(out), rep).ok


def test_one_junction_is_the_easiest_pair_and_times_name_frames_on_screen(video_factory, run_cli, tmp_path):
    src = video_factory()                                  # 25 fps, 17 s
    out = tmp_path / "e.mp4"
    r = run_cli("--input", src, "--output", out, "--keep=-6s", "--keep", "10s-", "--interp-frames", 3, *FAST)
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert rep["ranges"] == [[0, 150], [250, 425]]         # empty ends: the video's start and end
    [j] = rep["junctions"]
    assert j["m"] == 3 and 0 <= j["before"] <= 3 and j["roll_frames"] == 0 and j["score"] is not None
    check_against_timeline(out, rep, Fraction(25), 150 + 175)


def test_five_junctions_and_a_roll(video_factory, run_cli, tmp_path):
    src = video_factory(frames=600, audio=True)              # 25 fps, 24 s
    out = tmp_path / "e5.mp4"
    keeps = ["0-60", "100-170", "200-260", "300-380", "420-500", "520-600"]
    r = run_cli("--input", src, "--output", out, *[a for k in keeps for a in ("--keep", k)],
                "--roll", "0.4", *FAST)
    assert r.returncode == 0, r.stderr
    rep = r.report
    assert len(rep["junctions"]) == 5 and rep["roll_allowed_seconds"] == 0.4
    timeline = check_against_timeline(out, rep, Fraction(25), 60 + 70 + 60 + 80 + 80 + 80, roll_frames=10)
    # the rolled ranges keep the total and move both sides of a junction together
    for k, j in enumerate(rep["junctions"]):
        assert rep["ranges_rolled"][k][1] == rep["ranges"][k][1] + j["roll_frames"]
        assert rep["ranges_rolled"][k + 1][0] == rep["ranges"][k + 1][0] + j["roll_frames"]
    check_sound(out, timeline, Fraction(25))


def test_contiguous_ranges_are_one_range(video_factory, run_cli, tmp_path):
    out = tmp_path / "e.mp4"
    r = run_cli("--input", video_factory(), "--output", out, "--keep", "0-4s", "--keep", "4s-8s",
                "--keep", "12s-14s", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.report["ranges"] == [[0, 200], [300, 350]] and len(r.report["junctions"]) == 1


def _otio_timeline(ranges, rate):
    import opentimelineio as otio
    tl = otio.schema.Timeline(name="cuts")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    tl.tracks.append(track)
    for s, e in ranges:
        track.append(otio.schema.Clip(
            name=f"c{s}", media_reference=otio.schema.ExternalReference(target_url="file:///source.mp4"),
            source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(s, rate),
                                                 otio.opentime.RationalTime(e - s, rate))))
    return tl


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize("kind", ["edl", "otio", "txt"])
def test_cut_list_files_give_the_same_edit_as_keep(video_factory, run_cli, tmp_path, kind, windows):
    """Also as Windows editors save them (windows=True): a UTF-8 byte-order mark and CRLF line ends."""
    import opentimelineio as otio
    src = video_factory()
    ranges = [(10, 120), (180, 300), (330, 400)]
    path = tmp_path / f"cuts.{kind}"
    if kind == "txt":
        path.write_text("# kept ranges\n10 120\n\n180 12s\n330 400  # the last one\n")
    else:
        otio.adapters.write_to_file(_otio_timeline(ranges, 25), str(path),
                                    **({"adapter_name": "cmx_3600", "rate": 25} if kind == "edl" else {}))
    if windows:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    a = run_cli("--input", src, "--output", tmp_path / "a.mp4", "--edit", path, *FAST)
    assert a.returncode == 0, a.stderr
    keep_args = [x for s, e in ranges for x in ("--keep", f"{s}-{e}")]
    b = run_cli("--input", src, "--output", tmp_path / "b.mp4", *keep_args, *FAST)
    assert b.returncode == 0, b.stderr
    assert a.report["ranges"] == [list(r) for r in ranges]
    assert a.report["timeline"] == b.report["timeline"]
    assert decode_codes(tmp_path / "a.mp4") == decode_codes(tmp_path / "b.mp4")


def test_the_splice_report_has_its_timeline(video_factory, run_cli, tmp_path):
    r = run_cli("--input", video_factory(), "--output", tmp_path / "s.mp4", "--frame-a", 131, "--frame-b", 290,
                "--time-indent", "0.4", "--interp-frames", 3, *FAST)
    assert r.returncode == 0, r.stderr
    assert r.report["kind"] == "splice"
    assert r.report["timeline"] == [{"out": 0, "src": 6, "count": 136},
                                    {"out": 136, "generated": 3, "left": 141, "right": 179},
                                    {"out": 139, "src": 179, "count": 236}]


# --- bad cut lists: one line, exit 2, no output -------------------------------------------------

@pytest.mark.parametrize("keeps,phrase", [
    (["0-100", "50-150"], "overlaps the range before it"),
    (["0-100", "200-900"], "past the end of the video"),
    (["0-100", "30s-31s"], "past the end of the video"),
    (["0-100", "soon-200"], "is not a frame index (250) or a time"),
    (["0-100", "200"], "is not START-END"),
    (["100-50"], "is empty: its end must come after its start"),
    (["200-201", "300-301"], "too short to hold a bridge of 3 frames"),
])
def test_bad_keep_ranges(video_factory, run_cli, tmp_path, keeps, phrase):
    from test_errors import assert_refused
    out = tmp_path / "o.mp4"
    r = run_cli("--input", video_factory(), "--output", out, *[a for k in keeps for a in ("--keep", k)],
                "--interp-frames", 3, *FAST)
    assert_refused(r, out, phrase)


@pytest.mark.parametrize("content,phrase", [
    ("", "holds no ranges"),
    ("# nothing\n\n", "holds no ranges"),
    ("10 20 30\n", "line 1: '10 20 30' is not 'START END'"),
    ("0 100\n50 150\n", "overlaps"),
])
def test_bad_cut_list_files(video_factory, run_cli, tmp_path, content, phrase):
    from test_errors import assert_refused
    cuts = tmp_path / "cuts.txt"
    cuts.write_text(content)
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", video_factory(), "--output", out, "--edit", cuts, *FAST), out, phrase)


def test_a_cut_list_in_utf16_says_to_save_it_as_utf8(video_factory, run_cli, tmp_path):
    """Windows PowerShell's `>` writes UTF-16."""
    from test_errors import assert_refused
    cuts = tmp_path / "cuts.txt"
    cuts.write_bytes("0 100\r\n150 300\r\n".encode("utf-16"))
    out = tmp_path / "o.mp4"
    assert_refused(run_cli("--input", video_factory(), "--output", out, "--edit", cuts, *FAST), out,
                   "cuts.txt is not UTF-8 text; save it as UTF-8")


def test_bad_timeline_files(video_factory, run_cli, tmp_path):
    from test_errors import assert_refused
    out = tmp_path / "o.mp4"
    edl = tmp_path / "bad.edl"
    edl.write_text("TITLE: x\n001  AX V C 00:00:00:00 garbage\n")
    assert_refused(run_cli("--input", video_factory(), "--output", out, "--edit", edl, *FAST), out, "cannot read")
    assert_refused(run_cli("--input", video_factory(), "--output", out, "--edit", tmp_path / "gone.otio", *FAST),
                   out, "cut list not found")
    assert_refused(run_cli("--input", video_factory(), "--output", out, "--keep", "0-100", "--frame-a", "10", *FAST),
                   out, "give one or the other")
