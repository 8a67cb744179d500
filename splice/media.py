"""Video and audio I/O with PyAV: frame-exact reading by index, and writing the spliced clip.

Reading never decodes the whole file: the packet index (read by demuxing, which decodes nothing)
maps a frame index to its presentation timestamp and to the keyframe to seek to, and decoding
runs forward from there.
"""
from __future__ import annotations

import bisect
import os
import queue
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import UserError

OUTPUT_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")


def _open(path: str):
    try:
        return av.open(str(path), metadata_errors="ignore")
    except FileNotFoundError:
        raise UserError(f"Input file not found: {path}")
    except IsADirectoryError:
        raise UserError(f"Input is a folder, not a video file: {path}")
    except PermissionError:
        raise UserError(f"Cannot read the input file (permission denied): {path}")
    except av.error.FFmpegError as e:
        raise UserError(f"Cannot read {path} as a video ({e.strerror or e}); give an MP4, MOV, MKV or similar file")


@dataclass
class FrameIndex:
    """Presentation timestamps of every frame, in order, and which of them are keyframes."""
    pts: list[int]
    keyframe_pts: list[int]

    def position(self, pts: int) -> int | None:
        k = bisect.bisect_left(self.pts, pts)
        return k if k < len(self.pts) and self.pts[k] == pts else None

    def seek_points(self, index: int) -> list[int]:
        """Keyframes at or before frame `index`, nearest first: where decoding may start."""
        k = bisect.bisect_right(self.keyframe_pts, self.pts[index])
        return self.keyframe_pts[:k][::-1]


def _index_frames(container, stream) -> FrameIndex:
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
            continue  # flush packets, and frames an edit list cuts away
        t = packet.pts if packet.pts is not None else packet.dts
        if t is None:
            raise UserError("The video has no timestamps, so frames cannot be found exactly; "
                            "remux it first (ffmpeg -i IN -c copy OUT.mp4)")
        pts.append(t)
        if packet.is_keyframe:
            keys.append(t)
    pts.sort()
    keys.sort()
    if len(set(pts)) != len(pts):
        raise UserError("The video has repeated timestamps, so frames cannot be found exactly; "
                        "remux it first (ffmpeg -i IN -c copy OUT.mp4)")
    return FrameIndex(pts, keys or pts[:1])


def display_rotation(frame) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) a player turns this frame by to show it upright."""
    try:
        return int(round((frame.rotation or 0) / 90)) % 4 * 90
    except Exception:
        return 0


class VideoSource:
    """One input video: its rate, frame count, audio, and frame-exact decoding by index."""

    def __init__(self, path: str):
        self.path = str(path)
        container = _open(path)
        try:
            if not container.streams.video:
                raise UserError(f"{path} has no video stream; give a video file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or rate <= 0:
                raise UserError(f"{path} has no usable frame rate; re-encode it at a constant rate first")
            self.rate = Fraction(rate)
            self.time_base = Fraction(stream.time_base)
            self.stream_index = stream.index
            self.index = _index_frames(container, stream)
            if not self.index.pts:
                raise UserError(f"{path} has a video stream with no frames")
            ctx = stream.codec_context
            self.codec = ctx.name
            self.coded_width, self.coded_height = ctx.width, ctx.height
            self.audio = AudioInfo.of(container)
        except av.error.FFmpegError as e:
            raise UserError(f"Cannot read {path} as a video ({e.strerror or e}); give an MP4, MOV, MKV or similar file")
        finally:
            container.close()
        first = next(self.frames(0, 1), None)
        if first is None:
            raise UserError(f"No frame of {path} could be decoded; the file may be damaged")
        _, frame = first
        self.width, self.height = frame.width, frame.height   # as decoded (before display rotation)
        self.rotation = display_rotation(frame)
        self.colour = dict(colorspace=frame.colorspace, color_range=frame.color_range,
                           color_primaries=frame.color_primaries, color_trc=frame.color_trc)

    @property
    def frame_count(self) -> int:
        return len(self.index.pts)

    def time_of(self, index: int) -> Fraction:
        """Seconds from the first frame to frame `index`, from its real timestamp."""
        return (self.index.pts[index] - self.index.pts[0]) * self.time_base

    def absolute_time(self, index: int) -> Fraction:
        """Seconds on the container's clock (the clock the audio shares)."""
        return self.index.pts[index] * self.time_base

    @property
    def duration(self) -> Fraction:
        return Fraction(self.frame_count) / self.rate

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a player shows it."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def frames(self, start: int, stop: int) -> Iterator[tuple[int, "av.VideoFrame"]]:
        """Decoded frames start .. stop-1 with their indices, in order; seeks instead of decoding from 0."""
        stop = min(stop, self.frame_count)
        if start >= stop:
            return
        for seek_pts in self.index.seek_points(start) + [None]:
            container = _open(self.path)
            try:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                if seek_pts is not None:
                    container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
                expected = start
                for frame in container.decode(stream):
                    k = self.index.position(frame.pts) if frame.pts is not None else None
                    if k is None or k < expected:
                        continue
                    if k > expected:
                        break  # the seek landed after `start` (or a frame is missing): start earlier
                    yield k, frame
                    expected += 1
                    if expected == stop:
                        return
                if expected > start:
                    raise UserError(f"{self.path} ends early: frame {expected} could not be decoded; "
                                    "the file may be damaged")
            finally:
                container.close()
        raise UserError(f"Frame {start} of {self.path} could not be decoded; the file may be damaged")


def to_rgb(frame) -> np.ndarray:
    """RGB uint8 (H, W, 3), converted with the frame's own colour matrix and range."""
    return frame.reformat(format="rgb24", src_color_range=frame.color_range).to_ndarray()


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The frame as a player shows it, for images a person looks at or provides."""
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation else rgb


@dataclass
class AudioInfo:
    stream_index: int
    sample_rate: int
    layout: str
    channels: int
    codec: str

    @staticmethod
    def of(container) -> "AudioInfo | None":
        if not container.streams.audio:
            return None
        s = container.streams.audio[0]
        ctx = s.codec_context
        if not ctx.sample_rate:
            return None
        return AudioInfo(s.index, ctx.sample_rate, ctx.layout.name, ctx.layout.nb_channels, ctx.name)


def read_audio(path: str, info: AudioInfo, start: Fraction, samples: int) -> np.ndarray:
    """`samples` samples of float32 audio (channels, samples) from `start` seconds on the container
    clock. Where the file has no audio (before it starts, after it ends) the result is silence."""
    out = np.zeros((info.channels, samples), np.float32)
    first = round(start * info.sample_rate)      # absolute sample number of out[:, 0]
    container = _open(path)
    try:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=info.layout, rate=info.sample_rate)
        seek_to = max(Fraction(0), start - Fraction(1, 2))  # a little earlier: some codecs need priming
        container.seek(int(seek_to / stream.time_base), stream=stream, backward=True)
        cursor = None
        for frame in container.decode(stream):
            if frame.pts is not None:
                cursor = round(frame.pts * stream.time_base * info.sample_rate)
            if cursor is None:
                continue
            for chunk in resampler.resample(frame):
                data = chunk.to_ndarray()
                lo, hi = max(cursor, first), min(cursor + data.shape[1], first + samples)
                if hi > lo:
                    out[:, lo - first:hi - first] = data[:, lo - cursor:hi - cursor]
                cursor += data.shape[1]
            if cursor >= first + samples:
                break
    finally:
        container.close()
    return out


@contextmanager
def atomic_output(path: str):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}",
                               dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes it private; the clip is an ordinary file
        os.replace(tmp, target)
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


class ClipWriter:
    """H.264 (libx264, yuv420p) at a constant rate with exact pts, plus optional AAC audio."""

    def __init__(self, path: str, source: VideoSource, crf: int, audio: bool, preset: str = "medium"):
        # The index goes first in MP4/MOV so that players and browsers can start before the end.
        quicktime = Path(path).suffix.lower() in (".mp4", ".mov", ".m4v")
        self.container = av.open(path, "w", options={"movflags": "+faststart"} if quicktime else {})
        self.rate = source.rate
        # libx264's 4:2:0 needs even sizes: odd ones get one replicated row/column.
        self.width = source.width + source.width % 2
        self.height = source.height + source.height % 2
        self.pad = (self.height - source.height, self.width - source.width)
        stream = self.container.add_stream("libx264", rate=source.rate)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        # Frames are counted on this clock; the muxer may change the stream's own time base later.
        self.time_base = 1 / Fraction(source.rate)
        stream.time_base = self.time_base
        stream.options = {"crf": str(crf), "preset": preset}
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
        if audio and source.audio:
            self.audio = self.container.add_stream("aac", rate=source.audio.sample_rate,
                                                   layout=source.audio.layout)
            self.audio.bit_rate = 192_000
        self.frames_written = 0
        # Audio is encoded in a thread (AAC costs about 0.5 s for 15 s of stereo) and its packets
        # are muxed here, in step with the video, so the file stays interleaved.
        self._audio_packets: queue.Queue = queue.Queue()
        self._audio_thread: threading.Thread | None = None
        self._audio_error: BaseException | None = None
        self._audio_stop = threading.Event()
        self._audio_waiting = None  # a packet taken from the queue but not yet due

    def _yuv(self, frame):
        """A decoded source frame as yuv420p, keeping its pixels where the format already fits."""
        if self.pad != (0, 0):
            return self._from_rgb(to_rgb(frame))   # padding is simplest on RGB; odd sizes are rare
        if frame.format.name != "yuv420p" or frame.color_range != self.color_range:
            frame = frame.reformat(format="yuv420p", src_color_range=frame.color_range,
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
        return frame.reformat(format="yuv420p", dst_colorspace=self.colorspace,
                              dst_color_range=self.color_range)

    def write_rgb(self, rgb: np.ndarray) -> None:
        self._encode(self._from_rgb(rgb))

    def encoder_frame(self, image) -> "av.VideoFrame":
        """A decoded source frame or an RGB array as the frame this writer's encoder takes."""
        return self._from_rgb(image) if isinstance(image, np.ndarray) else self._yuv(image)

    def mux_packet(self, packet, until) -> None:
        """Mux a video packet made elsewhere (copied, or from another encoder with this stream's
        settings), then the audio that starts before `until` seconds."""
        packet.stream = self.video
        self.container.mux(packet)
        self._mux_audio(until=until)

    def _encode(self, frame) -> None:
        frame.pts = self.frames_written
        frame.time_base = self.time_base
        frame.duration = 1   # a decoded frame still carries its duration in the source's time base
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1
        self._mux_audio(until=self.frames_written * self.time_base)

    def write_audio(self, samples: np.ndarray) -> None:
        """All of the clip's audio, float32 (channels, samples): encoded in a background thread and
        muxed as the video catches up with it (and the rest by close())."""
        if self.audio is None:
            return
        self.container.start_encoding()  # header and codecs set up here, before the thread uses one
        self._audio_thread = threading.Thread(target=self._encode_audio, args=(samples,), daemon=True,
                                              name="aac encoder")
        self._audio_thread.start()

    def _encode_audio(self, samples: np.ndarray) -> None:
        try:
            frame_size = self.audio.codec_context.frame_size or 1024
            for start in range(0, samples.shape[1], frame_size):
                if self._audio_stop.is_set():
                    return
                chunk = np.ascontiguousarray(samples[:, start:start + frame_size])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.audio.layout.name)
                frame.sample_rate = self.audio.rate
                frame.pts = start
                frame.time_base = Fraction(1, self.audio.rate)
                for packet in self.audio.encode(frame):
                    self._audio_packets.put(packet)
            for packet in self.audio.encode():  # flush
                self._audio_packets.put(packet)
        except BaseException as e:  # reported by close()
            self._audio_error = e
        finally:
            self._audio_packets.put(None)

    def _mux_audio(self, until=None) -> None:
        """Mux the encoded audio packets that start before `until` seconds (all of them if None,
        waiting for the encoder to finish)."""
        if self._audio_thread is None:
            return
        while True:
            packet = self._audio_waiting
            if packet is None:
                try:
                    packet = self._audio_packets.get(block=until is None)
                except queue.Empty:
                    return
            if packet is None:  # the encoder is done
                self._audio_thread = None
                return
            if until is not None and packet.pts is not None and packet.pts * packet.time_base > until:
                self._audio_waiting = packet
                return
            self._audio_waiting = None
            self.container.mux(packet)

    def abort(self) -> None:
        """Stop without flushing: the caller is about to delete the file."""
        self._audio_stop.set()
        if self._audio_thread is not None:
            self._audio_thread.join()
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
