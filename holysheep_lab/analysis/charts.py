"""Altair charts of a call log. Each function returns a chart and never displays or saves it.

Data is aggregated before it reaches altair (a few hundred rows per chart whatever the log's
size), so altair's 5,000-row limit never trips. Dates are passed as ISO day strings and read
as UTC by Vega, so a day never shifts by the viewer's browser time zone.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from holysheep_lab.analysis import spend as _sp
from holysheep_lab.analysis.frames import group_codes, require_columns
from holysheep_lab.core.budget import Budget
from holysheep_lab.errors import MissingExtraError

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

__all__ = [
    "context_growth_chart",
    "cumulative_chart",
    "daily_spend_chart",
    "latency_chart",
    "model_share_chart",
]

_WIDTH = 640
_MAX_DAYS = 400  # beyond this, bars are weekly so a multi-year log stays small


def _require_altair() -> None:
    """MissingExtraError, not ImportError, where altair is missing (it is imported on first use)."""
    try:
        import altair  # noqa: F401
    except ImportError as exc:  # pragma: no cover - altair is in the lock
        raise MissingExtraError("altair", "Charts") from exc


def _iso(dates: pd.Series) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in dates]


def daily_spend_chart(
    df: pd.DataFrame, tz: str | tzinfo | None = None, by: str = "model", top: int = 6
) -> alt.Chart:
    """Daily spend as bars stacked by `by` (the `top` costliest labels, the rest as 'other')."""
    import pandas as pd

    _require_altair()
    import altair as alt

    d = _sp.daily(df, by=by, tz=tz)
    keep = set(_sp.by(df, by)[by].head(top)) if len(df) else set()
    d[by] = d[by].where(d[by].isin(keep), "other")
    unit = "day"
    if len(d) and (d["date"].max() - d["date"].min()).days > _MAX_DAYS:
        d["date"] = d["date"].dt.to_period("W-SUN").dt.start_time
        unit = "week"
    d = d[["date", by, "cost_usd"]].groupby(["date", by], as_index=False, sort=True).sum()
    data = pd.DataFrame({"date": _iso(d["date"]), by: d[by].astype(str), "cost_usd": d["cost_usd"].round(4)})
    chart: alt.Chart = (
        alt.Chart(data, title=f"Spend per {unit} by {by}")
        .mark_bar()
        .encode(
            x=alt.X("utcyearmonthdate(date):T", title=None),
            y=alt.Y("sum(cost_usd):Q", title="USD"),
            color=alt.Color(f"{by}:N", title=by),
            tooltip=[alt.Tooltip("utcyearmonthdate(date):T", title=unit), alt.Tooltip(f"{by}:N"),
                     alt.Tooltip("sum(cost_usd):Q", title="USD", format="$.2f")],
        )
        .properties(width=_WIDTH, height=260)
    )
    return chart


def cumulative_chart(
    df: pd.DataFrame,
    budget: Budget | None = None,
    forecast: pd.DataFrame | None = None,
    tz: str | tzinfo | None = None,
) -> alt.LayerChart:
    """Month-to-date cumulative spend of the last month with calls, continued by the forecast
    (line + band) to the month's end, against the monthly budget and its block threshold."""
    import pandas as pd

    _require_altair()
    import altair as alt

    d = _sp.daily(df, tz=tz)
    if d.empty:
        return alt.LayerChart(layer=[alt.Chart(pd.DataFrame({"x": []})).mark_point()])
    last = d["date"].iloc[-1]
    mstart = last.replace(day=1)
    hist = d.loc[d["date"] >= mstart, ["date", "cost_usd"]].copy()
    hist["cum"] = hist["cost_usd"].cumsum()
    layers = [
        alt.Chart(pd.DataFrame({"date": _iso(hist["date"]), "cum": hist["cum"].round(2), "kind": "actual"}))
        .mark_line(point=True)
        .encode(x=alt.X("utcyearmonthdate(date):T", title=None), y=alt.Y("cum:Q", title="USD this month"),
                tooltip=[alt.Tooltip("utcyearmonthdate(date):T", title="day"),
                         alt.Tooltip("cum:Q", title="spent", format="$.2f")])
    ]
    if forecast is not None and len(forecast):
        f = forecast.loc[forecast["date"].dt.to_period("M") == pd.Timestamp(mstart).to_period("M")]
        base = float(hist["cum"].iloc[-1])
        fd = pd.DataFrame(
            {
                "date": _iso(f["date"]),
                "yhat": (base + f["yhat"].cumsum()).round(2),
                "lo": (base + f["lo"].cumsum()).round(2),
                "hi": (base + f["hi"].cumsum()).round(2),
            }
        )
        if len(fd):
            # Start the band at the last actual point so line and forecast join.
            fd = pd.concat([pd.DataFrame({"date": _iso(hist["date"].tail(1)), "yhat": [base], "lo": [base],
                                          "hi": [base]}), fd], ignore_index=True)
            x = alt.X("utcyearmonthdate(date):T", title=None)
            layers.append(alt.Chart(fd).mark_area(opacity=0.25).encode(x=x, y="lo:Q", y2="hi:Q"))
            layers.append(
                alt.Chart(fd).mark_line(strokeDash=[6, 4]).encode(
                    x=x, y="yhat:Q",
                    tooltip=[alt.Tooltip("utcyearmonthdate(date):T", title="day"),
                             alt.Tooltip("yhat:Q", title="forecast", format="$.2f"),
                             alt.Tooltip("lo:Q", format="$.2f"), alt.Tooltip("hi:Q", format="$.2f")])
            )
    if budget is not None and budget.monthly is not None:
        limit = float(budget.monthly)
        rules = pd.DataFrame({"usd": [limit, limit * budget.block_at],
                              "line": ["monthly limit", f"block at {budget.block_at:.0%}"]})
        layers.append(
            alt.Chart(rules).mark_rule(strokeDash=[2, 2]).encode(
                y="usd:Q", color=alt.Color("line:N", title=None),
                tooltip=["line:N", alt.Tooltip("usd:Q", format="$.2f")])
        )
    layered = alt.layer(*layers).properties(
        width=_WIDTH, height=260, title=f"Cumulative spend, {mstart:%B %Y}, with forecast"
    )
    return cast("alt.LayerChart", layered)  # alt.layer of charts is a LayerChart


def model_share_chart(df: pd.DataFrame, tz: str | tzinfo | None = None, top: int = 6) -> alt.Chart:
    """Each model's share of spend per week (normalised stacked bars): how the mix shifts."""
    import pandas as pd

    _require_altair()
    import altair as alt

    d = _sp.daily(df, by="model", tz=tz)
    keep = set(_sp.by(df, "model")["model"].head(top)) if len(df) else set()
    d["model"] = d["model"].where(d["model"].isin(keep), "other")
    if len(d):
        d["date"] = d["date"].dt.to_period("W-SUN").dt.start_time
    w = d.groupby(["date", "model"], as_index=False, sort=True)["cost_usd"].sum()
    data = pd.DataFrame({"week": _iso(w["date"]), "model": w["model"].astype(str), "cost_usd": w["cost_usd"].round(4)})
    chart: alt.Chart = (
        alt.Chart(data, title="Share of spend by model, per week")
        .mark_bar()
        .encode(
            # Ordinal weeks: full-width bars (a temporal axis would draw one-day-wide bars).
            x=alt.X("week:O", title="week starting", axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("sum(cost_usd):Q", stack="normalize", title="share", axis=alt.Axis(format="%")),
            color=alt.Color("model:N"),
            tooltip=[alt.Tooltip("week:O", title="week"), "model:N",
                     alt.Tooltip("sum(cost_usd):Q", title="USD", format="$.2f")],
        )
        .properties(width=_WIDTH, height=220)
    )
    return chart


def latency_chart(df: pd.DataFrame, bins: int = 40) -> alt.Chart:
    """Latency distribution per model: share of calls per log-spaced latency bin (lines)."""
    import pandas as pd

    _require_altair()
    import altair as alt

    require_columns(df, ["latency_ms", "status", "model"], "latency_chart()")
    lat = df["latency_ms"].to_numpy(dtype="float64", na_value=np.nan)
    ok = (np.asarray(df["status"].astype("object")) != "blocked") & (lat > 0)
    rows: list[dict[str, Any]] = []
    if ok.any():
        lat_ok = lat[ok]
        edges = np.logspace(np.log10(max(lat_ok.min(), 1.0)), np.log10(lat_ok.max() * 1.0001), bins + 1)
        codes, labels = group_codes(df.loc[ok, "model"])
        for i, label in enumerate(labels):
            h, _ = np.histogram(lat_ok[codes == i], bins=edges)
            if h.sum() == 0:
                continue
            mids = np.sqrt(edges[:-1] * edges[1:])
            rows += [{"model": label, "latency_ms": round(float(m), 1), "share": float(c) / h.sum()}
                     for m, c in zip(mids, h, strict=True)]
    data = pd.DataFrame(rows, columns=["model", "latency_ms", "share"])
    chart: alt.Chart = (
        alt.Chart(data, title="Latency distribution (calls sent)")
        .mark_line(interpolate="monotone")
        .encode(
            x=alt.X("latency_ms:Q", scale=alt.Scale(type="log"), title="latency (ms, log scale)"),
            y=alt.Y("share:Q", title="share of calls", axis=alt.Axis(format="%")),
            color="model:N",
            tooltip=["model:N", alt.Tooltip("latency_ms:Q", format=",.0f"), alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=_WIDTH, height=220)
    )
    return chart


def context_growth_chart(df: pd.DataFrame, top: int = 5, min_calls: int = 5,
                         min_growth: float = 2.0) -> alt.Chart:
    """Prompt tokens per call along the costliest growing conversations (see `context_growth`)."""
    import pandas as pd

    _require_altair()
    import altair as alt

    chains = _sp.context_growth(df, min_calls=min_calls, min_growth=min_growth).head(top)
    frames = []
    for cid in chains["conversation_id"]:
        c = _sp.context_chain(df, cid)
        c = c.loc[c["input_tokens"] > 0]
        frames.append(pd.DataFrame({"conversation": str(cid), "call": np.arange(1, len(c) + 1),
                                    "input_tokens": c["input_tokens"].to_numpy(),
                                    "cum_cost_usd": c["cum_cost_usd"].round(4).to_numpy()}))
    data = (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["conversation", "call", "input_tokens", "cum_cost_usd"]))
    chart: alt.Chart = (
        alt.Chart(data, title="Context growth: prompt tokens per call in growing conversations")
        .mark_line(point=True)
        .encode(
            x=alt.X("call:Q", title="call in conversation"),
            y=alt.Y("input_tokens:Q", title="prompt tokens"),
            color=alt.Color("conversation:N"),
            tooltip=["conversation:N", "call:Q", alt.Tooltip("input_tokens:Q", format=","),
                     alt.Tooltip("cum_cost_usd:Q", title="cost so far", format="$.2f")],
        )
        .properties(width=_WIDTH, height=220)
    )
    return chart
