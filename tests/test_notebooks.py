"""The notebooks run top to bottom, offline, in a real kernel of this venv's Python."""

from __future__ import annotations

import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
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


#: Longer than this between one cell going idle and the next starting: the runner stalled on
#: the cell's output (nbclient waits out its whole timeout, without an error, on some widget output).
STALL_S = 30.0


def stalls(nb: nbformat.NotebookNode) -> list[str]:
    """The cells after which the runner waited, from nbclient's recorded timings."""
    from datetime import datetime

    code = [c for c in nb.cells if c.cell_type == "code"]
    out = []
    for cell, after in pairwise(code):
        idle, busy = cell.metadata["execution"]["iopub.status.idle"], after.metadata["execution"]["iopub.status.busy"]
        gap = (datetime.fromisoformat(busy) - datetime.fromisoformat(idle)).total_seconds()
        if gap > STALL_S:
            out.append(f"{gap:.0f} s after {cell.source[:60]!r}")
    return out


def execute(path: Path, jupyter_path: str, timeout: int = 120) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    os.environ["JUPYTER_PATH"] = jupyter_path  # read when the kernel spec is looked up
    NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, store_widget_state=True, record_timing=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    assert not stalls(nb), f"{path.name}: the runner stalled: {stalls(nb)}"
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
        pytest.fail(f"the notebook did not run: {nb}")
    meters = [o for o in outputs(nb) if "class='hs-meter " in o.get("data", {}).get("text/html", "")]
    assert len(meters) == 2  # shown twice: before and after the batch
    # The client closed in the last cell: both outputs are the meter's final snapshot, no widget
    # view that a reopened notebook could not restore.
    assert all("application/vnd.jupyter.widget-view+json" not in m["data"] for m in meters)
    daily = re.search(r"data-window='daily' data-percent='([\d.]+)'", meters[-1]["data"]["text/html"])
    assert daily and float(daily.group(1)) >= 50  # the batch spent the daily budget until worst cases no longer fit
    out = text(nb)
    assert "refused, nothing sent" in out and re.search(r"\d+ answered, \d+ refused", out)
    assert "CompletionUsage(" in out  # the openai SDK call went through the metered transport
    bars = [o for o in outputs(nb) if "hs-batch-progress" in o.get("data", {}).get("text/html", "")]
    assert len(bars) == 1 and "refused" in bars[0]["data"]["text/plain"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = [m["model_name"] for m in state.values()]
    assert models.count("FloatProgressModel") >= 2  # the two budget lines


def test_analysis_notebooks_draw_charts(executed):
    for name in ("02-spend-analysis", "03-forecasting"):
        nb = executed[name]
        if isinstance(nb, Exception):
            pytest.fail(f"{name} did not run: {nb}")
        # Charts are SVG drawn in the kernel: visible with no CDN and no Vega renderer.
        charts = [o["data"]["image/svg+xml"] for o in outputs(nb) if "image/svg+xml" in o.get("data", {})]
        assert len(charts) >= (2 if name.startswith("02") else 1), name
        assert all("<svg" in svg[:200] for svg in charts), name
    assert "calls would be refused from (projected spend reaches the block line, 95% of a limit): 20" in text(
        executed["03-forecasting"])


def test_report_notebook_writes_a_page(executed):
    nb = executed["04-budget-report"]
    if isinstance(nb, Exception):
        pytest.fail(f"the notebook did not run: {nb}")
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
