"""Spend analytics over a call log: pure functions from a DataFrame to tidy DataFrames.

Every function takes the log as a DataFrame (as `hs.read_log` returns it, or any frame with the
needed columns) and returns a new DataFrame; nothing here reads files or the clock, except
`daily_from_log`, the fast path that aggregates straight from the Parquet folder.

Rules shared by all functions:

* **Time zones.** `ts` is an instant. Tz-aware timestamps are converted to UTC; naive ones are
  taken to be UTC already (that is how the log stores them); strings or mixed objects are parsed
  with the same rule. Calendar days and months are then taken in `tz` (an IANA name or tzinfo;
  None = the machine's local zone), exactly as budget windows are (`holysheep_lab.budget`).
* **Missing values.** A null `cost_usd` (an `unpriced` call) counts as 0 in sums and is counted
  in `unpriced_calls`; null token counts count as 0. Rows with a null `ts` are ignored.
* **Groups.** A null group label (e.g. no project) is reported as ``"(none)"``.
* **Errors.** Missing columns raise `ConfigError` naming them; an empty log gives an empty
  frame with the documented columns.

The helpers that hold these rules are `holysheep_lab.analysis.frames`; budget status (with its
projection) is `holysheep_lab.analysis.budgets`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_lab.analysis.frames import (
    NAT_MICROS,
    NONE_LABEL,
    US_PER_DAY,
    US_PER_HOUR,
    as_of_micros,
    cost_usd,
    day_dates,
    empty_frame,
    group_codes,
    is_utc,
    local_day_bounds,
    local_days,
    numbers,
    require_columns,
    utc_micros,
    valid_micros,
)
from holysheep_lab.core.budget import Window, resolve_tz, window_bounds
from holysheep_lab.core.clock import micros_to_datetime, to_micros
from holysheep_lab.core.runaway import GROWTH_MIN_CALLS, GROWTH_MIN_FACTOR, GROWTH_MIN_INCREASING, GROWTH_MIN_TOKENS
from holysheep_lab.errors import ConfigError, LogError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "burn_rate",
    "by",
    "by_model",
    "context_chain",
    "context_growth",
    "daily",
    "daily_from_log",
    "error_rates",
    "latency",
    "monthly",
    "tokens_per_call",
]


# --------------------------------------------------------------------------- calendar sums

_DAILY_COLS = {
    "date": "datetime64[s]",
    "calls": "int64",
    "cost_usd": "float64",
    "input_tokens": "int64",
    "output_tokens": "int64",
    "unpriced_calls": "int64",
}


def daily(
    df: pd.DataFrame, by: str | None = None, tz: str | tzinfo | None = None, *, fill: bool = True
) -> pd.DataFrame:
    """Spend per calendar day in `tz` (default local), optionally split by a column.

    Columns: ``date`` (datetime64, local midnight of the day, naive), then ``by`` if given
    (its label), ``calls`` (rows), ``cost_usd`` (sum; unpriced as 0), ``input_tokens``,
    ``output_tokens`` (sums), ``unpriced_calls`` (rows with a null cost).
    Without `by` and with `fill`, every day from the first to the last is present (0 if idle);
    with `by`, only (date, label) pairs that had calls. Sorted by date, then label.
    """
    import pandas as pd

    require_columns(df, ["ts", "cost_usd", *([by] if by else [])], "daily()")
    zone = resolve_tz(tz)
    us, ok, ascending = _log_micros(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    cols = dict(_DAILY_COLS)
    if by:
        cols = {"date": cols.pop("date"), by: "object", **cols}
    if len(df) == 0:
        return empty_frame(cols)
    runs = _day_runs(us, zone, ascending)
    if runs is not None and not by:  # sorted by ts (as read_log gives it): each day is one run of rows
        frame = _run_sums(df, *runs)
        return (frame if fill else frame.loc[frame["calls"] > 0]).reset_index(drop=True)
    if by:
        codes, labels = _category_codes(df[by])
    else:
        codes, labels = np.zeros(len(df), dtype=np.int8), [""]
    ng = len(labels)
    if runs is not None:  # sorted: sums day by day, each day's rows a run (no key per row)
        starts, d0, nd = runs
        out = _run_group_sums(df, codes, ng, starts)
    else:
        # In place from here: on 10M rows each new temporary's first touch costs more than a sum.
        key = local_days(us, zone)
        d0 = int(key.min())
        nd = int(key.max()) - d0 + 1
        key -= d0
        key *= ng
        key += codes
        size = nd * ng
        cost, null = cost_usd(df)
        out = {
            "calls": np.bincount(key, minlength=size),
            "cost_usd": np.bincount(key, weights=cost, minlength=size),
            "input_tokens": _int_sum(key, df, "input_tokens", size),
            "output_tokens": _int_sum(key, df, "output_tokens", size),
            "unpriced_calls": np.bincount(key[null], minlength=size) if null.any() else np.zeros(size, np.int64),
        }
    calls = out["calls"]
    day_col = day_dates(np.repeat(np.arange(d0, d0 + nd, dtype=np.int64), ng))
    frame = pd.DataFrame({"date": day_col, **out})
    if by:
        frame.insert(1, by, np.tile(np.array(labels, dtype=object), nd))
        frame = frame.loc[calls > 0]
        frame = frame.sort_values(["date", by], kind="stable")
    elif not fill:
        frame = frame.loc[calls > 0]
    return frame.reset_index(drop=True)


_BLOCK = 1 << 15  # values per block of a pass that would otherwise allocate a temporary per row


def _ascending(values: np.ndarray) -> bool:
    """Whether `values` never decrease, block by block: the comparisons' small temporaries come
    from the heap (one of 10M rows is mapped afresh, and its page faults cost more than the pass)."""
    n = len(values)
    for a in range(0, n - 1, _BLOCK):
        b = min(a + _BLOCK, n - 1)
        if not bool((values[a + 1:b + 1] >= values[a:b]).all()):
            return False
    return True


def _log_micros(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, bool | None]:
    """`valid_micros` and whether the instants are ascending (None: not checked). For the log's
    own ts (microseconds, zoned) in order, the view of its values with no pass per row but the
    order check: NaT, the least int64, would lead a sorted column."""
    import pandas as pd

    dtype = df["ts"].dtype
    if isinstance(dtype, pd.DatetimeTZDtype) and dtype.unit == "us":
        us = np.asarray(df["ts"].array.asi8)
        if _ascending(us) and (len(us) == 0 or int(us[0]) != NAT_MICROS):
            return us, None, True
    us, ok = valid_micros(df)
    return us, ok, None


def _category_codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """`group_codes(col, narrow=True)`; a categorical without nulls gives its own codes, a view
    (`.cat.codes` copies them)."""
    import pandas as pd

    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = np.asarray(col.array.codes)
        if len(codes) and int(codes.min()) >= 0 and len(col.dtype.categories) < np.iinfo(codes.dtype).max:
            return codes, [str(c) for c in col.dtype.categories]
    return group_codes(col, narrow=True)


def _day_runs(us: np.ndarray, zone: tzinfo, ascending: bool | None = None) -> tuple[np.ndarray, int, int] | None:
    """For instants in ascending order: (the row where each local day d0 .. d0 + nd - 1 starts,
    d0, nd); None if they are not in order (or local days go back, as where a clock falls back
    across midnight). Found by binary search: no day number per row. `ascending`: the order,
    if known."""
    if not (_ascending(us) if ascending is None else ascending):
        return None
    if is_utc(zone):
        d0, d1 = int(us[0] // US_PER_DAY), int(us[-1] // US_PER_DAY)
        edges = np.arange(d0 + 1, d1 + 1, dtype=np.int64) * US_PER_DAY
        return np.r_[0, np.searchsorted(us, edges, side="left")], d0, d1 - d0 + 1
    days = local_days(us, zone)
    if len(days) > 1 and not bool((days[1:] >= days[:-1]).all()):
        return None
    d0, d1 = int(days[0]), int(days[-1])
    return np.searchsorted(days, np.arange(d0, d1 + 1, dtype=np.int64), side="left"), d0, d1 - d0 + 1


def _run_sums(df: pd.DataFrame, starts: np.ndarray, d0: int, nd: int) -> pd.DataFrame:
    """`daily` without `by` from the day runs of a sorted frame: sums of contiguous rows."""
    import pandas as pd

    n = len(df)
    calls = np.diff(np.r_[starts, n])
    busy = calls > 0

    def run_sum(values: np.ndarray) -> np.ndarray:
        sums = np.add.reduceat(values, starts)  # an empty day's slot holds its next row: zero it
        return np.where(busy, sums, 0)

    cost, null = cost_usd(df)
    out: dict[str, Any] = {"date": day_dates(np.arange(d0, d0 + nd, dtype=np.int64)), "calls": calls,
                           "cost_usd": run_sum(cost)}
    for col in ("input_tokens", "output_tokens"):
        values = numbers(df[col]) if col in df.columns else np.zeros(n, dtype=np.int64)
        out[col] = run_sum(values) if values.dtype.kind in "iu" else np.rint(run_sum(values)).astype(np.int64)
    out["unpriced_calls"] = run_sum(null.astype(np.int64)) if null.any() else np.zeros(nd, np.int64)
    return pd.DataFrame(out)


def _run_group_sums(df: pd.DataFrame, codes: np.ndarray, ng: int, starts: np.ndarray) -> dict[str, Any]:
    """`daily(by=)`'s sums per (day, label), flattened day-major, for a frame sorted by ts whose
    day d holds rows starts[d] to starts[d + 1]: one small bincount per day, on slices that stay
    in cache (a key per row over 10M rows costs more than the sums). Same sums, in the same
    order, as bincounts over the whole."""
    nd = len(starts)
    ends = np.r_[starts[1:], len(df)]
    col = df["cost_usd"]
    # The log's float64 column as it is (its NaNs are the nulls, found day by day); else converted once.
    raw, nulls = (col.to_numpy(), None) if col.dtype == np.float64 else cost_usd(df)
    tokens = {c: numbers(df[c]) for c in ("input_tokens", "output_tokens") if c in df.columns}
    calls = np.zeros((nd, ng), np.int64)
    unpriced = np.zeros((nd, ng), np.int64)
    cost = np.zeros((nd, ng))
    sums = {c: np.zeros((nd, ng)) for c in tokens}
    for d, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        if s == e:
            continue
        k = codes[s:e].astype(np.intp)  # once: each bincount would convert narrow codes again
        calls[d] = np.bincount(k, minlength=ng)
        c = raw[s:e]
        null = np.isnan(c) if nulls is None else nulls[s:e]
        if null.any():
            c = c.copy()  # (half the time of np.where)
            c[null] = 0.0
            unpriced[d] = np.bincount(k[null], minlength=ng)
        cost[d] = np.bincount(k, weights=c, minlength=ng)
        for name, values in tokens.items():
            sums[name][d] = np.bincount(k, weights=values[s:e], minlength=ng)
    size = nd * ng
    out: dict[str, Any] = {"calls": calls.reshape(size), "cost_usd": cost.reshape(size)}
    for name in ("input_tokens", "output_tokens"):
        out[name] = np.rint(sums[name].reshape(size)).astype(np.int64) if name in sums else np.zeros(size, np.int64)
    out["unpriced_calls"] = unpriced.reshape(size)
    return out


def _int_sum(key: np.ndarray, df: pd.DataFrame, col: str, size: int) -> np.ndarray:
    if col not in df.columns:
        return np.zeros(size, dtype=np.int64)
    return np.rint(np.bincount(key, weights=numbers(df[col]), minlength=size)).astype(np.int64)


def monthly(df: pd.DataFrame, by: str | None = None, tz: str | tzinfo | None = None) -> pd.DataFrame:
    """Spend per calendar month in `tz` (default local), optionally split by a column.

    Columns: ``month`` (datetime64, the 1st of the month, naive), ``by`` if given, ``calls``,
    ``cost_usd``, ``input_tokens``, ``output_tokens``, ``unpriced_calls`` (as in `daily`).
    """
    d = daily(df, by=by, tz=tz, fill=False)
    cols = {"month": "datetime64[s]", **({by: "object"} if by else {})}
    cols.update({k: v for k, v in _DAILY_COLS.items() if k != "date"})
    if d.empty:
        return empty_frame(cols)
    d.insert(0, "month", d["date"].dt.to_period("M").dt.start_time.astype("datetime64[s]"))
    keys = ["month", *([by] if by else [])]
    out = d.drop(columns="date").groupby(keys, sort=True, observed=True).sum().reset_index()
    return out[list(cols)]


def by(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Totals per value of any column (model, project, status, endpoint, ...).

    Columns: `column` (label), ``calls``, ``cost_usd``, ``share`` (of total cost, 0-1),
    ``input_tokens``, ``output_tokens``, ``cost_per_call`` (USD), ``usd_per_1k_tokens``
    (cost / (input + output) * 1000; NaN when no tokens), ``unpriced_calls``.
    Sorted by cost, largest first.
    """
    import pandas as pd

    require_columns(df, ["cost_usd", column], f"by({column!r})")
    cols = {
        column: "object",
        "calls": "int64",
        "cost_usd": "float64",
        "share": "float64",
        "input_tokens": "int64",
        "output_tokens": "int64",
        "cost_per_call": "float64",
        "usd_per_1k_tokens": "float64",
        "unpriced_calls": "int64",
    }
    if len(df) == 0:
        return empty_frame(cols)
    codes, labels = group_codes(df[column])
    n = len(labels)
    cost, null = cost_usd(df)
    calls = np.bincount(codes, minlength=n)
    spend = np.bincount(codes, weights=cost, minlength=n)
    tin = _int_sum(codes, df, "input_tokens", n)
    tout = _int_sum(codes, df, "output_tokens", n)
    total = spend.sum()
    tokens = (tin + tout).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame(
            {
                column: np.array(labels, dtype=object),
                "calls": calls,
                "cost_usd": spend,
                "share": spend / total if total > 0 else np.zeros(n),
                "input_tokens": tin,
                "output_tokens": tout,
                "cost_per_call": spend / np.maximum(calls, 1),
                "usd_per_1k_tokens": np.where(tokens > 0, spend / tokens * 1000, np.nan),
                "unpriced_calls": np.bincount(codes[null], minlength=n),
            }
        )
    out = out.loc[calls > 0]
    return out.sort_values(["cost_usd", column], ascending=[False, True], kind="stable").reset_index(drop=True)


def by_model(df: pd.DataFrame) -> pd.DataFrame:
    """`by(df, "model")`: totals per model (columns as in `by`, first column ``model``)."""
    return by(df, "model")


# --------------------------------------------------------------------------- per-call stats


def _group_frame(df: pd.DataFrame, by_col: str | None) -> tuple[np.ndarray, list[str]]:
    if by_col is None:
        return np.zeros(len(df), dtype=np.int64), ["all"]
    return group_codes(df[by_col])


def latency(df: pd.DataFrame, by: str | None = "model") -> pd.DataFrame:
    """Latency percentiles of calls that were sent (status not ``blocked``, latency known).

    Columns: `by` (label; ``"all"`` when by=None, column then named ``group``), ``calls``,
    ``mean_ms``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``, and ``ttft_p50_ms`` (median
    time to first token of streamed calls; NaN if none). Sorted by label.
    """
    import pandas as pd

    require_columns(df, ["latency_ms", "status", *([by] if by else [])], "latency()")
    name = by or "group"
    cols = {name: "object", "calls": "int64", "mean_ms": "float64", "p50_ms": "float64",
            "p95_ms": "float64", "p99_ms": "float64", "max_ms": "float64", "ttft_p50_ms": "float64"}
    lat = df["latency_ms"].to_numpy(dtype="float64", na_value=np.nan)
    keep = (np.asarray(df["status"].astype("object") != "blocked")) & ~np.isnan(lat)
    sub = df.loc[keep]
    if len(sub) == 0:
        return empty_frame(cols)
    codes, labels = _group_frame(sub, by)
    frame = pd.DataFrame({"g": codes, "lat": lat[keep]})
    if "ttft_ms" in sub.columns:
        frame["ttft"] = sub["ttft_ms"].to_numpy(dtype="float64", na_value=np.nan)
    else:
        frame["ttft"] = np.nan
    g = frame.groupby("g", sort=True)
    q = g["lat"].quantile(np.array([0.5, 0.95, 0.99])).unstack()
    out = pd.DataFrame(
        {
            name: [labels[i] for i in q.index],
            "calls": g["lat"].size().to_numpy(),
            "mean_ms": g["lat"].mean().to_numpy(),
            "p50_ms": q[0.5].to_numpy(),
            "p95_ms": q[0.95].to_numpy(),
            "p99_ms": q[0.99].to_numpy(),
            "max_ms": g["lat"].max().to_numpy(),
            "ttft_p50_ms": g["ttft"].median().to_numpy(),
        }
    )
    return out.sort_values(name, kind="stable").reset_index(drop=True)


def tokens_per_call(df: pd.DataFrame, by: str | None = "model") -> pd.DataFrame:
    """Token use per answered call (status ``ok`` or ``unpriced``).

    Columns: `by` (or ``group``), ``calls``, ``input_mean``, ``input_p50``, ``input_p95``,
    ``output_mean``, ``output_p50``, ``output_p95``, ``cached_share`` (cached input tokens /
    input tokens), ``reasoning_share`` (reasoning tokens / output tokens). Sorted by label.
    """
    import pandas as pd

    require_columns(df, ["status", "input_tokens", "output_tokens", *([by] if by else [])],
                    "tokens_per_call()")
    name = by or "group"
    cols = {name: "object", "calls": "int64"}
    for k in ("input", "output"):
        cols.update({f"{k}_mean": "float64", f"{k}_p50": "float64", f"{k}_p95": "float64"})
    cols.update({"cached_share": "float64", "reasoning_share": "float64"})
    status = np.asarray(df["status"].astype("object"))
    sub = df.loc[(status == "ok") | (status == "unpriced")]
    if len(sub) == 0:
        return empty_frame(cols)
    codes, labels = _group_frame(sub, by)
    frame = pd.DataFrame(
        {
            "g": codes,
            "input": numbers(sub["input_tokens"]),
            "output": numbers(sub["output_tokens"]),
            "cached": numbers(sub["cached_input_tokens"]) if "cached_input_tokens" in sub else 0.0,
            "reasoning": numbers(sub["reasoning_tokens"]) if "reasoning_tokens" in sub else 0.0,
        }
    )
    g = frame.groupby("g", sort=True)
    res: dict[str, Any] = {name: [labels[i] for i in g.size().index], "calls": g.size().to_numpy()}
    for k in ("input", "output"):
        q = g[k].quantile(np.array([0.5, 0.95])).unstack()
        res[f"{k}_mean"] = g[k].mean().to_numpy()
        res[f"{k}_p50"] = q[0.5].to_numpy()
        res[f"{k}_p95"] = q[0.95].to_numpy()
    sums = g[["input", "output", "cached", "reasoning"]].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        res["cached_share"] = np.where(sums["input"] > 0, sums["cached"] / sums["input"], np.nan)
        res["reasoning_share"] = np.where(sums["output"] > 0, sums["reasoning"] / sums["output"], np.nan)
    return pd.DataFrame(res).sort_values(name, kind="stable").reset_index(drop=True)


def error_rates(df: pd.DataFrame, by: str | None = "model") -> pd.DataFrame:
    """Outcome counts and rates per group.

    Columns: `by` (or ``group``), ``calls``, ``ok``, ``error``, ``blocked``, ``unpriced``
    (counts per status), ``error_rate`` (error / calls sent, i.e. not blocked),
    ``blocked_rate`` (blocked / calls), ``retry_rate`` (share of sent calls with attempts > 1;
    NaN without an `attempts` column), ``mean_attempts`` (over sent calls). Sorted by label.
    """
    import pandas as pd

    require_columns(df, ["status", *([by] if by else [])], "error_rates()")
    name = by or "group"
    cols = {name: "object", "calls": "int64", "ok": "int64", "error": "int64", "blocked": "int64",
            "unpriced": "int64", "error_rate": "float64", "blocked_rate": "float64",
            "retry_rate": "float64", "mean_attempts": "float64"}
    if len(df) == 0:
        return empty_frame(cols)
    codes, labels = _group_frame(df, by)
    n = len(labels)
    status = np.asarray(df["status"].astype("object"))
    counts = {s: np.bincount(codes[status == s], minlength=n) for s in ("ok", "error", "blocked", "unpriced")}
    calls = np.bincount(codes, minlength=n)
    sent_mask = status != "blocked"
    sent = np.bincount(codes[sent_mask], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        if "attempts" in df.columns:
            att = numbers(df["attempts"])
            retry = np.bincount(codes[sent_mask & (att > 1)], minlength=n) / sent
            mean_att = np.bincount(codes[sent_mask], weights=att[sent_mask], minlength=n) / sent
        else:
            retry = mean_att = np.full(n, np.nan)
        out = pd.DataFrame(
            {
                name: np.array(labels, dtype=object),
                "calls": calls,
                **counts,
                "error_rate": np.where(sent > 0, counts["error"] / sent, np.nan),
                "blocked_rate": counts["blocked"] / np.maximum(calls, 1),
                "retry_rate": np.where(sent > 0, retry, np.nan),
                "mean_attempts": np.where(sent > 0, mean_att, np.nan),
            }
        )
    out = out.loc[calls > 0]
    return out.sort_values(name, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- rates


def burn_rate(
    df: pd.DataFrame, now: datetime | None = None, tz: str | tzinfo | None = None
) -> pd.DataFrame:
    """How fast money is going, over trailing and calendar periods ending at `now`.

    `now` defaults to just after the log's last call (so a historical log is read as of its
    end). Periods: ``last_24h``, ``last_7d``, ``last_30d`` (trailing), ``today`` and
    ``month_to_date`` (calendar windows in `tz`, default local).
    Columns: ``period``, ``start``, ``end`` (UTC timestamps), ``hours`` (length so far),
    ``calls``, ``cost_usd``, ``usd_per_hour``, ``usd_per_day`` (cost / hours * 24).
    """
    import pandas as pd

    require_columns(df, ["ts", "cost_usd"], "burn_rate()")
    zone = resolve_tz(tz)
    cols = {"period": "object", "start": "datetime64[us, UTC]", "end": "datetime64[us, UTC]",
            "hours": "float64", "calls": "int64", "cost_usd": "float64",
            "usd_per_hour": "float64", "usd_per_day": "float64"}
    us, ok = valid_micros(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    if len(df) == 0 and now is None:
        return empty_frame(cols)
    end = as_of_micros(us, now)
    now_dt = micros_to_datetime(end)
    cost, _ = cost_usd(df)
    periods = [
        ("last_24h", end - 24 * US_PER_HOUR),
        ("last_7d", end - 7 * US_PER_DAY),
        ("last_30d", end - 30 * US_PER_DAY),
        ("today", to_micros(window_bounds(Window.DAY, now_dt, zone)[0])),
        ("month_to_date", to_micros(window_bounds(Window.MONTH, now_dt, zone)[0])),
    ]
    rows = []
    for name, start in periods:
        m = (us >= start) & (us < end)
        hours = (end - start) / US_PER_HOUR
        spent = float(cost[m].sum())
        rows.append((name, start, end, hours, int(m.sum()), spent,
                     spent / hours if hours > 0 else np.nan, spent / hours * 24 if hours > 0 else np.nan))
    out = pd.DataFrame(rows, columns=list(cols))
    for c in ("start", "end"):
        out[c] = pd.to_datetime(out[c], unit="us", utc=True)
    return out


# --------------------------------------------------------------------------- context growth


def context_growth(
    df: pd.DataFrame,
    min_calls: int = GROWTH_MIN_CALLS,
    min_growth: float = GROWTH_MIN_FACTOR,
    min_increasing: float = GROWTH_MIN_INCREASING,
    min_tokens: int = GROWTH_MIN_TOKENS,
) -> pd.DataFrame:
    """Find conversations whose prompt keeps growing call after call ("context explosion").

    A chain is the answered calls (input_tokens > 0) sharing a `conversation_id`, in time
    order. It is flagged when it has
    at least `min_calls` calls, its last prompt is at least `min_growth` times its first, and
    at least `min_increasing` of the steps grew the prompt, and its largest prompt reached
    `min_tokens` (so an ordinary short chat is not flagged).
    Columns: ``conversation_id``, ``calls``, ``first_ts``, ``last_ts``, ``model`` (most used),
    ``project`` (most used, if the column exists), ``first_input_tokens``,
    ``last_input_tokens``, ``max_input_tokens``, ``growth`` (last / first),
    ``increasing_share`` (share of steps that grew), ``tokens_per_call_added`` (mean growth
    per step), ``cost_usd`` (chain total). Sorted by cost, largest first.
    """
    import pandas as pd

    require_columns(df, ["ts", "conversation_id", "input_tokens", "cost_usd"], "context_growth()")
    cols = {"conversation_id": "object", "calls": "int64", "first_ts": "datetime64[us, UTC]",
            "last_ts": "datetime64[us, UTC]", "model": "object", "project": "object",
            "first_input_tokens": "int64", "last_input_tokens": "int64", "max_input_tokens": "int64",
            "growth": "float64", "increasing_share": "float64", "tokens_per_call_added": "float64",
            "cost_usd": "float64"}
    # Failed and blocked calls carry 0 tokens: they are not steps of the prompt's growth.
    sub = df.loc[df["conversation_id"].notna().to_numpy() & (numbers(df["input_tokens"]) > 0)]
    if len(sub) == 0:
        return empty_frame(cols)
    us = utc_micros(sub["ts"])
    codes, labels = group_codes(sub["conversation_id"])
    counts = np.bincount(codes, minlength=len(labels))
    keep = counts[codes] >= max(2, min_calls)
    if not keep.any():
        return empty_frame(cols)
    sub, us, codes = sub.loc[keep], us[keep], codes[keep]
    order = np.lexsort((us, codes))
    codes, us = codes[order], us[order]
    tok = numbers(sub["input_tokens"])[order]
    cost, _ = cost_usd(sub)
    cost = cost[order]
    starts = np.r_[0, np.nonzero(np.diff(codes))[0] + 1]
    ends = np.r_[starts[1:], len(codes)]
    step = np.diff(tok)
    same = codes[1:] == codes[:-1]
    grew = np.add.reduceat(np.r_[(step > 0) & same, False].astype(np.int64), starts)
    n = ends - starts
    first, last = tok[starts], tok[ends - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(first > 0, last / first, np.inf)
        inc_share = grew / np.maximum(n - 1, 1)
    peak = np.maximum.reduceat(tok, starts)
    flag = (growth >= min_growth) & (inc_share >= min_increasing) & (peak >= min_tokens)
    if not flag.any():
        return empty_frame(cols)
    idx = np.nonzero(flag)[0]
    sorted_sub = sub.iloc[order]
    mode_model = _mode_per_chain(sorted_sub, "model", starts, ends, idx)
    mode_proj = _mode_per_chain(sorted_sub, "project", starts, ends, idx)
    out = pd.DataFrame(
        {
            "conversation_id": [labels[codes[starts[i]]] for i in idx],
            "calls": n[idx],
            "first_ts": pd.to_datetime(us[starts[idx]], unit="us", utc=True),
            "last_ts": pd.to_datetime(us[ends[idx] - 1], unit="us", utc=True),
            "model": mode_model,
            "project": mode_proj,
            "first_input_tokens": first[idx].astype(np.int64),
            "last_input_tokens": last[idx].astype(np.int64),
            "max_input_tokens": peak[idx].astype(np.int64),
            "growth": growth[idx],
            "increasing_share": inc_share[idx],
            "tokens_per_call_added": (last[idx] - first[idx]) / np.maximum(n[idx] - 1, 1),
            "cost_usd": np.add.reduceat(cost, starts)[idx],
        }
    )
    return out.sort_values("cost_usd", ascending=False, kind="stable").reset_index(drop=True)


def _mode_per_chain(sub: pd.DataFrame, col: str, starts: np.ndarray, ends: np.ndarray,
                    idx: np.ndarray) -> list[Any]:
    import pandas as pd

    if col not in sub.columns:
        return [None] * len(idx)
    values = sub[col].astype("object").to_numpy()
    out = []
    for i in idx:
        seg = [v for v in values[starts[i]:ends[i]] if pd.notna(v)]
        out.append(max(set(seg), key=seg.count) if seg else NONE_LABEL)
    return out


def context_chain(df: pd.DataFrame, conversation_id: str) -> pd.DataFrame:
    """The calls of one conversation in time order, for a growth chart.

    Columns: ``call`` (1-based position in the chain), ``ts``, ``model``, ``input_tokens``,
    ``output_tokens``, ``cost_usd``, ``cum_cost_usd``. Empty if the id is unknown.
    """
    import pandas as pd

    require_columns(df, ["ts", "conversation_id", "input_tokens", "cost_usd"], "context_chain()")
    sub = df.loc[(df["conversation_id"].astype("object") == conversation_id).to_numpy()]
    us = utc_micros(sub["ts"])
    order = np.argsort(us, kind="stable")
    sub = sub.iloc[order]
    cost, _ = cost_usd(sub)
    return pd.DataFrame(
        {
            "call": np.arange(1, len(sub) + 1),
            "ts": pd.to_datetime(us[order], unit="us", utc=True),
            "model": sub["model"].astype("object").to_numpy() if "model" in sub else None,
            "input_tokens": numbers(sub["input_tokens"]).astype(np.int64),
            "output_tokens": numbers(sub["output_tokens"]).astype(np.int64) if "output_tokens" in sub else 0,
            "cost_usd": cost,
            "cum_cost_usd": np.cumsum(cost),
        }
    )


# --------------------------------------------------------------------------- fast path from disk


def daily_from_log(
    path: Any,
    by: str | None = "model",
    tz: str | tzinfo | None = None,
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    *,
    tokens: bool = True,
) -> pd.DataFrame:
    """`daily(read_log(path, ...), by, tz, fill=False)` without building the DataFrame: the fast
    path for big logs.

    Reads only ``ts``, ``cost_usd``, `by` (as an Arrow dictionary) and the token columns if
    `tokens`, through the log reader (`holysheep_lab.log.reader.scan_days`: the same files,
    journals, pruning and de-duplication as `read_log`), for the local days [start, end] in `tz`
    (inclusive; the reader prunes the UTC partitions and filters the edges exactly), and sums
    them with numpy one UTC day at a time while the reader reads the next days, so memory
    holds a few days of those columns.
    Columns as in `daily` (only days/labels with calls); without `tokens`, no
    ``input_tokens``/``output_tokens``.
    """
    from holysheep_lab.log.reader import scan_days

    zone = resolve_tz(tz)
    sums = _DailySums(zone, by, ["input_tokens", "output_tokens"] if tokens else [])
    lo, hi = local_day_bounds(start, end, zone)
    try:
        days = scan_days(path, start=lo, end=hi, columns=sums.columns, dictionary_columns=[by] if by else [])
    except LogError as exc:  # this function's contract: a bad path is a ConfigError, as for bad columns
        raise ConfigError(str(exc)) from exc
    for table in days:
        sums.add(table.to_batches())
    return sums.frame()


class _DailySums:
    """Per (local day, label) sums of calls, cost, unpriced calls and tokens, batch by batch.

    Each batch is summed on a dense (day, label) grid of its own (bincount), and only the
    non-empty cells are kept, so memory is the result's size plus one batch.
    """

    def __init__(self, zone: tzinfo, by: str | None, tokens: list[str]) -> None:
        self.zone, self.by, self.tokens = zone, by, tokens
        self.utc = is_utc(zone)
        self.columns = ["ts", "cost_usd", *tokens, *([by] if by else [])]
        self.label_code: dict[str, int] = {}
        self.days: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.values: list[np.ndarray] = []  # columns: calls, cost, unpriced, tokens...

    def _label_codes(self, column: pa.Array) -> np.ndarray:
        """Global label codes of a batch's `by` column (its dictionary mapped onto the labels seen)."""
        import pyarrow as pa

        if not pa.types.is_dictionary(column.type):
            column = column.dictionary_encode()
        label_code = self.label_code
        dict_codes = np.array([label_code.setdefault(NONE_LABEL if v is None else str(v), len(label_code))
                               for v in column.dictionary.to_pylist()], dtype=np.int64)
        idx = column.indices
        if idx.null_count:
            dict_codes = np.r_[dict_codes, label_code.setdefault(NONE_LABEL, len(label_code))]
            idx = idx.fill_null(len(column.dictionary))
        codes = idx.to_numpy()
        if np.array_equal(dict_codes, np.arange(len(dict_codes))):  # the usual case: same labels, same order
            return np.asarray(codes)
        return np.asarray(dict_codes[codes])

    def add(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Sum these batches in (each sorted by ts, as the log reader gives them)."""
        import pyarrow as pa

        for batch in batches:
            if batch.num_rows == 0:
                continue
            us = batch.column("ts").cast(pa.int64()).to_numpy()
            codes = self._label_codes(batch.column(self.by)) if self.by else np.zeros(len(us), dtype=np.int64)
            cost = batch.column("cost_usd").to_numpy(zero_copy_only=False)  # nulls become NaN
            null = np.isnan(cost)
            any_null = bool(null.any())
            nl = len(self.label_code) + 1
            if self.utc and us[0] // US_PER_DAY == us[-1] // US_PER_DAY:  # sorted: one day (the usual batch)
                d0, key = int(us[0] // US_PER_DAY), codes
            else:
                days = local_days(us, self.zone)
                d0 = int(days.min())
                key = (days - d0) * nl + codes
            size = int(key.max()) + 1
            cols = [np.bincount(key, minlength=size).astype(np.float64),
                    np.bincount(key, weights=np.where(null, 0.0, cost) if any_null else cost, minlength=size),
                    np.bincount(key[null], minlength=size).astype(np.float64) if any_null else np.zeros(size)]
            for c in self.tokens:
                arr = batch.column(c)
                cols.append(np.bincount(key, weights=(arr.fill_null(0) if arr.null_count else arr).to_numpy(),
                                        minlength=size))
            part = np.stack(cols, axis=1)
            nz = np.nonzero(part[:, 0])[0]
            self.days.append(nz // nl + d0)
            self.codes.append(nz % nl)
            self.values.append(part[nz])

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        by, tokens = self.by, self.tokens
        if not self.days:
            return empty_frame({"date": "datetime64[s]", **({by: "object"} if by else {}), "calls": "int64",
                                "cost_usd": "float64", **dict.fromkeys(tokens, "int64"), "unpriced_calls": "int64"})
        labels = sorted(self.label_code, key=self.label_code.__getitem__) or [""]
        nl = len(labels)
        keys = np.concatenate(self.days) * nl + np.concatenate(self.codes)
        vals = np.concatenate(self.values)
        uk, inv = np.unique(keys, return_inverse=True)
        tot = np.stack([np.bincount(inv, weights=vals[:, j], minlength=len(uk)) for j in range(vals.shape[1])],
                       axis=1)
        out = pd.DataFrame({"date": day_dates(uk // nl)})
        if by:
            out[by] = np.array(labels, dtype=object)[uk % nl]
        out["calls"] = np.rint(tot[:, 0]).astype(np.int64)
        out["cost_usd"] = tot[:, 1]
        for j, c in enumerate(tokens):
            out[c] = np.rint(tot[:, 3 + j]).astype(np.int64)
        out["unpriced_calls"] = np.rint(tot[:, 2]).astype(np.int64)
        out = out.loc[out["calls"] > 0]
        return out.sort_values(["date", *([by] if by else [])], kind="stable").reset_index(drop=True)
