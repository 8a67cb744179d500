"""Running the network on real frames the way the official demos do.

The model was trained on cv2.imread frames: BGR channel order, values in [0, 1]. Frames are
replicate-padded (centred, like the official InputPadder) to a size the 5-level network divides
evenly, and the timestep is fed straight to the network, so any t in (0, 1) works.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections import OrderedDict
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .cache import user_cache_dir
from .errors import VFIMambaError
from .model import VFIMambaNet


def prefetch_gpu_libraries(device: torch.device) -> threading.Thread | None:
    """Start the once-per-process GPU set-up of a forward on `device` in a background thread: the
    CUDA context, cuDNN's and cuBLAS's handles, and the code of the kernels that the fast path
    launches (`launch_kernel_families`). The first frame would otherwise pay it, after the load;
    the ops release the GIL, so here it overlaps reading the checkpoint and building the net. Each
    frame size still plans its own convolutions on its first call."""
    if device.type != "cuda":
        return None

    def run():
        try:
            with torch.inference_mode(), torch.cuda.device(device):
                launch_kernel_families(device)
                torch.cuda.synchronize(device)
        except Exception:   # the real call will say what is wrong
            pass
    thread = threading.Thread(target=run, name="gpu-libraries", daemon=True)
    thread.start()
    return thread


def launch_kernel_families(device: torch.device) -> None:
    """One tiny launch of each kind of operation the forward uses: a half-precision channels-last
    convolution, transposed convolution and matrix product (cuDNN's and cuBLAS's set-up), then the
    rest in half and single precision. CUDA loads a kernel's code (decompressed from PyTorch's
    library) at its first launch, and the first of each kind cost 10-25 ms on an H100 host; there,
    run before the first 720p VFIMamba frame, the rest took 0.14 s and saved it 0.08 s. The inputs
    are ramps, not random numbers: the device's random generator is the caller's."""
    def ramp(*shape, dtype=torch.float16):
        return torch.linspace(-1, 1, math.prod(shape), device=device, dtype=dtype).reshape(shape)

    x = ramp(1, 16, 24, 24).contiguous(memory_format=torch.channels_last)
    w = ramp(16, 16, 3, 3).contiguous(memory_format=torch.channels_last)
    F.conv2d(x, w, padding=1)
    F.conv_transpose2d(x, w, stride=2, padding=1)
    a = ramp(64, 64)
    F.linear(a, a, a[0])
    for dt in (torch.float16, torch.float32):
        a = ramp(2, 8, 16, 16, dtype=dt)
        torch.exp(a), torch.sigmoid(a), F.silu(a), F.gelu(a), F.softplus(a), a.round(), F.relu(a, inplace=True)
        F.layer_norm(a.permute(0, 2, 3, 1), (8,))
        F.adaptive_avg_pool2d(a, 1)
        F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=False)
        F.grid_sample(a, ramp(2, 4, 4, 2, dtype=dt), align_corners=True, padding_mode="border")
        torch.einsum("bkdl,kdn->bkln", ramp(1, 4, 8, 16, dtype=dt), ramp(4, 8, 8, dtype=dt))
        (a.clamp(0, 1) * 255).to(torch.uint8)


def auto_scale(h: int, w: int) -> float:
    """The official advice: estimate flow at 0.5x for 2K frames and 0.25x for 4K; full size below."""
    side = max(h, w)
    if side >= 3000:
        return 0.25
    if side >= 1800:
        return 0.5
    return 0.0


def normalise_scale(scale: float) -> float:
    """0 means full resolution. The official forward treats any scale > 0 as "resize first", and at
    scale 1 that gives the same result as 0 for twice the backbone cost, so 1 (or more) becomes 0."""
    if scale <= 0 or scale >= 1:
        return 0.0
    inv = 1.0 / scale
    if abs(inv - round(inv)) > 1e-6 or round(inv) & (round(inv) - 1):
        raise ValueError(f"scale must be 0, 1 or 1/2**k (0.5, 0.25, ...), got {scale}")
    return 1.0 / round(inv)


def pad_divisor(scale: float) -> int:
    # The network needs multiples of 32 at full size (its U-Net and strided stages), and the flow
    # estimate at `scale` needs multiples of 16 on the resized frame.
    return 32 if scale == 0 else max(32, int(round(16 / scale)))


class Padder:
    """Replicate padding to a multiple of `divisor`, split evenly (extra pixel at the end)."""

    def __init__(self, h, w, divisor=32):
        ph = (-h) % divisor
        pw = (-w) % divisor
        self.h, self.w = h, w
        self.pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # left, right, top, bottom

    def __call__(self, x):
        return F.pad(x, self.pad, mode="replicate") if any(self.pad) else x

    def unpad(self, x):
        left, _, top, _ = self.pad
        return x[..., top:top + self.h, left:left + self.w]


def _dyadic(t: float, max_depth=10):
    """t as k / 2**d (smallest d) when it is one, else None."""
    f = Fraction(t).limit_denominator(1 << max_depth)
    if abs(float(f) - t) > 1e-9 or f.denominator & (f.denominator - 1):
        return None
    return f


PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def check_precision(precision) -> None:
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown precision={precision!r}; choose one of {', '.join(map(repr, PRECISIONS))} "
                         f"or None (fp16 on CUDA, else fp32)")


def resolve_precision(precision, device, scan_backend: str = "auto") -> str:
    """precision (None/"fp32"/"tf32"/"fp16"/"bf16") -> the precision actually used.

    Half precision needs CUDA and a CUDA scan kernel (the torch scan upcasts anyway); without them
    it falls back with a warning. None (the default of vfimamba.load) = fp16 on CUDA with the
    triton or mamba_ssm scan, else fp32, silently.
    """
    check_precision(precision)
    dev = torch.device(device)
    if precision is None:
        return "fp16" if dev.type == "cuda" and scan_backend in ("triton", "mamba_ssm") else "fp32"
    if precision != "fp32" and dev.type != "cuda":
        warnings.warn(f"VFIMamba precision={precision!r} needs device='cuda'; running fp32 on {dev}", RuntimeWarning)
        return "fp32"
    if precision in ("fp16", "bf16") and scan_backend not in ("triton", "mamba_ssm"):
        warnings.warn(f"VFIMamba precision={precision!r} needs scan_backend='triton' or 'mamba_ssm' "
                      f"(have {scan_backend!r}); using tf32", RuntimeWarning)
        return "tf32"
    return precision


# compile=True compiles each shape as one graph (torch.compile(fullgraph=True) with custom operators,
# torch 2.7's API); from torch 2.13 it is also saved and loaded ahead of time (compiled.AOT_MIN_TORCH).
COMPILE_MIN_TORCH = (2, 7)
# CUDA graphs kept per interpolator, one per input shape (frame size, batch, timestep count): each
# holds a private pool the size of one forward's activations (about 1 GiB for VFIMamba at 720p), so
# the least recently used goes once a fifth shape comes (a batch of recordings of mixed sizes).
GRAPH_CACHE_SIZE = 4
# Forwards run before a capture: the eager net needs one (cuDNN and cuBLAS plans, Triton kernels
# loaded, workspaces allocated: nothing of that may happen inside a capture); a compiled one three,
# as Inductor's own CUDA-graph support does (compilation, then autotuned kernels settled).
EAGER_WARMUPS, COMPILED_WARMUPS = 1, 3
GRAPH_BACKENDS = ("triton", "mamba_ssm")  # the scan backends whose forward a CUDA graph can capture


def _inductor_folder() -> str:
    """Where compile=True keeps Inductor's on-disk caches (compiled graphs, their Triton kernels,
    autotuning): the user cache folder, so that a later process reuses them, rather than Inductor's
    default under /tmp. A TORCHINDUCTOR_CACHE_DIR the user set wins; Inductor's own default does not
    count as one (Inductor writes it into the environment the first time it looks)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    mine = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if mine and os.path.abspath(mine) != os.path.abspath(default_cache_dir()):
        return mine
    return str(user_cache_dir() / "inductor")


@contextlib.contextmanager
def _compiling(folder: str):
    """Inductor's caches in `folder` while the net is compiled or a compiled forward loaded. Inductor
    reads its folder from TORCHINDUCTOR_CACHE_DIR, and the Triton kernels it builds set
    TRITON_CACHE_DIR below it; both variables are put back as they were afterwards."""
    names = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class VFIMambaInterpolator:
    """The Interpolator the pipeline uses: RGB uint8 frames in, one RGB uint8 frame per timestep out."""

    def __init__(self, net: VFIMambaNet, *, ckpt_path: str = "", device="cpu", tta: bool | None = None,
                 scale: float | None = None, scan_backend: str = "torch", recursive: bool = False,
                 precision: str | None = "fp32", compile: bool = False, cuda_graphs: bool = True,
                 max_batch_pixels: int = 8_000_000):
        self.net = net.eval()
        self.F = net.cfg.F
        self.device = torch.device(device)
        self.tta = (self.F == 32) if tta is None else bool(tta)  # the official demos' defaults
        self.scale = None if scale is None else normalise_scale(scale)
        self.scan_backend = scan_backend
        self.recursive = recursive  # official demo_Nx: dyadic timesteps by repeated midpoints
        # precision: "fp32" = exact float32 (TF32 off, matches the fixtures); "fp16" = the fast path
        # on CUDA (fp16 autocast for convs/linears, channels-last, half scan inputs with a float32
        # state, float32 flows: ~0.05/255 mean, <0.4/255 max from the float32 output on real
        # frames); "tf32" = float32 with TF32; "bf16" = like fp16 in bfloat16 (~10x less accurate);
        # None = fp16 on CUDA with a CUDA scan, else fp32.
        self.precision = resolve_precision(precision, self.device, scan_backend)
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        self._fast = dict(half_scan=half is not None, channels_last=half is not None, weight_dtype=half)
        # compile: TorchInductor compiles the forward of each input shape as one graph (CUDA only; it
        # fuses the permutes, casts and elementwise work; the scan kernels and grid_sample run as they
        # are), saved in the user cache folder so that a later process loads it (see compiled.py).
        # The first time a frame size is seen on a machine costs a compilation (a minute or more), so
        # the CLI, which generates a handful of frames, does not use it.
        # cuda_graphs: on CUDA each input shape is captured once as a CUDA graph that later calls
        # replay (the eager forward launches about a thousand kernels a frame, and at 720p the CPU
        # takes longer to launch them than the GPU to run them). compile=True always replays graphs. Both
        # need a scan backend that a graph can capture (GRAPH_BACKENDS).
        self._compile_dir = None
        self._compiled = OrderedDict()  # compile=True: input key -> the compiled forward
        if compile and self.device.type == "cuda":
            if tuple(int(v) for v in torch.__version__.split(".")[:2]) < COMPILE_MIN_TORCH:
                raise VFIMambaError(f"compile=True needs torch {'.'.join(map(str, COMPILE_MIN_TORCH))} or newer "
                                    f"(have {torch.__version__}); upgrade torch or leave compile off")
            self._compile_dir = _inductor_folder()
        elif compile:
            warnings.warn("VFIMamba compile=True needs device='cuda'; running eagerly", RuntimeWarning)
        # The torch scan sizes its chunks on the host from the data, which a graph cannot hold.
        graphed = (self.device.type == "cuda" and (cuda_graphs or self._compile_dir is not None)
                   and scan_backend in GRAPH_BACKENDS)
        self._graphs = OrderedDict() if graphed else None
        self._graph_lock = threading.Lock()  # one capture or replay at a time: they share static buffers
        self._apply_settings()
        self.max_batch_pixels = max_batch_pixels
        self.name = "vfimamba" if self.F == 32 else "vfimamba_s" if self.F == 16 else f"vfimamba_f{self.F}"
        nparams = sum(p.numel() for p in net.parameters())
        label = net.cfg.name
        self.description = (f"{label} (F={self.F}, {nparams / 1e6:.1f}M params) from {ckpt_path or 'memory'} on "
                            f"{self.device}, TTA {'on' if self.tta else 'off'}, scan={scan_backend}, {self.precision}")

    # -- tensors -----------------------------------------------------------------------------------
    # Frames travel as uint8: one upload of both frames (through pinned memory on CUDA, so the copy
    # runs at full speed), the channel swap and the float conversion on the device, and the outputs
    # quantised, swapped back and laid out as (H, W, 3) on the device before one copy back.
    def _upload(self, frames) -> torch.Tensor:
        """RGB uint8 (H, W, 3) frames -> BGR float (n, 3, H, W) in [0, 1] on the device."""
        for f in frames:
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {f.dtype} {f.shape}")
        pinned = self.device.type == "cuda"
        host = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=pinned)
        dst = host.numpy()
        for i, f in enumerate(frames):
            dst[i] = f
        x = host.to(self.device, non_blocking=pinned)
        return x.permute(0, 3, 1, 2).flip(1).float().div_(255.0).contiguous()

    def _download(self, x: torch.Tensor) -> list[np.ndarray]:
        """BGR float (n, 3, H, W) -> n RGB uint8 (H, W, 3) frames on the host."""
        q = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).flip(1).permute(0, 2, 3, 1).contiguous()
        if self.device.type != "cuda":
            out = q.numpy()
        else:
            host = torch.empty(q.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(q, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            out = host.numpy()
        return [out[i] for i in range(out.shape[0])]

    @contextlib.contextmanager
    def _precision(self):
        if self.device.type != "cuda":
            yield
            return
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.precision != "fp32"
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        try:
            with torch.autocast("cuda", dtype=half or torch.float16, enabled=half is not None):
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    @torch.no_grad()
    def predict(self, img0: torch.Tensor, img1: torch.Tensor, timesteps: Sequence[float], scale: float = 0.0):
        """Padded BGR (1, 3, H, W) tensors -> (len(timesteps), 3, H, W), like the official `inference`
        (fast_TTA: the pair and its 180-degree rotation in one batch, averaged after rotating back)."""
        self._own_settings()
        with self._precision():  # also when called directly (interpolate() already is inside it)
            pair = torch.cat([img0, img1], 1)
            if self.precision in ("fp16", "bf16"):
                pair = pair.contiguous(memory_format=torch.channels_last)
            pairs = torch.cat([pair, pair.flip(2).flip(3)], 0) if self.tta else pair
            n = pairs.shape[0]
            per = max(1, self.max_batch_pixels // (n * pair.shape[2] * pair.shape[3]))
            outs = []
            for i in range(0, len(timesteps), per):
                ts = list(timesteps[i:i + per])
                t = torch.tensor(ts, dtype=torch.float32, device=pair.device).repeat(n)
                pred = self._run(pairs, t, scale, len(ts))
                if self.tta:
                    pred = (pred[:len(ts)] + pred[len(ts):].flip(2).flip(3)) / 2.0
                outs.append(pred)
            return torch.cat(outs, 0)

    def _apply_settings(self):
        """This interpolator's fast-path settings on the net. Replayed, the launches cost nothing, so
        every convolution takes the fused bias + PReLU pass (without graphs only the large ones do:
        see layers.FUSE_MIN_ELEMENTS). CUDA graphs captured before read the weights of then: they go."""
        self.net.set_fast(**self._fast)
        self.net.set_launch_bound(self._graphs is None)
        with self._graph_lock:
            if self._graphs is not None:
                self._graphs.clear()
            self._compiled.clear()  # specialised on the net's settings
        self._generation = self.net.fast_generation

    def _own_settings(self):
        """The settings back, if something changed them since (another interpolator on the same
        net, a set_fast call)."""
        if self.net.fast_generation != self._generation:
            self._apply_settings()

    def _call(self, pairs, t, scale, repeats):
        """One forward of the net (compiled or not), without graphs."""
        if self._compile_dir is None:
            return self.net(pairs, t, scale=scale, local=True, repeats=repeats)[3]
        key = self._key(pairs, t, scale, repeats)
        fn = self._compiled.get(key)
        if fn is None:
            from . import compiled
            dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
            with _compiling(self._compile_dir):
                fn = compiled.forward(self.net, pairs, t, scale=scale, repeats=repeats, autocast_dtype=dtype,
                                      folder=os.path.join(self._compile_dir, "vfimamba"))
            self._compiled[key] = fn
            while len(self._compiled) > GRAPH_CACHE_SIZE:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(key)
        try:
            with _compiling(self._compile_dir):  # compiled in the process, the first call compiles
                return fn(pairs, t)
        except VFIMambaError as e:  # it could not be compiled as one graph: this shape runs eagerly
            warnings.warn(f"VFIMamba: {e}; running without it", RuntimeWarning, stacklevel=4)
            self._compiled[key] = lambda x, ts: self.net(x, ts, scale=scale, local=True, repeats=repeats)[3]
            return self._compiled[key](pairs, t)

    @staticmethod
    def _key(pairs, t, scale, repeats):
        return (tuple(pairs.shape), pairs.stride(), tuple(t.shape), scale, repeats,
                torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))

    def _run(self, pairs, t, scale, repeats):
        """The forward, replayed from the CUDA graph of this input shape when there is one: the first
        call of a shape runs the net (its warm-up) and captures it; later calls copy their inputs
        into the graph's and replay it."""
        if self._graphs is None:
            return self._call(pairs, t, scale, repeats)
        with self._graph_lock, torch.cuda.device(self.device):
            return self._replay(pairs, t, scale, repeats)

    def _replay(self, pairs, t, scale, repeats):
        key = self._key(pairs, t, scale, repeats)
        if key not in self._graphs:
            return self._capture(key, pairs, t, scale, repeats)
        self._graphs.move_to_end(key)
        entry = self._graphs[key]
        if entry is None:  # this shape could not be captured
            return self._call(pairs, t, scale, repeats)
        graph, (static_pairs, static_t), out = entry
        static_pairs.copy_(pairs)
        static_t.copy_(t)
        graph.replay()
        return out.clone()  # the next replay writes over `out`

    def _capture(self, key, pairs, t, scale, repeats):
        """Warm the net up on a side stream (its last warm-up is this call's result), then capture one
        forward on copies of the inputs. Capture errors are this thread's only, so that work other
        threads put on the GPU meanwhile (reading the next frames, say) cannot spoil it."""
        # Autocast's cache of half-precision weights stays off in the capture: it would hand the
        # graph the warm-up's copies, which are freed when the caller's autocast region ends, and
        # every later replay would read whatever then lies there. So the casts are captured too.
        # The warm-ups run so as well: a compiled net guards on that setting, and would otherwise
        # compile again inside the capture.
        uncached = lambda: torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),  # noqa: E731
                                          enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)
        cur = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(cur)
        with torch.cuda.stream(side), uncached():
            for _ in range(COMPILED_WARMUPS if self._compile_dir is not None else EAGER_WARMUPS):
                result = self._call(pairs, t, scale, repeats)
        cur.wait_stream(side)
        result.record_stream(cur)
        static = pairs.clone(), t.clone()
        graph = torch.cuda.CUDAGraph()
        try:  # captured on a stream of this interpolator's GPU, whichever is current
            with torch.cuda.graph(graph, stream=torch.cuda.Stream(self.device),
                                  capture_error_mode="thread_local"), uncached():
                out = self._call(*static, scale, repeats)
        except RuntimeError as e:  # something in the net could not be captured: run it without graphs
            warnings.warn(f"VFIMamba: CUDA graph capture failed ({e}); running without it", RuntimeWarning,
                          stacklevel=3)
            self._graphs[key] = None
        else:
            self._graphs[key] = graph, static, out
        while len(self._graphs) > GRAPH_CACHE_SIZE:
            self._graphs.popitem(last=False)
        return result

    def _predict_recursive(self, img0, img1, timesteps, scale):
        """Midpoints of midpoints, as the official demo_Nx; non-dyadic timesteps are predicted directly."""
        cache = {Fraction(0): img0, Fraction(1): img1}

        def frame_at(lo: Fraction, hi: Fraction, t: Fraction):
            mid = (lo + hi) / 2
            if mid not in cache:
                cache[mid] = self.predict(cache[lo], cache[hi], [0.5], scale)
            if t == mid:
                return cache[mid]
            return frame_at(lo, mid, t) if t < mid else frame_at(mid, hi, t)

        out = []
        for t in timesteps:
            f = _dyadic(float(t))
            if f is None or f <= 0 or f >= 1:
                out.append(self.predict(img0, img1, [float(t)], scale))
            else:
                out.append(frame_at(Fraction(0), Fraction(1), f))
        return torch.cat(out, 0)

    def warmup(self, size: tuple[int, int], timesteps: Sequence[float] = (0.5,)) -> None:
        """Interpolate one synthetic pair of `size` (height, width) and drop the result: what a first
        call pays once per process and frame size (cuDNN and cuBLAS set-up, convolution plans, Triton
        kernels loaded from the disk cache) is then paid here, for instance in a background thread
        while the frames are being read, and the first real frame is as fast as later ones."""
        h, w = size
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
        f0 = ramp.astype(np.uint8)
        self.interpolate(f0, np.ascontiguousarray(f0[:, ::-1]), timesteps)

    def interpolate(self, frame0: np.ndarray, frame1: np.ndarray, timesteps: Sequence[float]) -> list[np.ndarray]:
        if not len(timesteps):
            return []
        if frame0.shape != frame1.shape:
            raise ValueError(f"frames differ in size: {frame0.shape} vs {frame1.shape}")
        h, w = frame0.shape[:2]
        scale = auto_scale(h, w) if self.scale is None else self.scale
        padder = Padder(h, w, pad_divisor(scale))
        both = padder(self._upload([frame0, frame1]))
        img0, img1 = both[0:1], both[1:2]
        with self._precision():
            if self.recursive:
                preds = self._predict_recursive(img0, img1, timesteps, scale)
            else:
                preds = self.predict(img0, img1, [float(t) for t in timesteps], scale)
        return self._download(padder.unpad(preds))
