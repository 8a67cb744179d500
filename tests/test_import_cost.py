"""Loading a model and interpolating imports none of torch's compiler stack (TorchDynamo, Inductor,
FX tracing, sympy, torch.distributed): those cost seconds and the eager path never compiles.
Each case runs in a fresh interpreter on the CPU; tests/test_vfimamba_gpu.py does the same on CUDA."""
from __future__ import annotations

from pathlib import Path

import pytest

from import_probe import heavy_imports

REPO = Path(__file__).resolve().parents[1]
FIX = REPO.parent / "shared" / "fixtures" / "vfimamba"


def _check(result):
    # The probe means something only if plain `import torch` leaves these out.
    assert not result["base_heavy"], f"plain `import torch` already loads {result['base_heavy'][:5]}"
    assert result["new_heavy"] == [], f"model path imported {len(result['new_heavy'])} heavy modules, " \
                                      f"e.g. {result['new_heavy'][:8]}"


@pytest.mark.skipif(not (FIX / "weights_VFIMamba_S.pkl").is_file(), reason=f"VFIMamba fixture weights not at {FIX}")
def test_vfimamba_eager_imports_no_compiler():
    _check(heavy_imports(f"""
        import vfimamba
        model = vfimamba.load({str(FIX / 'weights_VFIMamba_S.pkl')!r}, device="cpu")
        """))


def test_rife_eager_imports_no_compiler(tmp_path):
    weights = tmp_path / "flownet.pkl"  # random weights: the import path is what is measured
    _check(heavy_imports(f"""
        import rife
        from rife.ifnet import IFNet
        torch.manual_seed(0)
        torch.save(IFNet().state_dict(), {str(weights)!r})
        model = rife.load(device="cpu", weights_path={str(weights)!r})
        """))


def test_flow_imports_no_compiler():
    _check(heavy_imports("""
        from splice.models import load_interpolator
        model = load_interpolator("flow", device="cpu").interpolator
        """))
