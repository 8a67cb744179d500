"""Write a timeline with the source's own compressed packets wherever the footage is unchanged.

An output span that shows consecutive source frames is copied, packet for packet, from the first
point in it where a copied run can begin (an IDR picture that nothing before it in decode order
is shown after, and nothing after it is shown before) to the last point where every packet decoded
so far has been shown (so no B-frame of the run refers past its end). Only the frames before that
start, after that end, and the generated frames are encoded, by libx264 with the source's profile
and level, each stretch a closed piece of its own that begins with an IDR picture. The output's
parameter sets are the source's and the encoder's side by side, under different ids, all in the
sample description (avc1) and in band before every IDR, so every decoder plays the joins.

Every packet gets new timestamps on the output's constant-rate clock: output frame k is shown at
k / r; decode times run one frame apart in decode order, delayed by the largest reordering any
piece needs, so they rise across every join and never pass a presentation time.
"""
from __future__ import annotations

import bisect
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import av
import av.bitstream
import numpy as np

from .errors import UserError
from .media import ClipWriter, SoundEncoder, VideoSource, _open, usable_cores
from .nal import NAL_IDR, NAL_PPS, NAL_SPS, annexb_units, length_size, nal_types, read_ue, unescape
from .plan import Bridge, Span

COPY_MODES = ("auto", "on", "off")
# The source pixel formats whose pictures an output of each format can copy.
COPYABLE_PIXEL_FORMATS = {"yuv420p": ("yuv420p", "yuvj420p"), "yuv420p10le": ("yuv420p10le",)}
X264_PROFILES = {"Baseline": "baseline", "Constrained Baseline": "baseline", "Main": "main",
                 "High": "high", "High 10": "high10"}
ENCODER_REORDER = 2   # libx264 never signals more than 2 reordered frames (B-pyramid)
MAX_SPS_ID = 31


@dataclass
class AvcConfig:
    """The parts of the source's H.264 configuration that copying needs: from an MP4 `avcC`
    record, or from the Annex B parameter sets that MPEG-TS and other stream formats carry
    (length_size 0: the packets are Annex B themselves)."""
    profile_idc: int
    level_idc: int
    length_size: int
    sps: list[bytes]
    pps: list[bytes]

    @staticmethod
    def parse(extradata: bytes | None) -> "AvcConfig | None":
        if extradata and length_size(extradata) == 0:
            return AvcConfig.parse_annexb(extradata)
        if not extradata or len(extradata) < 7 or extradata[0] != 1:
            return None
        try:
            pos, sps, pps = 6, [], []
            for count, out in ((extradata[5] & 31, sps), (None, pps)):
                if count is None:
                    count, pos = extradata[pos], pos + 1
                for _ in range(count):
                    size = int.from_bytes(extradata[pos:pos + 2], "big")
                    out.append(bytes(extradata[pos + 2:pos + 2 + size]))
                    pos += 2 + size
            return AvcConfig(extradata[1], extradata[3], (extradata[4] & 3) + 1, sps, pps)
        except IndexError:
            return None

    @staticmethod
    def parse_annexb(data: bytes) -> "AvcConfig | None":
        units = annexb_units(data)
        sps = [u for u in units if u[0] & 31 == NAL_SPS and len(u) >= 4]
        pps = [u for u in units if u[0] & 31 == NAL_PPS and len(u) >= 2]
        if not sps or not pps:
            return None
        return AvcConfig(sps[0][1], sps[0][3], 0, sps, pps)

    def ids(self) -> tuple[set[int], set[int]]:
        """The ids the parameter sets use (SPS ids, PPS ids)."""
        sps_ids = {read_ue(unescape(s[1:]), 24)[0] for s in self.sps}
        pps_ids = {read_ue(unescape(p[1:]), 0)[0] for p in self.pps}
        return sps_ids, pps_ids

    def annexb(self) -> bytes:
        return b"".join(b"\x00\x00\x00\x01" + nal for nal in self.sps + self.pps)


# --- where copied runs may start and end ------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """Source frames first .. stop-1, copied as the packets at decode positions p0 .. p1-1."""
    first: int
    stop: int
    p0: int
    p1: int
    reorder: int   # the most frames any of its packets is decoded ahead of being shown


class PacketIndex:
    """The source's video packets in decode order (demuxed, nothing decoded), and the points
    where a copied run can start and end.

    Packets are ranked by the source frame they show (an edit list's cut-away frames rank before
    or after all of them). Between decode positions j-1 and j the stream can be cut when every
    packet before j ranks below every packet from j on; a run may start at such a cut when the
    packet there is an IDR picture (open-GOP recovery points are not: their leading pictures
    refer to the group before), and end at any later cut."""

    def __init__(self, source: VideoSource):
        self.path = source.path
        container = _open(source.path)
        try:
            stream = container.streams[source.stream_index]
            self.config = AvcConfig.parse(stream.codec_context.extradata)
            length = self.config.length_size if self.config else 4
            ranks, idr, self.dts, self.pts = [], [], [], []
            self.timed = True
            first = source.index.pts[0]
            count = source.frame_count
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                self.timed = self.timed and packet.pts is not None
                k = None if packet.is_discard else source.index.position(t)
                ranks.append(k if k is not None else (-1 if t < first else count) if t is not None else -1)
                idr.append(packet.is_keyframe and NAL_IDR in nal_types(bytes(packet), length))
                self.dts.append(packet.dts)
                self.pts.append(packet.pts)
        finally:
            container.close()
        self.ranks = ranks
        n = len(ranks)
        before = [-2] * (n + 1)         # highest rank before each decode position
        for j in range(n):
            before[j + 1] = max(before[j], ranks[j])
        after = [count + 1] * (n + 1)   # lowest rank from each decode position on
        for j in range(n - 1, -1, -1):
            after[j] = min(after[j + 1], ranks[j])
        # A run's packets show frames rank[p0] .. before[p1]: contiguous, nothing discarded.
        self.start_pos = {ranks[j]: j for j in range(n)
                          if idr[j] and 0 <= ranks[j] == after[j] and before[j] < ranks[j]}
        self.end_pos = {before[j] + 1: j for j in range(1, n + 1)
                        if before[j] < after[j] and 0 <= before[j] < count}
        self.starts, self.ends = sorted(self.start_pos), sorted(self.end_pos)
        self.delay = [j - ranks[j] for j in range(n)]   # decode position minus frame shown

    def run_within(self, first: int, stop: int) -> Run | None:
        """The longest copyable run inside source frames first .. stop-1, or None."""
        s = bisect.bisect_left(self.starts, first)
        e = bisect.bisect_right(self.ends, stop) - 1
        if s == len(self.starts) or e < 0 or self.ends[e] <= self.starts[s]:
            return None
        start, end = self.starts[s], self.ends[e]
        p0, p1 = self.start_pos[start], self.end_pos[end]
        offset = p0 - start
        reorder = max(self.delay[p] - offset for p in range(p0, p1))
        return Run(start, end, p0, p1, reorder)

    def next_start(self, frame: int) -> int | None:
        s = bisect.bisect_left(self.starts, frame)
        return self.starts[s] if s < len(self.starts) else None


# --- whether the source can be copied at all --------------------------------------------------

def copy_blocker(source: VideoSource, index: PacketIndex | None, pix_fmt: str = "yuv420p") -> str | None:
    """Why no frame of this source can be copied into an H.264 output of its own size in `pix_fmt`,
    or None."""
    if source.codec != "h264":
        return f"the source's video is {source.codec}, not H.264"
    if source.variable_rate:
        return "the source has a variable frame rate, which the output makes constant"
    if source.decode_order:
        return "the source's container keeps no presentation times (AVI with B-frames)"
    if source.width % 2 or source.height % 2:
        return f"the source's size {source.width}x{source.height} is odd and gets padded"
    container = _open(source.path)
    try:
        ctx = container.streams[source.stream_index].codec_context
        src_fmt, profile = ctx.pix_fmt, ctx.profile
    finally:
        container.close()
    if src_fmt not in COPYABLE_PIXEL_FORMATS.get(pix_fmt, ()):
        return f"the source's pixel format {src_fmt} is not the output's {pix_fmt}"
    if profile not in X264_PROFILES:
        return f"the source's H.264 profile {profile} cannot be matched by the encoder"
    if index is None or index.config is None or not index.config.sps:
        return "the source's H.264 parameter sets (SPS and PPS) are not in its header"
    if not index.timed:
        return "the source's packets do not all carry presentation times"
    try:
        sps_ids, pps_ids = index.config.ids()
    except IndexError:
        return "the source's parameter sets cannot be read"
    if max(sps_ids | pps_ids) >= MAX_SPS_ID:
        return "the source's parameter sets use every id the encoder could take"
    if not index.starts:
        return "the source has no IDR picture to start a copy at"
    return None


# --- planning: which output frames are copied ------------------------------------------------

@dataclass
class _Encode:
    """Output frames out .. out+count-1, encoded: source frames (src given) or a Bridge's."""
    out: int
    count: int
    src: int | None = None
    bridge: Bridge | None = None


@dataclass
class _Copy:
    out: int
    run: Run

    @property
    def count(self) -> int:
        return self.run.stop - self.run.first


def _span_plan(span: Span, index: PacketIndex) -> tuple[list, dict]:
    """The pieces of one span and its report entry."""
    info = {"out": span.out, "src": span.src, "count": span.count}
    last = span.src + span.count
    run = index.run_within(span.src, last)
    if run is None:
        nxt = index.next_start(span.src)
        why = (f"no IDR picture in source frames {span.src}..{last - 1} to start a copy at"
               if nxt is None or nxt >= last else
               f"source frames {span.src}..{last - 1} hold no whole decodable run from the IDR at {nxt}")
        return [_Encode(span.out, span.count, span.src)], {**info, "copied": 0, "encoded": span.count, "why": why}
    pieces, notes = [], []
    head = run.first - span.src
    if head:
        pieces.append(_Encode(span.out, head, span.src))
        notes.append(f"{head} before the first IDR in the span (source {run.first})")
    pieces.append(_Copy(span.out + head, run))
    tail = last - run.stop
    if tail:
        pieces.append(_Encode(span.out + head + run.stop - run.first, tail, run.stop))
        notes.append(f"{tail} after the last clean cut (source {run.stop})")
    copied = run.stop - run.first
    return pieces, {**info, "copied": copied, "encoded": span.count - copied,
                    "copied_src": [run.first, run.stop],
                    "why": ("encoded " + " and ".join(notes)) if notes else None}


def plan_copy(source: VideoSource, timeline: Sequence, mode: str, index: PacketIndex | None = None,
              pix_fmt: str = "yuv420p") -> tuple[list, list[dict], str | None]:
    """The pieces to write, the per-entry report, and why nothing is copied (None if something is)."""
    if mode not in COPY_MODES:
        raise UserError(f"--copy-unchanged {mode!r} is not one of {', '.join(COPY_MODES)}")

    def all_encoded(why):
        pieces = [_Encode(e.out, e.count, src=e.src) if isinstance(e, Span) else _Encode(e.out, e.count, bridge=e)
                  for e in timeline]
        return pieces, [{**e.as_json(), "copied": 0, "encoded": e.count,
                         "why": why if isinstance(e, Span) else "generated"} for e in timeline], why
    if mode == "off":
        return all_encoded("copying is off")
    if index is None and source.codec == "h264":
        index = PacketIndex(source)
    why = copy_blocker(source, index, pix_fmt)
    if why is not None:
        if mode == "on":
            raise UserError(f"Cannot copy the unchanged footage: {why}; use --copy-unchanged auto or off")
        return all_encoded(why)
    pieces, report = [], []
    for entry in timeline:
        if isinstance(entry, Span):
            p, info = _span_plan(entry, index)
            if mode == "on" and not info["copied"]:
                raise UserError(f"Cannot copy output frames {entry.out}..{entry.out + entry.count - 1}: "
                                f"{info['why']}; use --copy-unchanged auto or off")
            pieces += p
            report.append(info)
        else:
            pieces.append(_Encode(entry.out, entry.count, bridge=entry))
            report.append({**entry.as_json(), "copied": 0, "encoded": entry.count, "why": "generated"})
    if not any(isinstance(p, _Copy) for p in pieces):
        return pieces, report, "no span holds a copyable run"
    return pieces, report, None


# --- writing ----------------------------------------------------------------------------------

def _level(level_idc: int) -> str:
    return "1b" if level_idc == 9 else f"{level_idc // 10}.{level_idc % 10}"


class _SourceFrames:
    """Decoded source frames for the encoded pieces, reusing what was decoded last: a bridge's left
    frame is usually the last one written, and its right one the first of the piece after it."""

    def __init__(self, source: VideoSource):
        self.source = source
        self.last = None    # (index, frame) last handed out by run()
        self.ahead = None   # (index, frame, the rest): the next run, opened early for its first frame

    def run(self, first: int, count: int):
        if self.ahead is not None and self.ahead[0] == first:
            k, frame, rest = self.ahead
            self.ahead = None
            frames = itertools.chain([(k, frame)], rest)
        else:
            frames = self.source.frames(first, first + count)
        got = 0
        for k, frame in frames:
            self.last = (k, frame)
            got += 1
            yield frame
        if got != count:
            raise UserError(f"Only {got} of source frames {first}..{first + count - 1} could be read; "
                            "the file may be damaged")

    def one(self, index: int, run_count: int | None = None):
        """Frame `index`; with `run_count`, opened as the start of the run of that many that follows."""
        if self.last is not None and self.last[0] == index:
            return self.last[1]
        if self.ahead is not None and self.ahead[0] == index:
            return self.ahead[1]
        frames = iter(self.source.frames(index, index + (run_count or 1)))
        head = next(frames, None)
        if head is not None:
            if run_count:
                self.ahead = (head[0], head[1], frames)
            else:
                frames.close()
            return head[1]
        raise UserError(f"Frame {index} of {self.source.path} could not be decoded; the file may be damaged")


class _Muxer:
    """Puts packets from copied runs and encoded pieces into the writer with output timestamps."""

    def __init__(self, writer: ClipWriter, reorder: int):
        self.writer = writer
        self.reorder = reorder
        self.decoded = 0          # packets muxed so far, in decode order
        self.time_base = Fraction(1) / writer.rate

    def put(self, packet, pts: int) -> None:
        dts = self.decoded - self.reorder
        if dts > pts:
            raise RuntimeError(f"packet shown at {pts} would decode at {dts}: more reordering than planned")
        packet.time_base = self.time_base
        packet.pts, packet.dts, packet.duration = pts, dts, 1
        self.decoded += 1
        self.writer.mux_packet(packet, until=(self.decoded - self.reorder) * self.time_base)


def _encoder(writer: ClipWriter):
    """A fresh libx264 with the writer's settings, parameter sets in band (a closed piece)."""
    model = writer.video.codec_context
    ctx = av.CodecContext.create("libx264", "w")
    for name in ("width", "height", "pix_fmt", "time_base", "framerate", "color_range"):
        setattr(ctx, name, getattr(model, name))
    for name in ("colorspace", "color_primaries", "color_trc"):
        value = getattr(model, name)
        if value not in (None, 2):   # 2 = unspecified in all three enums
            setattr(ctx, name, value)
    if model.sample_aspect_ratio:
        ctx.sample_aspect_ratio = model.sample_aspect_ratio
    ctx.options = dict(writer.encoder_options)
    return ctx


def write_timeline(path: str, source: VideoSource, timeline: Sequence, bridge_frames: Callable,
                   *, crf: int = 17, preset: str = "medium", pix_fmt: str = "yuv420p",
                   mode: str = "auto", audio: "np.ndarray | SoundEncoder | None" = None,
                   progress: Callable[[int], None] | None = None, workers: int | None = None) -> list[dict]:
    """Write `timeline` (Span and Bridge entries in output order) to `path` as H.264 at the
    source's rate in `pix_fmt`, copying unchanged footage where `mode` ("auto", "on", "off") allows.

    `bridge_frames(bridge, left, right)` returns a Bridge's frames (RGB uint8, (H, W, 3)) given its
    decoded endpoint frames; `audio` is the whole output's soundtrack, float32 (channels, samples),
    or a media.SoundEncoder of it already running, or None for none; `progress(n)` is told of
    every n frames written. Returns one report entry per timeline entry: its own fields, the
    "copied" and "encoded" frame counts, "copied_src" (the source frames copied, [first, stop])
    where any were, and "why" the rest was encoded.
    `workers`: encoded stretches made at once (default: from the cores, see _Stretches)."""
    index = PacketIndex(source) if mode != "off" and source.codec == "h264" else None
    pieces, report, whole = plan_copy(source, timeline, mode, index, pix_fmt)
    writer = ClipWriter(path, source, crf, audio is not None, preset, pix_fmt)
    try:
        _write(writer, source, index if whole is None else None, pieces, bridge_frames, audio, progress, workers)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return report


def _write(writer, source, index, pieces, bridge_frames, audio, progress, workers=None):
    """Write the pieces: copying (`index` given), the encoded stretches between copied runs made
    ahead by _Stretches, or all through the writer's own encoder."""
    if index is None:
        return _write_encoded(writer, source, pieces, bridge_frames, audio, progress)
    container = _open(source.path)
    stretches = None
    try:
        stream = container.streams[source.stream_index]
        _setup_copy(writer, stream, index.config)
        reorder = max([ENCODER_REORDER] + [p.run.reorder for p in pieces if isinstance(p, _Copy)])
        mux = _Muxer(writer, reorder)
        # The output takes Annex B (as libx264 writes it): MP4-style packets are converted.
        to_annexb = (av.bitstream.BitStreamFilterContext("h264_mp4toannexb", in_stream=stream)
                     if index.config.length_size else None)
        if audio is not None:
            writer.write_audio(audio)
        stretches = _Stretches(writer, source, pieces, bridge_frames, workers)
        stretches.start()
        writer.finish_audio()   # the stretches are made meanwhile
        for n, piece in enumerate(pieces):
            if isinstance(piece, _Copy):
                _copy_run(container, stream, index, piece, to_annexb, mux)
            elif stretches.begins_at(n):
                for packet in stretches.next():
                    mux.put(packet, packet.pts)
            if progress:
                progress(piece.count)
        writer.frames_written = mux.decoded
        _check_count(writer, pieces)
    finally:
        if stretches is not None:
            stretches.close()
        container.close()


def _write_encoded(writer, source, pieces, bridge_frames, audio, progress):
    """Every frame through the writer's own encoder (nothing is copied)."""
    if audio is not None:
        writer.write_audio(audio)
    frames = _SourceFrames(source)
    for n, piece in enumerate(pieces):
        for image in _piece_images(frames, pieces, n, bridge_frames):
            (writer.write_rgb if isinstance(image, np.ndarray) else writer.write_source)(image)
        if progress:
            progress(piece.count)
    _check_count(writer, pieces)


def _check_count(writer, pieces) -> None:
    total = pieces[-1].out + pieces[-1].count
    if writer.frames_written != total:
        raise UserError(f"Only {writer.frames_written} of {total} frames could be written; "
                        "the file may be damaged")


def _piece_images(frames: "_SourceFrames", pieces, n: int, bridge_frames, turn=nullcontext()):
    """The images of encoded piece n: decoded source frames, or its bridge's generated frames
    (made inside `turn`, a context manager)."""
    piece = pieces[n]
    if piece.bridge is None:
        return frames.run(piece.src, piece.count)
    b = piece.bridge
    after = pieces[n + 1] if n + 1 < len(pieces) else None
    opens = isinstance(after, _Encode) and after.bridge is None and after.src == b.right
    left = frames.one(b.left)
    right = frames.one(b.right, after.count if opens else None)
    with turn:
        return _checked(bridge_frames(b, left, right), b)


# Encoded stretches made at once, each by its own libx264 (which threads within a stretch too):
# the stretches around the cuts are short (the frames up to a span's first copyable IDR, and the
# bridge), too short for one encoder's threads to fill many cores. One worker per 4 cores, at
# most 4 (each encoder holds its own lookahead: tens of MB at 1080p).
STRETCH_WORKERS_PER_CORES = 4
MAX_STRETCH_WORKERS = 4
STRETCHES_AHEAD_PER_WORKER = 3


class _Stretches:
    """The encoded stretches of a copying write (maximal runs of _Encode pieces between copied
    runs), each a closed piece from a fresh encoder, encoded ahead in worker threads while copied
    runs are muxed; next() hands out each stretch's packets, in order (pts: output frames).
    Bridges are still generated one at a time and in timeline order (the model, the seam score
    and the progress see them as before)."""

    def __init__(self, writer, source, pieces, bridge_frames, workers: int | None = None):
        self.writer, self.source, self.pieces, self.bridge_frames = writer, source, pieces, bridge_frames
        self.starts = [n for n, p in enumerate(pieces)
                       if isinstance(p, _Encode) and (n == 0 or not isinstance(pieces[n - 1], _Encode))]
        bridges = [n for n, p in enumerate(pieces) if isinstance(p, _Encode) and p.bridge is not None]
        self.turn_of = {n: k for k, n in enumerate(bridges)}
        self.turn = 0
        self.order = threading.Condition()
        self.stop = threading.Event()
        if workers is None:
            workers = max(1, min(MAX_STRETCH_WORKERS, usable_cores() // STRETCH_WORKERS_PER_CORES))
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="stretch encoder")
        # Stretches encoded ahead of the muxing: enough that the encoders keep working while the
        # muxing waits for the sound (ClipWriter.finish_audio), not so many that the packets pile up.
        self.ahead = STRETCHES_AHEAD_PER_WORKER * workers
        self.futures = {}
        self.taken = 0
        self._begins = set(self.starts)

    def start(self) -> None:
        """Set the first stretches going. Apart from the constructor, so that the caller holds the
        object (and closes it) before any worker runs: a signal can land between any two lines."""
        for k in range(min(self.ahead, len(self.starts))):
            self._submit(k)

    def begins_at(self, n: int) -> bool:
        """Whether piece n is the first of a stretch."""
        return n in self._begins

    def _submit(self, k: int) -> None:
        self.futures[k] = self.pool.submit(self._encode, self.starts[k])

    def next(self) -> list:
        k = self.taken
        self.taken += 1
        if k + self.ahead < len(self.starts):
            self._submit(k + self.ahead)
        return self.futures.pop(k).result()

    def close(self) -> None:
        self.stop.set()
        with self.order:
            self.order.notify_all()
        self.pool.shutdown(wait=True, cancel_futures=True)

    @contextmanager
    def _bridge_turn(self, n: int):
        """Wait until every earlier bridge has been generated; then this one."""
        with self.order:
            while self.turn != self.turn_of[n] and not self.stop.is_set():
                self.order.wait()
        if self.stop.is_set():
            raise _Stopped
        try:
            yield
        finally:
            with self.order:
                self.turn += 1
                self.order.notify_all()

    def _encode(self, first: int) -> list:
        encoder = _encoder(self.writer)
        time_base = Fraction(1) / self.writer.rate
        frames = _SourceFrames(self.source)
        out = []
        n = first
        while n < len(self.pieces) and isinstance(self.pieces[n], _Encode):
            piece = self.pieces[n]
            images = _piece_images(frames, self.pieces, n, self.bridge_frames, self._bridge_turn(n))
            for k, image in enumerate(images):
                if self.stop.is_set():
                    raise _Stopped
                frame = self.writer.encoder_frame(image)
                frame.pts, frame.time_base, frame.duration = piece.out + k, time_base, 1
                frame.pict_type = av.video.frame.PictureType.NONE
                out += encoder.encode(frame)
            n += 1
        out += encoder.encode(None)
        return out


class _Stopped(Exception):
    """A stretch abandoned because the write stopped."""


def _setup_copy(writer: ClipWriter, stream, config: AvcConfig) -> None:
    """Set the writer's encoder (the model for every piece) to the source's profile and level, and
    parameter set ids of its own; put both sets of parameter sets in the sample description."""
    sps_ids, pps_ids = config.ids()
    ctx = writer.video.codec_context
    writer.encoder_options = {**writer.encoder_options, "profile": X264_PROFILES[stream.codec_context.profile],
                              "level": _level(config.level_idc),
                              "x264-params": f"sps-id={max(sps_ids | pps_ids) + 1}"}
    ctx.options = dict(writer.encoder_options)
    if stream.codec_context.sample_aspect_ratio:   # copied pictures keep theirs: so do encoded ones
        ctx.sample_aspect_ratio = stream.codec_context.sample_aspect_ratio
    ctx.open()
    # The source's first: its profile and level head the avcC record.
    ctx.extradata = config.annexb() + bytes(ctx.extradata)


def _checked(frames, bridge: Bridge) -> list:
    frames = list(frames)
    if len(frames) != bridge.count:
        raise RuntimeError(f"{len(frames)} frames generated for a bridge of {bridge.count}")
    return frames


def _copy_run(container, stream, index: PacketIndex, piece: _Copy, to_annexb, mux) -> None:
    """Mux the run's packets, as they are, at their output times."""
    run = piece.run
    want = run.p0
    for attempt in ("seek", "from the start"):
        if attempt == "seek":
            container.seek(index.pts[want], stream=stream, backward=True, any_frame=False)
        else:
            container.seek(min(t for t in index.dts if t is not None), stream=stream, backward=True,
                           any_frame=True)
        p = None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if p is None:
                if (packet.dts, packet.pts) == (index.dts[want], index.pts[want]):
                    p = want
                elif packet.dts is not None and index.dts[want] is not None and packet.dts > index.dts[want]:
                    break   # the seek landed past the run's start
                else:
                    continue
            if (packet.dts, packet.pts) != (index.dts[p], index.pts[p]):
                raise UserError(f"{index.path} reads differently the second time; the file may be damaged")
            try:
                filtered = to_annexb.filter(packet) if to_annexb else [packet]
            except av.error.FFmpegError:
                raise UserError(f"Source frame {index.ranks[p]} of {index.path} cannot be read as H.264; "
                                "the file may be damaged") from None
            for out in filtered:
                mux.put(out, piece.out + index.ranks[p] - run.first)
            p += 1
            if p == run.p1:
                return
        if p is not None:
            raise UserError(f"{index.path} ends early; the file may be damaged")
    raise UserError(f"Source frame {run.first} of {index.path} could not be found again; the file may be damaged")
