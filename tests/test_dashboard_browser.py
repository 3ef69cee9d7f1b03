"""A dashboard notebook, executed in a real kernel, exported with its widget state, opened in
headless Chromium: the meters (and the dashboard's charts) are on the rendered page, with the
line of the experiment whose calls moved it live (sampled in the kernel while the calls ran).

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
    "import tempfile, time\nimport holysheep_lab as hs\n"
    "sim = hs.Simulator(latency=0.01).start()\n"
    "client = hs.Client(base_url=sim.base_url, log_dir=tempfile.mkdtemp(),\n"
    "                   budget=hs.Budget(daily=0.02, monthly=1.0), alerts=hs.AlertManager())",
    "board = hs.dashboard(client)\nboard",
    # The meter's own refresher draws the experiment's line: sampled between calls, no refresh().
    "key, seen = ('experiment:rag-v2', 'experiment'), []\n"
    "with client.experiment('rag-v2', budget=0.01) as exp:\n"
    "    time.sleep(1.5)  # open, no call yet: the refresher's idle wake-up adds the line\n"
    "    seen.append(board.meter.rows()[key].bar.value if key in board.meter.rows() else None)\n"
    "    for i in range(45):\n"
    "        try:\n"
    "            client.chat('gpt-4.1', f'Summarise ticket {i}.', max_tokens=64)\n"
    "        except hs.BudgetExceededError:\n"
    "            pass\n"
    "        if i % 5 == 4:\n"
    "            time.sleep(0.4)\n"
    "            seen.append(board.meter.rows()[key].bar.value)\n"
    "for i in range(15):  # outside the experiment: the daily line alone\n"
    "    client.chat('gpt-4.1', f'Summarise ticket {i}.', max_tokens=64)\n"
    "time.sleep(1.5)  # the block ended: the idle wake-up marks the line done\n"
    "print('SEEN', seen, exp.cost_usd, exp.refused, board.meter.state.lines[-1].done)\n"
    "client.metering.alerts.flush(5)  # alerts are delivered in the background\n"
    "board.refresh()  # the charts, from the log",
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

    # In the kernel: the experiment's line was there before its first call and moved with its calls.
    printed = "".join(o.get("text", "") for o in executed.cells[2].outputs)
    seen_text, cost, refused, done = re.search(r"SEEN \[([^\]]*)\] ([\d.e-]+) (\d+) (\w+)", printed).groups()
    seen = [float(v) for v in seen_text.split(", ")]
    assert seen[0] == 0.0 and len(set(seen)) >= 5 and seen == sorted(seen), seen
    assert int(refused) > 0 and done == "True"  # its budget capped it; the block ended
    final = round(float(cost) / 0.01 * 100, 1)
    assert 50 < final <= 100 and seen[-1] <= final

    dom, log = dump_dom(tmp_path, page.as_uri())
    assert [ln for ln in log.splitlines() if ":CONSOLE" in ln] == []
    # The experiment's line in the meter's own rendering (the snapshot the closed client left):
    # its final figures, marked done, no reset time.
    (exp_line,) = re.findall(r'<div class="hs-meter-line" data-scope="experiment:rag-v2" data-window="experiment" '
                             r'data-percent="([\d.]+)".*?</div>', dom)
    assert float(exp_line) == final
    exp_html = re.search(r'data-scope="experiment:rag-v2".*?</div>', dom).group(0)
    assert "experiment rag-v2" in exp_html and "· done" in exp_html and "resets" not in exp_html
    assert re.search(rf"\$0\.\d+ of \$0\.01000 · {final}% \w+ · .* · \d+ calls, {refused} refused · done", exp_html)
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
    assert {"daily", "monthly", "experiment rag-v2"} <= set(labels)
    assert final in bars, (final, bars)  # the live widget's last value: the final figures
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
