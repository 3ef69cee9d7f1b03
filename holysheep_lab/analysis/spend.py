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
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_lab.core.budget import Budget, Window, resolve_tz, window_bounds
from holysheep_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NONE_LABEL",
    "budget_status",
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
    "require_columns",
    "tokens_per_call",
    "utc_micros",
]

NONE_LABEL = "(none)"
US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
_QUARTER_US = 900_000_000  # all modern UTC offsets and DST switches fall on 15-minute marks
_EPOCH = date(1970, 1, 1)


# --------------------------------------------------------------------------- helpers


def require_columns(df: Any, columns: Sequence[str], what: str) -> None:
    """Raise ConfigError naming every column of `columns` missing from `df`."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"{what} needs a pandas DataFrame of the call log, not {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{what} needs the call-log column(s) {', '.join(missing)}, missing from this "
            f"DataFrame (it has: {', '.join(map(str, df.columns[:12]))}"
            f"{', ...' if len(df.columns) > 12 else ''}). Read the log with hs.read_log()."
        )


def utc_micros(ts: pd.Series) -> np.ndarray:
    """`ts` as int64 microseconds since the epoch, UTC; NaT becomes INT64_MIN.

    Aware timestamps are converted, naive ones are taken as UTC, strings/objects are parsed
    (mixed offsets allowed). Zero-copy for the log's own `datetime64[us, UTC]` column.
    """
    import pandas as pd

    dtype = ts.dtype
    if not isinstance(dtype, pd.DatetimeTZDtype) and not (
        dtype.kind == "M"  # naive numpy datetime64
    ):
        try:
            ts = pd.to_datetime(ts, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"Column ts must hold timestamps; could not parse it: {exc}") from exc
        dtype = ts.dtype
    arr = ts.array
    i8 = np.asarray(arr.asi8 if hasattr(arr, "asi8") else ts.to_numpy().view("i8"))
    unit = getattr(dtype, "unit", None) or np.datetime_data(dtype)[0]
    nat = i8 == np.iinfo(np.int64).min
    scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}[unit]
    if scale is None:
        out = i8 // 1_000
    elif scale == 1:
        out = i8
    else:
        out = i8 * scale
    if nat.any():
        out = out.copy() if out is i8 else out
        out[nat] = np.iinfo(np.int64).min
    return out


def _valid_ts(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """(microseconds, mask of valid rows or None when all are valid)."""
    us = utc_micros(df["ts"])
    bad = us == np.iinfo(np.int64).min
    return us, (~bad if bad.any() else None)


def local_days(us: np.ndarray, tz: tzinfo) -> np.ndarray:
    """Local calendar day (days since 1970-01-01 in `tz`) of each UTC microsecond instant.

    Offsets are looked up once per distinct UTC quarter-hour in the range instead of
    converting every row (10M rows: ~0.1 s instead of seconds).
    """
    import pandas as pd

    if len(us) == 0:
        return np.zeros(0, dtype=np.int64)
    if getattr(tz, "key", None) in ("UTC", "Etc/UTC") or tz is UTC:
        return us // US_PER_DAY
    q = us // _QUARTER_US
    q0, q1 = int(q.min()), int(q.max())
    if q1 - q0 > 4_000_000:  # > ~100 years: build the table per row instead
        local = pd.DatetimeIndex(us.astype("datetime64[us]"), tz="UTC").tz_convert(tz)
        return local.tz_localize(None).asi8 // US_PER_DAY
    starts = pd.DatetimeIndex(
        (np.arange(q0, q1 + 1, dtype=np.int64) * _QUARTER_US).astype("datetime64[us]"), tz="UTC"
    ).tz_convert(tz)
    table = starts.tz_localize(None).as_unit("us").asi8 // US_PER_DAY
    return table[q - q0]


def _day_to_date(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[s]")


def _codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer group codes (no -1) and their labels; nulls become NONE_LABEL."""
    import pandas as pd

    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = np.asarray(col.cat.codes, dtype=np.int64)
        labels = [str(c) for c in col.cat.categories]
    else:
        raw, uniques = pd.factorize(col, use_na_sentinel=True)
        codes = raw.astype(np.int64, copy=False)
        labels = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels = [*labels, NONE_LABEL]
    return codes, labels


def _num(col: pd.Series) -> np.ndarray:
    """Numbers as a numpy array with nulls as 0 (no copy for plain numpy integer columns)."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return col.to_numpy()
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        arr = col.to_numpy()
        return np.nan_to_num(arr, nan=0.0) if np.isnan(arr).any() else arr
    return col.to_numpy(dtype="float64", na_value=0.0)


def _cost(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(cost with nulls as 0, null mask)."""
    cost = df["cost_usd"].to_numpy(dtype="float64", na_value=np.nan)
    null = np.isnan(cost)
    return (np.where(null, 0.0, cost) if null.any() else cost), null


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


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
    us, ok = _valid_ts(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    cols = dict(_DAILY_COLS)
    if by:
        cols = {"date": cols.pop("date"), by: "object", **cols}
    if len(df) == 0:
        return _empty(cols)
    days = local_days(us, zone)
    d0 = int(days.min())
    nd = int(days.max()) - d0 + 1
    if by:
        codes, labels = _codes(df[by])
    else:
        codes, labels = np.zeros(len(df), dtype=np.int64), [""]
    ng = len(labels)
    key = days * ng  # in place from here: 10M-row temporaries cost more than the sums
    key += codes
    key -= d0 * ng
    size = nd * ng
    cost, null = _cost(df)
    calls = np.bincount(key, minlength=size)
    out: dict[str, Any] = {
        "calls": calls,
        "cost_usd": np.bincount(key, weights=cost, minlength=size),
        "input_tokens": _int_sum(key, df, "input_tokens", size),
        "output_tokens": _int_sum(key, df, "output_tokens", size),
        "unpriced_calls": np.bincount(key[null], minlength=size) if null.any() else np.zeros(size, np.int64),
    }
    day_col = _day_to_date(np.repeat(np.arange(d0, d0 + nd, dtype=np.int64), ng))
    frame = pd.DataFrame({"date": day_col, **out})
    if by:
        frame.insert(1, by, np.tile(np.array(labels, dtype=object), nd))
        frame = frame.loc[calls > 0]
        frame = frame.sort_values(["date", by], kind="stable")
    elif not fill:
        frame = frame.loc[calls > 0]
    return frame.reset_index(drop=True)


def _int_sum(key: np.ndarray, df: pd.DataFrame, col: str, size: int) -> np.ndarray:
    if col not in df.columns:
        return np.zeros(size, dtype=np.int64)
    return np.rint(np.bincount(key, weights=_num(df[col]), minlength=size)).astype(np.int64)


def monthly(df: pd.DataFrame, by: str | None = None, tz: str | tzinfo | None = None) -> pd.DataFrame:
    """Spend per calendar month in `tz` (default local), optionally split by a column.

    Columns: ``month`` (datetime64, the 1st of the month, naive), ``by`` if given, ``calls``,
    ``cost_usd``, ``input_tokens``, ``output_tokens``, ``unpriced_calls`` (as in `daily`).
    """
    d = daily(df, by=by, tz=tz, fill=False)
    cols = {"month": "datetime64[s]", **({by: "object"} if by else {})}
    cols.update({k: v for k, v in _DAILY_COLS.items() if k != "date"})
    if d.empty:
        return _empty(cols)
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
        return _empty(cols)
    codes, labels = _codes(df[column])
    n = len(labels)
    cost, null = _cost(df)
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
    return _codes(df[by_col])


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
        return _empty(cols)
    codes, labels = _group_frame(sub, by)
    frame = pd.DataFrame({"g": codes, "lat": lat[keep]})
    if "ttft_ms" in sub.columns:
        frame["ttft"] = sub["ttft_ms"].to_numpy(dtype="float64", na_value=np.nan)
    else:
        frame["ttft"] = np.nan
    g = frame.groupby("g", sort=True)
    q = g["lat"].quantile([0.5, 0.95, 0.99]).unstack()
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
        return _empty(cols)
    codes, labels = _group_frame(sub, by)
    frame = pd.DataFrame(
        {
            "g": codes,
            "input": _num(sub["input_tokens"]),
            "output": _num(sub["output_tokens"]),
            "cached": _num(sub["cached_input_tokens"]) if "cached_input_tokens" in sub else 0.0,
            "reasoning": _num(sub["reasoning_tokens"]) if "reasoning_tokens" in sub else 0.0,
        }
    )
    g = frame.groupby("g", sort=True)
    res: dict[str, Any] = {name: [labels[i] for i in g.size().index], "calls": g.size().to_numpy()}
    for k in ("input", "output"):
        q = g[k].quantile([0.5, 0.95]).unstack()
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
        return _empty(cols)
    codes, labels = _group_frame(df, by)
    n = len(labels)
    status = np.asarray(df["status"].astype("object"))
    counts = {s: np.bincount(codes[status == s], minlength=n) for s in ("ok", "error", "blocked", "unpriced")}
    calls = np.bincount(codes, minlength=n)
    sent_mask = status != "blocked"
    sent = np.bincount(codes[sent_mask], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        if "attempts" in df.columns:
            att = _num(df["attempts"])
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


# --------------------------------------------------------------------------- rates and budgets


def _now_us(us: np.ndarray, now: datetime | None) -> int:
    if now is not None:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)  # naive = UTC, the same rule as for ts
        return int((now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))
    return int(us.max()) + 1  # just after the last call: the log's own "now"


def _us_to_dt(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))


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
    us, ok = _valid_ts(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    if len(df) == 0 and now is None:
        return _empty(cols)
    end = _now_us(us, now)
    now_dt = _us_to_dt(end)
    cost, _ = _cost(df)
    periods = [
        ("last_24h", end - 24 * US_PER_HOUR),
        ("last_7d", end - 7 * US_PER_DAY),
        ("last_30d", end - 30 * US_PER_DAY),
        ("today", _dt_us(window_bounds(Window.DAY, now_dt, zone)[0])),
        ("month_to_date", _dt_us(window_bounds(Window.MONTH, now_dt, zone)[0])),
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


def _dt_us(dt: datetime) -> int:
    return int((dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def budget_status(
    df: pd.DataFrame, budget: Budget, now: datetime | None = None, *, forecast_days: bool = True
) -> pd.DataFrame:
    """Where each budget line stands in its current window (as of `now`; default: the log's end).

    One row per limit of `budget` (global daily/monthly, then each project's), windows in the
    budget's own time zone. Columns:

    * ``scope`` (``global`` or ``project:NAME``), ``window`` (``daily``/``monthly``),
      ``window_start``, ``window_end`` (UTC timestamps), ``limit_usd``;
    * ``spent_usd`` (cost in the window up to `now`), ``remaining_usd`` (limit - spent, may be
      negative), ``used`` (spent / limit);
    * ``alert`` (used >= alert_at), ``blocked`` (used >= block_at: the guard now refuses calls);
    * ``projected_usd``: expected spend at window end. The rest of the window is projected
      with the forecast model (daily series of this scope; falls back to the last-7-day mean
      when history is short); today's remainder is prorated by the hours left.
    * ``runs_out``: the local date the projected spend reaches the block threshold
      (limit x block_at) within this window; NaT if it does not.

    A project in the budget but not in the log simply has spent 0.
    """
    import pandas as pd

    if not isinstance(budget, Budget):
        raise ConfigError(f"budget_status() needs a holysheep_lab.budget.Budget, not {type(budget).__name__}.")
    scoped = bool(budget.projects)
    require_columns(df, ["ts", "cost_usd", *(["project"] if scoped else [])], "budget_status()")
    zone = budget.zone
    us, ok = _valid_ts(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    end = _now_us(us, now) if len(df) or now is not None else _dt_us(datetime.now(UTC))
    now_dt = _us_to_dt(end)
    rows = []
    for line in budget.all_lines():
        sub, sub_us = df, us
        if line.scope.startswith("project:"):
            m = np.asarray(df["project"].astype("object") == line.scope[8:], dtype=bool)
            sub, sub_us = df.loc[m], us[m]
        start, stop = window_bounds(line.window, now_dt, zone)
        cost, _ = _cost(sub)
        sel = (sub_us >= _dt_us(start)) & (sub_us < end)
        spent = float(cost[sel].sum())
        limit = float(line.limit)
        proj, daily_path = _project_window(sub.loc[sub_us < end], zone, now_dt, start, stop, spent)
        threshold = limit * line.block_at
        runs_out = pd.NaT
        if spent >= threshold:
            runs_out = pd.Timestamp(now_dt.astimezone(zone).date())
        elif daily_path is not None:
            cum = spent + np.cumsum(daily_path[1])
            hit = np.nonzero(cum >= threshold)[0]
            if len(hit):
                runs_out = pd.Timestamp(daily_path[0][hit[0]])
        rows.append(
            {
                "scope": line.scope,
                "window": line.window.value,
                "window_start": pd.Timestamp(start),
                "window_end": pd.Timestamp(stop),
                "limit_usd": limit,
                "spent_usd": spent,
                "remaining_usd": limit - spent,
                "used": spent / limit,
                "alert": spent / limit >= line.alert_at,
                "blocked": spent / limit >= line.block_at,
                "projected_usd": proj,
                "runs_out": runs_out,
            }
        )
    out = pd.DataFrame(rows, columns=["scope", "window", "window_start", "window_end", "limit_usd",
                                      "spent_usd", "remaining_usd", "used", "alert", "blocked",
                                      "projected_usd", "runs_out"])
    out["runs_out"] = pd.to_datetime(out["runs_out"])
    return out


def _project_window(
    hist: pd.DataFrame, zone: tzinfo, now: datetime, start: datetime, stop: datetime, spent: float
) -> tuple[float, tuple[list[date], np.ndarray] | None]:
    """Projected spend at window end and the projected spend per remaining local day."""
    from holysheep_lab.analysis.forecast import forecast_series

    today = now.astimezone(zone).date()
    last_day = (stop - timedelta(microseconds=1)).astimezone(zone).date()
    d = daily(hist, tz=zone) if len(hist) else None
    if d is None or d.empty:
        return spent, None
    series = d["cost_usd"].to_numpy()
    first = d["date"].iloc[0].date()
    # Today is still running: forecast from yesterday, then prorate today's remainder.
    hist_days = (today - first).days
    y = series[:hist_days] if hist_days > 0 else series[:0]
    horizon = (last_day - today).days + 1
    if len(y) == 0:
        fc = np.full(horizon, float(series.sum()))  # only today so far: assume today's pace
    else:
        fc = forecast_series(y, first_day=first, days=horizon)["yhat"]
    day_start, day_end = window_bounds(Window.DAY, now, zone)
    left_today = max(0.0, (day_end - now) / (day_end - day_start))
    path = np.asarray(fc, dtype="float64").copy()
    path[0] = path[0] * left_today
    days = [today + timedelta(days=i) for i in range(horizon)]
    return spent + float(path.sum()), (days, path)


# --------------------------------------------------------------------------- context growth


def context_growth(
    df: pd.DataFrame,
    min_calls: int = 5,
    min_growth: float = 2.0,
    min_increasing: float = 0.8,
    min_tokens: int = 10_000,
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
    sub = df.loc[df["conversation_id"].notna().to_numpy() & (_num(df["input_tokens"]) > 0)]
    if len(sub) == 0:
        return _empty(cols)
    us = utc_micros(sub["ts"])
    codes, labels = _codes(sub["conversation_id"])
    counts = np.bincount(codes, minlength=len(labels))
    keep = counts[codes] >= max(2, min_calls)
    if not keep.any():
        return _empty(cols)
    sub, us, codes = sub.loc[keep], us[keep], codes[keep]
    order = np.lexsort((us, codes))
    codes, us = codes[order], us[order]
    tok = _num(sub["input_tokens"])[order]
    cost, _ = _cost(sub)
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
        return _empty(cols)
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
    if col not in sub.columns:
        return [None] * len(idx)
    values = sub[col].astype("object").to_numpy()
    out = []
    for i in idx:
        seg = [v for v in values[starts[i]:ends[i]] if v is not None and v == v]
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
    cost, _ = _cost(sub)
    return pd.DataFrame(
        {
            "call": np.arange(1, len(sub) + 1),
            "ts": pd.to_datetime(us[order], unit="us", utc=True),
            "model": sub["model"].astype("object").to_numpy() if "model" in sub else None,
            "input_tokens": _num(sub["input_tokens"]).astype(np.int64),
            "output_tokens": _num(sub["output_tokens"]).astype(np.int64) if "output_tokens" in sub else 0,
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
    """`daily(read_log(path), by, tz)` without building the DataFrame: the fast path for big logs.

    Reads only ``ts``, ``cost_usd``, `by` (and the token columns if `tokens`) from the
    hive-partitioned Parquet files (``date=YYYY-MM-DD/*.parquet``) with pyarrow, prunes
    partitions to [start, end] (local dates in `tz`, inclusive; partitions are UTC dates, so
    the bounds are converted and rows at the edges filtered exactly), and sums batch by batch
    with numpy, so memory stays at one batch. Journals not yet rolled into Parquet are not
    read (use `read_log` + `daily` for up-to-the-second numbers).
    Columns as in `daily` (only days/labels with calls); without `tokens`, no
    ``input_tokens``/``output_tokens``.
    """
    import pandas as pd
    import pyarrow as pa

    zone = resolve_tz(tz)
    dataset = _log_dataset(path, dictionary_columns=[by] if by else [])
    names = set(dataset.schema.names)
    tok_cols = ["input_tokens", "output_tokens"] if tokens else []
    want = ["ts", "cost_usd", *tok_cols, *([by] if by else [])]
    missing = [c for c in want if c not in names]
    if missing:
        raise ConfigError(f"daily_from_log(): the log at {str(path)!r} has no column(s) {', '.join(missing)}.")
    filt, lo_us, hi_us = _date_filter(dataset, start, end, zone)
    scanner = dataset.scanner(columns=want, filter=filt, use_threads=True, batch_size=1 << 20)
    label_code: dict[str, int] = {}
    acc_days: list[np.ndarray] = []
    acc_codes: list[np.ndarray] = []
    acc_vals: list[np.ndarray] = []
    nvals = 3 + len(tok_cols)  # calls, cost, unpriced, tokens...
    for batch in scanner.to_batches():
        if batch.num_rows == 0:
            continue
        us = batch.column("ts").cast(pa.int64()).to_numpy()
        days = local_days(us, zone)
        if by:
            col = batch.column(by)
            if not pa.types.is_dictionary(col.type):
                col = col.dictionary_encode()
            # Map this batch's dictionary onto global label codes (a handful of labels).
            dict_codes = np.array(
                [label_code.setdefault(NONE_LABEL if v is None else str(v), len(label_code))
                 for v in col.dictionary.to_pylist()], dtype=np.int64)
            idx = col.indices
            if idx.null_count:
                dict_codes = np.r_[dict_codes, label_code.setdefault(NONE_LABEL, len(label_code))]
                idx = idx.fill_null(len(col.dictionary))
            codes = dict_codes[idx.to_numpy()]
        else:
            codes = np.zeros(len(us), dtype=np.int64)
        cost = batch.column("cost_usd")
        cost_np = cost.to_numpy(zero_copy_only=False)  # nulls become NaN
        null = np.isnan(cost_np)
        any_null = bool(null.any())
        if lo_us is not None or hi_us is not None:
            ok = np.ones(len(us), dtype=bool)
            if lo_us is not None:
                ok &= us >= lo_us
            if hi_us is not None:
                ok &= us < hi_us
            days, codes, cost_np, null = days[ok], codes[ok], cost_np[ok], null[ok]
        else:
            ok = None
        if len(days) == 0:
            continue
        # Dense (day, label) grid of this batch: bincount, then keep the non-empty cells.
        d0, nl = int(days.min()), len(label_code) + 1
        key = (days - d0) * nl + codes
        size = int(key.max()) + 1
        cols = [np.bincount(key, minlength=size).astype(np.float64),
                np.bincount(key, weights=np.where(null, 0.0, cost_np) if any_null else cost_np, minlength=size),
                np.bincount(key[null], minlength=size).astype(np.float64) if any_null else np.zeros(size)]
        for c in tok_cols:
            arr = batch.column(c)
            if arr.null_count:
                arr = arr.fill_null(0)
            v = arr.to_numpy()
            cols.append(np.bincount(key, weights=v if ok is None else v[ok], minlength=size))
        part = np.stack(cols, axis=1)
        nz = np.nonzero(part[:, 0])[0]
        acc_days.append(nz // nl + d0)
        acc_codes.append(nz % nl)
        acc_vals.append(part[nz])
    out_cols = {"date": "datetime64[s]", **({by: "object"} if by else {}), "calls": "int64",
                "cost_usd": "float64", **{c: "int64" for c in tok_cols}, "unpriced_calls": "int64"}
    if not acc_days:
        return _empty(out_cols)
    labels = sorted(label_code, key=label_code.__getitem__) or [""]
    nl = len(labels)
    keys = np.concatenate(acc_days) * nl + np.concatenate(acc_codes)
    vals = np.concatenate(acc_vals)
    uk, inv = np.unique(keys, return_inverse=True)
    tot = np.stack([np.bincount(inv, weights=vals[:, j], minlength=len(uk)) for j in range(nvals)], axis=1)
    out = pd.DataFrame({"date": _day_to_date(uk // nl)})
    if by:
        out[by] = np.array(labels, dtype=object)[uk % nl]
    out["calls"] = np.rint(tot[:, 0]).astype(np.int64)
    out["cost_usd"] = tot[:, 1]
    for j, c in enumerate(tok_cols):
        out[c] = np.rint(tot[:, 3 + j]).astype(np.int64)
    out["unpriced_calls"] = np.rint(tot[:, 2]).astype(np.int64)
    out = out.loc[out["calls"] > 0]
    return out.sort_values(["date", *([by] if by else [])], kind="stable").reset_index(drop=True)


def _log_dataset(path: Any, dictionary_columns: Sequence[str] = ()) -> Any:
    """The Parquet files of a log folder as one dataset with the call schema + `date` key."""
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.dataset as ds

    from holysheep_lab.log.schema import CALL_SCHEMA

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"No call log at {str(p)!r}.")
    date_key = pa.schema([pa.field("date", pa.string())])
    files = sorted(str(f) for f in p.rglob("*.parquet")) if p.is_dir() else [str(p)]
    # Dictionary-decoding low-cardinality columns avoids hashing millions of strings.
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(dictionary_columns)))
    schema = CALL_SCHEMA.append(date_key.field("date"))
    for c in dictionary_columns:
        i = schema.get_field_index(c)
        if i >= 0 and pa.types.is_string(schema.field(i).type):
            schema = schema.set(i, pa.field(c, pa.dictionary(pa.int32(), pa.string())))
    return ds.dataset(files, schema=schema, format=fmt,
                      partitioning=ds.partitioning(date_key, flavor="hive"),
                      partition_base_dir=str(p) if p.is_dir() else None)


def _to_date(v: date | datetime | str, zone: tzinfo) -> date:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(zone).date()
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v)[:10])
    except ValueError as exc:
        raise ConfigError(f"Expected a date like '2026-11-01', got {v!r}.") from exc


def _date_filter(dataset: Any, start: Any, end: Any, zone: tzinfo) -> tuple[Any, int | None, int | None]:
    """Partition filter on the UTC `date` key plus exact UTC bounds of [start, end] local days."""
    import pyarrow.dataset as ds

    if start is None and end is None:
        return None, None, None
    expr = None
    lo_us = hi_us = None
    if start is not None:
        d = _to_date(start, zone)
        lo = datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
        lo_us = _dt_us(lo)
        expr = ds.field("date") >= (lo.date()).isoformat()
    if end is not None:
        d = _to_date(end, zone) + timedelta(days=1)
        hi = datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
        hi_us = _dt_us(hi)
        e = ds.field("date") <= hi.date().isoformat()
        expr = e if expr is None else expr & e
    return expr, lo_us, hi_us
