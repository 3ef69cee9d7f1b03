"""What a notebook shows after it is saved and reopened without its kernel, in a real kernel
(nbclient) and headless Chromium with the real MathJax 3.

JupyterLab renders an output's widget view whenever there is one, and when the widget's model
cannot be restored it shows "Error displaying widget: model not found", never the HTML beside
it. So the outputs of stopped widgets (a finished progress bar, the meter and dashboard of a
closed client) must hold the HTML snapshot alone; and every dollar amount must survive the
MathJax pass that JupyterLab and the classic notebook run over HTML outputs.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat
import pytest
from _support.browser import dump_dom
from conftest import require_ci_tool
from test_notebooks import execute, venv_kernel

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

CELLS = [
    "import tempfile\nimport holysheep_lab as hs\n"
    "sim = hs.Simulator(latency=0.01).start()\n"
    "client = hs.Client(base_url=sim.base_url, log_dir=tempfile.mkdtemp(),\n"
    "                   budget=hs.Budget(daily=0.02, monthly=1.0),\n"
    "                   alerts=hs.AlertManager(channels=[hs.NotebookChannel()], cooldown=0))",
    "client.chat('gpt-4.1', 'Write a haiku about budgets.', max_tokens=64)",
    "meter = client.meter()\nmeter",
    "df = client.chat_many([f'Summarise ticket {i}.' for i in range(45)], model='gpt-4.1', max_tokens=64,\n"
    "                      as_frame=True)\ndf.head(3)",
    "client.budget_status()",
    "client.estimate_many(['one more prompt'] * 20, models=['gpt-4.1', 'gpt-4.1-mini'], max_tokens=200)",
    "client.metering.alerts.flush(5)\nclient.metering.alerts.history[-1]",
    "board = hs.dashboard(client)\nboard",
    "client.close(); sim.stop()",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> nbformat.NotebookNode:
    tmp = tmp_path_factory.mktemp("reopen")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    path = tmp / "reopen.ipynb"
    nbformat.write(nb, path)
    executed = execute(path, venv_kernel(tmp / "jupyter"))
    # Saved as JupyterLab saves by default: outputs, no widget state in the metadata.
    executed.metadata.pop("widgets", None)
    return executed


def _outputs(nb, index: int) -> list[dict]:
    return [o for o in nb.cells[index].outputs if o.output_type in ("display_data", "execute_result")]


def test_stopped_widgets_are_saved_as_their_snapshot(saved):
    errors = [o for c in saved.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    views = [(i, o) for i, c in enumerate(saved.cells) for o in c.outputs if WIDGET_VIEW in o.get("data", {})]
    assert views == [], [i for i, _ in views]  # nothing left that JupyterLab would render as a widget
    (meter,) = _outputs(saved, 2)
    lines = dict(re.findall(r"data-window='(\w+)' data-percent='([\d.]+)'", meter.data["text/html"]))
    assert float(lines["daily"]) > 50  # the final figures, after the batch, not the 0 % it was shown with
    bars = [o for o in saved.cells[3].outputs if "hs-batch-progress" in o.get("data", {}).get("text/html", "")]
    assert len(bars) == 1 and "data-done='45' data-total='45'" in bars[0].data["text/html"]
    assert bars[0].data["text/plain"].startswith("holysheep 45/45 · 45 answered · $0.0")
    (board,) = _outputs(saved, 7)
    assert "hs-meter-line" in board.data["text/html"] and board.data["text/html"].count("<svg") == 2


def test_a_live_meter_is_a_widget_with_its_snapshot_beside_it(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS[:3]]
    path = tmp_path / "live.ipynb"
    nbformat.write(nb, path)
    executed = execute(path, venv_kernel(tmp_path / "jupyter"))
    (meter,) = _outputs(executed, 2)
    assert WIDGET_VIEW in meter.data and "hs-meter-line" in meter.data["text/html"]


MATHJAX = (Path(__import__("mathjax").__file__).parent / "static" / "mathjax" / "es5" / "tex-chtml.js")

# How JupyterLab picks an output's renderer: the widget view first; the HTML only when there is none.
CONFIGS = {
    # JupyterLab's configuration (and the classic notebook's): $...$ is inline math, \$ a dollar.
    "jupyterlab": "{tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], processEscapes: true},"
                  " options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'}}",
    # MathJax 3's own defaults for the ignore class, with dollar delimiters turned on.
    "mathjax3-defaults": "{tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']]}}",
}


def page(nb: nbformat.NotebookNode, config: str) -> str:
    body = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if WIDGET_VIEW in data:  # no model in a reopened notebook: what JupyterLab shows then
                body.append("<div class='output'>Error displaying widget: model not found</div>")
            elif "text/html" in data:
                body.append(f"<div class='output'>{data['text/html']}</div>")
            elif "text/plain" in data:
                body.append(f"<pre>{html.escape(data['text/plain'])}</pre>")
    control = "<div id='control'>Spent $0.01 of $0.02</div>"  # proves MathJax ran over the page
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<script>window.MathJax = {config};</script>"
            f"<script src='{MATHJAX.as_uri()}'></script></head><body>{control}" + "\n".join(body) + "</body></html>")


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_reopened_notebook_in_chromium_with_mathjax(saved, tmp_path, config):
    require_ci_tool("chromium")
    path = tmp_path / "reopened.html"
    path.write_text(page(saved, CONFIGS[config]), encoding="utf-8")
    dom, _log = dump_dom(tmp_path, path.as_uri(), budget_ms=15_000)
    control = dom[dom.index("id=\"control\""):dom.index("</div>", dom.index("id=\"control\""))]
    assert "<mjx-container" in control  # MathJax typeset the unprotected control
    rest = dom.replace(control, "")
    assert "Error displaying widget" not in rest
    assert "<mjx-container" not in rest  # none of our dollar amounts became math
    text = re.sub(r"<[^>]+>", " ", rest)
    assert re.search(r"\$0\.\d{4,}", text), "no dollar amounts on the page"
    assert "45/45" in text and "budget status" in text and "batch estimate (nothing sent)" in text
    assert "tex2jax_ignore" in rest
    # The alert card and the result show their amounts with the dollar sign intact.
    assert re.search(r"Spent\s+\$0\.\d+ of \$0\.0\d+", text), text[:2000]
    assert re.search(r"\$0\.\d{4,}\s*·", text)  # the ChatResult footer "... · $0.0006240 · 12 ms"


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "calls"


def _drain(kc, until, timeout: float = 60.0) -> list[dict]:
    import queue
    import time

    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            if until(None):
                break
            continue
        seen.append(msg)
        if until(msg):
            break
    return seen


def test_a_kernel_shutdown_leaves_the_snapshots(tmp_path, monkeypatch):
    # Restart or shut down the kernel with the notebook open: before it exits, the kernel turns
    # the outputs of its live meter and dashboard into their snapshots (the frontend is still
    # listening and updates them by display id), so saving afterwards keeps no dead widget.
    from jupyter_client import KernelManager

    monkeypatch.setenv("JUPYTER_PATH", venv_kernel(tmp_path / "jupyter"))
    km = KernelManager(kernel_name="holysheep-venv")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        code = ("import tempfile\nimport holysheep_lab as hs\nsim = hs.Simulator(latency=0.01).start()\n"
                "client = hs.Client(base_url=sim.base_url, log_dir=tempfile.mkdtemp(), budget=hs.Budget(daily=1))\n"
                "client.chat('gpt-4.1', 'hi', max_tokens=32)\n"
                "display(client.meter())\n"
                f"display(hs.dashboard({str(SAMPLE)!r}, days=3))\n")
        msg_id = kc.execute(code)
        shown = _drain(kc, lambda m: m is not None and m["msg_type"] == "status"
                       and m["content"]["execution_state"] == "idle" and m["parent_header"].get("msg_id") == msg_id)
        errors = [m["content"] for m in shown if m["msg_type"] == "error"]
        assert not errors, errors
        displays = {m["content"]["transient"]["display_id"]: m["content"]["data"] for m in shown
                    if m["msg_type"] == "display_data" and "display_id" in m["content"].get("transient", {})}
        assert len(displays) == 2 and all(WIDGET_VIEW in d for d in displays.values())
        kc.shutdown()
        after = _drain(kc, lambda m: m is None and not km.is_alive(), timeout=30)
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
    updates = {m["content"]["transient"]["display_id"]: m["content"]["data"] for m in after
               if m["msg_type"] == "update_display_data"}
    assert set(updates) == set(displays)
    for data in updates.values():
        assert WIDGET_VIEW not in data and "tex2jax_ignore" in data["text/html"]
    snapshots = " ".join(d["text/html"] for d in updates.values())
    assert "hs-meter-line" in snapshots and "hs-dashboard" in snapshots and snapshots.count("<svg") == 2
