"""Audio read by sample count: clean and in place for common codecs in common containers."""
from fractions import Fraction

import av
import numpy as np
import pytest

from splice.errors import UserError
from splice.media import AudioGap, AudioInfo, read_audio, _open
from synthetic import burst_onsets

SR = 48000
COMBOS = [("aac", "mp4"), ("aac", "mov"), ("aac", "mkv"), ("aac", "ts"),
          ("libmp3lame", "mp4"), ("libmp3lame", "mkv"), ("libmp3lame", "ts"),
          ("libopus", "webm"), ("libopus", "mkv"), ("libopus", "mp4"),
          ("ac3", "mp4"), ("ac3", "mkv"), ("ac3", "ts"),
          ("pcm_s16le", "mov"), ("pcm_s16le", "mkv")]
# Encoder delay the container cannot signal (TS has no edit list): the file itself plays this late.
UNSIGNALLED_DELAY = {("aac", "ts"): 1024 / SR, ("ac3", "ts"): 256 / SR, ("libmp3lame", "ts"): 1105 / SR}


def tone_with_clicks(seconds: float) -> np.ndarray:
    """A 440 Hz tone, with a 5 ms 3 kHz burst at every whole second to find where samples landed."""
    t = np.arange(int(seconds * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * 440 * t)
    burst = (t % 1.0) < 0.005
    audio[burst] = 0.8 * np.sin(2 * np.pi * 3000 * t[burst])
    return np.stack([audio, audio]).astype(np.float32)


def write_audio_file(path, codec, sound, pts_gap_at=None, gap_seconds=0.0):
    """Encode `sound`; with pts_gap_at, every frame from that sample on is stamped gap_seconds later."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=SR, layout="stereo")
        fmt = s.codec_context.codec.audio_formats[0].name
        step = s.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=fmt, layout="stereo", rate=SR)
        shift = round(gap_seconds * SR)
        for start in range(0, sound.shape[1], step):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start:start + step]),
                                           format="fltp", layout="stereo")
            f.sample_rate, f.time_base = SR, Fraction(1, SR)
            f.pts = start + (shift if pts_gap_at is not None and start >= pts_gap_at else 0)
            for g in resampler.resample(f):
                for p in s.encode(g):
                    c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def remux_with_sound(video, path, codec, sound, rate):
    """`video`'s pictures copied into `path`, with `sound` (float32 (2, n) at `rate`) as `codec`."""
    with av.open(str(video)) as c, av.open(str(path), "w") as out:
        v = out.add_stream_from_template(c.streams.video[0])
        a = out.add_stream(codec, rate=rate, layout="stereo")      # every stream before the first packet
        for packet in c.demux(c.streams.video[0]):
            if packet.dts is not None:
                packet.stream = v
                out.mux(packet)
        resampler = av.AudioResampler(format=a.codec_context.codec.audio_formats[0].name, layout="stereo", rate=rate)
        step = a.codec_context.frame_size or 1024
        for start in range(0, sound.shape[1], step):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start:start + step]), format="fltp",
                                           layout="stereo")
            f.sample_rate, f.pts = rate, start
            for g in resampler.resample(f):
                for p in a.encode(g):
                    out.mux(p)
        for p in a.encode():
            out.mux(p)
    return path


def info_of(path):
    c = _open(str(path))
    try:
        return AudioInfo.of(c)
    finally:
        c.close()


def away_from_bursts(x: np.ndarray, start: float, margin: float = 0.03, delay: float = 0.0) -> np.ndarray:
    t = start - delay + np.arange(x.shape[-1]) / SR
    return (np.abs(t - np.round(t)) > margin)


@pytest.mark.parametrize("codec,ext", COMBOS, ids=[f"{c}-{e}" for c, e in COMBOS])
def test_clean_and_in_place(tmp_path, codec, ext):
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = write_audio_file(tmp_path / f"tone.{ext}", codec, tone_with_clicks(6))
    info = info_of(path)
    start = Fraction(3, 2)
    delay = UNSIGNALLED_DELAY.get((codec, ext), 0.0)
    whole = read_audio(str(path), info, start, 3 * SR)
    # No discontinuity: a 440 Hz tone's largest second difference is about 0.001 (0.3 in MKV
    # when frames were placed by their rounded timestamps).
    second = np.abs(np.diff(whole[0], 2))[away_from_bursts(whole[0], float(start), delay=delay)[2:]]
    assert second.max() < 0.01, second.max()
    # Reads seeking to different places agree to the sample (a one-sample shift of the tone
    # differs by 0.017; the decoders' noise generators may differ a little on the bursts).
    halves = np.concatenate([read_audio(str(path), info, start, 3 * SR // 2),
                             read_audio(str(path), info, start + Fraction(3, 2), 3 * SR // 2)], axis=1)
    assert np.abs(halves - whole)[:, away_from_bursts(whole, float(start), delay=delay)].max() < 2e-3
    # And the samples are where the source put them.
    onsets = [start + Fraction(round(t * SR), SR) for t in burst_onsets(whole)]
    assert [round(float(t) - delay, 3) for t in onsets] == pytest.approx([2.0, 3.0, 4.0], abs=0.0015)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_real_gap_stays_silent_and_is_reported(tmp_path, ext):
    sound = tone_with_clicks(6)
    # From 2.5 s on the recording resumes 0.2 s later on the clock: a gap, not a rounding.
    path = write_audio_file(tmp_path / f"gap.{ext}", "aac", sound, pts_gap_at=round(2.5 * SR / 1024) * 1024,
                            gap_seconds=0.2)
    info = info_of(path)
    gaps: list[AudioGap] = []
    out = read_audio(str(path), info, Fraction(3, 2), 3 * SR, gaps)
    assert len(gaps) == 1 and gaps[0].seconds == pytest.approx(0.2, abs=0.002)
    assert gaps[0].at == pytest.approx(round(2.5 * SR / 1024) * 1024 / SR, abs=0.002)
    onsets = [1.5 + t for t in burst_onsets(out)]
    assert onsets == pytest.approx([2.0, 3.2, 4.2], abs=0.0015)
    silent = out[:, round((gaps[0].at + 0.03 - 1.5) * SR):round((gaps[0].at + 0.17 - 1.5) * SR)]
    assert np.abs(silent).max() < 0.02


def test_mpeg_program_stream_read_after_a_seek(tmp_path):
    """A seek into an MPEG program stream lands mid-frame: the packet the MP2 decoder then rejects
    is passed over, and a read from the middle agrees with a read from the start."""
    path = write_audio_file(tmp_path / "a.mpg", "mp2", tone_with_clicks(6))
    info = info_of(path)
    whole = read_audio(str(path), info, Fraction(0), 6 * SR)
    part = read_audio(str(path), info, Fraction(3), 2 * SR)
    assert np.abs(part - whole[:, 3 * SR:5 * SR]).max() < 2e-3
    # The program stream's clock starts late (the muxer's preload): every burst is that far on.
    offset = burst_onsets(whole)[0]
    assert [t - offset for t in burst_onsets(whole)] == pytest.approx([0, 1, 2, 3, 4, 5], abs=0.0015)


def zero_packets(src, dst, first: int, count: int):
    """`src` remuxed into `dst` with audio packets first .. first+count-1 replaced by zeros; the
    seconds at which the first of them starts."""
    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        a = out.add_stream_from_template(c.streams.audio[0])
        for k, packet in enumerate(p for p in c.demux(c.streams.audio[0]) if p.size):
            if first <= k < first + count:
                blank = av.Packet(bytes(packet.size))
                blank.pts, blank.dts, blank.duration, blank.time_base = (packet.pts, packet.dts, packet.duration,
                                                                         packet.time_base)
                packet = blank
                if k == first:
                    at = float(packet.pts * packet.time_base)
            packet.stream = a
            out.mux(packet)
    return at


def test_a_damaged_packet_is_silence_and_reported(tmp_path):
    clean = write_audio_file(tmp_path / "clean.mp4", "aac", tone_with_clicks(6))
    path = tmp_path / "scratched.mp4"
    lost = zero_packets(clean, path, 100, 1)   # about 2.1 s in
    info = info_of(path)
    gaps: list[AudioGap] = []
    out = read_audio(str(path), info, Fraction(1), 4 * SR, gaps)
    assert len(gaps) == 1 and gaps[0].damaged, gaps
    assert gaps[0].at == pytest.approx(lost, abs=1 / SR)
    assert gaps[0].seconds == pytest.approx(1024 / SR, abs=1 / SR)
    at = round((gaps[0].at - 1) * SR)
    assert np.abs(out[:, at:at + 1024]).max() == 0
    # Everything else is where it was: the bursts, and the samples of the clean file.
    assert [1 + t for t in burst_onsets(out)] == pytest.approx([1, 2, 3, 4], abs=0.0015)
    reference = read_audio(str(clean), info_of(clean), Fraction(1), 4 * SR)
    keep = np.ones(4 * SR, bool)
    keep[at - 2048:at + 3072] = False                 # AAC's overlap spreads a lost frame to its neighbours
    assert np.abs(out - reference)[:, keep].max() < 1e-6


def test_a_long_run_of_damaged_packets_is_an_error(tmp_path):
    clean = write_audio_file(tmp_path / "clean.mp4", "aac", tone_with_clicks(6))
    path = tmp_path / "ruined.mp4"
    zero_packets(clean, path, 100, 60)
    with pytest.raises(UserError, match=r"^The audio of .*ruined.mp4 is damaged .*--no-audio$"):
        read_audio(str(path), info_of(path), Fraction(1), 4 * SR)


def test_audio_stream_choice(tmp_path):
    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as c:
        streams = [(c.add_stream("aac", rate=rate, layout=layout), rate, layout, channels)
                   for rate, layout, channels in ((SR, "stereo", 2), (44100, "mono", 1))]
        for s, rate, layout, channels in streams:
            for k in range(10):
                f = av.AudioFrame.from_ndarray(np.zeros((channels, 1024), np.float32), format="fltp", layout=layout)
                f.sample_rate, f.pts = rate, k * 1024
                for p in s.encode(f):
                    c.mux(p)
        for s, *_ in streams:
            for p in s.encode():
                c.mux(p)
    c = _open(str(path))
    try:
        first, second = AudioInfo.of(c), AudioInfo.of(c, 1)
        assert (first.position, first.ignored, first.sample_rate) == (0, 1, SR)
        assert (second.position, second.ignored, second.sample_rate, second.channels) == (1, 1, 44100, 1)
        with pytest.raises(Exception, match="--audio-stream 2: the input has audio streams 0..1"):
            AudioInfo.of(c, 2)
    finally:
        c.close()


def test_mkv_input_through_the_command_line(video_factory, run_cli, tmp_path):
    """The splice of an MKV input with AAC sound: each span's sound as clean as the source's."""
    from synthetic import decode_audio
    mp4 = video_factory(frames=425, audio=False)
    t = np.arange(18 * SR) / SR
    tone = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    src = remux_with_sound(mp4, tmp_path / "in.mkv", "aac", tone, SR)
    out = tmp_path / "o.mp4"
    r = run_cli("--input", src, "--output", out, "--model", "flow", "--preset", "ultrafast",
                "--time-indent", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    audio, sr = decode_audio(out)
    second = np.abs(np.diff(audio[0], 2))
    t = np.arange(second.size) / sr
    # Away from the clip's ends and the bridge's crossfade (5.0-5.2 s), where the sound is cut.
    steady = ((t > 0.1) & (t < 4.9)) | ((t > 5.3) & (t < 14.9))
    assert second[steady].max() < 0.01, second[steady].max()


def encode_sound(path, sound, min_piece_seconds):
    from splice.media import AUDIO_BIT_RATE, SoundEncoder
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=SR, layout="stereo")
        stream.bit_rate = AUDIO_BIT_RATE
        c.start_encoding()
        encoder = SoundEncoder(sound, SR, "stereo", workers=4, min_piece_seconds=min_piece_seconds)
        assert encoder.extradata == stream.codec_context.extradata
        while (packet := encoder.next_packet(block=True)) is not None:
            packet.stream = stream
            c.mux(packet)
        assert encoder.error is None
    return len(encoder.pieces)


def test_long_sound_is_encoded_in_pieces_that_join_cleanly(tmp_path):
    """Sound is encoded in pieces, in parallel; the pieces join into one stream on one encoder's
    frame grid, and around each join the decoded sound is as faithful as anywhere else."""
    seconds, piece = 25, 8.0   # three pieces of 8.3 s
    rng = np.random.default_rng(7)
    t = np.arange(seconds * SR) / SR
    # Speech-like: a gliding tone under a syllable-rate envelope, with some noise.
    voice = np.sin(2 * np.pi * (200 + 80 * np.sin(2 * np.pi * 0.3 * t)) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    sound = np.stack([0.3 * voice, 0.25 * voice]) + 0.01 * rng.standard_normal((2, t.size))
    sound = sound.astype(np.float32)
    whole = encode_sound(tmp_path / "whole.mp4", sound, min_piece_seconds=3600)
    pieces = encode_sound(tmp_path / "pieces.mp4", sound, min_piece_seconds=piece)
    assert (whole, pieces) == (1, 3)
    stamps = {}
    for name in ("whole", "pieces"):
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            stamps[name] = [p.pts for p in c.demux(c.streams.audio[0]) if p.size]
    # One frame grid, no gaps or overlaps: the same packets' times as a single encoder's.
    assert stamps["pieces"] == stamps["whole"]
    assert np.all(np.diff(stamps["pieces"]) == 1024)

    def decoded(name):
        path = tmp_path / f"{name}.mp4"
        return read_audio(str(path), info_of(path), Fraction(0), sound.shape[1])

    def snr(x, ref):
        return 10 * np.log10((ref ** 2).mean() / ((x - ref) ** 2).mean())
    one, cut = decoded("whole"), decoded("pieces")
    assert snr(cut, sound) > snr(one, sound) - 1.0
    frames = -(-sound.shape[1] // 1024)
    for join in (round(frames * k / 3) * 1024 for k in (1, 2)):
        w = slice(join - SR // 2, join + SR // 2)
        assert snr(cut[:, w], sound[:, w]) > min(25.0, snr(one[:, w], sound[:, w]) - 3.0), join / SR


def test_output_sound_format_keeps_what_aac_takes():
    from splice.media import output_sound_format
    assert output_sound_format(48000, "stereo") == (48000, "stereo")
    assert output_sound_format(44100, "mono") == (44100, "mono")
    assert output_sound_format(192000, "stereo") == (96000, "stereo")
    assert output_sound_format(50000, "stereo") == (64000, "stereo")
    assert output_sound_format(6000, "mono") == (7350, "mono")


def test_sound_at_a_rate_aac_cannot_carry_is_resampled_in_place(video_factory, run_cli, tmp_path):
    """192 kHz PCM (as some recorders write): the output's AAC is at 96 kHz, as long as the
    picture, and each second's click of the source is where the timeline puts it."""
    from synthetic import decode_audio
    rate = 192000
    mp4 = video_factory(frames=450, audio=False)   # 18 s at 25 fps
    t = np.arange(18 * rate) / rate
    sound = 0.3 * np.sin(2 * np.pi * 440 * t)
    burst = (t % 1.0) < 0.005
    sound[burst] = 0.8 * np.sin(2 * np.pi * 3000 * t[burst])
    src = remux_with_sound(mp4, tmp_path / "in.mov", "pcm_s16le", np.stack([sound, sound]).astype(np.float32), rate)
    out = tmp_path / "o.mp4"
    r = run_cli("--input", src, "--output", out, "--model", "flow", "--preset", "ultrafast",
                "--frame-a", "175", "--frame-b", "325", "--time-indent", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    audio, sr = decode_audio(out)
    assert sr == 96000
    assert abs(audio.shape[1] / sr - 15.0) <= 2048 / sr   # AAC priming and padding
    # 0-5 s shows the source's 2-7 s, 10-15 s its 13-18 s: clicks at whole output seconds.
    onsets = [x for x in burst_onsets(audio, sr) if 0.5 < x < 4.9 or 10.1 < x < 14.9]
    assert onsets == pytest.approx([1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0], abs=0.0015)
