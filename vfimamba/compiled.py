"""compile=True: the net's forward for one input shape compiled by TorchInductor as one graph, kept
in the user cache folder, and loaded by later processes instead of being traced and compiled again.

Why ahead of time: `torch.compile` traces the net again in every process (TorchDynamo, seconds for a
net of this size: 36 graphs, split at every scan and warp, before the scans and warps became the
custom operators of `export.py`), even when Inductor's own caches hold the compiled code.
torch.compile's ahead-of-time mode (`.aot_compile()`, `torch.compiler.load_compiled_function`) saves
the traced graph, its guards and Inductor's output in one file; loading it traces nothing.

A file serves only what it was built for. Its name is a hash of everything the compiled code was
specialised on (`signature()`): torch's, Triton's and CUDA's versions, the GPU, this package's
source, the net's structure and switches (every module's plain attributes, every parameter's and
tensor attribute's shape, dtype and layout), the input shapes and layouts, and the call's constants
(scale, repeats, autocast dtype). The weights are not: the compiled function takes the net as an
argument and reads its parameters at every call, so one file serves every checkpoint of a model.
Of TorchDynamo's guards only those on the input tensors are kept (the others cannot all be saved);
the hash covers what the dropped ones checked.

Like export.py this imports the compiler stack (seconds), so only compile=True imports it.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

import torch

from .errors import VFIMambaError
from .export import _Forward, opaque_ops
from .model import VFIMambaNet

FORMAT = 1  # bumped when what a file holds or how it is named changes
SUFFIX = ".aot"
RECOMPILE_LIMIT = 64  # without ahead-of-time compilation: frame sizes and interpolators, one graph each
# Module attributes that do not change what the forward computes (a counter of set_fast calls).
UNTRACED = frozenset({"fast_generation", "training"})


# torch 2.11 has the ahead-of-time API and saves and loads the fp16 path's forward (since the
# fixes described in export.py), but a later process's call under a disabled autocast failed its
# saved guards. The held autocast below avoids that state; that 2.11's loaded forward then passes
# and computes what was compiled (float32 parts in float32) is not established on a GPU, so 2.11
# compiles in each process.
AOT_MIN_TORCH = (2, 13)


def ahead_of_time() -> bool:
    """Whether this torch saves and loads ahead-of-time compiled functions of the net."""
    import torch._dynamo
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    return (version >= AOT_MIN_TORCH and hasattr(torch.compiler, "load_compiled_function")
            and hasattr(torch._dynamo.config, "enable_aot_compile"))


@functools.cache
def _source_digest() -> str:
    """sha256 of this package's Python sources: a change to the model's code makes new files."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _describe(v) -> str | None:
    """A plain attribute's value as text that is the same in every process (None: not plain)."""
    if v is None or isinstance(v, (bool, int, float, str, torch.dtype, torch.memory_format, torch.device)):
        return repr(v)
    if isinstance(v, (tuple, list)):
        parts = [_describe(x) for x in v]
        return None if None in parts else "(" + ",".join(parts) + ")"
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}{v.stride()}{v.dtype}{v.device.type}"
    if callable(v) and hasattr(v, "__qualname__"):
        return f"{getattr(v, '__module__', '')}.{v.__qualname__}"
    if hasattr(v, "__dataclass_fields__"):
        return repr(v)
    return None


def _net_structure(net: VFIMambaNet) -> list[str]:
    out = []
    for name, m in net.named_modules():
        attrs = []
        for k, v in sorted(vars(m).items()):
            if k in UNTRACED or k in ("_parameters", "_buffers", "_modules") or k.startswith("_forward") \
                    or k.endswith("_hooks") or k.endswith("hooks_with_kwargs"):
                continue
            d = _describe(v)
            if d is not None:
                attrs.append(f"{k}={d}")
        out.append(f"{name}:{type(m).__qualname__}:{';'.join(attrs)}")
    for name, t in [*net.named_parameters(), *net.named_buffers()]:
        out.append(f"{name}:{_describe(t)}")
    return out


def signature(net: VFIMambaNet, imgs: torch.Tensor, timestep: torch.Tensor, *, scale: float, repeats: int,
              autocast_dtype: torch.dtype | None, backend: str | Callable = "inductor") -> str:
    """The hex digest that names the file of this net's forward on inputs like these (see above)."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:  # CPU-only torch
        triton_version = None
    dev = imgs.device
    gpu = (torch.cuda.get_device_name(dev), torch.cuda.get_device_capability(dev)) if dev.type == "cuda" else ()
    parts = [f"format {FORMAT}", _describe(backend) or repr(backend), torch.__version__, repr(triton_version), str(torch.version.cuda), repr(gpu),
             sys.version.split()[0], _source_digest(), repr(scale), repr(repeats), repr(autocast_dtype),
             _describe(imgs), _describe(timestep), *_net_structure(net)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _held_autocast(device_type: str):
    """The autocast state in which a file's forward is traced, loaded, checked and called: enabled
    (at the device's default dtype), whatever the caller's. The forward sets its own precision
    inside (`_Forward(own_autocast=True)`), so this changes nothing it computes; it fixes what the
    saved guards see. They compare the inputs' dispatch keys, which an autocast turned off excludes
    from, and torch 2.11 records them without that exclusion (a later process's call under a
    disabled autocast failed them: "dispatch key set mismatch ... AutocastCUDA"), while later ones
    record them as they check them. Under an enabled autocast there is no exclusion to disagree on.
    It also makes AOTAutograd, which sees an autocast on when it wraps the graph, run the compiled
    graph with autocast off, as the forward's own regions were traced."""
    return torch.autocast(device_type, cache_enabled=False)


def _keep_tensor_guards(entries):
    """The guards on the input tensors (the parameters' are left out: they cannot all be saved, and
    signature() covers their shapes, dtypes and layouts)."""
    return [e.guard_type == "TENSOR_MATCH" and not isinstance(e.value, torch.nn.Parameter) for e in entries]


def forward(net: VFIMambaNet, imgs: torch.Tensor, timestep: torch.Tensor, *, scale: float, repeats: int = 1,
            autocast_dtype: torch.dtype | None = None, folder: str | os.PathLike,
            backend: str | Callable = "inductor") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The net's forward on inputs shaped and laid out like `imgs` (P, 6, H, W) and `timestep`
    (P * repeats,): loaded from `folder` when a file for it is there, else compiled (the first time:
    a minute or more on a GPU) and saved there. Returns f(imgs, timestep) -> the interpolated
    frames, which runs under its own autocast (to `autocast_dtype`, off when None) whatever the
    caller's. A file that cannot be loaded (damaged, or from a torch that reads it otherwise) is
    compiled again and replaced; one that cannot be saved (disk full) only costs the next process
    its compilation, with a warning."""
    aot = ahead_of_time()
    # own_autocast only where the file's forward runs under the held autocast (compiled in the
    # process, the wrapper runs under a disabled one, as a float32 forward needs no region)
    wrapper = _Forward(net, scale, autocast_dtype, repeats, own_autocast=aot)
    held = functools.partial(_held_autocast, imgs.device.type)
    path = Path(folder) / (signature(net, imgs, timestep, scale=scale, repeats=repeats,
                                     autocast_dtype=autocast_dtype, backend=backend) + SUFFIX)
    from .export import register_ops
    register_ops()  # a loaded graph calls the scan and warp operators by name
    fn, loaded, jit = None, False, None
    if aot and path.is_file():
        try:
            with open(path, "rb") as f, held():
                fn = torch.compiler.load_compiled_function(f)
                loaded = fn.guard_check(wrapper, imgs, timestep)  # False: the hash missed a difference
            fn = fn if loaded else None
        except Exception:  # noqa: BLE001 - any failure to read a cache file means: build it again
            fn = None
    if fn is None and aot:
        # Traced in the held autocast, as run() calls it: the wrapper's own is in the graph.
        # enable_aot_compile: only for this compilation (its default has changed between versions).
        with opaque_ops(net), torch.no_grad(), held(), torch._dynamo.config.patch(enable_aot_compile=True):
            compiler = torch.compile(wrapper.forward, fullgraph=True, dynamic=False, backend=backend,
                                     options={"guard_filter_fn": _keep_tensor_guards})
            try:
                fn = compiler.aot_compile(((imgs, timestep), {}))
            except Exception as e:  # noqa: BLE001 - e.g. a backend whose output cannot be saved
                warnings.warn(f"VFIMamba: this torch could not compile the forward ahead of time ({e}); "
                              "compiling it in this process (a later one traces it again, with Inductor's "
                              "caches warm)", RuntimeWarning, stacklevel=2)
        if fn is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fn.save_compiled_function(str(path))  # written beside it and renamed: never half a file
            except OSError as e:
                warnings.warn(f"VFIMamba: could not save the compiled forward to {path} ({e}); "
                              "the next process compiles it again", RuntimeWarning, stacklevel=2)
    if fn is None:
        jit = torch.compile(wrapper.forward, fullgraph=True, dynamic=False, backend=backend)

    if jit is not None:
        def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # Traced on every call that its guards do not match: each frame size and wrapper is one
            # more compilation of the same code, beyond TorchDynamo's default limit of 8.
            limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
            with opaque_ops(net), torch.no_grad(), torch.autocast(x.device.type, enabled=False), \
                    torch._dynamo.config.patch(recompile_limit=limit):
                try:
                    return jit(x, t)
                except Exception as e:  # a graph break (fullgraph) or an Inductor failure
                    raise VFIMambaError(f"compile=True: the net could not be compiled as one graph ({e})") from e
        run.loaded, run.ahead_of_time = False, False
        return run

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), held():
            return fn(wrapper, x, t)
    run.loaded, run.ahead_of_time = loaded, True
    return run
