"""demo.ipynb and find_indent.ipynb, executed headless (nbclient, this Python's `python3` kernel) from
the repository root, on a synthetic clip the tests make and on clips in ../shared/media. A cell that
raises fails the test, with the cell named in nbclient's CellExecutionError."""
import json
from fractions import Fraction

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from conftest import ROOT, needs_media

from test_verify import shifted_copy
from tools.render_notebooks import execute

FAST = dict(model="flow", preset="veryfast")
NOTEBOOKS = ("demo.ipynb", "find_indent.ipynb")


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/markdown", ""))
    return "\n".join(parts)


def images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_and_parameterised(name):
    nb = nbformat.read(str(ROOT / name), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"{name}: clear its outputs before committing"
    params = code[0]
    assert "parameters" in params.metadata.get("tags", [])
    names = {line.split("=")[0].strip() for line in params.source.splitlines() if "=" in line}
    want = {"input_path", "output_path", "report_path", "model", "frame_a", "frame_b", "run_splice"} \
        if name == "demo.ipynb" else {"input_path", "frame_a", "frame_b", "interp_frames"}
    assert want <= names
    if name == "demo.ipynb":
        assert 'model = "flow"' in params.source and "run_splice = True" in params.source


@pytest.fixture(scope="module")
def synthetic_clip(video_factory):
    return video_factory(rate=Fraction(25), frames=425, size=(320, 240))   # 17 s, coded frames, audio


def run_notebooks(tmp_path, source, a, b, with_find_indent=True):
    """The demo makes and checks a splice; find_indent re-scores its indents against the report."""
    out, rep = tmp_path / "splice.mp4", tmp_path / "splice.json"
    demo = execute(ROOT / "demo.ipynb", dict(input_path=str(source), output_path=str(out), report_path=str(rep),
                                             frame_a=a, frame_b=b, run_splice=True, interp_frames=3, **FAST),
                   output=tmp_path / "demo.ipynb")
    report = json.loads(rep.read_text())
    text = outputs_text(demo)
    assert "A and B match" in text and "OK: A (source" in text
    assert images(demo) >= 6 and '<video controls' in json.dumps([c.get("outputs") for c in demo.cells])
    if not with_find_indent:
        return report, out
    find = execute(ROOT / "find_indent.ipynb", dict(input_path=str(source), frame_a=a, frame_b=b, interp_frames=3,
                                                    report_path=str(rep)),
                   output=tmp_path / "find_indent.ipynb")
    text = outputs_text(find)
    assert f"the CLI chose indent {report['indent']['i']} too" in text
    assert images(find) == 2
    return report, out


def test_notebooks_on_a_synthetic_clip(synthetic_clip, tmp_path):
    report, _ = run_notebooks(tmp_path, synthetic_clip, None, None)    # the CLI's defaults: A at 5 s, B 5 s before the end
    assert (report["n"], report["a"]["index"], report["b"]["index"]) == (125, 125, 300)


def test_demo_on_a_shared_clip(tmp_path):
    """A small splice of d14.mp4 (512x512, 30 fps); find_indent runs on d6.mp4 below."""
    src = needs_media("d14.mp4")
    report, _ = run_notebooks(tmp_path, src, 160, 380, with_find_indent=False)
    assert report["n"] == 150 and report["model"]["name"] == "flow"


def test_find_indent_defaults_on_d6():
    """The committed parameters: d6.mp4, A = 180, B = 700 (17.3 s apart)."""
    needs_media("d6.mp4")
    nb = execute(ROOT / "find_indent.ipynb")
    text = outputs_text(nb)
    assert "A = frame 180 (6.00 s), B = frame 700 (23.33 s), 17.33 s apart" in text
    assert "146 valid indents" in text and "OK: indent" in text


def test_demo_fails_loudly_on_a_shifted_clip(synthetic_clip, tmp_path):
    import splice
    good, rep = tmp_path / "good.mp4", tmp_path / "good.json"
    splice.splice_video(splice.load_interpolator(FAST["model"]), str(synthetic_clip), str(good), frame_a="131",
                        frame_b="290", time_indent="0", encode=splice.EncodeOptions(preset=FAST["preset"]),
                        report=str(rep))
    bad = shifted_copy(good, tmp_path / "shifted.mp4")
    with pytest.raises(CellExecutionError) as caught:
        execute(ROOT / "demo.ipynb", dict(input_path=str(synthetic_clip), output_path=str(bad), report_path=str(rep),
                                          run_splice=False))
    message = str(caught.value)
    assert "AssertionError" in message and "Frame A" in message


def test_parameters_are_injected_after_the_parameters_cell():
    from tools.render_notebooks import inject_parameters
    nb = nbformat.read(str(ROOT / "demo.ipynb"), as_version=4)
    where = next(k for k, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    inject_parameters(nb, {"frame_a": 180, "input_path": "x.mp4", "frame_b": None})
    cell = nb.cells[where + 1]
    assert cell.metadata["tags"] == ["injected-parameters"]
    assert "frame_a = 180\n" in cell.source and "input_path = 'x.mp4'\n" in cell.source and "frame_b = None\n" in cell.source
