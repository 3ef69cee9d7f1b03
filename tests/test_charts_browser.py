"""`df.hs.plot` charts in a real kernel, exported the way nbconvert does, opened in headless
Chromium with the network blocked: every chart draws interactively from the inlined Vega, its
tooltips hold dollar figures, and nothing tries to reach a CDN (or anything else).

The page is the notebook's outputs in their richest offline form (text/html, as nbconvert's
HTML export picks it), plus one test script that hovers a mark of each drawn chart, one at a
time, and copies the tooltip Vega shows into the page so the DOM dump holds it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import altair as alt
import nbformat
import pandas as pd
import pytest
from _support.net_guard import CSP_PROBE, dump_dom_offline, page_requests
from conftest import require_ci_tool
from test_notebooks import execute, venv_kernel

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "calls"

CELLS = [
    f"import holysheep_lab as hs\ndf = hs.read_log({str(SAMPLE)!r})\n"
    "budget = hs.Budget(daily=25, monthly=355, tz='Europe/Berlin')",
    "df.hs.plot.daily(tz='Europe/Berlin')",
    "df.hs.plot.by_model()",
    "df.hs.plot.cumulative(budget=budget)",
    "df.hs.plot.forecast(budget=budget)",
    "df.hs.plot.latency()",
    # One day of calls: its date must be printed once.
    "day = df[df['ts'].dt.tz_convert('UTC').dt.strftime('%Y-%m-%d') == '2026-11-27']\n"
    "day.hs.plot.daily(tz='UTC')",
]
CHARTS = len(CELLS) - 1

# Test instrumentation: hover each chart's first mark in turn, copy the tooltip into the page.
HOVER = """
(function () {
  var out = document.getElementById('hovered');
  function hover(roots, i) {
    if (i >= roots.length) { out.setAttribute('data-done', 'true'); return; }
    var root = roots[i];
    var mark = root.querySelector('.hs-chart-view svg .mark-rect path, .hs-chart-view svg .mark-symbol path');
    if (mark) {
      var r = mark.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
      ['pointerover', 'pointermove', 'mouseover', 'mousemove'].forEach(function (type) {
        var Ev = type.indexOf('pointer') === 0 ? PointerEvent : MouseEvent;
        mark.dispatchEvent(new Ev(type, {bubbles: true, clientX: x, clientY: y, view: window}));
      });
    }
    setTimeout(function () {
      var tip = document.getElementById('vg-tooltip-element');
      var d = document.createElement('div');
      d.className = 'hovered';
      d.setAttribute('data-chart', root.id);
      d.innerHTML = mark && tip ? tip.innerHTML : 'no tooltip';
      out.appendChild(d);
      if (tip) { tip.innerHTML = ''; }
      hover(roots, i + 1);
    }, 400);
  }
  (function wait(tries) {
    var all = document.querySelectorAll('.hs-chart');
    var drawn = document.querySelectorAll('.hs-chart[data-hs-interactive]');
    if (drawn.length < all.length && tries > 0) { setTimeout(function () { wait(tries - 1); }, 100); return; }
    hover(drawn, 0);
  })(100);
})();
"""


def export(nb: nbformat.NotebookNode) -> str:
    """nbconvert-style HTML: each output's text/html when it has one, else its text."""
    body = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "text/html" in data:
                body.append(f'<div class="output">{data["text/html"]}</div>')
            elif "text/plain" in data:
                body.append(f"<pre>{html.escape(data['text/plain'])}</pre>")
            elif o.output_type == "stream":
                body.append(f"<pre>{html.escape(o.text)}</pre>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{CSP_PROBE}</head><body>" + "\n".join(body)
            + f"<div id='hovered'></div><script>{HOVER}</script></body></html>")


def _blocks(dom: str) -> dict[str, str]:
    """Chart id -> its drawn markup (up to the next chart or the hover log)."""
    ids = re.findall(r'<div id="(hs-chart-[0-9a-f]+)"', dom)
    out = {}
    for cid in ids:
        rest = dom.split(f'<div id="{cid}"', 1)[1]
        out[cid] = re.split(r'<div id="hs-chart-|<div id="hovered"', rest, maxsplit=1)[0]
    return out


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> nbformat.NotebookNode:
    root = tmp_path_factory.mktemp("charts-nb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    path = root / "charts.ipynb"
    nbformat.write(nb, path)
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", "")  # remembers the old value: execute() points it at the venv kernel
    try:
        return execute(path, venv_kernel(root / "jupyter"), timeout=300)
    finally:
        mp.undo()


def test_notebook_charts_carry_interactive_html_and_a_static_svg(executed):
    outputs = [o for c in executed.cells[1:1 + CHARTS] for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], outputs
    charts = [o["data"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(charts) == CHARTS
    for data in charts:
        page = data["text/html"]
        # The static SVG for viewers without scripts (GitHub, widget snapshots), in the HTML too.
        assert data["image/svg+xml"].lstrip().startswith("<svg")
        assert '<div class="hs-chart-static"><svg' in page
        assert "window.vegaEmbed" in page and "cdn.jsdelivr" not in page and "<script src" not in page
        assert "mathjax_ignore" in page  # "$0.50 ... $1.00" in ticks is not TeX
    # Dollar ticks on the money charts' static drawings.
    for data in charts[:4]:
        assert re.search(r">\$[\d,]+(\.\d+)?<", data["image/svg+xml"]), data["text/plain"]


def test_notebook_charts_draw_offline_with_tooltips(executed, tmp_path):
    require_ci_tool("chromium")
    page = tmp_path / "charts.html"
    page.write_text(export(executed), encoding="utf-8")
    dom, log, requests = dump_dom_offline(tmp_path, page.as_uri(), budget_ms=30_000)
    assert page_requests(requests) == []  # no CDN, no fetch of any kind
    assert '<div id="csp-violations">[]</div>' in dom  # nor an attempt the policy stopped
    console = [ln for ln in log.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    assert 'id="hovered" data-done="true"' in dom, "the charts were not all drawn"
    blocks = _blocks(dom)
    assert len(blocks) == CHARTS
    for cid, block in blocks.items():
        assert 'data-hs-interactive="true"' in dom.split(f'<div id="{cid}"', 1)[1][:300], cid
        assert re.search(r'<div class="hs-chart-view[^"]*"[^>]*>.*?<svg', block, re.S), cid
        assert '<div class="hs-chart-static"' not in block, cid  # the interactive chart replaced the static one
    tips = dict(re.findall(r'<div class="hovered" data-chart="(hs-chart-[0-9a-f]+)">(.*?)</div>', dom, re.S))
    assert tips.keys() == blocks.keys()
    assert all("<td class=\"key\">" in tip for tip in tips.values()), tips
    money = [tip for tip in tips.values() if re.search(r'<td class="value">\$[\d,.]+</td>', tip)]
    assert len(money) >= 4, tips  # daily, by model, cumulative, forecast: dollars in the tooltip
    # The one-day chart prints its date once on its axis.
    one_day = list(blocks.values())[-1]
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", one_day)
    assert labels.count("Nov 27") == 1, labels


@pytest.mark.parametrize("probe", [False, True], ids=["proxy", "csp"])
def test_the_guards_see_a_page_that_reaches_for_a_cdn(tmp_path, probe):
    """The same checks on altair's own default output, which loads vega from a CDN: the proxy
    records the request (and answers nothing), or the page's policy records the attempt.
    Without this, the empty lists above could come from guards that record nothing."""
    require_ci_tool("chromium")
    chart = alt.Chart(pd.DataFrame({"x": [1, 2], "y": [3, 4]})).mark_bar().encode(x="x:Q", y="y:Q")
    with alt.renderers.enable("default"):
        bundle = alt.Chart._repr_mimebundle_(chart)
    page = tmp_path / "altair-default.html"
    head = CSP_PROBE if probe else ""
    page.write_text(f"<!DOCTYPE html><html><head>{head}</head><body>{bundle['text/html']}</body></html>",
                    encoding="utf-8")
    dom, _log, requests = dump_dom_offline(tmp_path, page.as_uri(), budget_ms=8_000)
    if probe:
        assert re.search(r'<div id="csp-violations">\[.*cdn\.jsdelivr\.net.*\]</div>', dom), dom[-2000:]
    else:
        assert any("cdn.jsdelivr.net" in r for r in page_requests(requests)), requests
    assert "<svg" not in dom.split("<body>", 1)[1]
