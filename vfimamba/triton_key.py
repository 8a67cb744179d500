"""Triton's hash of its own compiler, computed ahead of the first kernel launch.

Every Triton kernel's cache key includes one hash of Triton itself (its compiler's sources and its
library, libtriton.so, about 0.4 GB in Triton 3.6), computed once per process at the first launch
and kept by Triton. On an H100 host that is 0.4 s of a first frame. `start()` computes it in a
thread: reading and hashing release the GIL, so it overlaps the rest of the load. `wait()`, before
a first launch, lets that thread finish rather than having the launch compute the same hash a
second time (Triton's cache of it is not locked: two threads that ask at once both compute it).

The thread imports Triton: start it once PyTorch is imported, since an import in a thread beside
the import of PyTorch could meet it halfway (each waiting for a module the other is loading).
"""
from __future__ import annotations

import threading

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _compute() -> None:
    try:
        try:
            from triton.runtime.cache import triton_key  # where newer Tritons keep it
        except ImportError:
            from triton.compiler.compiler import triton_key
        triton_key()
    except Exception:   # no Triton, or another layout: the first launch computes it as usual
        pass


def start() -> None:
    """Start the hash in a thread (once per process); returns at once."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_compute, name="triton-key", daemon=True)
            _thread.start()


def wait() -> None:
    """Wait for a hash that start() began (nothing to do if it did not)."""
    thread = _thread
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join()
