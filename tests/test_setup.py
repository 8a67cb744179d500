"""A fresh clone: the notebook renderer without the dev requirements says what to install."""
import subprocess
import sys

from conftest import ROOT

BLOCK = ("import runpy, sys; sys.modules['nbformat'] = None; sys.argv = ['render_notebooks.py']; "
         "runpy.run_path('tools/render_notebooks.py', run_name='__main__')")


def test_render_notebooks_without_dev_requirements():
    r = subprocess.run([sys.executable, "-c", BLOCK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == ["error: rendering the notebooks needs the dev requirements (nbformat is not installed); "
                     "install them with: python3 -m pip install -r requirements-dev.txt"], r.stderr


def test_notebooks_fall_back_to_a_sample_without_shared():
    import json
    for name in ("demo.ipynb", "find_indent.ipynb"):
        cells = json.loads((ROOT / name).read_text())["cells"]
        setup = "".join(cells[2]["source"])
        assert 'if input_path == "../shared/media/d6.mp4" and not Path(input_path).exists():' in setup
        assert "make_sample(input_path)" in setup
