"""Rendering a timeline: source spans copied or re-encoded, bridges generated, sound cut to match.

Any plan (the 15-s splice, an edit) is a timeline of `plan.Span` and `plan.Bridge` entries in
output order; this module writes it, streaming, so that no more than a couple of frames are held
at once.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from .audio import timeline_audio
from .errors import UserError
from .media import (PIX_FMTS, AudioGap, SoundEncoder, VideoSource, atomic_output, to_rgb, upright, usable_cores,
                    write_error)
from .plan import Bridge, Entry
from .smartcopy import COPY_MODES, write_timeline

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")


@dataclass(frozen=True)
class EncodeOptions:
    """How the output is encoded: x264 quality and speed, and whether to keep the sound."""
    crf: int = 17
    preset: str = "medium"
    audio: bool = True
    pix_fmt: str = "yuv420p"
    copy_unchanged: str = "auto"   # copy the source's packets for unchanged footage: auto, on, off

    def check(self) -> "EncodeOptions":
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise UserError(f"--crf {self.crf} is out of range: x264 takes 0 (lossless) to 51 (worst); "
                            "17 (the default) is visually lossless, 23 is x264's own default")
        if self.preset not in X264_PRESETS:
            raise UserError(f"--preset {self.preset!r} is not an x264 preset; choose one of {', '.join(X264_PRESETS)}")
        if self.pix_fmt not in PIX_FMTS:
            raise UserError(f"--pix-fmt {self.pix_fmt!r} is not one of {', '.join(PIX_FMTS)}")
        if self.copy_unchanged not in COPY_MODES:
            raise UserError(f"--copy-unchanged {self.copy_unchanged!r} is not one of {', '.join(COPY_MODES)}")
        return self


class Stopwatch:
    """Seconds per named stage, summed over repeats."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str):
        watch = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[stage] = round(watch.seconds.get(stage, 0) + time.perf_counter() - self.start, 3)
        return _Stage()


class SoundReader:
    """The output's soundtrack (audio.timeline_audio), read in a thread from the moment this is
    made: the reading (a whole recording's sound, decoded and cut) needs nothing but the timeline,
    so it can go on while the bridges are checked. With `encode`, the sound's AAC encoding
    (media.SoundEncoder) starts as soon as it is read, before the output is opened."""

    def __init__(self, source: VideoSource, timeline: list[Entry], audio_gaps: list[AudioGap] | None = None,
                 encode: bool = False):
        self._args = source, timeline, source.rate, audio_gaps
        self._encode = encode
        self._samples = self._error = self.encoder = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="sound reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            samples = timeline_audio(*self._args, stop=self._stop)
            if not self._encode:
                self._samples = samples
            elif samples is not None and not self._stop.is_set():   # the encoder holds the sound
                info = self._args[0].audio
                self.encoder = SoundEncoder(samples, info.sample_rate, info.layout, usable_cores())
                if self._stop.is_set():    # closed while the encoder was being set up
                    self.encoder.stop()
        except BaseException as e:   # raised in the thread that asks for the sound
            self._error = e

    def close(self) -> None:
        """Stop reading and encoding (the job failed before the output took the sound)."""
        self._stop.set()
        if self.encoder is not None:
            self.encoder.stop()

    def result(self):
        """The sound once read: its SoundEncoder, already running, if made with `encode`, else
        float32 (channels, samples); None if closed first; what went wrong, raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if not self._encode:
            return self._samples
        return None if self._stop.is_set() else self.encoder


class GeneratedStills:
    """--save-generated: each generated frame as a lossless PNG named by its output index
    (000136.png), upright. Each is written beside its name (media.atomic_output) and all of them
    are renamed into place when the `with` block ends without an error: a job that fails leaves
    none, nor the folders it made for them."""

    def __init__(self, folder: str, rotation: int):
        self.folder, self.rotation = Path(folder), rotation
        self._pending = ExitStack()
        self._made: list[Path] = []

    def __enter__(self) -> "GeneratedStills":
        return self

    def __exit__(self, kind, error, trace) -> bool:
        try:
            return self._pending.__exit__(kind, error, trace)
        finally:
            if kind is None:
                self._make_folder()       # (a job without bridges still leaves the folder it was given)
            else:
                for folder in self._made:     # deepest first; only if still empty
                    try:
                        folder.rmdir()
                    except OSError:
                        pass

    def _make_folder(self) -> None:
        if not self.folder.is_dir():
            try:
                # one level at a time, top down, keeping only what this call made (a path such as
                # new/../old names folders that exist through ones that do not)
                for level in (*reversed(self.folder.parents), self.folder):
                    try:
                        os.mkdir(level)
                    except FileExistsError:
                        continue
                    self._made.insert(0, level)
            except OSError as e:
                raise write_error(e, self.folder / "000000.png", "--save-generated") or UserError(
                    f"Cannot create the --save-generated folder {self.folder} ({e.strerror}); choose another path") from None

    def __call__(self, index: int, rgb) -> None:
        self._make_folder()
        target = self.folder / f"{index:06d}.png"
        tmp = self._pending.enter_context(atomic_output(str(target), "--save-generated"))
        ok, png = cv2.imencode(".png", cv2.cvtColor(upright(rgb, self.rotation), cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f"OpenCV could not encode generated frame {index} as PNG")
        try:
            Path(tmp).write_bytes(png.tobytes())
        except OSError as e:   # said here: on its way out it would be taken for the video's failure
            raise write_error(e, target, "--save-generated") or e from None


def render(source: VideoSource, timeline: list[Entry], interpolator, path: str, encode: EncodeOptions,
           watch: Stopwatch, progress: bool = False, save_generated: "GeneratedStills | None" = None,
           audio_gaps: list[AudioGap] | None = None, overrides: dict | None = None,
           on_bridge=None, copy: list[dict] | None = None, sound: SoundReader | None = None,
           arrive=None) -> list[int]:
    """Write `timeline` to `path` (a temporary file the caller renames); returns the output indices
    of the generated frames. Gaps found in the source's audio are appended to `audio_gaps`.
    `overrides` maps a bridge's output index to another interpolator for it (a crossfade for a
    hard bridge); `on_bridge(bridge, left_rgb, right_rgb, frames)` is called with each bridge's
    endpoints and generated frames (the seam score). What was copied and what encoded, per
    timeline entry, is appended to `copy`. `sound`: the soundtrack already being read (a
    SoundReader of this timeline, with `audio_gaps` its list), else it is read here. `arrive`, in
    place of `interpolator`: a function that returns it, called when the first bridge needs it (timed
    as "model_wait"): what comes before that bridge is written while the model is still loading, and
    the progress bar appears once the model is there (a model that fails to load is then one line
    on stderr, not a bar cut short)."""
    total = timeline[-1].out + timeline[-1].count
    generated_at: list[int] = []
    warming = None if arrive else _warm_up(interpolator, source, timeline)
    audio = None
    if encode.audio and source.audio:
        with watch("audio"):
            audio = (sound or SoundReader(source, timeline, audio_gaps, encode=True)).result()

    def bridge_frames(bridge: Bridge, left, right) -> list:
        nonlocal warming, interpolator, arrive
        if arrive is not None:
            with watch("model_wait"):
                interpolator = arrive()
            arrive = None
            bar.show()
        with watch("generate"):
            if warming is not None:
                warming.join()
                warming = None
            model = (overrides or {}).get(bridge.out, interpolator)
            left_rgb, right_rgb, frames = _generate(model, left, right, bridge)
        if on_bridge is not None:
            on_bridge(bridge, left_rgb, right_rgb, frames)
        for k, rgb in zip(range(bridge.out, bridge.out + bridge.count), frames):
            generated_at.append(k)
            if save_generated is not None:
                save_generated(k, rgb)
        return frames
    with _Progress(total, progress, shown=arrive is None or not any(isinstance(e, Bridge) for e in timeline)) as bar:
        info = write_timeline(path, source, timeline, bridge_frames, crf=encode.crf, preset=encode.preset,
                              pix_fmt=encode.pix_fmt, mode=encode.copy_unchanged, audio=audio,
                              progress=bar.update)
    if copy is not None:
        copy += info
    return generated_at


class _Progress:
    """The encoding bar, drawn from show() on (counting the frames written before)."""

    def __init__(self, total: int, enabled: bool, shown: bool = True):
        self.total, self.enabled, self.done, self.bar = total, enabled, 0, None
        if shown:
            self.show()

    def show(self) -> None:
        if self.bar is None:
            self.bar = tqdm(total=self.total, initial=self.done, desc="encoding", unit="frame",
                            disable=not self.enabled)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _warm_up(interpolator, source: VideoSource, timeline: list[Entry]):
    """On a GPU, a model's first call pays once-per-process set-up (cuDNN and cuBLAS plans, kernels
    loaded from the disk cache: most of a second). Pay it in a thread while the first span is
    decoded and encoded, which the model does not need. On the CPU the warm-up would be a whole
    inference competing with the encoder for the same cores, so it is left out."""
    bridges = [e for e in timeline if isinstance(e, Bridge)]
    device = getattr(getattr(interpolator, "device", None), "type", None)
    if not bridges or device != "cuda" or not hasattr(interpolator, "warmup"):
        return None

    def run():
        try:
            interpolator.warmup((source.height, source.width), [float(t) for t in bridges[0].timesteps])
        except Exception:   # the real call will say what is wrong
            pass
    thread = threading.Thread(target=run, name="model warm-up", daemon=True)
    thread.start()
    return thread


def _generate(interpolator, left, right, bridge: Bridge) -> tuple:
    left_rgb, right_rgb = to_rgb(left), to_rgb(right)
    frames = interpolator.interpolate(left_rgb, right_rgb, [float(t) for t in bridge.timesteps])
    if len(frames) != bridge.count:
        raise RuntimeError(f"the model returned {len(frames)} frames for {bridge.count} timesteps")
    for rgb in frames:
        if rgb.shape != left_rgb.shape or rgb.dtype.name != "uint8":
            raise RuntimeError(f"the model returned {rgb.shape} {rgb.dtype}, expected {left_rgb.shape} uint8")
    return left_rgb, right_rgb, frames
