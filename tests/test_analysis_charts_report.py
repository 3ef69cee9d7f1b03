"""Charts (altair, aggregated) and the self-contained HTML report."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import altair as alt
import numpy as np
import pandas as pd
import pytest

from holysheep_lab.analysis import charts
from holysheep_lab.core.budget import Budget
from holysheep_lab.errors import ConfigError
from holysheep_lab.reports.html import Report, report

EVIL = '<script>alert("x")</script>&<b>'


def make_log(days: int = 60, per_day: int = 30, seed: int = 0, n_models: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * per_day
    start = pd.Timestamp(datetime(2026, 9, 1, tzinfo=UTC))
    ts = start + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n)), unit="s")
    models = [f"model-{i}" for i in range(n_models - 1)] + [EVIL]
    status = rng.choice(["ok"] * 8 + ["error", "blocked"], n)
    tin = rng.integers(100, 4000, n)
    conv = np.array([None] * n, dtype=object)
    conv[:25] = "chain"
    tin[:25] = (1000 * 1.2 ** np.arange(25)).astype(int)
    status[:25] = "ok"
    return pd.DataFrame({
        "ts": pd.DatetimeIndex(ts).as_unit("us"),
        "model": pd.Categorical(rng.choice(models, n)),
        "status": pd.Categorical(status),
        "input_tokens": tin,
        "output_tokens": rng.integers(10, 500, n),
        "cost_usd": np.where(status == "ok", tin * 3e-6, 0.0),
        "latency_ms": np.where(status == "blocked", np.nan, rng.lognormal(7, 0.5, n)),
        "attempts": rng.choice([1, 1, 2], n),
        "project": pd.Categorical(rng.choice(["p1", EVIL], n)),
        "error": np.where(status == "error", EVIL, None),
        "conversation_id": conv,
    })


def _rows(chart) -> int:
    spec = chart.to_dict()
    total = sum(len(v) for v in spec.get("datasets", {}).values())
    return total


def test_charts_return_charts_and_aggregate():
    df = make_log()
    fc = df.hs.forecast(days=20, tz="UTC")
    built = [
        charts.daily_spend_chart(df, tz="UTC"),
        charts.cumulative_chart(df, Budget(daily=None, monthly=50, tz="UTC"), fc, tz="UTC"),
        charts.model_share_chart(df, tz="UTC"),
        charts.latency_chart(df),
        charts.context_growth_chart(df),
    ]
    for c in built:
        assert isinstance(c, alt.TopLevelMixin)
        assert 0 < _rows(c) < 1000
    assert charts.__all__ == sorted(charts.__all__)


def test_charts_on_a_big_log_stay_under_altairs_row_limit():
    # 3 years x 12 models of daily rows would be > 5000 rows unaggregated.
    df = make_log(days=1100, per_day=12, n_models=12)
    for c in (charts.daily_spend_chart(df, tz="UTC", top=12), charts.model_share_chart(df, tz="UTC"),
              charts.latency_chart(df)):
        assert _rows(c) <= 5000
        c.to_dict()  # would raise MaxRowsError if over the limit


def test_charts_on_empty_log():
    df = make_log().iloc[:0]
    for c in (charts.daily_spend_chart(df), charts.model_share_chart(df), charts.latency_chart(df),
              charts.context_growth_chart(df), charts.cumulative_chart(df)):
        c.to_dict()


def test_report_is_self_contained_and_escaped(tmp_path):
    df = make_log()
    rep = report(df, budget=Budget(daily=5, monthly=80, tz="UTC", projects={EVIL: Budget(daily=1)}),
                   title=f"Spend {EVIL}", tz="UTC")
    page = rep.html
    assert page.startswith("<!DOCTYPE html>")
    # No network at view time: no external scripts, styles, images or frames.
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<script src" not in page
    assert "vegaEmbed" in page and page.count('data-chart="chart-') >= 4
    # User text never appears raw, in tables or in chart specs.
    assert EVIL not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;b&gt;" in page
    assert page.count("<script") == page.count("</script>")
    out = rep.save(tmp_path / "r.html")
    assert out.read_text(encoding="utf-8") == page
    frag = rep._repr_html_()
    assert frag.startswith("<iframe srcdoc=") and "<script>" not in frag
    assert "Report" in repr(rep) and len(repr(rep)) < 200


def test_report_sections_and_short_logs():
    df = make_log(days=3)
    page = report(df, tz="UTC").html
    assert "Forecast accuracy" in page and "at least" in page  # too short for a backtest: said, not raised
    empty = report(make_log().iloc[:0], tz="UTC").html
    assert "0 calls" in empty and "No data." in empty
    with pytest.raises(ConfigError, match="cost_usd"):
        report(df.drop(columns="cost_usd"))
    with pytest.raises(ConfigError, match="Budget"):
        report(df, budget={"monthly": 5})


def test_accessor_report():
    rep = make_log(days=10).hs.report(title="t", tz="UTC")
    assert isinstance(rep, Report) and "<title>t</title>" in rep.html
