"""`df.hs.plot` and the offline display of charts: dollar axes and tooltips, one date per day,
the display bundle (interactive HTML with inlined Vega + static SVG), composition, renderers."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import altair as alt
import numpy as np
import pandas as pd
import pytest

import holysheep_lab.analysis  # noqa: F401  (registers df.hs)
from holysheep_lab.analysis import charts
from holysheep_lab.analysis.plot import Plot
from holysheep_lab.core.budget import Budget
from holysheep_lab.errors import ConfigError
from holysheep_lab.notebook import render

EVIL = '</script><script>console.error("x")</script>'


def make_log(days: int = 40, per_day: int = 20, start: str = "2026-10-01", scale: float = 3e-6) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = days * per_day
    t0 = pd.Timestamp(datetime.fromisoformat(start).replace(tzinfo=UTC))
    ts = t0 + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n)), unit="s")
    status = rng.choice(["ok"] * 9 + ["blocked"], n)
    tin = rng.integers(100, 4000, n)
    return pd.DataFrame({
        "ts": pd.DatetimeIndex(ts).as_unit("us"),
        "model": pd.Categorical(rng.choice(["gpt-4.1", "deepseek-v3.2", EVIL], n)),
        "status": pd.Categorical(status),
        "input_tokens": tin, "output_tokens": rng.integers(10, 500, n),
        "cost_usd": np.where(status == "ok", tin * scale, 0.0),
        "latency_ms": rng.lognormal(7, 0.5, n),
        "experiment": pd.Categorical(rng.choice(["rag-v1", "rag-v2", None], n)),
        "notebook_cell": pd.array(rng.choice([3, 7, 12], n), dtype="Int64"),
    })


def _texts(chart) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", render.chart_svg(chart.to_dict()))


def _tooltip_formats(spec: dict) -> list[str]:
    out = []

    def walk(node):
        if isinstance(node, dict):
            tips = node.get("tooltip")
            for tip in tips if isinstance(tips, list) else [tips] if isinstance(tips, dict) else []:
                if isinstance(tip, dict) and "format" in tip:
                    out.append(tip["format"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    return out


# --------------------------------------------------------------------------- df.hs.plot


def test_plot_namespace_builds_every_chart_offline():
    df = make_log()
    budget = Budget(daily=5, monthly=60, tz="UTC")
    plot = df.hs.plot
    assert isinstance(plot, Plot) and "daily" in repr(plot)
    built = {
        "daily": plot.daily(tz="UTC"), "by_model": plot.by_model(), "by": plot.by("experiment"),
        "cumulative": plot.cumulative(budget=budget), "forecast": plot.forecast(days=14, tz="UTC"),
        "latency": plot.latency(), "model_share": plot.model_share(tz="UTC"),
    }
    for name, chart in built.items():
        assert isinstance(chart, alt.TopLevelMixin), name
        assert isinstance(chart, charts.OfflineDisplay), name
        chart.to_dict()  # a valid spec


def test_money_axes_and_tooltips_are_in_dollars():
    df = make_log()
    budget = Budget(daily=5, monthly=60, tz="UTC")
    for chart in (df.hs.plot.daily(tz="UTC"), df.hs.plot.by_model(), df.hs.plot.cumulative(budget=budget),
                  df.hs.plot.forecast(days=14, tz="UTC")):
        spec = chart.to_dict()
        formats = _tooltip_formats(spec)
        assert formats and any(f.startswith("$") for f in formats), formats
        ticks = [t for t in _texts(chart) if t.startswith("$")]
        assert len(ticks) >= 3, _texts(chart)
        assert len(set(ticks)) == len(ticks)  # distinct: no "$0.00" five times


def test_cent_sized_spend_gets_enough_decimals():
    df = make_log(days=3, scale=3e-9)  # a few hundredths of a cent a day
    ticks = [t for t in _texts(df.hs.plot.daily(tz="UTC")) if t.startswith("$")]
    assert len(set(ticks)) == len(ticks) >= 3, ticks
    assert any(re.fullmatch(r"\$0\.0+[1-9]\d*", t) for t in ticks), ticks


def test_usd_formats():
    assert charts.usd_formats(250.0) == ("$,.2~f", "$,.2f")
    assert charts.usd_formats(0.5) == ("$,.2~f", "$,.3f")
    assert charts.usd_formats(0.0123) == ("$,.3~f", "$,.4f")
    assert charts.usd_formats(0.0) == ("$,.2~f", "$,.2f")
    assert charts.usd_formats(float("nan")) == ("$,.2~f", "$,.2f")
    assert charts.usd_formats(1e-12)[0] == "$,.6~f"


@pytest.mark.parametrize("days", [1, 2, 5])
def test_short_logs_print_each_date_once(days):
    df = make_log(days=days, start="2026-11-20")
    expected = [f"Nov {20 + i}" for i in range(days)]
    for chart in (df.hs.plot.daily(tz="UTC"), df.hs.plot.cumulative(tz="UTC", forecast=False)):
        dates = [t for t in _texts(chart) if re.fullmatch(r"[A-Z][a-z]{2} \d\d(, \d{4})?", t)]
        assert dates == expected, dates


def test_by_shows_notebook_cells_as_whole_numbers_and_keeps_top():
    df = make_log()
    spec = df.hs.plot.by("notebook_cell").to_dict()
    values = next(iter(spec["datasets"].values()))
    assert sorted(v["label"] for v in values) == ["12", "3", "7"]
    many = make_log()
    many["model"] = pd.Categorical([f"m{i % 20}" for i in range(len(many))])
    labels = [v["label"] for v in next(iter(charts.by_chart(many, "model", top=5).to_dict()["datasets"].values()))]
    assert len(labels) == 6 and labels[-1] == "other"


def test_plot_checks_its_budget():
    with pytest.raises(ConfigError, match=r"hs\.Budget"):
        make_log().hs.plot.cumulative(budget={"monthly": 5})  # type: ignore[arg-type]


def test_cumulative_without_priced_calls_still_draws():
    df = make_log(days=2)
    df["cost_usd"] = np.nan
    df.hs.plot.cumulative(budget=Budget(daily=1, monthly=10, tz="UTC")).to_dict()


# --------------------------------------------------------------------------- display


def test_chart_bundle_is_interactive_html_with_inlined_vega_and_a_static_svg():
    chart = make_log(days=5).hs.plot.daily(tz="UTC")
    bundle = chart._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", "image/svg+xml"}
    assert bundle["text/plain"] == "<chart: Spend per day by model>"
    page = bundle["text/html"]
    assert bundle["image/svg+xml"].startswith("<svg")
    assert '<div class="hs-chart-static"><svg' in page
    assert render.vega_bundle()[:200] in page  # vega itself, inline
    assert "https://cdn" not in page and "<script src" not in page
    # The model name that tries to end the script tag stays inside its JSON string.
    script = page.split('<script type="text/javascript">', 1)[1]
    assert script.count("</script>") == 1 and script.endswith("</script>")
    assert "console.error(\"x\")" not in page.split("<svg", 1)[0]


def test_two_charts_get_their_own_containers():
    df = make_log(days=5)
    a, b = (render.chart_bundle(c)["text/html"] for c in (df.hs.plot.daily(), df.hs.plot.by_model()))
    ids = [re.search(r'<div id="(hs-chart-[0-9a-f]+)"', x).group(1) for x in (a, b)]  # type: ignore[union-attr]
    assert ids[0] != ids[1]


def test_composed_charts_display_offline_too():
    df = make_log(days=5)
    for composed in (df.hs.plot.daily() | df.hs.plot.by_model(), df.hs.plot.daily() & df.hs.plot.latency(),
                     df.hs.plot.cumulative(forecast=False) + df.hs.plot.cumulative(forecast=False)):
        assert isinstance(composed, charts.OfflineDisplay)
        assert "text/html" in composed._repr_mimebundle_()
    plain = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q")
    adopted = charts.offline(plain)
    assert isinstance(adopted, charts.OfflineDisplay) and adopted.to_dict() == plain.to_dict()
    assert charts.offline(adopted) is adopted
    with pytest.raises(TypeError):
        charts.offline("not a chart")


def test_a_renderer_the_user_chose_wins():
    chart = make_log(days=3).hs.plot.by_model()
    with alt.renderers.enable("svg"):
        bundle = chart._repr_mimebundle_()
    assert "text/html" not in bundle and "image/svg+xml" in bundle


def test_offline_charts_covers_plain_altair_charts():
    plain = alt.Chart(pd.DataFrame({"x": [1, 2]})).mark_bar().encode(x="x:Q")
    before = alt.renderers.active
    try:
        render.offline_charts()
        assert alt.renderers.active == render.RENDERER
        bundle = plain._repr_mimebundle_()
        assert "window.vegaEmbed" in bundle["text/html"] and bundle["image/svg+xml"].startswith("<svg")
    finally:
        alt.renderers.enable(before)


def test_the_report_inlines_the_same_bundle():
    from holysheep_lab.reports.html import report

    page = report(make_log(days=10), tz="UTC").html
    assert render.vega_bundle()[:200] in page
