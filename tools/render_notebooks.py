"""Execute demo.ipynb and find_indent.ipynb on a video and keep executed copies, figures and all.

    python3 -m tools.render_notebooks                       # ../shared/media/d6.mp4, A=180, B=700
    python3 -m tools.render_notebooks --input IN.mp4 --frame-a 250 --frame-b 900 --model flow

Writes outputs/demo.ipynb and outputs/find_indent.ipynb (plus .html copies when nbconvert is
installed; it is not required), and the demo's splice as outputs/demo_splice.mp4 with its report
outputs/demo_splice.json. Without ../shared/media/d6.mp4 it renders a sample made by
`python3 -m splice.sample outputs/sample.mp4`. The notebooks in git carry no outputs; these copies
(in the ignored outputs/ folder) are the ones to look at.

`execute` is also what tests/test_notebooks.py runs the notebooks with.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:   # the dev requirements; main() says what to install when they are missing
    import nbformat
    from nbclient import NotebookClient
except ImportError as e:
    nbformat = NotebookClient = None
    MISSING = e.name or "nbformat"

ROOT = Path(__file__).resolve().parents[1]
D6 = ROOT.parent / "shared" / "media" / "d6.mp4"
SAMPLE = ROOT / "outputs" / "sample.mp4"


def _require() -> None:
    if nbformat is None:
        raise ImportError(NEEDS.format(f"{MISSING} is not installed"))


NEEDS = ("rendering the notebooks needs the dev requirements ({}); "
         "install them with: python3 -m pip install -r requirements-dev.txt")


def inject_parameters(nb, params: dict) -> None:
    """Papermill-style: a cell tagged `injected-parameters` right after the one tagged `parameters`."""
    if not params:
        return
    _require()
    where = next((k for k, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if where is None:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    source = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(where + 1, cell)


def execute(notebook: str | Path, params: dict | None = None, output: str | Path | None = None,
            cwd: str | Path = ROOT, timeout: int = 600):
    """Run a notebook top to bottom in a fresh `python3` kernel (this Python's ipykernel), working in
    `cwd`; raises nbclient's CellExecutionError naming the cell when one raises. Returns the executed
    notebook, also written to `output` when given (even when a cell failed, to show where)."""
    _require()
    nb = nbformat.read(str(notebook), as_version=4)
    inject_parameters(nb, params or {})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    finally:
        if output is not None:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(output))
    return nb


def to_html(notebook: Path) -> Path | None:
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    body, _ = HTMLExporter().from_filename(str(notebook))
    target = notebook.with_suffix(".html")
    target.write_text(body)
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", help="the video (default ../shared/media/d6.mp4, else outputs/sample.mp4)")
    p.add_argument("--frame-a", help="Frame A: index, time or image (default 180 on d6.mp4, else the CLI default)")
    p.add_argument("--frame-b", help="Frame B (default 700 on d6.mp4, else the CLI default)")
    p.add_argument("--model", default="flow", help="interpolation model for the demo's splice (default flow)")
    p.add_argument("--preset", default="veryfast", help="x264 preset for the demo's splice (default veryfast)")
    p.add_argument("--interp-frames", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "outputs"), help="where to write the executed copies (default outputs/)")
    args = p.parse_args(argv)
    if nbformat is None:
        print("error: " + NEEDS.format(f"{MISSING} is not installed"), file=sys.stderr)
        return 2

    source = args.input
    a, b = args.frame_a, args.frame_b
    if source is None:
        if D6.exists():
            source = str(D6)
            a, b = a or "180", b or "700"
        else:
            if not SAMPLE.exists():
                from splice.sample import make_sample
                print(f"{D6} is absent; making a sample input at {SAMPLE}")
                make_sample(str(SAMPLE))
            source = str(SAMPLE)
    # The notebooks run in the repository root: paths given relative to here must survive that.
    source = str(Path(source).resolve())
    a, b = (str(Path(x).resolve()) if x and Path(x).is_file() else x for x in (a, b))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    splice, report = out / "demo_splice.mp4", out / "demo_splice.json"
    jobs = [
        ("demo.ipynb", dict(input_path=str(source), output_path=str(splice.resolve()),
                            report_path=str(report.resolve()), model=args.model, frame_a=a, frame_b=b,
                            run_splice=True, interp_frames=args.interp_frames, preset=args.preset)),
        # after the demo, so that find_indent can check the demo's chosen indent against its own analysis
        ("find_indent.ipynb", dict(input_path=str(source), frame_a=a, frame_b=b,
                                   interp_frames=args.interp_frames, report_path=str(report.resolve()))),
    ]
    failed = 0
    for name, params in jobs:
        target = out / name
        started = time.perf_counter()
        try:
            execute(ROOT / name, params, target)
            status = "ok"
        except Exception as e:   # keep going: the executed copy shows the failing cell
            failed += 1
            status = f"FAILED: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        html = to_html(target)
        print(f"{name}: {status} in {time.perf_counter() - started:.1f} s -> {target}"
              + (f" and {html}" if html else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
