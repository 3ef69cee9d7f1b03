"""The reports' HTML shows money by the one rule (`core.display.format_usd`) and keeps MathJax off."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import holysheep_lab as hs
from holysheep_lab.core.display import format_usd
from holysheep_lab.reports.usage import USAGE_COLUMNS, summarize_usage

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "calls"


def test_usage_report_html_is_mathjax_proof_and_formats_money():
    rows = {"ts": pa.array([0, 1], pa.timestamp("us", "UTC")), "model": ["gpt-4.1", "gpt-4o-mini"],
            "status": ["ok", "ok"], "cost_usd": [0.0033363999999999998, 1234.5], "input_tokens": [12345, 5],
            "output_tokens": [7, 8], "latency_ms": [1234.5, 10.0]}
    rep = summarize_usage(pa.table({c: rows[c] for c in USAGE_COLUMNS}), 7, daily_remaining=0.25)
    html = rep._repr_html_()
    assert html.startswith("<div class='tex2jax_ignore mathjax_ignore'>")
    assert "<td>$1,234.50</td>" in html  # the total, and the gpt-4o-mini row
    assert "<td>$0.003336</td>" in html and "<td>$0.2500</td>" in html and "<td>12,350</td>" in html
    assert "<td>622 ms</td>" in html
    assert "no limit" in html  # no monthly line: not $0
    assert "0.0033363999" not in html and rep["total_cost_usd"] == round(1234.5 + 0.0033363999999999998, 9)


def test_spend_report_money_follows_the_one_rule():
    df = hs.read_log(SAMPLE)
    page = hs.report(df.head(2000), budget=hs.Budget(daily=100, monthly=500, tz="UTC")).html
    by_model = df.head(2000).hs.by_model()
    for _, row in by_model.iterrows():
        assert format_usd(row["cost_per_call"]) in page  # per call: under $1, four significant digits
    assert format_usd(float(df.head(2000)["cost_usd"].sum())) in page
