"""Daily spend forecasting: a robust trend x weekday model, its backtest, and two baselines.

The model ("trend_weekday"), fitted on the last `window` days (default 8 weeks):

1. weekday factors: the median ratio of each day to its centred 7-day mean, per weekday,
   normalised to average 1 (multiplicative: weekends scale with the level as it grows);
2. trend: a straight line through the de-seasonalised series, fitted by Huber-weighted least
   squares with exponentially decaying weights (half-life 4 weeks), so one spike day or an
   outage does not swing the line and recent weeks count most;
3. forecast = line x weekday factor, never below 0;
4. prediction interval: empirical quantiles of the model's own relative errors in a
   rolling-origin backtest over the recent history, per horizon bucket (1-7, 8-14, 15+ days);
   when history is too short for that, a normal band from the fit residuals widened with h.

Baselines (what people do by hand): ``last7_mean`` (the last 7 days' mean run rate, flat) and
``mtd_linear`` (month-to-date spend / days elapsed in the month, flat).

All functions are pure: numpy arrays and DataFrames in, DataFrames out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_lab.analysis.frames import as_of_micros, require_columns, valid_micros
from holysheep_lab.analysis.spend import daily
from holysheep_lab.core.budget import Budget, Window, resolve_tz, window_bounds
from holysheep_lab.core.clock import micros_to_datetime
from holysheep_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BASELINES",
    "MODEL_NAME",
    "backtest",
    "backtest_series",
    "baseline_last7",
    "baseline_mtd",
    "forecast",
    "forecast_series",
]

MODEL_NAME = "trend_weekday"
_WINDOW = 56
_HALF_LIFE = 28.0
_BUCKETS = ((1, 7), (8, 14), (15, 10_000))


# --------------------------------------------------------------------------- the model


def _weekday_factors(y: np.ndarray, dows: np.ndarray) -> np.ndarray:
    """Multiplicative weekday factors (mean 1) from ratios to the centred 7-day mean."""
    n = len(y)
    f = np.ones(7)
    if n < 14:
        return f
    kernel = np.ones(7) / 7.0
    ma = np.convolve(y, kernel, mode="valid")  # ma[i] is centred on y[i + 3]
    yc = y[3 : n - 3]
    dc = dows[3 : n - 3]
    ok = ma > 1e-12
    if ok.sum() < 14:
        return f
    ratio = yc[ok] / ma[ok]
    dc = dc[ok]
    recent = slice(max(0, len(ratio) - 12 * 7), None)  # the last ~12 weeks of ratios
    ratio, dc = ratio[recent], dc[recent]
    noise = np.zeros(7)  # sampling variance of each day's median
    for d in range(7):
        r = ratio[dc == d]
        if len(r):
            f[d] = float(np.median(r))
            noise[d] = np.pi / 2 * float(np.var(r)) / len(r)
    # Empirical-Bayes shrinkage toward "no weekly cycle": a pattern no stronger than the
    # noise of its own estimate is mostly noise, and copying it into the future adds error.
    spread = float(np.var(f))
    keep = max(0.0, 1.0 - float(noise.mean()) / spread) if spread > 0 else 0.0
    f = 1.0 + keep * (f - f.mean())
    f = np.clip(f, 0.05, None)
    factors: np.ndarray = f / f.mean()
    return factors


def _huber_line(t: np.ndarray, d: np.ndarray, w0: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Weighted Huber regression d ~ a + b t by iteratively reweighted least squares."""
    w = w0.copy()
    X = np.column_stack([np.ones_like(t), t])
    a, b = float(np.average(d, weights=w0)), 0.0
    for _ in range(8):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(X * sw[:, None], d * sw, rcond=None)
        a, b = float(coef[0]), float(coef[1])
        r = d - (a + b * t)
        s = 1.4826 * float(np.median(np.abs(r - np.median(r)))) + 1e-12
        k = 1.345 * s
        hub = np.where(np.abs(r) <= k, 1.0, k / np.maximum(np.abs(r), 1e-300))
        w = w0 * hub
    return a, b, d - (a + b * t)


def _shrink_slope(a: float, b: float, t: np.ndarray, resid: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Scale the slope by max(0, 1 - 1/z^2), z its t-statistic, pivoting on the weighted mean
    time: a clear trend is kept almost whole, one within its own noise is dropped, since
    extrapolating noise over the horizon costs more than it wins."""
    tm = float(np.average(t, weights=w))
    sxx = float(np.sum(w * (t - tm) ** 2))
    dof = float(np.sum(w)) - 2.0
    if sxx <= 0 or dof <= 0:
        return a, b
    se = np.sqrt(float(np.sum(w * resid**2)) / dof / sxx)
    z2 = (b / se) ** 2 if se > 0 else np.inf
    b2 = b * max(0.0, 1.0 - 1.0 / z2) if z2 > 0 else 0.0
    return a + (b - b2) * tm, b2


def _model_point(y: np.ndarray, first_dow: int, h: int, window: int = _WINDOW) -> tuple[np.ndarray, float]:
    """Point forecast for the next `h` days and the relative residual spread of the fit."""
    n = len(y)
    if n == 0:
        return np.zeros(h), 0.0
    if n < 7:
        return np.full(h, float(np.mean(y))), float(np.std(y) / max(np.mean(y), 1e-12))
    t_all = np.arange(n, dtype=np.float64)
    dows = (first_dow + np.arange(n)) % 7
    f = _weekday_factors(y, dows)
    W = min(n, window)
    t = t_all[-W:]
    d = y[-W:] / f[dows[-W:]]
    w0 = 0.5 ** ((n - 1 - t) / _HALF_LIFE)
    if W < 21:  # too short to trust a slope: level only
        mean_level = float(np.average(d, weights=w0))
        a, b, resid = mean_level, 0.0, d - mean_level
    else:
        a, b, resid = _huber_line(t, d, w0)
        a, b = _shrink_slope(a, b, t, resid, w0)
    tf = np.arange(n, n + h, dtype=np.float64)
    level = a + b * tf
    # A falling line must not forecast negative spend; floor it at a tenth of the last level.
    floor = 0.1 * max(a + b * (n - 1), 0.0)
    level = np.maximum(level, floor)
    fut_dow = (first_dow + np.arange(n, n + h)) % 7
    yhat = np.maximum(level * f[fut_dow], 0.0)
    scale = max(float(np.average(d, weights=w0)), 1e-12)
    return yhat, float(np.std(resid) / scale)


def _rel_errors(y: np.ndarray, first_dow: int, max_h: int, origins: int = 56) -> list[np.ndarray]:
    """Relative errors of the model per horizon (index h-1) from rolling origins in `y`."""
    n = len(y)
    errs: list[list[float]] = [[] for _ in range(max_h)]
    start = max(21, n - origins - max_h)
    for o in range(start, n):
        h = min(max_h, n - o)
        if h <= 0:
            break
        yhat, _ = _model_point(y[:o], first_dow, h)
        for k in range(h):
            if yhat[k] > 1e-9:
                errs[k].append((y[o + k] - yhat[k]) / yhat[k])
    return [np.asarray(e) for e in errs]


def forecast_series(
    y: np.ndarray | list[float],
    first_day: date,
    days: int = 30,
    interval: float = 0.9,
) -> dict[str, Any]:
    """Forecast a daily series (`y[0]` is `first_day`) for the next `days` days.

    Returns a dict of numpy arrays ``date`` (datetime.date), ``yhat``, ``lo``, ``hi``
    (the central `interval` prediction band), plus ``method``.
    """
    if days < 1:
        raise ConfigError(f"forecast days must be at least 1, not {days!r}.")
    if not 0 < interval < 1:
        raise ConfigError(f"interval must be a fraction in (0, 1), such as 0.9; got {interval!r}.")
    arr = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0)
    first_dow = first_day.weekday()
    yhat, rel_sd = _model_point(arr, first_dow, days)
    qlo, qhi = (1 - interval) / 2, 1 - (1 - interval) / 2
    lo = np.empty(days)
    hi = np.empty(days)
    errs = _rel_errors(arr, first_dow, min(days, 28)) if len(arr) >= 35 else []
    for k in range(days):
        h = k + 1
        pool = _bucket_errors(errs, h)
        if len(pool) >= 20:
            e_lo, e_hi = np.quantile(pool, [qlo, qhi])
        else:  # short history: normal band from the fit residuals, widening with the horizon
            z = _z(interval)
            sd = max(rel_sd, 0.05) * np.sqrt(1 + h / 7)
            e_lo, e_hi = -z * sd, z * sd
        lo[k] = max(0.0, yhat[k] * (1 + e_lo))
        hi[k] = max(lo[k], yhat[k] * (1 + e_hi))
    dates = np.array([first_day + timedelta(days=len(arr) + k) for k in range(days)], dtype=object)
    return {"date": dates, "yhat": yhat, "lo": lo, "hi": hi, "method": MODEL_NAME}


def _bucket_errors(errs: list[np.ndarray], h: int) -> np.ndarray:
    if not errs:
        return np.zeros(0)
    for lo_h, hi_h in _BUCKETS:
        if lo_h <= h <= hi_h:
            parts = [errs[i - 1] for i in range(lo_h, min(hi_h, len(errs)) + 1) if i - 1 < len(errs)]
            if not parts:  # horizon beyond what the backtest reached: use the longest bucket
                parts = errs[-7:]
            return np.concatenate(parts) if parts else np.zeros(0)
    return np.zeros(0)


def _z(interval: float) -> float:
    # Normal quantile by bisection on erf: no scipy needed.
    from math import erf, sqrt

    target = 0.5 + interval / 2
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if 0.5 * (1 + erf(mid / sqrt(2))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --------------------------------------------------------------------------- baselines


def baseline_last7(y: np.ndarray, first_day: date, h: int) -> np.ndarray:
    """Last-7-day mean run rate, held flat for `h` days."""
    if len(y) == 0:
        return np.zeros(h)
    return np.full(h, float(np.mean(y[-7:])))


def baseline_mtd(y: np.ndarray, first_day: date, h: int) -> np.ndarray:
    """Month-to-date linear: this month's spend so far / days elapsed, held flat.

    The origin's month is the month of the last observed day; its days before the history
    starts are not counted as elapsed.
    """
    n = len(y)
    if n == 0:
        return np.zeros(h)
    last = first_day + timedelta(days=n - 1)
    elapsed = min(last.day, n)
    return np.full(h, float(np.sum(y[n - elapsed :])) / elapsed)


BASELINES = {"last7_mean": baseline_last7, "mtd_linear": baseline_mtd}


# --------------------------------------------------------------------------- backtest


def backtest_series(
    y: np.ndarray | list[float],
    first_day: date,
    horizon: int = 14,
    min_train: int = 28,
    step: int = 1,
) -> pd.DataFrame:
    """Rolling-origin backtest of the model and the baselines on a daily series.

    From every `step`-th origin with at least `min_train` days behind it and `horizon` days
    ahead, each method forecasts the next `horizon` days from the history before the origin.
    Columns: ``method`` (``trend_weekday``, ``last7_mean``, ``mtd_linear``), ``origins``
    (how many), ``horizon``, ``mae`` (mean absolute daily error, USD), ``mape`` (mean
    absolute percentage error of the daily values, %, over days with spend > 0), ``wape``
    (sum |error| / sum actual, %), ``total_ape`` (mean absolute % error of the horizon's
    total spend, what a budget projection needs). Sorted with the model first.
    """
    import pandas as pd

    arr = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0)
    n = len(arr)
    if horizon < 1 or min_train < 7 or step < 1:
        raise ConfigError("backtest needs horizon >= 1, min_train >= 7 and step >= 1.")
    origins = list(range(min_train, n - horizon + 1, step))
    cols = ["method", "origins", "horizon", "mae", "mape", "wape", "total_ape"]
    if not origins:
        raise ConfigError(
            f"backtest needs at least min_train + horizon = {min_train + horizon} days of history; "
            f"this log has {n}."
        )
    fd = first_day.weekday()
    methods: dict[str, Any] = {MODEL_NAME: lambda h_, o: _model_point(arr[:o], fd, h_)[0]}
    for name, fn in BASELINES.items():
        methods[name] = lambda h_, o, fn=fn: fn(arr[:o], first_day, h_)
    rows = []
    for name, fn in methods.items():
        abs_err, pct, act, tot = [], [], [], []
        for o in origins:
            pred = fn(horizon, o)
            actual = arr[o : o + horizon]
            e = np.abs(actual - pred)
            abs_err.append(e)
            act.append(actual)
            pos = actual > 0
            pct.append(e[pos] / actual[pos])
            s = actual.sum()
            if s > 0:
                tot.append(abs(pred.sum() - s) / s)
        ae = np.concatenate(abs_err)
        rows.append(
            {
                "method": name,
                "origins": len(origins),
                "horizon": horizon,
                "mae": float(ae.mean()),
                "mape": float(np.concatenate(pct).mean() * 100) if any(len(p) for p in pct) else np.nan,
                "wape": float(ae.sum() / max(np.concatenate(act).sum(), 1e-12) * 100),
                "total_ape": float(np.mean(tot) * 100) if tot else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def backtest(
    df: pd.DataFrame,
    horizon: int = 14,
    min_train: int = 28,
    step: int = 1,
    tz: str | tzinfo | None = None,
) -> pd.DataFrame:
    """Rolling-origin backtest on the log's daily spend in `tz` (see `backtest_series`)."""
    d = daily(df, tz=tz)
    if d.empty:
        raise ConfigError("backtest needs a non-empty log.")
    return backtest_series(d["cost_usd"].to_numpy(), d["date"].iloc[0].date(), horizon, min_train, step)


# --------------------------------------------------------------------------- forecast a log


def forecast(
    df: pd.DataFrame,
    days: int = 30,
    tz: str | tzinfo | None = None,
    budget: Budget | None = None,
    interval: float = 0.9,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Forecast daily spend for the next `days` local days (default time zone: local).

    History runs through the last day with calls, counted as complete. Pass `now` (an
    instant) to forecast from a day in progress: days before it are history, and today's row
    is what was spent so far plus the forecast for the rest of the day.

    Columns: ``date`` (datetime64, local day), ``yhat`` (expected spend, USD), ``lo``, ``hi``
    (the central `interval` prediction band, default 90 %).

    ``attrs`` (a plain dict on the frame):

    * ``month_end``: ``{"month": "YYYY-MM", "spent": USD so far this month, "projected":
      expected month total, "lo", "hi": band of that total}`` for the month of the first
      forecast day (forecast extended internally to its end);
    * ``exhaustion_date``: the first day (datetime.date) on which the budget would block calls
      (monthly month-to-date spend or a day's spend reaching limit x block_at), None if it
      would not within the horizon or without a budget; ``exhaustion`` gives it per window
      (``{"daily": date|None, "monthly": date|None}``, global limits);
    * ``method``, ``interval``, ``history_days``, ``tz``.
    """
    import pandas as pd

    require_columns(df, ["ts", "cost_usd"], "forecast()")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"forecast days must be a whole number of days >= 1, not {days!r}.")
    if not 0 < interval < 1:
        raise ConfigError(f"interval must be a fraction in (0, 1), such as 0.9; got {interval!r}.")
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be a holysheep_lab.budget.Budget, not {type(budget).__name__}.")
    zone = resolve_tz(tz if tz is not None else (budget.zone if budget is not None else None))
    hist = _history(df, zone, now)
    start = hist.first + timedelta(days=len(hist.y))
    month_end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    fc = _daily_path(hist, start, max(days, (month_end - start).days + 1), interval)
    dates = pd.to_datetime(pd.Series(fc["date"])).astype("datetime64[s]")
    out = pd.DataFrame({"date": dates, "yhat": fc["yhat"], "lo": fc["lo"], "hi": fc["hi"]},
                       columns=["date", "yhat", "lo", "hi"])
    proj = _month_end_projection(hist, out, start, month_end)
    out = out.iloc[:days].reset_index(drop=True)
    exhaustion = (_exhaustion(out, budget, proj["spent"], start.replace(day=1)) if budget is not None
                  else {"daily": None, "monthly": None})
    dates_hit = [v for v in exhaustion.values() if v is not None]
    out.attrs = {
        "month_end": proj,
        "exhaustion_date": min(dates_hit) if dates_hit else None,
        "exhaustion": exhaustion,
        "method": MODEL_NAME if len(hist.y) else "today_pace",
        "interval": interval,
        "history_days": len(hist.y),
        "tz": getattr(zone, "key", str(zone)),
    }
    return out


@dataclass(frozen=True, slots=True)
class _History:
    """The complete days a forecast starts from, and the day in progress (if `now` was given)."""

    first: date  # the day of y[0]
    y: np.ndarray  # spend per complete local day, idle days as 0
    today_spent: float = 0.0  # spent so far on the day in progress
    frac_left: float = 1.0  # the share of that day still to come (1: no day in progress)


def _history(df: pd.DataFrame, zone: tzinfo, now: datetime | None) -> _History:
    """The log's daily spend in `zone` through the last day with calls, or, with `now`, through
    the day before it (today's spend so far is kept apart, with the share of the day left)."""
    us, ok = valid_micros(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    if len(df) == 0:
        raise ConfigError("forecast() needs a log with at least one priced call; this one is empty.")
    d = daily(df, tz=zone)
    first = d["date"].iloc[0].date()
    y = d["cost_usd"].to_numpy()
    if now is None:
        return _History(first, y)
    now_dt = micros_to_datetime(as_of_micros(us, now))
    k = (now_dt.astimezone(zone).date() - first).days
    if k < 0:
        raise ConfigError(f"now ({now}) is before the first call in the log.")
    today_spent = float(y[k]) if k < len(y) else 0.0
    y = y[: min(k, len(y))]
    if len(y) < k:  # idle days between the last call and today
        y = np.r_[y, np.zeros(k - len(y))]
    day_start, day_end = window_bounds(Window.DAY, now_dt, zone)
    return _History(first, y, today_spent, max(0.0, (day_end - now_dt) / (day_end - day_start)))


def _daily_path(hist: _History, start: date, horizon: int, interval: float) -> dict[str, Any]:
    """Forecast arrays (date, yhat, lo, hi) for `horizon` days from `start`; the first day
    holds what was spent of it so far plus the forecast of the rest."""
    if len(hist.y) == 0:  # only today so far: extrapolate today's pace
        spent, left = hist.today_spent, hist.frac_left
        pace = spent / max(1e-9, 1 - left) if left < 1 else spent
        fc = {"yhat": np.full(horizon, pace), "lo": np.full(horizon, 0.0), "hi": np.full(horizon, 2 * pace),
              "date": np.array([start + timedelta(days=i) for i in range(horizon)], dtype=object)}
    else:
        fc = forecast_series(hist.y, hist.first, horizon, interval)
    for key in ("yhat", "lo", "hi"):
        fc[key] = np.asarray(fc[key], dtype=np.float64).copy()
        fc[key][0] = hist.today_spent + fc[key][0] * hist.frac_left
    return fc


def _month_end_projection(hist: _History, fc: pd.DataFrame, start: date, month_end: date) -> dict[str, Any]:
    """This month's history + the forecast through the month's last day: spent, projected, lo, hi."""
    mstart = start.replace(day=1)
    hist_dates = [hist.first + timedelta(days=i) for i in range(len(hist.y))]
    spent_m = float(sum(v for dd, v in zip(hist_dates, hist.y, strict=True) if dd >= mstart))
    n_m = (month_end - start).days + 1
    return {
        "month": f"{start.year:04d}-{start.month:02d}",
        "spent": spent_m,
        "projected": spent_m + float(fc["yhat"].iloc[:n_m].sum()),
        "lo": spent_m + float(fc["lo"].iloc[:n_m].sum()),
        "hi": spent_m + float(fc["hi"].iloc[:n_m].sum()),
    }


def _exhaustion(fc: pd.DataFrame, budget: Budget, spent_month: float, mstart: date) -> dict[str, date | None]:
    res: dict[str, date | None] = {"daily": None, "monthly": None}
    dates = [ts.date() for ts in fc["date"]]
    if budget.daily is not None:
        thr = float(budget.daily) * budget.block_at
        for dd, v in zip(dates, fc["yhat"], strict=True):
            if v >= thr:
                res["daily"] = dd
                break
    if budget.monthly is not None:
        thr = float(budget.monthly) * budget.block_at
        cum, month = spent_month, (mstart.year, mstart.month)
        for dd, v in zip(dates, fc["yhat"], strict=True):
            if (dd.year, dd.month) != month:
                cum, month = 0.0, (dd.year, dd.month)  # a new calendar month starts from zero
            cum += float(v)
            if cum >= thr:
                res["monthly"] = dd
                break
    return res
