"""A model loaded and run in a process of its own, so that the command's own work really overlaps it.

Importing PyTorch and loading a network take seconds (`import torch` alone 2.6-4 s on the GPU host
of bench/results/pipeline.md). Done in a thread, they hold Python's GIL for most of that time, and
the probe and analysis they were meant to overlap slowed down by about as much (there: probe 0.04 ->
1.8-2.5 s, analysis 1.6 -> 3.4-3.9 s). A child process has an interpreter and a GIL of its own.

`ModelProcess(name, device, options)` starts the child at once and returns; the child imports the
model's packages and loads it with `splice.models.load_interpolator`, exactly as a load in this
process would, while the caller goes on. `warm_up(size, timesteps)` asks the child to pay a model's
first-call set-up for that frame size as soon as it is loaded, without waiting for it.
`loaded()` waits for the load and gives the `LoadedModel`, whose interpolator sends each pair of
frames to the child and returns its frames.

The two sides speak over a socket pair: pickled tuples, requests answered in order. A request may
be sent before the previous reply is read (the load, then a warm-up), so the caller blocks only when
it needs a result; replies that carry frames are read before the next request is sent, so neither
side can block the other on a full socket. The child ignores Ctrl-C (the terminal sends it to both:
the parent decides), ends when the socket closes, and, on Linux, when the parent dies.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import UserError

if TYPE_CHECKING:
    import numpy as np

ROOT = str(Path(__file__).resolve().parents[1])   # where splice/, vfimamba/ and rife/ are importable from

# The child's whole program: splice may not be importable from the caller's working directory (a
# checkout's interpolate_video.py run from elsewhere), so its folder goes first on the path.
_BOOT = "import sys; sys.path.insert(0, sys.argv[3]); from splice.worker import serve; serve(int(sys.argv[1]), int(sys.argv[2]))"

# How long a child that was told to stop, or whose socket closed, may take to exit before it is killed.
CLOSE_GRACE_S = 2.0


# Where the model's process keeps Python's compiled bytecode when it could not be kept beside the
# sources (see cache_bytecode), under the user cache folder.
BYTECODE_FOLDER = "pycache"

# glibc's malloc settings for the model's process (see keep_heap): no block gets a mapping of its own
# (mmap_max=0), and freed memory stays in the heap (a trim threshold of 1 TiB, more than any heap).
HEAP_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"
# glibc's older environment variables for the settings HEAP_TUNABLES makes, and those beside them
_MALLOC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def child_environment(package: str = "torch") -> dict[str, str]:
    """The environment the model's process starts with: this one's, with `cache_bytecode` and
    `keep_heap` applied. This process's own environment and settings are left as they are."""
    return keep_heap(cache_bytecode(dict(os.environ), package))


def cache_bytecode(env: dict[str, str], package: str = "torch") -> dict[str, str]:
    """`env`, plus a bytecode cache of the child's own where Python would otherwise compile `package`
    from source in every run.

    Python keeps each module's compiled bytecode in __pycache__ beside the source. pip writes it
    when it installs a package; uv, and installs into a read-only folder, do not. Where it is missing
    and Python may not write it there either (PYTHONDONTWRITEBYTECODE, common in containers, or a
    folder this user cannot write), every `import torch` compiles about a thousand modules again:
    2.6-3.0 s instead of 1.1 s on an H100 host, 4.3-5.0 s instead of 1.3-2.1 s on a 2-core CPU
    (bench/results/pipeline.md, 2026-12-07). The child then keeps them under the user cache folder
    instead (PYTHONPYCACHEPREFIX; about 25 MB), which leaves the installed packages as they were.
    Nothing changes where the bytecode is already beside the sources, where Python will write it
    there itself, or where the user chose a PYTHONPYCACHEPREFIX."""
    import importlib.util
    from .cache import cache_dir
    env = dict(env)
    if env.get("PYTHONPYCACHEPREFIX"):
        return env
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):   # a broken install, or a module without a spec: the child will say
        return env
    if spec is None or not spec.has_location or not spec.origin or not spec.origin.endswith(".py"):
        return env
    try:
        cached = os.path.isfile(importlib.util.cache_from_source(spec.origin))
    except NotImplementedError:         # an interpreter without bytecode caching
        return env
    writes_beside = not env.get("PYTHONDONTWRITEBYTECODE") and os.access(os.path.dirname(spec.origin), os.W_OK)
    if cached or writes_beside:
        return env
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / BYTECODE_FOLDER)
    return env


def keep_heap(env: dict[str, str]) -> dict[str, str]:
    """`env`, plus glibc malloc settings that keep the memory of freed tensors for the next ones.

    glibc gives every block of 32 MiB or more a mapping of its own and unmaps it when it is freed,
    so each new one is zeroed by the kernel a 4 KiB page fault at a time. A network on the CPU frees
    and allocates such tensors at every layer of every frame: VFIMamba_S at 720p made 5.4 million
    page faults and spent 22 s in the kernel over four frames, against 0.6 million and 5 s with
    HEAP_TUNABLES, and took 10.4 s a frame against 5.7 s; its peak memory rose from 1.9 to 2.4 GB
    (AMD EPYC, 2 cores; bench/results/vfimamba_cpu.md, 2026-12-07). The model's process lives for
    the whole job and allocates the same sizes frame after frame, so it keeps its heap. On a GPU
    its tensors live on the GPU and this changed nothing measurable (bench/results/pipeline.md,
    2026-12-07 13:16). Nothing changes where the C library is not glibc, or where the user already
    chose malloc settings: a malloc tunable in GLIBC_TUNABLES, or one of glibc's older MALLOC_*_
    variables for the same settings (GLIBC_TUNABLES would override those)."""
    env = dict(env)
    user = env.get("GLIBC_TUNABLES", "")
    chosen = "glibc.malloc." in user or any(env.get(name) for name in _MALLOC_VARIABLES)
    if uses_glibc() and not chosen:
        env["GLIBC_TUNABLES"] = f"{user}:{HEAP_TUNABLES}" if user else HEAP_TUNABLES
    return env


def uses_glibc() -> bool:
    """Whether this Python runs on glibc (whose malloc settings keep_heap makes)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


def available() -> bool:
    """A model process can be started here (POSIX: it inherits its end of a socket pair)."""
    return os.name == "posix" and hasattr(socket, "socketpair")


class ModelProcess:
    """`load_interpolator(name, device, **options)` in a child process (see the module's docstring).

    Use it as a context manager, or call close(): the child ends with it."""

    def __init__(self, name: str = "auto", device: str = "auto", options: dict | None = None,
                 log: Callable[[str], None] | None = None):
        self.log = log or (lambda *_: None)
        self.seconds = 0.0          # how long the child took to load the model (its own clock)
        self.waited = 0.0           # how long loaded() blocked for it
        self._lock = threading.Lock()
        self._pending = 0           # requests sent whose replies are not read yet
        self._loaded = None
        self._failed: BaseException | None = None
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()), ROOT],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True,
                env=child_environment())
        except OSError as e:
            ours.close()
            raise UserError(f"cannot start a process for the model ({e})") from None
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._send(("load", name, device, dict(options or {})))

    # --- the protocol ----------------------------------------------------------------------------

    def _send(self, request: tuple) -> None:
        try:
            self._conn.send(request)
        except OSError:
            self._stopped()
        self._pending += 1

    def _reply(self):
        """The next reply (its log lines passed on first); what the child raised, raised here."""
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._stopped()
            if message[0] != "log":
                break
            self.log(message[1])
        self._pending -= 1
        kind, value = message
        if kind == "ok":
            return value
        if kind == "user":
            raise UserError(value)
        raise RuntimeError(f"the model process failed: {value}")

    def _stopped(self):
        """The child is gone: say how it ended."""
        try:
            code = self._proc.wait(timeout=CLOSE_GRACE_S)
        except subprocess.TimeoutExpired:
            code = None
        how = ("stopped answering" if code is None else
               f"was killed by {signal.Signals(-code).name}" if code < 0 else f"ended with exit status {code}")
        hint = " (out of memory?)" if code == -signal.SIGKILL else ""
        raise UserError(f"the model's process {how}{hint}; nothing was written") from None

    def _drain(self, load_only: bool = False) -> None:
        """Read the replies still owed, the load's first (only that one with `load_only`); the
        load's error is raised every time."""
        while self._pending and self._failed is None and not (load_only and self._loaded is not None):
            if self._loaded is None:
                start = time.perf_counter()
                try:
                    info = self._reply()
                except BaseException as e:
                    self._failed = e
                    raise
                finally:
                    self.waited += time.perf_counter() - start
                self.seconds = info.pop("seconds")
                self._loaded = info
            else:
                try:
                    self._reply()
                except (UserError, RuntimeError):
                    pass    # a warm-up's failure: the real call will say what is wrong
        if self._failed is not None:
            raise self._failed

    # --- the caller's side ----------------------------------------------------------------------

    def warm_up(self, size: tuple[int, int], timesteps: Sequence[float] = (0.5,)) -> None:
        """Ask the child to pay the model's first call for frames of `size` (height, width) and this
        many timesteps once it is loaded (on a GPU: cuDNN's plans, the graph capture); returns at once.
        On the CPU the child leaves it out: it would be a whole inference for nothing."""
        with self._lock:
            if self._failed is None:
                self._send(("warmup", (int(size[0]), int(size[1])), [float(t) for t in timesteps]))

    def loaded(self):
        """The LoadedModel, once the child has loaded it (raises what the load raised)."""
        from .models import LoadedModel
        with self._lock:
            self._drain(load_only=True)
            info = dict(self._loaded)
        remote = RemoteInterpolator(self, info["name"], info["description"])
        return LoadedModel(remote, info["name"], info["description"], info["why"], info["candidates"])

    def interpolate(self, frame0: np.ndarray, frame1: np.ndarray, timesteps: Sequence[float]) -> list[np.ndarray]:
        import numpy as np
        with self._lock:
            self._drain()
            self._send(("interpolate", np.ascontiguousarray(frame0), np.ascontiguousarray(frame1),
                        [float(t) for t in timesteps]))
            return self._reply()

    def close(self) -> None:
        """End the child: nothing it holds is worth waiting for (a load is thrown away)."""
        if not self._conn.closed:
            self._conn.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=CLOSE_GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class RemoteInterpolator:
    """An Interpolator whose frames come from a ModelProcess."""

    def __init__(self, process: ModelProcess, name: str, description: str):
        self.process, self.name, self.description = process, name, description

    def interpolate(self, frame0, frame1, timesteps):
        return self.process.interpolate(frame0, frame1, timesteps)


# --- the child ----------------------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    """On Linux, the kernel ends this process when its parent dies (even by SIGKILL), instead of
    leaving it to load a model for nobody."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:      # the parent died before the line above
        os._exit(0)


def out_of_memory(error: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, PyTorch's OutOfMemoryError (CUDA), or its
    CPU allocator's RuntimeError."""
    return (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def memory_detail(error: BaseException) -> str:
    """How much more the failed allocation wanted, or the error's first line."""
    text = str(error).strip()
    asked = re.search(r"(?i)tried to allocate (\d+) bytes", text)
    if asked:
        return f"{int(asked.group(1)) / 2 ** 20:.0f} MiB more was needed"
    asked = re.search(r"(?i)tried to allocate ([\d.]+ ?[KMGT]i?B)", text)
    if asked:
        return f"{asked.group(1)} more was needed"
    lines = text.splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _info(model, seconds: float) -> dict:
    return {"name": model.name, "description": model.description, "why": model.why,
            "candidates": model.candidates, "seconds": round(seconds, 3)}


def _warms_up(interpolator) -> bool:
    """Worth warming up: a GPU model with warmup(); on the CPU it would be a whole inference."""
    device = getattr(getattr(interpolator, "device", None), "type", None)
    return device == "cuda" and hasattr(interpolator, "warmup")


def serve(fd: int, parent: int) -> None:
    """The child's loop: answer requests until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    conn = Connection(fd)
    model = None
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        kind = request[0]
        try:
            if kind == "load":
                from .models import load_interpolator
                _, name, device, options = request
                start = time.perf_counter()
                model = load_interpolator(name, device, log=lambda text: conn.send(("log", str(text))), **options)
                reply = ("ok", _info(model, time.perf_counter() - start))
            elif model is None:
                reply = ("user", "the model is not loaded")
            elif kind == "warmup":
                if _warms_up(model.interpolator):
                    model.interpolator.warmup(request[1], request[2])
                reply = ("ok", None)
            elif kind == "interpolate":
                _, frame0, frame1, timesteps = request
                reply = ("ok", model.interpolate(frame0, frame1, timesteps))
            else:
                reply = ("error", f"unknown request {kind!r}")
        except UserError as e:
            reply = ("user", str(e))
        except Exception as e:
            if out_of_memory(e):
                where = "GPU" if "CUDA" in str(e) or type(e).__name__ == "OutOfMemoryError" else "computer"
                size = f" for {request[1].shape[1]}x{request[1].shape[0]} frames" if kind == "interpolate" else ""
                reply = ("user", f"the {where} ran out of memory{size} ({memory_detail(e)}); close other "
                                 "programs, or use a model that needs less (--model flow needs least)")
            else:   # a bug: its traceback goes with it
                reply = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        try:
            conn.send(reply)
        except OSError:
            return
