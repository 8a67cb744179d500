import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"


def triton_device(reason: str = "needs CUDA (or TRITON_INTERPRET=1)"):
    """For a module of Triton kernel tests, called at its top: skips the whole module without Triton,
    or with neither CUDA nor Triton's interpreter (TRITON_INTERPRET=1, which runs the kernels on the
    CPU); else (device, has_cuda, interpret)."""
    import torch
    pytest.importorskip("triton")
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    has_cuda = torch.cuda.is_available()
    if not has_cuda and not interpret:
        pytest.skip(reason, allow_module_level=True)
    return ("cuda" if has_cuda else "cpu"), has_cuda, interpret


def run_child(code: str, env: dict | None = None, timeout: float = 600) -> dict:
    """Run `code` in a fresh interpreter from the checkout (the project importable) and return the
    JSON it printed on its last line starting with RESULT; fails with its stderr if it did not."""
    env = dict(os.environ if env is None else env, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    assert p.returncode == 0 and lines, p.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


def needs_media(name: str) -> Path:
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared test media sit beside the project checkout (../shared)")
    return path


class CliResult:
    def __init__(self, proc, report_path):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.report = json.loads(report_path.read_text()) if report_path and report_path.exists() else None


@pytest.fixture
def run_cli(tmp_path):
    """Run the real command line; returns exit code, output streams and the parsed --report."""
    def run(*args, report=True, timeout=600):
        report_path = tmp_path / "report.json" if report else None
        cmd = [sys.executable, str(ROOT / "interpolate_video.py"), *map(str, args)]
        if report:
            cmd += ["--report", str(report_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        return CliResult(proc, report_path)
    return run


@pytest.fixture(scope="session")
def video_factory(tmp_path_factory):
    """Synthetic coded videos, made once per session and shared between tests."""
    from synthetic import make_video   # needs PyAV: imported here so GPU-only runs can skip it
    cache = {}
    folder = tmp_path_factory.mktemp("videos")

    def make(rate=Fraction(25), frames=425, size=(320, 240), audio=True, rotation=0, pix_fmt="yuv420p"):
        key = (Fraction(rate), frames, size, audio, rotation, pix_fmt)
        if key not in cache:
            name = f"v{len(cache)}_{float(rate):.3f}_{size[0]}x{size[1]}_r{rotation}.mp4"
            cache[key] = make_video(folder / name, rate, frames, size, audio, rotation, pix_fmt)
        return cache[key]
    return make
