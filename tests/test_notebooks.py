"""The notebooks run top to bottom, offline, in a real kernel of this venv's Python."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01-quickstart", "02-spend-analysis", "03-forecasting", "04-budget-report"]
KERNEL = "holysheep-venv"
CHECK = "import sys; print('KERNEL-PYTHON', sys.executable)"


def venv_kernel(root: Path) -> str:
    """A kernelspec whose argv is this interpreter, so the kernel is the venv's, not a system one.

    Returns the JUPYTER_PATH entry to use."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "holysheep-lab (venv)", "language": "python"}))
    return str(root)


def execute(path: Path, jupyter_path: str, timeout: int = 120) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    os.environ["JUPYTER_PATH"] = jupyter_path  # read when the kernel spec is looked up
    NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, store_widget_state=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[str, Any]:
    jupyter_path = venv_kernel(tmp_path_factory.mktemp("jupyter"))
    old = os.environ.get("JUPYTER_PATH")
    out: dict[str, Any] = {}
    try:
        # Two at a time: the kernels are separate processes, the machine has two cores.
        with ThreadPoolExecutor(2) as pool:
            futures = {n: pool.submit(execute, NOTEBOOKS / f"{n}.ipynb", jupyter_path) for n in NAMES}
            for name, fut in futures.items():
                try:
                    out[name] = fut.result()
                except Exception as exc:  # reported by the test of that notebook
                    out[name] = exc
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
    return out


def outputs(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for o in outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        for v in o.get("data", {}).values():
            parts.append(v if isinstance(v, str) else json.dumps(v))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_the_venv_kernel(executed, name):
    nb = executed[name]
    if isinstance(nb, Exception):
        pytest.fail(f"{name} failed:\n{str(nb)[-3000:]}")
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    assert f"KERNEL-PYTHON {sys.executable}\n" in text(nb)


def test_quickstart_shows_meter_refusal_and_sdk(executed):
    nb = executed["01-quickstart"]
    if isinstance(nb, Exception):
        pytest.skip("reported by test_notebook_runs_in_the_venv_kernel")
    views = [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    meters = [o for o in views if "hs-meter" in o["data"].get("text/html", "")]
    assert len(meters) == 2  # shown twice: before and after the batch
    first, last = (m["data"]["text/plain"] for m in meters)
    assert first != last  # it moved
    out = text(nb)
    assert "refused, nothing sent" in out and "answered," in out
    assert "CompletionUsage(" in out  # the openai SDK call went through the metered transport
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = [m["model_name"] for m in state.values()]
    assert models.count("FloatProgressModel") >= 2  # the two budget lines (and tqdm's bar)


def test_analysis_notebooks_draw_charts(executed):
    for name in ("02-spend-analysis", "03-forecasting"):
        nb = executed[name]
        if isinstance(nb, Exception):
            pytest.skip("reported by test_notebook_runs_in_the_venv_kernel")
        # Charts are SVG drawn in the kernel: visible with no CDN and no Vega renderer.
        charts = [o["data"]["image/svg+xml"] for o in outputs(nb) if "image/svg+xml" in o.get("data", {})]
        assert len(charts) >= (2 if name.startswith("02") else 1), name
        assert all("<svg" in svg[:200] for svg in charts), name
    assert "the budget runs out on: 20" in text(executed["03-forecasting"])


def test_report_notebook_writes_a_page(executed):
    nb = executed["04-budget-report"]
    if isinstance(nb, Exception):
        pytest.skip("reported by test_notebook_runs_in_the_venv_kernel")
    out = text(nb)
    assert "spend-report.html" in out and "<iframe srcdoc=" in out and "total_cost_usd" in out
    # The dashboard's charts live in its Output widget's state, as SVG.
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    drawn = [o for m in state.values() if m["model_name"] == "OutputModel" for o in m["state"].get("outputs", [])]
    assert len(drawn) == 2 and all("image/svg+xml" in o["data"] for o in drawn)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_stripped_in_git(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in nb.metadata
