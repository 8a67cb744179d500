"""The model in a process of its own (splice.worker): the frames a model makes there are the frames
it makes here, the child's errors become one-line user errors, and no child outlives its parent."""
import importlib
import importlib.util
import os
import py_compile
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SHARED
from splice import worker
from splice.errors import UserError
from splice.models import BlendInterpolator

pytestmark = pytest.mark.skipif(not worker.available(), reason="a model process needs a POSIX system")

FIXTURE = SHARED / "fixtures" / "vfimamba" / "weights_VFIMamba_S.pkl"


def pair(index: int, h: int = 36, w: int = 52):
    """Two frames that carry `index` and their own side (0 or 1) in their pixel values."""
    rng = np.random.default_rng(index)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    a[0, 0], b[0, 0] = (index, 0, 0), (index, 1, 0)
    return a, b


def gone(pid: int, within: float) -> bool:
    """The process has ended (a zombie counts: it runs nothing) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_the_child_makes_the_frames_this_process_would():
    logs = []
    with worker.ModelProcess("blend", "cpu", log=logs.append) as child:
        child.warm_up((36, 52), [0.5])                 # before the load's reply is read: answered in order
        model = child.loaded()
        assert (model.name, model.why) == ("blend", "asked for with --model blend")
        assert model.candidates == [{"name": "blend", "taken": True, "reason": "asked for with --model blend"}]
        here = BlendInterpolator()
        for index, steps in ((1, [0.5]), (2, [0.25, 0.5, 0.75]), (3, [0.1])):
            a, b = pair(index)
            got = model.interpolate(a, b, steps)
            want = here.interpolate(a, b, steps)
            assert len(got) == len(steps)
            for g, w in zip(got, want):
                assert g.dtype == np.uint8 and g.shape == a.shape
                np.testing.assert_array_equal(g, w)
        assert child.seconds >= 0 and child.waited >= 0
    assert child._proc.returncode is not None      # closed with the block


def test_a_load_error_is_the_same_user_error_every_time():
    child = worker.ModelProcess("nonsense", "cpu")
    try:
        for _ in range(2):
            with pytest.raises(UserError, match=r"^unknown model 'nonsense'; choose one of auto, "):
                child.loaded()
        with pytest.raises(UserError, match="unknown model 'nonsense'"):
            child.interpolate(*pair(0), [0.5])
    finally:
        child.close()


def test_a_child_that_dies_is_one_line():
    with worker.ModelProcess("blend", "cpu") as child:
        model = child.loaded()
        os.kill(child._proc.pid, signal.SIGKILL)
        with pytest.raises(UserError) as e:
            model.interpolate(*pair(0), [0.5])
    assert str(e.value) == "the model's process was killed by SIGKILL (out of memory?); nothing was written"


def test_close_ends_a_child_that_is_still_loading():
    child = worker.ModelProcess("vfimamba", "cpu", {"ckpt": str(FIXTURE)})   # imports torch: busy for a while
    start = time.monotonic()
    child.close()
    assert time.monotonic() - start < worker.CLOSE_GRACE_S + 1
    assert child._proc.returncode is not None and gone(child._proc.pid, 1)


def test_the_child_ends_with_its_parent():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import time; from splice.worker import ModelProcess; "
            "p = ModelProcess('blend', 'cpu'); p.loaded(); print(p._proc.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert not gone(child, 0)
        parent.kill()                       # no clean-up runs: the kernel has to end the child
        parent.wait()
        assert gone(child, 10), "the model's process outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"VFIMamba fixture weights not at {FIXTURE}")
def test_options_reach_the_child_and_its_frames_match_a_load_here():
    import vfimamba
    here = vfimamba.load(str(FIXTURE), device="cpu", tta=False)
    a, b = pair(7, 64, 96)
    with worker.ModelProcess("vfimamba", "cpu", {"ckpt": str(FIXTURE), "tta": False}, log=lambda *_: None) as child:
        model = child.loaded()
        assert model.name == "vfimamba_s" and model.why == "asked for with --model vfimamba"
        got = model.interpolate(a, b, [0.5])
    np.testing.assert_array_equal(got[0], here.interpolate(a, b, [0.5])[0])


def fake_package(root: Path, name: str = "bytecodepkg") -> Path:
    """A package with no compiled bytecode beside its source, importable from `root`."""
    (root / name).mkdir(parents=True)
    source = root / name / "__init__.py"
    source.write_text("ANSWER = 42\n")
    importlib.invalidate_caches()
    return source


@pytest.fixture
def bytecode_env(monkeypatch, tmp_path):
    """A clean slate for child_environment: the user cache in tmp_path, no bytecode settings."""
    monkeypatch.setenv("INTERPOLATE_VIDEO_CACHE", str(tmp_path / "cache"))
    for name in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return tmp_path


def test_the_child_keeps_bytecode_in_the_user_cache_where_it_cannot_be_kept_beside_the_sources(bytecode_env, monkeypatch):
    source = fake_package(bytecode_env / "site")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = worker.child_environment(package="bytecodepkg")
    prefix = bytecode_env / "cache" / worker.BYTECODE_FOLDER
    assert env["PYTHONPYCACHEPREFIX"] == str(prefix) and "PYTHONDONTWRITEBYTECODE" not in env
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"           # this process's own settings untouched
    # A process started with it writes the bytecode there, not beside the source, and a second reads it.
    env["PYTHONPATH"] = str(bytecode_env / "site")
    code = "import bytecodepkg, sys; print(bytecodepkg.ANSWER, bytecodepkg.__cached__)"
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    answer, cached = first.stdout.split()
    assert answer == "42" and Path(cached).is_file() and Path(cached).is_relative_to(prefix)
    assert not (source.parent / "__pycache__").exists()
    stamp = Path(cached).stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert second.stdout.split() == [answer, cached] and Path(cached).stat().st_mtime_ns == stamp


def test_the_childs_bytecode_settings_are_left_alone_where_python_manages(bytecode_env, monkeypatch):
    source = fake_package(bytecode_env / "site")
    def unchanged(package="bytecodepkg"):
        here = dict(os.environ)
        return worker.cache_bytecode(here, package) == here
    # The folder is writable and nothing forbids writing: Python writes __pycache__ there itself.
    assert unchanged()
    # Bytecode already beside the source: it is read, whatever PYTHONDONTWRITEBYTECODE says.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True)
    assert unchanged()
    # The user's own prefix is kept; a package that is not installed changes nothing.
    (source.parent / "__pycache__").rename(source.parent / "old")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(bytecode_env / "mine"))
    assert unchanged()
    monkeypatch.delenv("PYTHONPYCACHEPREFIX")
    assert unchanged("no_such_package_here")
    assert not unchanged()  # (and with neither, it does change: the cases above are not vacuous)


needs_glibc = pytest.mark.skipif(not worker.uses_glibc(), reason="the heap settings are glibc's")


@needs_glibc
def test_the_childs_heap_settings_add_to_the_users_and_yield_to_their_malloc_ones():
    assert worker.keep_heap({})["GLIBC_TUNABLES"] == worker.HEAP_TUNABLES
    assert worker.keep_heap({"GLIBC_TUNABLES": "glibc.rtld.nns=2"})["GLIBC_TUNABLES"] == \
        "glibc.rtld.nns=2:" + worker.HEAP_TUNABLES
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"}
    assert worker.keep_heap(mine) == mine
    older = {"MALLOC_TRIM_THRESHOLD_": "0"}
    assert worker.keep_heap(older) == older


# Allocates, fills and frees a 64 MiB block three times; prints the page faults of the last two rounds.
_FAULTS = """
import ctypes, resource
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 64 << 20
def round_trip():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(ctypes.c_void_p(p))
round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip(); round_trip()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@needs_glibc
def test_a_process_with_the_heap_settings_reuses_freed_memory_without_page_faults(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    def faults(env):
        out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
        return int(out.stdout)
    plain = faults(dict(os.environ))                # unmapped at each free, faulted in again: 32768 pages
    kept = faults(worker.keep_heap(dict(os.environ)))  # of 4 KiB, or 64 where huge pages are always on
    assert plain >= 60 and kept * 10 < plain, (plain, kept)  # kept in the heap: written again in place


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux's /proc to read a process's environment")
def test_the_child_starts_with_the_environment_child_environment_gives(bytecode_env, monkeypatch):
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(bytecode_env / "mine"))
    with worker.ModelProcess("blend", "cpu") as child:
        child.loaded()
        raw = Path(f"/proc/{child._proc.pid}/environ").read_bytes()
    # glibc's loader, parsing GLIBC_TUNABLES, leaves a NUL for each ':' in this original copy of it
    raw = raw.replace(b"\0glibc.", b":glibc.")
    env = dict(item.decode().split("=", 1) for item in raw.split(b"\0") if item)
    assert env == worker.child_environment()


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"VFIMamba fixture weights not at {FIXTURE}")
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to find the child")
def test_sigterm_while_the_model_loads_leaves_nothing(video_factory, tmp_path):
    out = tmp_path / "o.mp4"
    cli = subprocess.Popen([sys.executable, str(ROOT / "interpolate_video.py"), "--input", video_factory(),
                            "--output", out, "--model", "vfimamba", "--ckpt", FIXTURE, "--device", "cpu", "--quiet"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not children(cli.pid) and time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.01)
        kids = children(cli.pid)
        assert kids, "the model's process was not started"
        cli.send_signal(signal.SIGTERM)
        _, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 143, err
    assert err.strip().splitlines() == ["stopped by SIGTERM; nothing was written"], err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    assert all(gone(k, 5) for k in kids), "the model's process outlived the command"


def test_running_out_of_memory_is_told_as_such():
    """The model's allocation failures become one user line (how much more was wanted); other
    errors stay bugs."""
    torch = pytest.importorskip("torch")
    try:
        torch.empty(1 << 50, dtype=torch.uint8)      # 1 PiB: the CPU allocator refuses
    except RuntimeError as e:
        cpu = e
    assert worker.out_of_memory(cpu) and worker.memory_detail(cpu) == f"{(1 << 50) / 2 ** 20:.0f} MiB more was needed"
    gpu = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
                                 "of 79.19 GiB of which 1.5 GiB is free.")
    assert worker.out_of_memory(gpu) and worker.memory_detail(gpu) == "2.00 GiB more was needed"
    assert worker.out_of_memory(MemoryError()) and worker.memory_detail(MemoryError()) == "MemoryError"
    assert not worker.out_of_memory(RuntimeError("shapes do not match"))
    assert not worker.out_of_memory(ValueError("can't allocate memory"))
