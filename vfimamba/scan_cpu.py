"""The "cpu" scan backend: scan_cpu.cpp, compiled once per machine with the system C++ compiler.

PyTorch has no fused scan on the CPU, and a scan written in tensor ops makes many passes over a
(channels x states x length) tensor; this kernel makes one, with the state in vector registers
(about 55x faster than a sequential loop on 2 cores; bench/bench_vfimamba_cpu.py). The shared
library is cached under $XDG_CACHE_HOME/interpolate_video (default ~/.cache), keyed by the source, the
flags, the compiler and the CPU, and threads run it on separate channel ranges (ctypes releases the GIL).
When no compiler is found or the build fails, `available()` is False and vfimamba.scan warns once and
uses its PyTorch scan.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .cache import user_cache_dir

SOURCE = Path(__file__).with_name("scan_cpu.cpp")
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC"]
_LOG2E = 1.4426950408889634

_lib = None
_error: str | None = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _cache_dir() -> Path:
    return user_cache_dir()


def _cpu_identity() -> str:
    """-march=native code runs only on CPUs with the same features: key the cache by them."""
    try:
        with open("/proc/cpuinfo") as f:
            info = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(info)))
    except OSError:
        return platform.processor() + platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def _build() -> ctypes.CDLL:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + version.encode()
                         + _cpu_identity().encode()).hexdigest()[:16]
    out = _cache_dir() / f"scan_cpu-{key}.so"
    if not out.is_file():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        except OSError:  # no writable cache (a read-only home): build for this process only
            out = Path(tempfile.mkdtemp(prefix="interpolate_video-")) / out.name
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            r = subprocess.run([cxx, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{cxx} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            os.replace(tmp, out)  # atomic: concurrent builders each install a complete library
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(out))
    p, i, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    lib.scan_rows.argtypes = [p] * 7 + [i, p] + [n] * 6
    lib.scan_rows.restype = i
    return lib


def available() -> bool:
    """Build (or find in the cache) the kernel once per process; False with `error()` if impossible."""
    global _lib, _error
    if _lib is None and _error is None:
        try:
            _lib = _build()
        except Exception as e:  # no compiler, a failed build, an unloadable library: all mean "use torch"
            _error = str(e) or type(e).__name__
    return _lib is not None


def error() -> str | None:
    return _error


def supports(A, delta_softplus: bool) -> bool:
    """The kernel assumes decays e^{delta A} <= 1: delta >= 0 (softplus) and A <= 0, at most 64 states."""
    return delta_softplus and A.shape[1] <= 64 and bool((A <= 0).all())


def check_out(out, shape, contiguous_cpu: bool = False):
    """Raise ValueError unless `out` can hold a scan's result of `shape`: float32 (and, for this
    kernel, which writes it directly, contiguous on the CPU). One check for every backend."""
    ok = out.shape == shape and out.dtype == torch.float32
    if contiguous_cpu:
        ok = ok and out.device.type == "cpu" and out.is_contiguous()
    if not ok:
        what = "a contiguous float32 CPU tensor" if contiguous_cpu else "a float32 tensor"
        raise ValueError(f"out must be {what} of shape {tuple(shape)}, not {out.dtype} {tuple(out.shape)} "
                         f"on {out.device}")


def selective_scan_cpu(u, delta, A, B, C, D, delta_bias, delta_softplus=True, out=None):
    """vfimamba.scan.selective_scan on CPU tensors; (b, d, l) float32.

    out: where to write y (returned), else a new tensor. It may be `u` or `delta` itself, the same
    memory in the same layout (each step's u and delta are read before its y is written there), but
    must not overlap them otherwise, nor any other input. A fresh output of a large scan costs the
    system a page fault per 4 KiB on its first write: at 720p's stage 3 (240 MB) about a quarter of
    the scan's time.
    """
    if not available():
        raise RuntimeError(f"the compiled CPU scan is unavailable: {_error}")
    b, d, length = u.shape
    g, n = B.shape[1], A.shape[1]
    f32 = torch.float32
    u, delta = u.to(f32).contiguous(), delta.to(f32).contiguous()
    A2 = (A.to(f32) * _LOG2E).contiguous()
    Bt = B.to(f32).transpose(-1, -2).contiguous()  # (b, g, L, n): small next to u and delta
    Ct = C.to(f32).transpose(-1, -2).contiguous()
    D = D.to(f32).contiguous()
    bias = (torch.zeros(d) if delta_bias is None else delta_bias.to(f32)).contiguous()
    if out is None:
        y = torch.empty_like(u)
    else:
        check_out(out, u.shape, contiguous_cpu=True)
        y = out
    for t in (u, delta):  # (all contiguous here) the same memory is safe, a shifted overlap is not
        a, z = t.data_ptr(), y.data_ptr()
        if a != z and a < z + y.nbytes and z < a + t.nbytes:
            raise ValueError("out overlaps u or delta at another offset; pass one of them or separate memory")
    rows = b * d
    threads = max(1, min(torch.get_num_threads(), rows // 8))
    cuts = [min(rows, (rows * i // threads + 7) // 8 * 8) for i in range(threads)] + [rows]
    ptrs = [t.data_ptr() for t in (delta, u, A2, Bt, Ct, D, bias)]

    def run(i):
        return _lib.scan_rows(*ptrs, int(delta_softplus), y.data_ptr(), cuts[i], cuts[i + 1], d, g, length, n)

    global _pool, _pool_size
    if threads == 1:
        codes = [run(0)]
    else:
        if _pool is None or _pool_size < threads:
            _pool, _pool_size = ThreadPoolExecutor(threads, thread_name_prefix="scan_cpu"), threads
        codes = list(_pool.map(run, range(threads)))
    if any(codes):
        raise RuntimeError(f"scan_cpu: unsupported shape (n={n})")
    return y
