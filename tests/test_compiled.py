"""vfimamba.compiled (compile=True): one graph per input shape, saved, and loaded by a later process
for any weights of the same architecture and settings. On the CPU with TorchDynamo's aot_eager
backend (Inductor's GPU code is what compile=True uses; the GPU test times it)."""
import pytest
import torch

from conftest import run_child
from vfimamba.model import Config, VFIMambaNet


def _aot():
    from vfimamba import compiled
    return compiled.ahead_of_time()


pytestmark = pytest.mark.skipif(not _aot(), reason="this torch does not compile the net ahead of time (before 2.13)")


def _net(seed, F=8):
    torch.manual_seed(seed)
    return VFIMambaNet(Config(F=F)).eval()


def _pair(seed=0, h=64, w=96):
    g = torch.Generator().manual_seed(seed)
    img0 = torch.rand(1, 3, h, w, generator=g)
    return torch.cat([img0, torch.roll(img0, 2, dims=3)], 1)


CHILD = r"""
import json, sys, torch
from vfimamba import compiled
from vfimamba.model import Config, VFIMambaNet
torch.manual_seed(SEED)
net = VFIMambaNet(Config(F=8)).eval()
g = torch.Generator().manual_seed(0)
img0 = torch.rand(1, 3, 64, 96, generator=g)
x, t = torch.cat([img0, torch.roll(img0, 2, dims=3)], 1), torch.full((1,), 0.5)
half = torch.bfloat16 if FAST else None
if FAST:  # the fast path as the interpolator sets it up, in the half precision this CPU has
    net.set_fast(half_scan=True, channels_last=True, weight_dtype=half)
    x = x.contiguous(memory_format=torch.channels_last)
fn = compiled.forward(net, x, t, scale=0.0, folder=FOLDER, backend="aot_eager", autocast_dtype=half)
with torch.no_grad(), torch.autocast("cpu", dtype=half or torch.bfloat16, enabled=FAST):
    want = net(x, t, scale=0, local=True)[3]
got = fn(x, t)
print("RESULT" + json.dumps(dict(loaded=fn.loaded, aot=fn.ahead_of_time, err=(got - want).abs().max().item(), mean=got.mean().item(),
                                 dynamo="torch._dynamo.convert_frame" in sys.modules)))
"""


def _child(seed, folder, fast=False):
    return run_child(f"SEED={seed}\nFOLDER={str(folder)!r}\nFAST={fast}\n" + CHILD)


@pytest.mark.parametrize("fast", [False, True], ids=["float32", "half-autocast"])
def test_a_later_process_loads_the_compiled_forward_and_runs_its_own_weights(tmp_path, fast):
    """The first process compiles and saves one file; a second one, with other weights, loads it
    (compiles nothing) and gives its own net's frame, not the first one's. Also for the fast path
    under autocast (what compile=True runs on a GPU), whose traced net refers to the custom
    operators: the file must not need their definitions pickled."""
    first = _child(0, tmp_path, fast)
    assert first["aot"], "not compiled ahead of time (the module's torch can: see pytestmark)"
    files = list(tmp_path.glob("*.aot"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    tol = 1e-2 if fast else 1e-5  # bfloat16: the compiled graph may round some sums differently
    assert first["loaded"] is False and first["err"] < tol
    mtime = files[0].stat().st_mtime_ns
    second = _child(1, tmp_path, fast)
    assert second["loaded"] is True and second["err"] < tol
    assert abs(second["mean"] - first["mean"]) > 1e-4  # other weights, other frame
    assert files[0].stat().st_mtime_ns == mtime and len(list(tmp_path.glob("*.aot"))) == 1


def test_a_damaged_file_is_compiled_again(tmp_path):
    from vfimamba import compiled
    net, x, t = _net(0), _pair(0), torch.full((1,), 0.5)
    path = tmp_path / (compiled.signature(net, x, t, scale=0.0, repeats=1, autocast_dtype=None,
                                          backend="aot_eager") + compiled.SUFFIX)
    path.write_bytes(b"\x80\x04 not a compiled function")
    fn = compiled.forward(net, x, t, scale=0.0, folder=tmp_path, backend="aot_eager")
    if not fn.ahead_of_time:
        pytest.skip("this torch cannot save the aot_eager backend's output (2.11)")
    assert fn.loaded is False
    with torch.no_grad():
        assert (fn(x, t) - net(x, t, scale=0, local=True)[3]).abs().max().item() < 1e-5
    again = compiled.forward(net, x, t, scale=0.0, folder=tmp_path, backend="aot_eager")
    assert again.loaded is True  # replaced by a good one
    x1 = _pair(1)
    with torch.no_grad():
        assert (again(x1, t) - net(x1, t, scale=0, local=True)[3]).abs().max().item() < 1e-5


def test_a_backend_that_cannot_be_saved_compiles_in_the_process(tmp_path):
    """Where the forward cannot be compiled ahead of time (here: a backend whose output cannot be
    saved, a bare function; on torch 2.11, guards it cannot save), it is compiled in the process, gives the net's
    frames, and leaves no file."""
    from vfimamba import compiled
    net, x, t = _net(0), _pair(0), torch.full((1,), 0.5)
    with pytest.warns(RuntimeWarning, match="ahead of time"):
        fn = compiled.forward(net, x, t, scale=0.0, folder=tmp_path, backend=lambda gm, inputs: gm.forward)
    assert fn.ahead_of_time is False and fn.loaded is False
    with torch.no_grad():
        for seed in (0, 1):
            x = _pair(seed)
            assert (fn(x, t) - net(x, t, scale=0, local=True)[3]).abs().max().item() < 1e-5
    assert not list(tmp_path.iterdir())


def test_signature_names_what_the_code_was_specialised_on():
    """Other weights share a file; another shape, layout, timestep count, scale, autocast dtype,
    fast-path setting or model width each get their own."""
    from vfimamba import compiled
    x, t = _pair(0), torch.full((1,), 0.5)

    def sig(net, x=x, t=t, **kw):
        args = dict(scale=0.0, repeats=1, autocast_dtype=None) | kw
        return compiled.signature(net, x, t, **args)

    a = _net(0)
    base = sig(a)
    assert sig(_net(1)) == base
    others = [sig(a, x=_pair(0, 64, 128)), sig(a, x=x.contiguous(memory_format=torch.channels_last)),
              sig(a, t=torch.full((2,), 0.5), repeats=2), sig(a, scale=0.5), sig(a, autocast_dtype=torch.float16),
              sig(_net(0, F=16)), sig(a, backend="aot_eager")]
    b = _net(0)
    b.set_fast(half_scan=True)
    others.append(sig(b))
    c = _net(0)
    c.set_scan_backend("cpu")
    others.append(sig(c))
    assert len(set(others)) == len(others) and base not in others
    b.set_fast()
    a.set_fast()
    assert sig(b) == sig(a)  # back to the same settings: the same file
