"""Video and audio I/O with PyAV: frame-exact reading by index, and writing the spliced clip.

Reading never decodes the whole file: the packet index (read by demuxing, which decodes nothing)
maps a frame index to its presentation timestamp and to the keyframe to seek to, and decoding
runs forward from there.
"""
from __future__ import annotations

import bisect
import errno
import functools
import math
import os
import re
import queue
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import UserError
from .nal import length_size, starts_closed

OUTPUT_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")


def _open(path: str):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None          # av.open below says what is wrong
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        # (checked before opening: opening a FIFO waits for a writer)
        raise UserError(f"{path} is a pipe or a device, not a file: the video is read more than once (to index "
                        "its frames, then to cut it), so save it to a file first")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except FileNotFoundError:
        raise UserError(f"Input file not found: {path}")
    except IsADirectoryError:
        raise UserError(f"Input is a folder, not a video file: {path}")
    except PermissionError:
        raise UserError(f"Cannot read the input file (permission denied): {path}")
    except av.error.FFmpegError as e:
        raise UserError(_unreadable(path, e))


def _unreadable(path: str, error) -> str:
    """What to tell the user about a file FFmpeg cannot open."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            boxes = _top_level_boxes(f, size)
    except OSError:
        size, boxes = None, []
    if size == 0:
        return f"{path} is empty (0 bytes); give the video file itself"
    if boxes and boxes[0] == b"ftyp" and b"mdat" in boxes and b"moov" not in boxes and not _still_image(path):
        return (f"{path} is an unfinished MP4/MOV: it has no index ('moov' box), as when a recording stops "
                "before it is closed; rebuild the index with a repair tool (untrunc, for one) and try again")
    return f"Cannot read {path} as a video ({error.strerror or error}); give an MP4, MOV, MKV or similar file"


STILL_BRANDS = {b"mif1", b"msf1", b"heic", b"heix", b"heim", b"heis", b"avif", b"avis", b"jpx ", b"jp2 "}


def _still_image(path: str) -> bool:
    """Whether an ISO file's 'ftyp' names a still-image brand (HEIF, AVIF, JPEG 2000), whose index
    is a 'meta' box, not a recording's 'moov'."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    size = int.from_bytes(head[:4], "big")
    brands = [head[i:i + 4] for i in range(8, min(size, len(head)) - 3, 4) if i != 12]   # major, then compatible
    return bool(STILL_BRANDS & set(brands))


def reorder_depth(stream) -> int:
    """How many frames the stream's decoder may hold back to put them in display order."""
    ctx = stream.codec_context
    depth = getattr(ctx, "reorder_depth", None)
    return int(depth) if isinstance(depth, int) and depth > 0 else 2 if ctx.has_b_frames else 0


EBML, MATROSKA_SEGMENT = b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67"


def _cut_short(path: str) -> bool:
    """Whether the file's own structure says that its writing stopped: an ISO/QuickTime file (MP4,
    MOV, fragmented MP4) that ends inside its last box, or a Matroska/WebM file whose segment runs
    past the end of the file or was never given its size (a writer that stops early leaves it
    open; live WebM recorders write it so too). False for any other file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64)
            if head.startswith(EBML):
                return _matroska_cut_short(head, size)
            return _top_level_boxes(f, size, limit=None, with_end=True)[1] > size
    except (OSError, ValueError, IndexError):
        return False


def _vint(data: bytes, at: int) -> tuple[int, int, bool]:
    """An EBML variable-size integer at `at`: (value, bytes it takes, all its value bits set)."""
    first = data[at]
    length = 9 - first.bit_length() if first else 9
    value = first & (0xFF >> length)
    for b in data[at + 1:at + length]:
        value = value << 8 | b
    return value, length, value == (1 << 7 * length) - 1


def _matroska_cut_short(head: bytes, size: int) -> bool:
    header, n, _ = _vint(head, 4)
    at = 4 + n + header
    if head[at:at + 4] != MATROSKA_SEGMENT:
        return False
    segment, n, unknown = _vint(head, at + 4)
    return unknown or at + 4 + n + segment > size


def _top_level_boxes(f, size: int, limit: int | None = 64, with_end: bool = False):
    """The types of an ISO/QuickTime file's top-level boxes, in order ([] for any other file), the
    first `limit` of them; with `with_end`, also where the last of them ends by its own length
    (0 where the file is not made of boxes)."""
    types, at, valid = [], 0, True
    while at + 8 <= size and (limit is None or len(types) < limit):
        f.seek(at)
        head = f.read(16)
        length, kind = int.from_bytes(head[:4], "big"), head[4:8]
        if length == 1 and len(head) == 16:
            length = int.from_bytes(head[8:16], "big")
        elif length == 0:
            length = size - at
        if length < 8 or not kind.isalnum():
            valid = False
            break
        types.append(kind)
        at += length
    if with_end:
        return types, at if valid and types else 0
    return types


@dataclass
class FrameIndex:
    """Presentation timestamps of every frame, in order, and which of them are keyframes;
    `truncated`: the file lost packets at its end (see _index_frames)."""
    pts: list[int]
    keyframe_pts: list[int]
    truncated: bool = False

    def position(self, pts: int) -> int | None:
        k = bisect.bisect_left(self.pts, pts)
        return k if k < len(self.pts) and self.pts[k] == pts else None

    def seek_points(self, index: int) -> list[int]:
        """Keyframes at or before frame `index`, nearest first: where decoding may start."""
        k = bisect.bisect_right(self.keyframe_pts, self.pts[index])
        return self.keyframe_pts[:k][::-1]


def _index_frames(container, stream) -> FrameIndex:
    """The frames' timestamps, from the packets (nothing is decoded).

    A recording cut short (a crash or a full disk while writing: fragmented MP4 and MKV are made to
    survive that) loses its last packets, and the demuxer may return the one it was writing marked
    corrupt. Such a packet counts as lost. Where packets are lost at the end, the video ends just
    before the first frame that one of them would have shown (a gap among the last frames, of the
    reordering depth plus two), so that every frame left can be decoded: a frame read before a
    lost one but shown after it is dropped too. `FrameIndex.truncated` says that packets were lost:
    the last packets are marked corrupt, or the file's own structure says it ends early (see
    _cut_short). Nothing is cut without one of those signs: a gap at the end of a finished file is
    the recording's own."""
    pts, keys, corrupt = [], [], []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
            continue  # flush packets, and frames an edit list cuts away
        t = packet.pts if packet.pts is not None else packet.dts
        if t is None:
            raise UserError("The video has no timestamps, so frames cannot be found exactly; "
                            "remux it first (ffmpeg -i IN -c copy OUT.mp4)")
        if packet.is_corrupt:
            corrupt.append((t, packet.is_keyframe))
            continue
        # Damage inside the file (a transport stream's reception errors) stays: the decoder
        # conceals it, or says where it is.
        for kept, key in corrupt:
            pts.append(kept)
            if key:
                keys.append(kept)
        corrupt = []
        pts.append(t)
        if packet.is_keyframe:
            keys.append(t)
    pts.sort()
    keys.sort()
    truncated = bool(corrupt) or _cut_short(container.name)
    if truncated and len(pts) > 2:
        steps = np.diff(np.asarray(pts, dtype=np.int64))
        typical = float(np.median(steps))
        tail = min(len(steps), reorder_depth(stream) + 2)
        holes = np.flatnonzero(steps[-tail:] > 1.5 * typical)
        if holes.size:
            end = len(steps) - tail + int(holes[0]) + 1    # frames before the first gap
            pts = pts[:end]
            keys = [t for t in keys if t <= pts[-1]]
    if len(set(pts)) != len(pts):
        raise UserError("The video has repeated timestamps, so frames cannot be found exactly; "
                        "remux it first (ffmpeg -i IN -c copy OUT.mp4)")
    return FrameIndex(pts, keys or pts[:1], truncated)


def picture_stream(container):
    """The video stream that holds the recording, or None: FFmpeg's choice (av_find_best_stream),
    which passes over cover art and other stills (a one-frame track before the recording, as
    files from downloaders carry) for a stream of moving pictures."""
    return container.streams.best("video") if container.streams.video else None


def _closed_keyframes(path: str, stream_index: int) -> list[int]:
    """The timestamps of the keyframes that are IDR pictures ([] where the codec is not read)."""
    container = _open(path)
    try:
        stream = container.streams[stream_index]
        codec = stream.codec_context.name
        framing = length_size(stream.codec_context.extradata, codec)
        keys = []
        for packet in container.demux(stream):
            if packet.size and packet.is_keyframe and not packet.is_discard:
                if starts_closed(bytes(packet), codec, framing):
                    keys.append(packet.pts if packet.pts is not None else packet.dts)
        return sorted(keys)
    finally:
        container.close()


def _times_out_of_order(path: str, frames: int = 64) -> bool:
    """Whether the first `frames` decoded frames' timestamps ever go back (they are the packets'
    decode times, not presentation times)."""
    container = _open(path)
    try:
        last = None
        for k, frame in zip(range(frames), container.decode(picture_stream(container))):
            if frame.pts is not None and last is not None and frame.pts < last:
                return True
            last = frame.pts if frame.pts is not None else last
        return False
    finally:
        container.close()


def display_rotation(frame) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) a player turns this frame by to show it upright."""
    try:
        return int(round((frame.rotation or 0) / 90)) % 4 * 90
    except Exception:
        return 0


def _nominal_rate(stream, index: FrameIndex) -> tuple[Fraction, bool]:
    """(rate, variable): the rate the video is meant to play at, and whether its frames keep to it.

    A frame that lasts more than half a frame longer or shorter than 1/rate (a dropped frame, a
    stall, a burst) makes the video variable-rate. Constant-rate video keeps the container's
    average rate, as it always has; variable-rate video takes the nominal rate FFmpeg guesses from
    its timestamps, or the rate of its most common frame duration when that guess does not fit."""
    average = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not average or average <= 0:
        raise UserError("The video has no usable frame rate; re-encode it at a constant rate first")
    average = Fraction(average)
    tb = Fraction(stream.time_base)
    steps = np.diff(np.asarray(index.pts, dtype=np.int64))
    if len(steps) == 0:
        return average, False
    typical = Fraction(int(np.median(steps))) * tb          # seconds of the median frame
    nominal = average
    for candidate in (stream.guessed_rate, stream.base_rate, average):
        if candidate and candidate > 0 and abs(1 / Fraction(candidate) - typical) <= typical / 20:
            nominal = Fraction(candidate)
            break
    else:
        nominal = (1 / typical).limit_denominator(1001)
    seconds = steps * float(tb)
    variable = bool(np.any(np.abs(seconds - float(1 / nominal)) > float(1 / nominal) / 2))
    return (nominal, True) if variable else (average, False)


class VideoSource:
    """One input video: its rate, frame count, audio, and frame-exact decoding by index.

    Variable frame rate. Everything above this class works on a constant rate. For variable-rate
    input (see _nominal_rate) it is made constant the way FFmpeg's fps filter does it: the clip
    plays at the nominal rate, and its "frames" are slots 1/rate apart from the first frame; each
    source frame goes to the slot nearest its timestamp, a slot that a dropped frame leaves empty
    repeats the frame before it, and of two frames in one slot the later is shown. frame_count,
    frames(), time_of() and absolute_time() then count slots, so a time names the slot on screen at
    that time and the sound (read at slot times) stays within half a frame of the picture;
    source_frame() and slot_of_frame() convert to and from the file's own frame indices (which a
    frame index the user gives names). Constant-rate input maps every frame to itself.
    """

    def __init__(self, path: str, audio_stream: int | None = None):
        self.path = str(path)
        container = _open(path)
        try:
            stream = picture_stream(container)
            if stream is None:
                raise UserError(f"{path} has no video stream; give a video file")
            self.time_base = Fraction(stream.time_base)
            self.stream_index = stream.index
            self.index = _index_frames(container, stream)
            if not self.index.pts:
                raise UserError(f"{path} has a video stream with no frames")
            # AVI stores decode times only: with B-frames, the decoder's frames are then counted
            # (see _decode) instead of found by their times.
            self.decode_order = (container.format.name == "avi" and bool(stream.codec_context.has_b_frames)
                                 and _times_out_of_order(path))
            if self.decode_order:
                # Counting starts right only at a closed GOP's first picture, which is shown first.
                # A file that lost its last packets may have lost pictures shown before ones it
                # kept, and counting would shift those: its last (reordering depth + 1) are left out.
                pts = self.index.pts
                if self.index.truncated:
                    pts = pts[:max(1, len(pts) - reorder_depth(stream) - 1)]
                keys = [t for t in _closed_keyframes(path, stream.index) if t <= pts[-1]]
                self.index = FrameIndex(pts, keys or pts[:1], self.index.truncated)
            try:
                self.rate, self.variable_rate = _nominal_rate(stream, self.index)
            except UserError:
                raise UserError(f"{path} has no usable frame rate; re-encode it at a constant rate first")
            ctx = stream.codec_context
            self.codec = ctx.name
            self.coded_width, self.coded_height = ctx.width, ctx.height
            self.audio = AudioInfo.of(container, audio_stream)
        except av.error.FFmpegError as e:
            raise UserError(f"Cannot read {path} as a video ({e.strerror or e}); give an MP4, MOV, MKV or similar file")
        finally:
            container.close()
        self._slots()
        first = next(self._decode(0, 1), None)
        if first is None:
            raise UserError(f"No frame of {path} could be decoded; the file may be damaged")
        _, frame = first
        self.width, self.height = frame.width, frame.height   # as decoded (before display rotation)
        self.rotation = display_rotation(frame)
        self.colour = dict(colorspace=frame.colorspace, color_range=frame.color_range,
                           color_primaries=frame.color_primaries, color_trc=frame.color_trc)
        self.pix_fmt = frame.format.name
        self.bit_depth = max((c.bits for c in frame.format.components), default=8)
        self.interlaced = bool(frame.interlaced_frame)

    def _slots(self) -> None:
        """For variable-rate input: the slot of every source frame, and the frame shown in every slot."""
        self._slot_of = self._frame_in = None
        if not self.variable_rate:
            return
        pts = np.asarray(self.index.pts, dtype=object) - self.index.pts[0]
        scale = self.time_base * self.rate                     # slots per tick
        num, den = scale.numerator, scale.denominator
        # nearest slot: floor(pts * scale + 1/2), in integers
        slot_of = np.array([(2 * int(t) * num + den) // (2 * den) for t in pts], dtype=np.int64)
        self._slot_of = slot_of
        self._frame_in = np.searchsorted(slot_of, np.arange(int(slot_of[-1]) + 1), side="right") - 1

    @property
    def frames_in_file(self) -> int:
        """Frames the file holds (for variable-rate input, frame_count counts slots instead)."""
        return len(self.index.pts)

    @property
    def frame_count(self) -> int:
        return len(self._frame_in) if self.variable_rate else len(self.index.pts)

    def source_frame(self, slot: int) -> int:
        """The file's frame index shown in `slot`."""
        return int(self._frame_in[slot]) if self.variable_rate else slot

    def slot_of_frame(self, index: int) -> int:
        """The slot that shows the file's frame `index` (the one nearest its timestamp)."""
        return int(self._slot_of[index]) if self.variable_rate else index

    @property
    def repeated_slots(self) -> int:
        """Slots that repeat the frame before them (frames the recording dropped)."""
        return self.frame_count - len(set(self._frame_in.tolist())) if self.variable_rate else 0

    @property
    def skipped_frames(self) -> int:
        """Source frames no slot shows (two frames in one slot: the earlier is left out)."""
        return self.frames_in_file - len(set(self._frame_in.tolist())) if self.variable_rate else 0

    def time_of(self, index: int) -> Fraction:
        """Seconds from the first frame to frame (slot) `index`, from its real timestamp."""
        if self.variable_rate:
            return Fraction(index) / self.rate
        return (self.index.pts[index] - self.index.pts[0]) * self.time_base

    def absolute_time(self, index: int) -> Fraction:
        """Seconds on the container's clock (the clock the audio shares)."""
        if self.variable_rate:
            return self.index.pts[0] * self.time_base + Fraction(index) / self.rate
        return self.index.pts[index] * self.time_base

    @property
    def duration(self) -> Fraction:
        return Fraction(self.frame_count) / self.rate

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a player shows it."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def notes(self, pix_fmt: str = "yuv420p", audio: bool = True) -> list[str]:
        """One line for each thing about this input that the clip will not keep as it was (written
        with `pix_fmt`, with the sound or without)."""
        out = []
        if self.bit_depth > 8 and pix_fmt == "yuv420p":
            out.append(f"the source is {self.bit_depth}-bit ({self.pix_fmt}); the clip is 8-bit "
                       "(--pix-fmt yuv420p10le keeps 10 bits, though not every player decodes 10-bit H.264)")
        if self.width % 2 or self.height % 2:
            out.append(f"the source is {self.width}x{self.height}; the clip is "
                       f"{self.width + self.width % 2}x{self.height + self.height % 2} (4:2:0 needs even sizes: "
                       "the last row or column is repeated)")
        layout = av.VideoFormat(self.pix_fmt, 64, 64)
        chroma = [(c.width, c.height) for c in layout.components if not c.is_alpha][1:]
        if layout.is_rgb or any(w > 32 or h > 32 for w, h in chroma):
            out.append(f"the source's colour has more detail than 4:2:0 ({self.pix_fmt}); the clip is 4:2:0, "
                       "which every player decodes")
        if any(c.is_alpha for c in layout.components):
            out.append(f"the source has transparency ({self.pix_fmt}); the clip is opaque")
        if self.interlaced:
            out.append("the source is interlaced; the frames the clip encodes or generates are progressive, "
                       "each made from the two fields as stored (deinterlace the source first for the cleanest "
                       "bridge)")
        if audio and self.audio is not None and self.audio.ignored:
            others = self.audio.ignored
            out.append(f"the sound is audio stream {self.audio.position} ({self.audio.codec}, "
                       f"{self.audio.sample_rate} Hz); {others} other audio stream{'s' if others > 1 else ''} "
                       "ignored (--audio-stream N picks another)")
        if self.variable_rate:
            out.append(f"the input has a variable frame rate; the clip plays at a constant "
                       f"{float(self.rate):.3f} fps, each frame the source frame on screen at its time "
                       f"({self.repeated_slots} repeated where frames were dropped, {self.skipped_frames} left out)")
        return out

    def frames(self, start: int, stop: int) -> Iterator[tuple[int, "av.VideoFrame"]]:
        """Decoded frames (slots) start .. stop-1 with their indices, in order; seeks instead of
        decoding from 0. For variable-rate input a frame repeated over several slots is yielded
        once for each of them (the same frame object)."""
        if not self.variable_rate:
            yield from self._decode(start, stop)
            return
        stop = min(stop, self.frame_count)
        if start >= stop:
            return
        decoded = self._decode(self.source_frame(start), self.source_frame(stop - 1) + 1)
        current = (-1, None)
        for slot in range(start, stop):
            wanted = self.source_frame(slot)
            while current[0] < wanted:
                current = next(decoded, None)
                if current is None:
                    raise UserError(f"{self.path} ends early: frame {wanted} could not be decoded; "
                                    "the file may be damaged")
            yield slot, current[1]

    def _decode(self, start: int, stop: int) -> Iterator[tuple[int, "av.VideoFrame"]]:
        """The file's frames start .. stop-1 by their own indices."""
        stop = min(stop, self.frames_in_file)
        if start >= stop:
            return
        for seek_pts in self.index.seek_points(start) + [None]:
            container = _open(self.path)
            try:
                stream = container.streams[self.stream_index]
                stream.thread_type = "AUTO"
                expected = start
                try:
                    if seek_pts is not None:
                        container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
                    counted = None
                    for frame in self._frames_of(container, stream):
                        if self.decode_order:
                            # Frames come out in presentation order, each with its packet's decode
                            # time: count them from the keyframe decoding began at (a closed GOP's
                            # keyframe is shown first; any other start tries an earlier keyframe).
                            if counted is None:
                                if seek_pts is not None and frame.pts != seek_pts:
                                    break
                                counted = 0 if seek_pts is None else self.index.position(seek_pts)
                            else:
                                counted += 1
                            k = counted
                        else:
                            k = self.index.position(frame.pts) if frame.pts is not None else None
                        if k is None or k < expected:
                            continue
                        if k > expected:
                            break  # the seek landed after `start` (or a frame is missing): start earlier
                        yield k, frame
                        expected += 1
                        if expected == stop:
                            return
                except av.error.FFmpegError as e:
                    raise UserError(f"{self.path} is damaged near frame {expected} "
                                    f"({float(self.time_of_frame(expected)):.2f} s: {e.strerror or e}); "
                                    "repair or re-encode it, or choose frames away from the damage")
                if expected > start:
                    # Decoding went past `start`, so the seek was right: the next frame is gone,
                    # either skipped by the decoder (a damaged packet) or at the file's cut-off end.
                    raise UserError(f"{self.path} is damaged: frame {expected} "
                                    f"({float(self.time_of_frame(expected)):.2f} s) is missing or could not be "
                                    "decoded; repair or re-encode it, or choose frames away from the damage")
            finally:
                container.close()
        raise UserError(f"Frame {start} of {self.path} could not be decoded; the file may be damaged")

    def _frames_of(self, container, stream):
        """container.decode(stream), passing over packets past the index's end (the broken last
        packets of a recording cut short: see _index_frames)."""
        last = self.index.pts[-1]
        for packet in container.demux(stream):
            t = packet.pts if packet.pts is not None else packet.dts
            if packet.size and t is not None and t > last and packet.is_corrupt:
                continue
            yield from packet.decode()

    def time_of_frame(self, index: int) -> Fraction:
        """Seconds from the first frame to the file's frame `index`."""
        index = min(index, self.frames_in_file - 1)
        return (self.index.pts[index] - self.index.pts[0]) * self.time_base


def to_rgb(frame) -> np.ndarray:
    """RGB uint8 (H, W, 3), converted with the frame's own colour matrix and range."""
    return frame.reformat(format="rgb24", src_color_range=frame.color_range).to_ndarray()


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The frame as a player shows it, for images a person looks at or provides."""
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation else rgb


@dataclass
class AudioInfo:
    """The audio stream the clip's sound comes from. `position` counts audio streams only (0 is
    the first, as `--audio-stream` does); `ignored` is how many other audio streams the input has."""
    stream_index: int
    sample_rate: int
    layout: str
    channels: int
    codec: str
    position: int = 0
    ignored: int = 0
    time_base: Fraction = Fraction(1, 48000)
    # Where the stream's decoded samples start, and its frame sizes: found on first use (read_audio).
    _origin: tuple | None = field(default=None, repr=False, compare=False)

    @staticmethod
    def of(container, stream: int | None = None) -> "AudioInfo | None":
        """The first audio stream, or the `stream`-th (0 = first); None if there is no usable one."""
        streams = container.streams.audio
        if stream is not None and not 0 <= stream < len(streams):
            have = (f"audio streams 0..{len(streams) - 1}" if len(streams) > 1 else
                    "one audio stream (0)" if streams else "no audio stream")
            raise UserError(f"--audio-stream {stream}: the input has {have}")
        if not streams:
            return None
        position = stream or 0
        s = streams[position]
        ctx = s.codec_context
        if not ctx.sample_rate:
            return None
        return AudioInfo(s.index, ctx.sample_rate, ctx.layout.name, ctx.layout.nb_channels, ctx.name,
                         position, len(streams) - 1, Fraction(s.time_base or Fraction(1, ctx.sample_rate)))

    @property
    def exact_timestamps(self) -> bool:
        """True when a timestamp can name every sample (MP4, MOV, TS); MKV and WebM round to 1 ms."""
        return self.time_base <= Fraction(1, self.sample_rate)


@dataclass
class AudioGap:
    """A stretch the stream's timestamps skip over (seconds on the container clock), filled with
    silence; `damaged` when packets the decoder rejected were dropped there."""
    at: float
    seconds: float
    damaged: bool = False


GAP_TOLERANCE = Fraction(4, 1000)   # seconds a timestamp may run ahead of the sample count before it is a gap
AUDIO_PRE_ROLL = Fraction(1, 2)    # seconds decoded before a read's start (codecs prime over a frame or two)
# Audio packets the decoder may reject in a row before the stream counts as damaged. A seek into
# MPEG program streams (.mpg, .vob) lands mid-frame, so the first packet after it is rejected; a
# scratch in a long recording costs a few more. 32 packets is 0.7 s of AAC at 48 kHz, 0.8 s of
# MP2 or MP3: a longer run is damage the user should hear about rather than silence.
AUDIO_BAD_PACKETS = 32


def _decode_audio(container, stream, path: str):
    """(frame, packets dropped just before it) in order. A packet the decoder rejects is dropped
    (its time stays silent; read_audio reports it as a gap); AUDIO_BAD_PACKETS in a row, or data
    the demuxer cannot read, is a UserError."""
    def damaged(e):
        return UserError(f"The audio of {path} is damaged ({e.strerror or e}); repair the file, "
                         "or leave the sound out with --no-audio")
    dropped = in_a_row = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.error.InvalidDataError, av.error.PatchWelcomeError) as e:
                dropped += 1
                in_a_row += 1
                if in_a_row >= AUDIO_BAD_PACKETS:
                    raise damaged(e)
                continue
            in_a_row = 0
            for frame in frames:
                yield frame, dropped
                dropped = 0
    except av.error.FFmpegError as e:
        raise damaged(e)


def _audio_origin(path: str, info: AudioInfo) -> tuple[int, int, int]:
    """(first sample, samples in the first decoded frame, samples per frame after it; 0 if they vary)."""
    if info._origin is None:
        container = _open(path)
        try:
            stream = container.streams[info.stream_index]
            sizes, first = [], None
            for frame, _ in _decode_audio(container, stream, path):
                if first is None:
                    if frame.pts is None:
                        continue
                    first = round(frame.pts * stream.time_base * info.sample_rate)
                sizes.append(frame.samples)
                if len(sizes) == 4:
                    break
        finally:
            container.close()
        if first is None:
            first, sizes = 0, [0]
        rest = sizes[1:-1] if len(sizes) == 4 else sizes[1:]
        step = rest[0] if rest and len(set(rest)) == 1 else 0
        info._origin = (first, sizes[0], step)
    return info._origin


def read_audio(path: str, info: AudioInfo, start: Fraction, samples: int,
               gaps: list[AudioGap] | None = None, stop=None) -> np.ndarray:
    """`samples` samples of float32 audio (channels, samples) from `start` seconds on the container
    clock. Where the file has no audio (before it starts, after it ends) the result is silence.

    Samples are placed by counting them: the first decoded frame is placed by its timestamp and
    each later one follows the one before, so timestamps rounded by the container (MKV and WebM
    keep milliseconds) cannot shift frames against each other. A timestamp that runs ahead of the
    count by more than GAP_TOLERANCE is a real gap in the recording: it is kept as silence, and
    appended to `gaps` when a list is given.

    Reads seek to AUDIO_PRE_ROLL before `start`. Where timestamps are exact the first frame's own
    timestamp places it. Where they are rounded, the frame is put on the stream's grid instead
    (the first decoded frame, then whole frames of the codec's fixed size: AAC, MP3, AC-3, Opus),
    so that every read of one file agrees to the sample; a rounded stream without a fixed frame
    size (rare: PCM or Vorbis in MKV with varying packets) is decoded from its start instead.
    `stop` (a threading.Event): once set, the read ends where it is (the rest stays silent).
    """
    out = np.zeros((info.channels, samples), np.float32)
    sr = info.sample_rate
    first = round(start * sr)      # absolute sample number of out[:, 0]
    wanted_end = first + samples
    grid = None if info.exact_timestamps else _audio_origin(path, info)
    tolerance = max(round(GAP_TOLERANCE * sr), 2 * math.ceil(info.time_base * sr))
    container = _open(path)
    try:
        stream = container.streams[info.stream_index]
        resampler = av.AudioResampler(format="fltp", layout=info.layout, rate=sr)
        seek_to = start - AUDIO_PRE_ROLL
        if seek_to > 0 and (grid is None or grid[2]):
            container.seek(int(seek_to / stream.time_base), stream=stream, backward=True)
        tb = Fraction(stream.time_base)
        num, den = tb.numerator * sr, tb.denominator   # a frame starts at sample pts * num / den
        cursor = None
        for frame, dropped in _decode_audio(container, stream, path):
            pts = frame.pts
            # (in integers first: a Fraction per frame costs more than the rest of the loop)
            if pts is not None and (cursor is None or pts * num - cursor * den > tolerance * den):
                at = Fraction(pts * num, den)
                if cursor is None:
                    if grid is None:
                        cursor = round(at)
                    else:
                        origin, head, step = grid
                        if at < origin + head / 2 or not step:
                            cursor = origin if at < origin + head / 2 else round(at)
                        else:
                            cursor = origin + head + round((at - origin - head) / step) * step
                else:
                    if gaps is not None and cursor < wanted_end and at > first:
                        gaps.append(AudioGap(float(Fraction(cursor, sr)), float((at - cursor) / sr), dropped > 0))
                    cursor = round(at)   # the gap stays silent
            if cursor is None:
                continue
            for chunk in resampler.resample(frame):
                count = chunk.samples
                lo, hi = max(cursor, first), min(cursor + count, wanted_end)
                if hi > lo:   # fltp: one plane per channel, copied straight into place
                    for c, plane in enumerate(chunk.planes):
                        out[c, lo - first:hi - first] = np.frombuffer(plane, np.float32, count)[lo - cursor:hi - cursor]
                cursor += count
            if cursor >= wanted_end or stop is not None and stop.is_set():
                break
    finally:
        container.close()
    return out


PARTIAL = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.partial\.[A-Za-z0-9]+$")
STALE_AFTER_SECONDS = 60


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # someone else's process
    return True


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Delete temporary outputs (`.NAME.PID.XXXX.partial.EXT`) left in `folder` by processes that
    are gone (killed with SIGKILL, or by a power cut), untouched for STALE_AFTER_SECONDS (so that a
    writer on another machine sharing the folder, whose pid means nothing here, is left alone
    while it works). Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = PARTIAL.match(entry.name)
        if not m or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > STALE_AFTER_SECONDS:
                os.remove(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def write_error(e: OSError, target: Path, option: str = "--output") -> UserError | None:
    """A failure to write `target` (given with `option`), in the user's words (None: not a writing problem)."""
    folder = target.parent if str(target.parent) else Path(".")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"No space left on the device holding {target}; free some space or choose another {option}")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"Cannot write {target} ({e.strerror}); choose another {option}")
    if e.errno == errno.EIO:
        return UserError(f"Writing {target} failed (input/output error on the device holding {folder}); "
                         f"check the disk or choose another {option}")
    if e.errno in (errno.EFBIG, errno.ENAMETOOLONG):
        return UserError(f"Cannot write {target} ({e.strerror}); choose another {option}")
    return None


TEMP_RANDOM_CHARS = 8   # what tempfile.mkstemp puts between its prefix and suffix


def _clip_name(name: str, limit: int) -> str:
    """`name` cut to at most `limit` bytes as the file system stores it, never inside a UTF-8
    character (names that are not UTF-8 are cut as the bytes they are)."""
    raw = os.fsencode(name)
    cut = len(raw) if len(raw) <= limit else limit
    while 0 < cut < len(raw) and raw[cut] & 0xC0 == 0x80:     # a continuation byte: mid-character
        cut -= 1
    return os.fsdecode(raw[:cut])


@contextmanager
def atomic_output(path: str, option: str = "--output"):
    """Yield a temporary path beside `path` (`.NAME.PID.XXXX.partial.EXT`); rename it over `path`
    only if the block succeeds. Stale temporary files of processes that are gone are removed first.
    Running out of space or permission while writing becomes a UserError (naming `option`, the
    option that chose `path`); the temporary file never outlives the block."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    remove_stale_partials(folder)
    suffix, pid = f".partial{target.suffix}", f".{os.getpid()}."
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    # The temporary name adds about 30 bytes to the stem: a name near the limit is shortened there.
    room = max(1, name_max - 1 - len(pid) - TEMP_RANDOM_CHARS - len(suffix.encode()))
    stem = _clip_name(target.stem, room) or "clip"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}{pid}", suffix=suffix, dir=folder)
    except OSError as e:
        raise write_error(e, target, option) or UserError(f"Cannot create a file beside {target} ({e.strerror}); "
                                                            f"choose another {option}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes it private; the clip is an ordinary file
            os.replace(tmp, target)
        except OSError as e:            # PyAV's errors for a failed write are OSErrors too
            error = write_error(e, target, option)
            if error is None:
                raise
            raise error from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output_path(input_path: str, output_path: str) -> None:
    out, src = Path(output_path), Path(input_path)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"The output must end in {', '.join(OUTPUT_SUFFIXES)}: {output_path}")
    if out.exists() and (out.is_dir() or os.path.samefile(out, src)):
        what = "the input file" if not out.is_dir() else "a folder"
        raise UserError(f"The output {output_path} is {what}; choose another --output path")
    if out.resolve() == src.resolve():
        raise UserError(f"The output {output_path} is the input file; choose another --output path")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"The output folder {folder} does not exist; create it or choose another --output")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"Cannot write to the output folder {folder} (permission denied); choose another --output")


PIX_FMTS = ("yuv420p", "yuv420p10le")


class ClipWriter:
    """H.264 (libx264) at a constant rate with exact pts, plus optional AAC audio.

    pix_fmt "yuv420p" (default) is 8-bit 4:2:0, which everything plays; "yuv420p10le" keeps 10 bits
    (H.264 High 10), which software decoders (FFmpeg, VLC, Chromium 156) play but many hardware
    decoders, and the players that rely on them, do not."""

    def __init__(self, path: str, source: VideoSource, crf: int, audio: bool, preset: str = "medium",
                 pix_fmt: str = "yuv420p"):
        if pix_fmt not in PIX_FMTS:
            raise UserError(f"--pix-fmt {pix_fmt!r} is not one of {', '.join(PIX_FMTS)}")
        self.pix_fmt = pix_fmt
        # The index goes first in MP4/MOV so that players and browsers can start before the end.
        quicktime = Path(path).suffix.lower() in (".mp4", ".mov", ".m4v")
        self.container = av.open(path, "w", options={"movflags": "+faststart"} if quicktime else {})
        self.rate = source.rate
        # libx264's 4:2:0 needs even sizes: odd ones get one replicated row/column.
        self.width = source.width + source.width % 2
        self.height = source.height + source.height % 2
        self.pad = (self.height - source.height, self.width - source.width)
        stream = self.container.add_stream("libx264", rate=source.rate)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, pix_fmt
        # Frames are counted on this clock; the muxer may change the stream's own time base later.
        self.time_base = 1 / Fraction(source.rate)
        stream.time_base = self.time_base
        # Kept here: opening the encoder consumes its options (the codec context's become empty),
        # and the encoders of copied writes' stretches need the same ones (smartcopy._encoder).
        self.encoder_options = {"crf": str(crf), "preset": preset}
        stream.options = dict(self.encoder_options)
        ctx = stream.codec_context
        full_range = source.colour["color_range"] == 2
        # Unspecified (2) means "swscale's default", which is also what the frames were read with.
        self.colorspace = None if source.colour["colorspace"] in (None, 2) else source.colour["colorspace"]
        self.color_range = 2 if full_range else 1
        for key, value in source.colour.items():
            if key != "color_range" and value not in (None, 2):  # 2 = unspecified in all three enums
                setattr(ctx, key, value)
        ctx.color_range = self.color_range
        if source.rotation:
            stream.set_display_rotation(source.rotation)
        self.video = stream
        self.audio = None
        self.source_audio = source.audio
        if audio and source.audio:
            rate, layout = output_sound_format(source.audio.sample_rate, source.audio.layout)
            self.audio = self.container.add_stream(AUDIO_CODEC, rate=rate, layout=layout)
            self.audio.bit_rate = AUDIO_BIT_RATE
        self.frames_written = 0
        # Audio is encoded in threads (SoundEncoder) and its packets are muxed here, in step with
        # the video, so the file stays interleaved.
        self._sound: SoundEncoder | None = None
        self._audio_error: BaseException | None = None
        self._audio_waiting = None  # (packet, its start in seconds) taken from the encoder but not yet due

    def _yuv(self, frame):
        """A decoded source frame in the clip's format, keeping its pixels where the format already fits."""
        if self.pad != (0, 0):
            if self.pix_fmt == "yuv420p":
                return self._from_rgb(to_rgb(frame))   # padding is simplest on RGB; odd sizes are rare
            # 16 bits a channel on the way, so the padding costs none of the ten
            rgb = frame.reformat(format="rgb48le", src_color_range=frame.color_range).to_ndarray()
            padded = av.VideoFrame.from_ndarray(self._pad_rgb(rgb), format="rgb48le")
            return padded.reformat(format=self.pix_fmt, dst_colorspace=self.colorspace,
                                   dst_color_range=self.color_range)
        if frame.format.name != self.pix_fmt or frame.color_range != self.color_range:
            frame = frame.reformat(format=self.pix_fmt, src_color_range=frame.color_range,
                                   dst_color_range=self.color_range)
        return frame

    def _pad_rgb(self, rgb):
        return np.pad(rgb, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge") if any(self.pad) else rgb

    def write_source(self, frame) -> None:
        self._encode(self._yuv(frame))

    def _from_rgb(self, rgb: np.ndarray):
        # The same colour matrix and range the source frames were read with, so generated frames
        # sit on the same colours as their neighbours.
        frame = av.VideoFrame.from_ndarray(self._pad_rgb(rgb), format="rgb24")
        return frame.reformat(format=self.pix_fmt, dst_colorspace=self.colorspace,
                              dst_color_range=self.color_range)

    def write_rgb(self, rgb: np.ndarray) -> None:
        self._encode(self._from_rgb(rgb))

    def encoder_frame(self, image) -> "av.VideoFrame":
        """A decoded source frame or an RGB array as the frame this writer's encoder takes."""
        return self._from_rgb(image) if isinstance(image, np.ndarray) else self._yuv(image)

    def mux_packet(self, packet, until) -> None:
        """Mux a video packet made elsewhere (copied, or from another encoder with this stream's
        settings), then the audio that starts before `until` seconds (waiting for its encoder:
        copied video comes faster than sound is encoded)."""
        packet.stream = self.video
        self.container.mux(packet)
        self._mux_audio(until=until, wait=True)

    def _encode(self, frame) -> None:
        frame.pts = self.frames_written
        frame.time_base = self.time_base
        frame.duration = 1   # a decoded frame still carries its duration in the source's time base
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1
        self._mux_audio(until=self.frames_written * self.time_base)

    def write_audio(self, sound: "np.ndarray | SoundEncoder") -> None:
        """All of the clip's audio: float32 (channels, samples) at the source's rate and in its
        layout, or a SoundEncoder of it already running (started as soon as the sound was read).
        It is encoded in background threads and muxed as the video catches up with it (and the
        rest by close())."""
        if self.audio is None:
            return
        self.container.start_encoding()  # header and codecs set up here, before a thread uses one
        if isinstance(sound, np.ndarray):
            sound = SoundEncoder(sound, self.source_audio.sample_rate, self.source_audio.layout, usable_cores())
        self._sound = sound
        # Every AAC-LC encoder of one rate and layout describes its stream alike; a difference
        # here would be a bug, and the file would not play.
        if sound.extradata != self.audio.codec_context.extradata:
            raise RuntimeError("the sound's encoder does not match the output's audio stream")

    def finish_audio(self) -> None:
        """Wait until the sound given to write_audio is encoded, if it is long enough to be encoded
        in pieces. Copied video is muxed a packet at a time in Python, and while a dozen encoder
        threads take and give back the GIL around every AAC frame, each of those packets waits in
        line for it (10 minutes of copied 720p took 8 s so, against about 1 s alone): the copying
        goes faster after the sound than beside it."""
        if self._sound is not None and len(self._sound.pieces) > 1:
            self._sound.join()
            if self._sound.error is not None:   # now, not after all the copying
                raise self._sound.error

    def _mux_audio(self, until=None, wait: bool = False) -> None:
        """Mux the encoded audio packets that start before `until` seconds (all of them if None,
        waiting for the encoder to finish; with `wait`, waiting for those before `until`)."""
        if self._sound is None:
            return
        while True:
            if self._audio_waiting is not None:
                packet, starts = self._audio_waiting
            else:
                try:
                    packet = self._sound.next_packet(block=until is None or wait)
                except queue.Empty:
                    return
                if packet is None:  # the encoder is done
                    self._audio_error, self._sound = self._sound.error, None
                    return
                starts = None if packet.pts is None else packet.pts * packet.time_base
            if until is not None and starts is not None and starts > until:
                self._audio_waiting = packet, starts   # its start, worked out once: asked per video packet
                return
            self._audio_waiting = None
            packet.stream = self.audio
            self.container.mux(packet)

    def abort(self) -> None:
        """Stop without flushing: the caller is about to delete the file."""
        if self._sound is not None:
            self._sound.stop()
        try:
            self.container.close()
        except av.error.FFmpegError:
            pass

    def close(self) -> None:
        for packet in self.video.encode():
            self.container.mux(packet)
        self._mux_audio()
        if self._audio_error is not None:
            raise self._audio_error
        self.container.close()


def usable_cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# The output's sound: AAC-LC, which every player and browser decodes, at a bit rate transparent
# for speech and music in stereo.
AUDIO_CODEC = "aac"
AUDIO_BIT_RATE = 192_000
# The sample rates AAC can carry (ISO/IEC 14496-3's sampling frequency table).
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


@functools.lru_cache(maxsize=None)
def output_sound_format(rate: int, layout: str) -> tuple[int, str]:
    """The sample rate and channel layout of the output's AAC for a source's sound: the same where
    AAC takes them; else the nearest AAC rate at or above the source's (96 kHz above that), and
    for a layout the encoder does not take, stereo (mono for one channel)."""
    out_rate = rate if rate in AAC_RATES else min((r for r in AAC_RATES if r >= rate), default=AAC_RATES[-1])
    try:
        aac_encoder(out_rate, layout)
        return out_rate, layout
    except (av.error.FFmpegError, ValueError):
        return out_rate, "mono" if av.AudioLayout(layout).nb_channels == 1 else "stereo"


def aac_encoder(rate: int, layout: str):
    """An opened AAC encoder of the output's settings: float planar input, pts in samples."""
    ctx = av.CodecContext.create(AUDIO_CODEC, "w")
    ctx.sample_rate, ctx.layout, ctx.format = rate, layout, "fltp"
    ctx.bit_rate, ctx.time_base = AUDIO_BIT_RATE, Fraction(1, rate)
    ctx.open()
    return ctx


def convert_sound(samples: np.ndarray, rate: int, layout: str, to_rate: int, to_layout: str) -> np.ndarray:
    """float32 (channels, samples) at `rate` in `layout` -> the same sound at `to_rate` in
    `to_layout` (FFmpeg's resampler, which keeps sample 0 in place), exactly as long in time:
    round(samples * to_rate / rate) samples."""
    if (rate, layout) == (to_rate, to_layout):
        return samples
    resampler = av.AudioResampler(format="fltp", layout=to_layout, rate=to_rate)
    out, step = [], 1 << 16
    for at in range(0, samples.shape[1], step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, at:at + step]), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, at, Fraction(1, rate)
        out += [f.to_ndarray() for f in resampler.resample(frame)]
    out += [f.to_ndarray() for f in resampler.resample(None)]
    want = round(samples.shape[1] * to_rate / rate)
    got = np.concatenate(out, axis=1) if out else np.zeros((av.AudioLayout(to_layout).nb_channels, 0), np.float32)
    result = np.zeros((got.shape[0], want), np.float32)
    result[:, :min(want, got.shape[1])] = got[:, :want]
    return result


# Long sound is cut into as many pieces as there are cores, each at least this long, and the
# pieces encode at once, one thread each (the AAC encoder runs without the GIL): FFmpeg's AAC
# encoder manages 15-30x real time on one core of a 2-core EPYC, so a 10-minute soundtrack alone
# would take 20-40 s. Sound shorter than two pieces is encoded exactly as by a single encoder.
# (With the preroll below, 30-s pieces cost a third more encoding in all, spread over the cores.)
AUDIO_MIN_PIECE_SECONDS = 30
# Each piece's encoder first encodes this much of the sound before the piece and drops those
# packets: its rate control starts from a fixed guess and takes seconds to settle (on noisy speech
# the signal-to-noise ratio climbs 4-5 dB over the first 8-10 s). After 10 s the decoded sound
# around each join is within about 1 dB of a single encoder's.
AUDIO_PREROLL_SECONDS = 10
# ... and encodes this many frames past the piece's end, so its last kept packets are not a flush.
AUDIO_LOOKAHEAD_FRAMES = 4
# AAC frames handed to the encoder per call (PyAV cuts them into the codec's frames itself, with
# the same packets as one call per frame): about a second, so the threads spend their time in
# the encoder and seldom hold the GIL that the muxing thread needs.
AUDIO_FRAMES_PER_CALL = 48


class SoundEncoder:
    """AAC packets of a whole soundtrack, float32 (channels, samples) at `rate` in `layout`
    (converted first where AAC takes neither: output_sound_format), encoded piece by piece, a
    thread each, from the moment this is made, and handed out in order by next_packet(). Every
    piece's packets sit on the one grid of a single encoder (AAC frames counted from the clip's
    first sample, pts in samples, time base 1/rate), so the pieces join into one continuous
    stream; any output audio stream of this codec, rate, layout and bit rate can carry them."""

    def __init__(self, samples: np.ndarray, rate: int, layout: str, workers: int,
                 min_piece_seconds: float = AUDIO_MIN_PIECE_SECONDS, preroll_seconds: float = AUDIO_PREROLL_SECONDS):
        # A rate or layout that AAC does not take is converted first (output_sound_format).
        self.rate, self.layout = output_sound_format(rate, layout)
        self.samples = samples = convert_sound(samples, rate, layout, self.rate, self.layout)
        n = samples.shape[1]
        self.contexts = [aac_encoder(self.rate, self.layout)]   # opened here: a failure is the caller's
        self.frame = self.contexts[0].frame_size or 1024
        self.extradata = self.contexts[0].extradata
        frames = -(-n // self.frame)
        count = max(1, min(workers, int(n / (min_piece_seconds * self.rate))))
        bounds = [min(n, round(frames * k / count) * self.frame) for k in range(count + 1)]
        self.pieces = list(zip(bounds[:-1], bounds[1:]))
        self.contexts += [aac_encoder(self.rate, self.layout) for _ in self.pieces[1:]]
        self.preroll = -(-round(preroll_seconds * self.rate) // self.frame) * self.frame
        self.queues = [queue.Queue() for _ in self.pieces]
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._reading = 0
        self.threads = []
        for i in range(len(self.pieces)):
            thread = threading.Thread(target=self._work, args=(i,), daemon=True, name=f"aac encoder {i}")
            thread.start()
            # Only started threads are recorded, so that stop() (a signal can land between these
            # lines) never joins a thread that will not run.
            self.threads.append(thread)

    def next_packet(self, block: bool):
        """The next packet in order; None when all are out; queue.Empty if not `block` and the
        next one is not ready."""
        while self._reading < len(self.queues):
            packet = self.queues[self._reading].get(block=block)
            if packet is not None:
                return packet
            self._reading += 1
        return None

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _work(self, i: int) -> None:
        try:
            self._encode(i)
        except BaseException as e:  # reported by ClipWriter.close()
            self.error = self.error or e
            self._stop.set()
        finally:
            self.queues[i].put(None)

    def _encode(self, i: int) -> None:
        start, end = self.pieces[i]
        last = i == len(self.pieces) - 1
        n = self.samples.shape[1]
        ctx = self.contexts[i]
        fed_from = max(0, start - self.preroll)
        fed_to = n if last else min(n, end + AUDIO_LOOKAHEAD_FRAMES * self.frame)
        out = self.queues[i]

        def keep(packets):
            for p in packets:   # pts counts samples from the clip's start (the encoder's priming is before 0)
                if (i == 0 or p.pts >= start) and (last or p.pts < end):
                    out.put(p)
        step = AUDIO_FRAMES_PER_CALL * self.frame
        for at in range(fed_from, fed_to, step):
            if self._stop.is_set():
                return
            chunk = np.ascontiguousarray(self.samples[:, at:min(at + step, fed_to)])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = at
            frame.time_base = Fraction(1, self.rate)
            keep(ctx.encode(frame))
        keep(ctx.encode())  # flush
