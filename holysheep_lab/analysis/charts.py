"""Altair charts of a call log. Each function returns a chart and never displays or saves it.

Data is aggregated before it reaches altair (a few hundred rows per chart whatever the log's
size), so altair's 5,000-row limit never trips. Dates are passed as ISO day strings and read
as UTC by Vega, so a day never shifts by the viewer's browser time zone. Money axes and
tooltips are in dollars, with as many decimals as the amounts need.

The charts are altair charts (`alt.Chart`, `alt.LayerChart`, ...) of classes that display
offline by themselves: interactive with inlined Vega, with a static SVG fallback (see
`holysheep_lab.notebook.render`), unless the user enabled an altair renderer of their own.
Charts composed from them (``a + b``, ``a | b``, ``a & b``) display the same way. Reports embed
the same objects' specs.
"""

from __future__ import annotations

import math
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_lab.analysis import spend as _sp
from holysheep_lab.analysis.frames import group_codes, require_columns
from holysheep_lab.core.budget import Budget
from holysheep_lab.core.runaway import GROWTH_MIN_CALLS, GROWTH_MIN_FACTOR
from holysheep_lab.errors import MissingExtraError

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

__all__ = [
    "OfflineDisplay",
    "by_chart",
    "context_growth_chart",
    "cumulative_chart",
    "daily_spend_chart",
    "forecast_chart",
    "latency_chart",
    "model_share_chart",
    "offline",
    "usd_formats",
]

_WIDTH = 640
_MAX_DAYS = 400  # beyond this, bars are weekly so a multi-year log stays small
_BAR_DAYS = 62  # up to this many days, one labelled bar per day (ordinal axis)
_DAY_TICKS = 45  # up to this many days, line charts tick whole days only


def _require_altair() -> None:
    """MissingExtraError, not ImportError, where altair is missing (it is imported on first use)."""
    try:
        import altair  # noqa: F401
    except ImportError as exc:  # pragma: no cover - altair is in the lock
        raise MissingExtraError("altair", "Charts") from exc


# --------------------------------------------------------------------------- chart classes


class OfflineDisplay:
    """Mixed into altair's chart classes: display through `notebook/render.py` (interactive, no
    network, static SVG fallback) unless the user enabled an altair renderer of their own."""

    def _repr_mimebundle_(self, *args: Any, **kwargs: Any) -> Any:
        import altair as alt

        from holysheep_lab.notebook.render import RENDERER, chart_bundle

        # A renderer the user chose wins; altair's default one needs a CDN.
        if alt.renderers.active not in ("default", RENDERER):
            return super()._repr_mimebundle_(*args, **kwargs)  # type: ignore[misc]
        return chart_bundle(self)

    # Charts composed from ours display like ours.
    def __add__(self, other: Any) -> Any:
        return offline(super().__add__(other))  # type: ignore[misc]

    def __or__(self, other: Any) -> Any:
        return offline(super().__or__(other))  # type: ignore[misc]

    def __and__(self, other: Any) -> Any:
        return offline(super().__and__(other))  # type: ignore[misc]


_KINDS: dict[str, type] = {}  # altair class name -> its offline class, made once


def _offline_kind(base: type) -> type:
    """`base` (an altair top-level chart class) with `OfflineDisplay` mixed in."""
    kind = _KINDS.get(base.__qualname__)
    if kind is None or kind.__bases__[1] is not base:
        kind = _KINDS[base.__qualname__] = type(base.__name__, (OfflineDisplay, base),
                                                {"__module__": base.__module__, "__doc__": base.__doc__})
    return kind


def offline(chart: Any) -> Any:
    """The same chart as an object that displays offline by itself (see `OfflineDisplay`)."""
    _require_altair()
    import altair as alt

    if isinstance(chart, OfflineDisplay):
        return chart
    if not isinstance(chart, alt.TopLevelMixin):
        raise TypeError(f"offline() takes an altair chart, not {type(chart).__name__}")
    # What altair's own shallow copy (`copy(deep=False)`) does, into the offline class.
    parts: Any = chart
    return _offline_kind(type(parts))(*parts._args, **parts._kwds)


def _chart(data: Any, **kwargs: Any) -> alt.Chart:
    import altair as alt

    made: alt.Chart = _offline_kind(alt.Chart)(data, **kwargs)
    return made


def _layer(*layers: Any, **kwargs: Any) -> alt.LayerChart:
    import altair as alt

    made: alt.LayerChart = _offline_kind(alt.LayerChart)(layer=list(layers), **kwargs)
    return made


# --------------------------------------------------------------------------- formats


def usd_formats(peak: float) -> tuple[str, str]:
    """(axis, tooltip) d3 formats for dollar amounts up to `peak`: whole dollars and cents from a
    dollar up ($50, $2.5), and enough decimals below that ticks stay distinct ($0.002, $0.004,
    never $0.00 five times); tooltips one decimal finer, never fewer than cents."""
    if not peak or not math.isfinite(peak) or peak >= 1:
        return "$,.2~f", "$,.2f"
    digits = min(6, max(2, 1 - math.floor(math.log10(peak))))
    return f"$,.{digits}~f", f"$,.{min(6, digits + 1)}f"


def _peak(values: Any) -> float:
    arr = np.asarray(values, dtype="float64")
    return float(np.nanmax(arr)) if arr.size and not np.isnan(arr).all() else 0.0


def _iso(dates: pd.Series) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in dates]


def _line_x(days: int, field: str = "date") -> alt.X:
    """A temporal day axis; short spans tick whole days only (never one date twice)."""
    import altair as alt

    if days <= _DAY_TICKS:
        axis = alt.Axis(tickCount={"interval": "day", "step": max(1, math.ceil(days / 10))}, format="%b %d",
                        labelAngle=0)
    else:
        axis = alt.Axis(format="%b %d" if days <= 366 else "%b %Y", labelAngle=0)
    return alt.X(f"utcyearmonthdate({field}):T", title=None, axis=axis)


def _span(dates: list[str]) -> int:
    if not dates:
        return 0
    import pandas as pd

    d = pd.to_datetime(pd.Series(dates))
    return int((d.max() - d.min()).days) + 1


# --------------------------------------------------------------------------- charts


def daily_spend_chart(
    df: pd.DataFrame, tz: str | tzinfo | None = None, by: str = "model", top: int = 6
) -> alt.Chart:
    """Daily spend as bars stacked by `by` (the `top` costliest labels, the rest as 'other').

    Up to two months, one labelled bar per day (a one-day log shows its date once); longer logs
    on a time axis, weekly past `_MAX_DAYS` days."""
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
    data = pd.DataFrame({"date": _iso(d["date"]), by: d[by].astype(str), "cost_usd": d["cost_usd"]})
    axis_fmt, tip_fmt = usd_formats(_peak(data.groupby("date")["cost_usd"].sum()) if len(data) else 0.0)
    span = _span(list(data["date"]))
    if unit == "day" and span <= _BAR_DAYS:
        first = pd.Timestamp(data["date"].min()) if len(data) else None
        days = [(first + pd.Timedelta(days=i)).strftime("%Y-%m-%d") for i in range(span)] if first is not None else []
        x = alt.X("date:O", title=None, scale=alt.Scale(domain=days),
                  axis=alt.Axis(labelExpr="utcFormat(toDate(datum.value), '%b %d')", labelAngle=0 if span <= 14 else -45,
                                labelOverlap=True))
        day_tip = alt.Tooltip("date:N", title=unit)
    else:
        x = _line_x(span)
        day_tip = alt.Tooltip("date:N", title=unit)
    chart: alt.Chart = (
        _chart(data, title=f"Spend per {unit} by {by}")
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("sum(cost_usd):Q", title="spend", axis=alt.Axis(format=axis_fmt)),
            color=alt.Color(f"{by}:N", title=by),
            tooltip=[day_tip, alt.Tooltip(f"{by}:N"), alt.Tooltip("sum(cost_usd):Q", title="spend", format=tip_fmt)],
        )
        .properties(width=_WIDTH, height=260)
    )
    return chart


def by_chart(df: pd.DataFrame, column: str = "model", top: int = 12) -> alt.Chart:
    """Spend per value of `column` (model, project, experiment, notebook_cell...) as bars, costliest
    first; tooltips give calls, share, cost per call and tokens. The rest beyond `top` is 'other'."""
    import pandas as pd

    _require_altair()
    import altair as alt

    t = _sp.by(df, column)
    if len(t) > top:
        rest = t.iloc[top:]
        other = {column: "other", "calls": int(rest["calls"].sum()), "cost_usd": float(rest["cost_usd"].sum()),
                 "share": float(rest["share"].sum()), "input_tokens": int(rest["input_tokens"].sum()),
                 "output_tokens": int(rest["output_tokens"].sum())}
        calls, cost = int(rest["calls"].sum()), float(rest["cost_usd"].sum())
        other["cost_per_call"] = cost / calls if calls else float("nan")
        t = pd.concat([t.iloc[:top], pd.DataFrame([other])], ignore_index=True)
    data = pd.DataFrame({
        "label": [_label(v) for v in t[column]], "calls": t["calls"].astype("int64"),
        "cost_usd": t["cost_usd"].astype("float64"), "share": t["share"].astype("float64"),
        "cost_per_call": t["cost_per_call"].astype("float64"),
        "tokens": (t["input_tokens"] + t["output_tokens"]).astype("int64"),
    })
    axis_fmt, tip_fmt = usd_formats(_peak(data["cost_usd"]))
    per_call = usd_formats(_peak(data["cost_per_call"]))[1]
    chart: alt.Chart = (
        _chart(data, title=f"Spend by {column}")
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=column, sort=None),
            x=alt.X("cost_usd:Q", title="spend", axis=alt.Axis(format=axis_fmt)),
            tooltip=[alt.Tooltip("label:N", title=column), alt.Tooltip("cost_usd:Q", title="spend", format=tip_fmt),
                     alt.Tooltip("share:Q", format=".1%"), alt.Tooltip("calls:Q", format=","),
                     alt.Tooltip("cost_per_call:Q", title="per call", format=per_call),
                     alt.Tooltip("tokens:Q", format=",")],
        )
        .properties(width=_WIDTH, height=max(60, 22 * len(data)))
    )
    return chart


def _label(value: Any) -> str:
    # A cell number read back as a float (nullable ints) shows as 12, not 12.0.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
        return _layer(_chart(pd.DataFrame({"x": []})).mark_point())
    last = d["date"].iloc[-1]
    mstart = last.replace(day=1)
    hist = d.loc[d["date"] >= mstart, ["date", "cost_usd"]].copy()
    hist["cum"] = hist["cost_usd"].cumsum()
    peaks = [float(hist["cum"].iloc[-1])]
    fd = None
    if forecast is not None and len(forecast):
        f = forecast.loc[forecast["date"].dt.to_period("M") == pd.Timestamp(mstart).to_period("M")]
        base = float(hist["cum"].iloc[-1])
        fd = pd.DataFrame({"date": _iso(f["date"]), "yhat": base + f["yhat"].cumsum(), "lo": base + f["lo"].cumsum(),
                           "hi": base + f["hi"].cumsum()})
        if len(fd):
            # Start the band at the last actual point so line and forecast join.
            fd = pd.concat([pd.DataFrame({"date": _iso(hist["date"].tail(1)), "yhat": [base], "lo": [base],
                                          "hi": [base]}), fd], ignore_index=True)
            peaks.append(_peak(fd["hi"]))
        else:
            fd = None
    rules = None
    if budget is not None and budget.monthly is not None:
        limit = float(budget.monthly)
        rules = pd.DataFrame({"usd": [limit, limit * budget.block_at],
                              "line": ["monthly limit", f"block at {budget.block_at:.0%}"]})
        peaks.append(limit)
    axis_fmt, tip_fmt = usd_formats(max(peaks))
    dates = _iso(hist["date"]) + (list(fd["date"]) if fd is not None else [])
    x = _line_x(_span(dates))
    layers: list[Any] = [
        _chart(pd.DataFrame({"date": _iso(hist["date"]), "cum": hist["cum"], "kind": "actual"}))
        .mark_line(point=True)
        .encode(x=x, y=alt.Y("cum:Q", title="spent this month", axis=alt.Axis(format=axis_fmt)),
                tooltip=[alt.Tooltip("date:N", title="day"), alt.Tooltip("cum:Q", title="spent", format=tip_fmt)])
    ]
    if fd is not None:
        layers.append(_chart(fd).mark_area(opacity=0.25).encode(x=x, y="lo:Q", y2="hi:Q"))
        layers.append(
            _chart(fd).mark_line(strokeDash=[6, 4]).encode(
                x=x, y="yhat:Q",
                tooltip=[alt.Tooltip("date:N", title="day"), alt.Tooltip("yhat:Q", title="forecast", format=tip_fmt),
                         alt.Tooltip("lo:Q", title="low", format=tip_fmt),
                         alt.Tooltip("hi:Q", title="high", format=tip_fmt)])
        )
    if rules is not None:
        layers.append(
            _chart(rules).mark_rule(strokeDash=[2, 2]).encode(
                y="usd:Q", color=alt.Color("line:N", title=None),
                tooltip=["line:N", alt.Tooltip("usd:Q", title="USD", format=tip_fmt)])
        )
    title = f"Cumulative spend, {mstart:%B %Y}{', with forecast' if fd is not None else ''}"
    return _layer(*layers).properties(width=_WIDTH, height=260, title=title)


def forecast_chart(df: pd.DataFrame, forecast: pd.DataFrame, tz: str | tzinfo | None = None,
                   history: int = 60) -> alt.LayerChart:
    """The last `history` days of daily spend (bars) and the daily forecast after them
    (expected line, prediction band), on one dollar axis."""
    import pandas as pd

    _require_altair()
    import altair as alt

    d = _sp.daily(df, tz=tz).tail(history)
    hist = pd.DataFrame({"date": _iso(d["date"]), "cost_usd": d["cost_usd"]})
    fc = pd.DataFrame({"date": _iso(forecast["date"]), "yhat": forecast["yhat"], "lo": forecast["lo"],
                       "hi": forecast["hi"]})
    axis_fmt, tip_fmt = usd_formats(max(_peak(hist["cost_usd"]), _peak(fc["hi"])))
    x = _line_x(_span(list(hist["date"]) + list(fc["date"])))
    y = alt.Y("cost_usd:Q", title="spend per day", axis=alt.Axis(format=axis_fmt))
    layers = [
        _chart(hist).mark_bar(opacity=0.7).encode(
            x=x, y=y, tooltip=[alt.Tooltip("date:N", title="day"), alt.Tooltip("cost_usd:Q", title="spent", format=tip_fmt)]),
        _chart(fc).mark_area(opacity=0.25).encode(x=x, y="lo:Q", y2="hi:Q"),
        _chart(fc).mark_line(point=True).encode(
            x=x, y="yhat:Q",
            tooltip=[alt.Tooltip("date:N", title="day"), alt.Tooltip("yhat:Q", title="expected", format=tip_fmt),
                     alt.Tooltip("lo:Q", title="low", format=tip_fmt), alt.Tooltip("hi:Q", title="high", format=tip_fmt)]),
    ]
    interval = forecast.attrs.get("interval")
    band = f" ({interval:.0%} band)" if isinstance(interval, float) else ""
    return _layer(*layers).properties(width=_WIDTH, height=260, title=f"Daily spend and forecast{band}")


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
    data = pd.DataFrame({"week": _iso(w["date"]), "model": w["model"].astype(str), "cost_usd": w["cost_usd"]})
    tip_fmt = usd_formats(_peak(data["cost_usd"]))[1]
    chart: alt.Chart = (
        _chart(data, title="Share of spend by model, per week")
        .mark_bar()
        .encode(
            # Ordinal weeks: full-width bars (a temporal axis would draw one-day-wide bars).
            x=alt.X("week:O", title="week starting", axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("sum(cost_usd):Q", stack="normalize", title="share", axis=alt.Axis(format="%")),
            color=alt.Color("model:N"),
            tooltip=[alt.Tooltip("week:O", title="week"), "model:N",
                     alt.Tooltip("sum(cost_usd):Q", title="spend", format=tip_fmt)],
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
            rows += [{"model": label, "latency_ms": round(float(m), 1), "calls": int(c), "share": float(c) / h.sum()}
                     for m, c in zip(mids, h, strict=True)]
    data = pd.DataFrame(rows, columns=["model", "latency_ms", "calls", "share"])
    chart: alt.Chart = (
        _chart(data, title="Latency distribution (calls sent)")
        .mark_line(interpolate="monotone", point=True)
        .encode(
            x=alt.X("latency_ms:Q", scale=alt.Scale(type="log"), title="latency (ms, log scale)",
                    axis=alt.Axis(format=",.0f")),
            y=alt.Y("share:Q", title="share of calls", axis=alt.Axis(format="%")),
            color="model:N",
            tooltip=["model:N", alt.Tooltip("latency_ms:Q", title="latency ms", format=",.0f"),
                     alt.Tooltip("calls:Q", format=","), alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=_WIDTH, height=220)
    )
    return chart


def context_growth_chart(df: pd.DataFrame, top: int = 5, min_calls: int = GROWTH_MIN_CALLS,
                         min_growth: float = GROWTH_MIN_FACTOR) -> alt.Chart:
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
                                    "cum_cost_usd": c["cum_cost_usd"].to_numpy()}))
    data = (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["conversation", "call", "input_tokens", "cum_cost_usd"]))
    tip_fmt = usd_formats(_peak(data["cum_cost_usd"]) if len(data) else 0.0)[1]
    chart: alt.Chart = (
        _chart(data, title="Context growth: prompt tokens per call in growing conversations")
        .mark_line(point=True)
        .encode(
            x=alt.X("call:Q", title="call in conversation"),
            y=alt.Y("input_tokens:Q", title="prompt tokens", axis=alt.Axis(format=",")),
            color=alt.Color("conversation:N"),
            tooltip=["conversation:N", "call:Q", alt.Tooltip("input_tokens:Q", format=","),
                     alt.Tooltip("cum_cost_usd:Q", title="cost so far", format=tip_fmt)],
        )
        .properties(width=_WIDTH, height=220)
    )
    return chart

