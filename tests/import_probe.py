"""Which heavy parts of torch a model load + one interpolation imports, measured in a fresh interpreter.

`import torch` itself loads parts of torch.fx and torch.distributed; only modules that plain
`import torch` does not load count against the model.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The compiler stack: TorchDynamo, Inductor, FX's symbolic tracing and shapes, sympy, distributed.
HEAVY = ("torch._dynamo", "torch._inductor", "torch.fx", "sympy", "torch.distributed")

_PROBE = """
import json, sys
import torch
base = set(sys.modules)
import numpy as np
{load}
rng = np.random.default_rng(0)
a = rng.integers(0, 256, ({h}, {w}, 3), dtype=np.uint8)
b = np.roll(a, 3, axis=1)
out = model.interpolate(a, b, [0.5])
assert len(out) == 1 and out[0].shape == a.shape and out[0].dtype == np.uint8
heavy = {heavy!r}
print("PROBE" + json.dumps({{
    "base_heavy": sorted(m for m in base if m.startswith(("torch._dynamo", "torch._inductor", "sympy"))),
    "new_heavy": sorted(m for m in set(sys.modules) - base if any(m == p or m.startswith(p + ".") for p in heavy)),
}}))
"""


def heavy_imports(load: str, h: int = 64, w: int = 96, timeout: float = 300) -> dict:
    """Run `load` (code that binds `model`) and one interpolation in a fresh interpreter; returns
    {"base_heavy": heavy modules plain `import torch` loaded, "new_heavy": those loaded after it}."""
    code = _PROBE.format(root=str(ROOT), load=textwrap.dedent(load).strip(), h=h, w=w, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)  # the child imports the checkout from its working folder
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE")]
    assert proc.returncode == 0 and lines, f"probe failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("PROBE"):])
