"""How this package's Triton kernels are launched (scan_triton, layout_triton, act_triton,
warp_triton): on their tensors' own GPU, and, for a launch that may compile, with Triton's on-disk
cache in the user cache folder, so that a later process loads each kernel instead of compiling it again.

Triton reads its cache folder from its settings (triton.knobs.cache.dir), which mirror it into
the environment while set; the settings' scope() puts both back when the launch returns, so
nothing stays changed. A TRITON_CACHE_DIR that the user set wins. It is read when this module
is first imported (when a net first takes a Triton path): TorchInductor sets the same variable
to its own folder while it compiles (compile=True), and a kernel launched then is still ours.
A Triton without knobs (< 3.4) keeps its own cache folder."""
from __future__ import annotations

import contextlib
import os

import torch
import triton

from . import triton_key
from .cache import user_cache_dir

USER_CACHE_DIR = os.environ.get("TRITON_CACHE_DIR")
# Launch signatures seen in this process: Triton has compiled or loaded those, and a launch with
# one of them needs no cache folder (setting it costs more than a small kernel's launch).
_SPECIALISED: set = set()


def signature(args, extra) -> tuple:
    """What Triton specialises a kernel on, approximately: the tensors' dtypes and 16-byte alignment,
    each integer's divisibility by 16 (and being 1), and `extra` (the kernel, its constants)."""
    sig = []
    for a in args:
        if isinstance(a, torch.Tensor):
            sig.append((a.dtype, a.data_ptr() % 16 == 0))
        else:
            sig.append((a == 1, a % 16 == 0))
    return tuple(sig) + tuple(extra)


@contextlib.contextmanager
def kernel_cache(sig):
    """Triton's cache in the user cache folder around one launch of signature `sig` (see above)."""
    knobs = getattr(triton, "knobs", None)
    if sig in _SPECIALISED:
        yield
        return
    triton_key.wait()   # a new signature: Triton computes its cache key, which needs that hash
    if knobs is None or USER_CACHE_DIR:
        yield
        return
    with knobs.cache.scope():
        knobs.cache.dir = str(user_cache_dir() / "triton")
        yield
    _SPECIALISED.add(sig)


@contextlib.contextmanager
def launching(t: torch.Tensor, args, extra):
    """Around one kernel launch on tensor `t`'s device with arguments `args` and constants `extra`:
    that GPU made current (nothing to choose on the CPU, where the kernels run only under
    TRITON_INTERPRET=1), and the cache folder as kernel_cache() says."""
    with (torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()), \
            kernel_cache(signature(args, (t.device, *extra))):
        yield
