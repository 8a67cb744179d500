"""vfimamba.triton_launch: where the package's Triton kernels keep their compiled code. Needs
Triton (no GPU: only its settings are exercised); skipped without it."""
import os

import pytest

triton = pytest.importorskip("triton", reason="Triton is not installed (it comes with CUDA builds of torch)")
if getattr(triton, "knobs", None) is None:
    pytest.skip("this Triton has no knobs (< 3.4): it keeps its own cache folder", allow_module_level=True)

from vfimamba import triton_launch   # noqa: E402


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.setattr(triton_launch, "USER_CACHE_DIR", None)
    monkeypatch.setattr(triton_launch, "_SPECIALISED", set())
    return tmp_path


def test_a_new_launch_caches_in_the_user_folder_and_puts_the_setting_back(fresh):
    before = triton.knobs.cache.dir
    with triton_launch.kernel_cache(("k", 1)):
        assert triton.knobs.cache.dir == str(fresh / "interpolate_video" / "triton")
    assert triton.knobs.cache.dir == before
    assert "TRITON_CACHE_DIR" not in os.environ


def test_a_launch_seen_before_changes_nothing(fresh):
    with triton_launch.kernel_cache(("k", 1)):
        pass
    before = triton.knobs.cache.dir
    with triton_launch.kernel_cache(("k", 1)):
        assert triton.knobs.cache.dir == before
    with triton_launch.kernel_cache(("k", 2)):   # another signature compiles again
        assert triton.knobs.cache.dir == str(fresh / "interpolate_video" / "triton")


def test_the_users_folder_wins_even_if_a_compiler_sets_the_variable_later(fresh, monkeypatch, tmp_path):
    monkeypatch.setattr(triton_launch, "USER_CACHE_DIR", str(tmp_path / "mine"))
    before = triton.knobs.cache.dir
    with triton_launch.kernel_cache(("k", 3)):
        assert triton.knobs.cache.dir == before
    # No user choice at import, but TorchInductor set the variable while it compiles: ours still.
    monkeypatch.setattr(triton_launch, "USER_CACHE_DIR", None)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "inductor"))
    with triton_launch.kernel_cache(("k", 4)):
        assert triton.knobs.cache.dir == str(fresh / "interpolate_video" / "triton")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "inductor")


def test_signature_tells_apart_what_triton_specialises_on():
    import torch
    a = torch.zeros(64)
    sig = triton_launch.signature
    assert sig((a, 32), ("x",)) == sig((torch.ones(64), 48), ("x",))          # same dtype, alignment, %16
    assert sig((a, 32), ("x",)) != sig((a.half(), 32), ("x",))                # dtype
    assert sig((a, 32), ("x",)) != sig((a[1:], 32), ("x",))                   # 16-byte alignment
    assert sig((a, 32), ("x",)) != sig((a, 33), ("x",))                       # divisibility by 16
    assert sig((a, 32), ("x",)) != sig((a, 32), ("y",))                       # the kernel and constants
