"""The HTML report in a real headless Chromium: loads with no console output, charts render."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from _support.browser import dump_dom
from conftest import require_ci_tool

from holysheep_lab.core.budget import Budget
from holysheep_lab.reports.html import report

EVIL = '<img src=x onerror="console.error(1)">'


def _log() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 2500
    ts = pd.Timestamp(datetime(2026, 9, 1, tzinfo=UTC)) + pd.to_timedelta(
        np.sort(rng.uniform(0, 70 * 86400, n)), unit="s")
    status = rng.choice(["ok"] * 9 + ["error"], n)
    tin = rng.integers(100, 4000, n)
    conv = np.array([None] * n, dtype=object)
    conv[:20], status[:20] = "long-chat", "ok"
    tin[:20] = (1500 * 1.25 ** np.arange(20)).astype(int)
    return pd.DataFrame({
        "ts": pd.DatetimeIndex(ts).as_unit("us"),
        "model": pd.Categorical(rng.choice(["gpt-4.1", "deepseek-v3.2", EVIL], n)),
        "status": pd.Categorical(status),
        "input_tokens": tin, "output_tokens": rng.integers(10, 500, n),
        "cost_usd": np.where(status == "ok", tin * 4e-6, 0.0),
        "latency_ms": rng.lognormal(7, 0.5, n), "attempts": 1,
        "project": pd.Categorical(rng.choice(["p1", EVIL], n)),
        "error": np.where(status == "error", EVIL, None), "conversation_id": conv,
    })


def test_report_renders_in_chromium(tmp_path):
    require_ci_tool("chromium")
    rep = report(_log(), budget=Budget(daily=10, monthly=200, tz="UTC"), title=f"Report {EVIL}", tz="UTC")
    path = rep.save(tmp_path / "report.html")
    dom, log = dump_dom(tmp_path, path.as_uri())
    # Chromium prints every console message (log, warning, error, uncaught exception) as
    # "CONSOLE"; the page itself logs nothing unless something failed.
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    chart_ids = re.findall(r'<div class="chart" id="(chart-\d+)"', rep.html)
    assert len(chart_ids) >= 5
    for cid in chart_ids:
        m = re.search(rf'<div class="chart" id="{cid}"[^>]*>(.*?)</div>\s*(?=<div class="chart"|<h2|<p|<table|<script)',
                      dom, re.S)
        block = m.group(1) if m else dom.split(f'id="{cid}"', 1)[1][:200_000]
        assert "<svg" in block, f"{cid} did not render"
        assert "could not be drawn" not in block
    # The injected markup stayed text: no element was created from it.
    assert '<img src="x"' not in dom and "<img src=x" not in dom
