"""Runaway spend in a call log: ``df.hs.anomalies()``.

Three kinds, the usual causes of a bill that explodes, one row each in one tidy frame:

* ``context_growth``: a conversation whose prompt grows call over call (an agent loop or a chat
  that resends its whole history): `holysheep_lab.analysis.spend.context_growth`;
* ``retry_storm``: a model's calls retrying or failing in bulk within a short window (a relay
  outage met by retries, a client loop): attempts beyond the first plus failed calls, counted
  per `window_minutes` window and model;
* ``spend_day``: a day whose spend falls outside the forecast band, each day forecast from
  the days before it only (one step ahead, as the day would have been judged as it began).

Pure: a DataFrame in, a DataFrame out (the rules of `holysheep_lab.analysis.spend`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_lab.analysis.forecast import forecast_series
from holysheep_lab.analysis.frames import (
    cost_usd,
    empty_frame,
    group_codes,
    local_date,
    numbers,
    require_columns,
    valid_micros,
)
from holysheep_lab.analysis.spend import context_growth, daily
from holysheep_lab.core.budget import resolve_tz
from holysheep_lab.core.runaway import (
    GROWTH_MIN_CALLS,
    GROWTH_MIN_FACTOR,
    GROWTH_MIN_TOKENS,
    STORM_MIN_EVENTS,
    STORM_MIN_SHARE,
    STORM_WINDOW_MINUTES,
)
from holysheep_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ANOMALY_COLUMNS", "KINDS", "anomalies", "retry_storms", "spend_days"]

KINDS = ("context_growth", "retry_storm", "spend_day")

#: The columns of `anomalies` (and of each kind's own function).
ANOMALY_COLUMNS = {
    "kind": "object",  # one of KINDS
    "subject": "object",  # the conversation_id, the model, or the local date (YYYY-MM-DD)
    "start": "datetime64[us, UTC]",
    "end": "datetime64[us, UTC]",
    "calls": "int64",
    "cost_usd": "float64",  # the conversation's, the window's calls', the day's spend
    "score": "float64",  # prompt growth (x), failed or retried attempts per call, spend / expected
    "detail": "object",  # one sentence for people
}

_US_PER_MINUTE = 60_000_000
_DENSE_CELLS = 20_000_000  # past this many (window, model) cells, count the occupied ones only


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    if not rows:
        return empty_frame(ANOMALY_COLUMNS)
    out = pd.DataFrame(rows, columns=list(ANOMALY_COLUMNS))
    for c in ("start", "end"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[us, UTC]")
    return out.astype({"calls": "int64", "cost_usd": "float64", "score": "float64"})


def _growth_rows(df: pd.DataFrame, min_calls: int, min_growth: float, min_tokens: int) -> list[dict[str, Any]]:
    if "conversation_id" not in df.columns or "input_tokens" not in df.columns:
        return []
    cg = context_growth(df, min_calls=min_calls, min_growth=min_growth, min_tokens=min_tokens)
    rows: list[dict[str, Any]] = []
    for r in cg.to_dict("records"):
        rows.append({"kind": "context_growth", "subject": r["conversation_id"], "start": r["first_ts"],
                     "end": r["last_ts"], "calls": int(r["calls"]), "cost_usd": float(r["cost_usd"]),
                     "score": float(r["growth"]),
                     "detail": f"prompt grew from {r['first_input_tokens']:,} to {r['last_input_tokens']:,} input "
                               f"tokens over {r['calls']} calls (+{r['tokens_per_call_added']:,.0f} per call) "
                               f"on {r['model']}"})
    return rows


def retry_storms(df: pd.DataFrame, window_minutes: int = STORM_WINDOW_MINUTES, min_events: int = STORM_MIN_EVENTS,
                 min_share: float = STORM_MIN_SHARE) -> pd.DataFrame:
    """Windows in which a model's calls retried or failed in bulk.

    Per model and `window_minutes` window (aligned on the epoch), events are the attempts
    beyond the first (`attempts` - 1) of every call sent plus the calls that failed (status
    ``error`` or ``unknown``); a window is stormy when it holds at least `min_events` events
    and they are at least `min_share` of its calls. Consecutive stormy windows of a model are
    one storm. Columns `ANOMALY_COLUMNS` (kind ``retry_storm``, subject the model, score the
    events per call); sorted by start.
    """
    require_columns(df, ["ts", "model", "status", "cost_usd"], "retry_storms()")
    if isinstance(window_minutes, bool) or not isinstance(window_minutes, int) or window_minutes < 1:
        raise ConfigError(f"window_minutes must be a whole number >= 1, not {window_minutes!r}.")
    us, ok = valid_micros(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    status = np.asarray(df["status"].astype("object"))
    sent = status != "blocked"
    if not sent.any():
        return _frame([])
    df, us, status = df.loc[sent], us[sent], status[sent]
    extra = np.maximum(numbers(df["attempts"]) - 1, 0) if "attempts" in df.columns else np.zeros(len(df))
    events = extra + ((status == "error") | (status == "unknown"))
    codes, labels = group_codes(df["model"])
    cost, _ = cost_usd(df)
    width = window_minutes * _US_PER_MINUTE
    window = us // width
    w0 = int(window.min())
    ng = len(labels)
    key = (window - w0) * ng + codes
    cells = (int(window.max()) - w0 + 1) * ng
    if cells <= _DENSE_CELLS:
        n_calls = np.bincount(key, minlength=cells)
        n_events = np.bincount(key, weights=events, minlength=cells)
        spend = np.bincount(key, weights=cost, minlength=cells)
        occupied = np.flatnonzero(n_calls)
        n_calls, n_events, spend = n_calls[occupied], n_events[occupied], spend[occupied]
    else:
        occupied, inverse = np.unique(key, return_inverse=True)
        n_calls = np.bincount(inverse)
        n_events = np.bincount(inverse, weights=events)
        spend = np.bincount(inverse, weights=cost)
    stormy = (n_events >= min_events) & (n_events >= min_share * n_calls)
    rows: list[dict[str, Any]] = []
    cell_window, cell_model = occupied // ng + w0, occupied % ng
    for model in np.unique(cell_model[stormy]).tolist():
        mine = np.flatnonzero(stormy & (cell_model == model))
        runs = np.split(mine, np.flatnonzero(np.diff(cell_window[mine]) != 1) + 1)
        for run in runs:
            calls, ev, usd = int(n_calls[run].sum()), float(n_events[run].sum()), float(spend[run].sum())
            start, end = int(cell_window[run[0]]) * width, (int(cell_window[run[-1]]) + 1) * width
            minutes = (end - start) // _US_PER_MINUTE
            rows.append({"kind": "retry_storm", "subject": labels[model], "start": _instant(start),
                         "end": _instant(end), "calls": calls, "cost_usd": usd, "score": ev / calls,
                         "detail": f"{ev:,.0f} retries and failures in {minutes} min on {labels[model]} "
                                   f"({calls:,} calls sent, {_usd(usd)} spent)"})
    return _frame(sorted(rows, key=lambda r: (r["start"], r["subject"])))


def _instant(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def spend_days(df: pd.DataFrame, tz: str | tzinfo | None = None, band: float = 0.99, min_history: int = 28,
               now: datetime | None = None, days: int = 120) -> pd.DataFrame:
    """Days whose spend falls outside the central `band` of the forecast made the day before.

    Each of the last `days` local days in `tz` (default local) with at least `min_history`
    days before it is forecast from those days alone (`forecast_series`), and flagged when its
    spend is above the band (a runaway) or below it (an outage, a stopped job). With `now`, its
    day (in progress) and later days are not judged. Columns `ANOMALY_COLUMNS` (kind
    ``spend_day``, subject the date, score spend / expected); sorted by day.
    """
    require_columns(df, ["ts", "cost_usd"], "spend_days()")
    if not 0 < band < 1:
        raise ConfigError(f"band must be a fraction in (0, 1), such as 0.99; got {band!r}.")
    zone = resolve_tz(tz)
    d = daily(df, tz=zone)
    if d.empty:
        return _frame([])
    first: date = d["date"].iloc[0].date()
    y = d["cost_usd"].to_numpy()
    calls = d["calls"].to_numpy()
    complete = len(y) if now is None else max(0, min(len(y), (local_date(now, zone) - first).days))
    rows: list[dict[str, Any]] = []
    for i in range(max(min_history, complete - days), complete):
        fc = forecast_series(y[:i], first, days=1, interval=band)
        expected, lo, hi = float(fc["yhat"][0]), float(fc["lo"][0]), float(fc["hi"][0])
        if lo <= y[i] <= hi:
            continue
        day = first + timedelta(days=i)
        begin = datetime(day.year, day.month, day.day, tzinfo=zone)
        side = "above" if y[i] > hi else "below"
        rows.append({"kind": "spend_day", "subject": day.isoformat(), "start": begin.astimezone(UTC),
                     "end": (begin + timedelta(days=1)).astimezone(UTC), "calls": int(calls[i]),
                     "cost_usd": float(y[i]), "score": float(y[i] / expected) if expected > 0 else np.inf,
                     "detail": f"{_usd(float(y[i]))} spent, {side} the {band:.0%} band "
                               f"{_usd(lo)}–{_usd(hi)} (expected {_usd(expected)})"})
    return _frame(rows)


def anomalies(
    df: pd.DataFrame,
    tz: str | tzinfo | None = None,
    now: datetime | None = None,
    *,
    min_calls: int = GROWTH_MIN_CALLS,
    min_growth: float = GROWTH_MIN_FACTOR,
    min_tokens: int = GROWTH_MIN_TOKENS,
    window_minutes: int = STORM_WINDOW_MINUTES,
    min_events: int = STORM_MIN_EVENTS,
    min_share: float = STORM_MIN_SHARE,
    band: float = 0.99,
) -> pd.DataFrame:
    """Every anomaly of the log: growing conversations, retry storms, spend days off the band.

    One row per finding, columns `ANOMALY_COLUMNS`, in the order of `KINDS` and then by start.
    The options are those of `spend.context_growth` (min_calls, min_growth, min_tokens),
    `retry_storms` (window_minutes, min_events, min_share) and `spend_days` (tz, band, now);
    a kind whose columns the frame lacks (no conversation_id, say) finds nothing.
    """
    import pandas as pd

    require_columns(df, ["ts", "model", "status", "cost_usd"], "anomalies()")
    parts = [_frame(_growth_rows(df, min_calls, min_growth, min_tokens)).sort_values("start", kind="stable"),
             retry_storms(df, window_minutes=window_minutes, min_events=min_events, min_share=min_share),
             spend_days(df, tz=tz, band=band, now=now)]
    found = [p for p in parts if len(p)]
    if not found:
        return _frame([])
    return pd.concat(found, ignore_index=True)
