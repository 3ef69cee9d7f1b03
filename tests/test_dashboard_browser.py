"""A dashboard notebook, executed in a real kernel, exported with its widget state, opened in
headless Chromium: the meters (and the dashboard's charts) are on the rendered page.

nbconvert is not in the venv and the widget manager's JavaScript (@jupyter-widgets/html-manager)
is normally fetched from a CDN, which is unreachable here. So the export is written below the
way nbconvert does it (outputs' richest offline form, the widget state in a
`application/vnd.jupyter.widget-state+json` script, a widget-view script per widget output),
and a small inline script reads that embedded state in the browser and draws its progress
bars and Output widgets. The page loads nothing from the network.
"""

from __future__ import annotations

import html
import json
import re

import nbformat
import pytest
from _support.browser import dump_dom
from conftest import require_ci_tool
from test_notebooks import execute, venv_kernel

CELLS = [
    "import tempfile\nimport holysheep_lab as hs\n"
    "sim = hs.Simulator(latency=0.01).start()\n"
    "client = hs.Client(base_url=sim.base_url, log_dir=tempfile.mkdtemp(),\n"
    "                   budget=hs.Budget(daily=0.02, monthly=1.0), alerts=hs.AlertManager())",
    "for i in range(45):\n    client.chat('gpt-4.1', f'Summarise ticket {i}.', max_tokens=64)\n"
    "client.metering.alerts.flush(5)  # alerts are delivered in the background",
    "board = hs.dashboard(client)\nboard",
    "client.close(); sim.stop()",
]

# Reads the embedded widget state (what a widget manager would render) and draws it.
RENDER_STATE = """
var el = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
var state = JSON.parse(el.textContent).state, out = document.getElementById('widget-state');
Object.keys(state).forEach(function (id) {
  var m = state[id];
  if (m.model_name === 'FloatProgressModel') {
    var bar = document.createElement('div');
    bar.className = 'state-bar';
    bar.setAttribute('data-value', m.state.value);
    bar.style.width = m.state.value + '%';
    out.appendChild(bar);
  } else if (m.model_name === 'LabelModel') {
    var label = document.createElement('span');
    label.className = 'state-label';
    label.textContent = m.state.value;
    out.appendChild(label);
  } else if (m.model_name === 'OutputModel') {
    (m.state.outputs || []).forEach(function (o) {
      var svg = o.data && o.data['image/svg+xml'];
      if (svg) {
        var d = document.createElement('div');
        d.className = 'state-chart';
        d.innerHTML = svg;
        out.appendChild(d);
      }
    });
  }
});
"""


def export(nb: nbformat.NotebookNode) -> str:
    """nbconvert-style HTML: each output's offline form, plus the embedded widget state."""
    body = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                view = json.dumps(data["application/vnd.jupyter.widget-view+json"])
                body.append(f'<script type="application/vnd.jupyter.widget-view+json">{view}</script>')
            if "text/html" in data:
                body.append(f'<div class="output">{data["text/html"]}</div>')
            elif "text/plain" in data:
                body.append(f'<pre>{html.escape(data["text/plain"])}</pre>')
            elif o.output_type == "stream":
                body.append(f'<pre>{html.escape(o.text)}</pre>')
    state = json.dumps(nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]).replace("</", "<\\/")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f'<script type="application/vnd.jupyter.widget-state+json">{state}</script></head><body>'
            + "\n".join(body) + '<div id="widget-state"></div>'
            f"<script>{RENDER_STATE}</script></body></html>")


def test_dashboard_meters_render_in_chromium(tmp_path):
    require_ci_tool("chromium")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    path = tmp_path / "dashboard.ipynb"
    nbformat.write(nb, path)
    executed = execute(path, venv_kernel(tmp_path / "jupyter"))
    page = tmp_path / "dashboard.html"
    page.write_text(export(executed), encoding="utf-8")

    dom, log = dump_dom(tmp_path, page.as_uri())
    assert [ln for ln in log.splitlines() if ":CONSOLE" in ln] == []
    # The meters' own rendering: one line per budget window, spent > 0, labelled.
    lines = re.findall(r"class=\"hs-meter-line\" data-scope=\"global\" "
                       r"data-window=\"(\w+)\" data-percent=\"([\d.]+)\"", dom)
    assert dict(lines).keys() == {"daily", "monthly"}, lines
    daily = float(dict(lines)["daily"])
    assert daily > 10
    assert "last alert: INFO" in dom or "last alert: WARNING" in dom
    # The embedded widget state, read and drawn by the browser: the same bars and labels.
    bars = [float(v) for v in re.findall(r'class="state-bar" data-value="([\d.]+)"', dom)]
    assert daily in bars, (daily, bars)
    labels = re.findall(r'<span class="state-label">([^<]+)</span>', dom)
    assert {"daily", "monthly"} <= set(labels)
    # And the dashboard's charts (inside its Output widget) are real SVG in the page.
    charts = re.findall(r'<div class="state-chart"><svg', dom)
    assert len(charts) == 2
    assert "Refresh" in json.dumps(executed.metadata["widgets"])


@pytest.mark.parametrize("value", ['</script><img src=x onerror="console.error(1)">'])
def test_export_escapes_widget_state(value):
    nb = nbformat.v4.new_notebook()
    state = {"state": {"x": {"state": {"value": value}}}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": state}
    assert "</script><img" not in export(nb)
