"""Daily spend forecasting: a log-linear trend with level shifts, its backtest, and two baselines.

The model ("log_trend_shift"), numpy only, fitted on the last 12 weeks:

1. weekday factors: the median ratio of each day to its centred 7-day mean, per weekday,
   shrunk toward no cycle by their own noise, normalised to average 1 (multiplicative:
   weekends scale with the level as it grows);
2. growth: a straight line through the log of the de-seasonalised series (spend compounds),
   fitted by Huber-reweighted least squares with weights halving every 8 weeks, with a step
   where the level shifted (a new project, a retired one) when one stands out (BIC); the
   slope is shrunk by its t-statistic, so a trend within its own noise is dropped;
3. the current level is a mean (not the median a log fit gives): the recent days after any
   shift, brought to the last day along the slope, averaged with the line's mean-corrected end,
   and moved toward the last week when that week stands apart (a shift too recent to fit);
4. forecast = level x growth^h x weekday factor; prediction band: lognormal around it, its
   variance the day-to-day noise + the level's and the growth's uncertainty + a drift per day
   ahead, so that the 80 % band holds about 80 % of days (bench/bench_forecast.py);
5. for a week or more ahead, the forecast leans toward the 7-day run rate as far as the run
   rate forecast this history's own last weeks better (a trend or shift not borne out).

On held-out trend x weekly-cycle x noise histories with level shifts, its 28-day total error
is below statsforecast's AutoETS at a fraction of its cost (bench/README.md).

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

MODEL_NAME = "log_trend_shift"
_WINDOW = 84  # days the trend is fitted on
_HALF_LIFE = 56.0  # of the fit's weights: recent weeks count most, a trend needs months
_LEVEL_DAYS, _LEVEL_HALF_LIFE = 28, 14.0  # the recent days the current level is read from
_NEW_LEVEL_Z, _NEW_LEVEL_SPAN = 1.5, 2.0  # when the last week alone moves the level
_SHIFT_PENALTY = 3.0  # x log(n): what a level shift must explain to be believed (BIC-like)
_DRIFT = 0.0005  # variance per day ahead (log scale) for growth that changes: calibrates the band
# The check against the run rate (`_run_rate_share`): the days forecast from each origin, how
# many weekly origins, the prior (a squared relative error), the days an origin needs behind it.
_CHECK_DAYS, _CHECK_ORIGINS, _CHECK_PRIOR, _CHECK_MIN_TRAIN = 28, 3, 0.003, 56


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


def _wls(X: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares: coefficients and residuals."""
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)
    return coef, z - X @ coef


def _mad(r: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(r - np.median(r))))


def _design(t: np.ndarray, w: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, int]:
    """The regressors of the log level: a line, plus a step at the level shift that explains
    most (the first day of a new level, at least 14 days into the window), if it explains enough to be real.
    Returns the design matrix and the index of the shift (0: none)."""
    m = len(t)
    line = np.column_stack([np.ones(m), t])
    _, r0 = _wls(line, z, w)
    rss0 = float(np.sum(w * r0**2))
    best_rss, best_k = rss0, 0
    for k in range(14, m - 2):
        step = np.column_stack([line, (np.arange(m) >= k).astype(np.float64)])
        _, r1 = _wls(step, z, w)
        rss1 = float(np.sum(w * r1**2))
        if rss1 < best_rss:
            best_rss, best_k = rss1, k
    n_eff = float(w.sum()) ** 2 / float(np.sum(w**2))
    if best_k and best_rss > 0 and n_eff * np.log(rss0 / best_rss) > _SHIFT_PENALTY * np.log(n_eff):
        return np.column_stack([line, (np.arange(m) >= best_k).astype(np.float64)]), best_k
    return line, 0


@dataclass(frozen=True, slots=True)
class _Fit:
    """The fitted model: weekday factors, the current (mean) level, growth per day (log), and
    the variances the prediction band is built from."""

    factors: np.ndarray
    level: float
    growth: float
    noise_var: float  # of one day around the model (log scale)
    level_var: float  # of the current level
    growth_var: float  # of the growth rate

    def path(self, first_dow: int, n: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(expected spend, log-scale standard deviation) for days n .. n + h - 1."""
        ahead = np.arange(1, h + 1, dtype=np.float64)
        dows = (first_dow + np.arange(n, n + h)) % 7
        yhat = self.level * np.exp(self.growth * ahead) * self.factors[dows]
        sd = np.sqrt(self.noise_var + self.level_var + ahead**2 * self.growth_var + _DRIFT * ahead)
        return np.maximum(yhat, 0.0), sd


def _fit(y: np.ndarray, first_dow: int) -> _Fit:
    """Fit the model to a daily series of at least 7 days.

    De-seasonalised by the weekday factors, the log of the last `_WINDOW` days is fitted by a
    weighted line (Huber-reweighted, so spike days and outages do not swing it), with a step
    where the level shifted if one stands out. Growth is the line's slope, shrunk by its own
    t-statistic (a trend within its noise is dropped: extrapolating noise costs more than it
    wins). The current level is a mean, not a median: the recent days after the shift,
    brought to the last day along the kept slope, averaged with the line's end (mean-corrected),
    and moved toward the last week's level when that week stands well apart.
    """
    n = len(y)
    dows = (first_dow + np.arange(n)) % 7
    f = _weekday_factors(y, dows)
    W = min(n, _WINDOW)
    t = np.arange(n - W, n, dtype=np.float64) - (n - 1)  # 0 on the last day
    d = y[-W:] / f[dows[-W:]]
    positive = d[d > 0]
    if len(positive) == 0:
        return _Fit(f, 0.0, 0.0, 0.0, 0.0, 0.0)
    z = np.log(np.maximum(d, 0.05 * float(np.median(positive))))  # an idle day is a low day, not -inf
    w0 = 0.5 ** (-t / _HALF_LIFE)
    if W < 21:  # too short to trust a slope or a shift: level only
        X, k = np.ones((W, 1)), 0
    else:
        X, k = _design(t, w0, z)
    coef, r = _wls(X, z, w0)
    w = w0
    for _ in range(4):  # Huber reweighting, the regressors fixed
        s = _mad(r) + 1e-12
        cut = 1.345 * s
        w = w0 * np.where(np.abs(r) <= cut, 1.0, cut / np.maximum(np.abs(r), 1e-300))
        coef, r = _wls(X, z, w)
    dof = max(float(np.sum(w)) - X.shape[1], 1.0)
    sigma2 = float(np.sum(w * r**2)) / dof
    growth = growth_var = 0.0
    end = float(X[-1] @ coef)  # the line's log level on the last day
    after = np.arange(W) >= k
    if X.shape[1] > 1:
        try:
            cov = np.linalg.inv((X * w[:, None]).T @ X) * sigma2
            growth_var = max(float(cov[1, 1]), 0.0)
        except np.linalg.LinAlgError:
            growth_var = 0.0
        b = float(coef[1])
        z2 = b * b / growth_var if growth_var > 0 else np.inf
        growth = b * max(0.0, 1.0 - 1.0 / z2) if z2 > 0 else 0.0
        # The shrunk line pivots on the weighted mean time since the shift.
        end += (b - growth) * float(np.average(t[after], weights=w[after]))
    smear = float(np.average(np.exp(r[after]), weights=w[after]))  # mean of a lognormal, not its median
    line_level = float(np.exp(end)) * smear
    recent = after & (np.arange(W) >= W - _LEVEL_DAYS)
    lw = (0.5 ** (-t / _LEVEL_HALF_LIFE) * w / w0)[recent]
    recent_level = float(np.sum(lw * d[recent] * np.exp(-growth * t[recent])) / np.sum(lw))
    noise = max(_mad(r) ** 2, sigma2)  # heavy tails (spike days) widen the band, not just the MAD
    level_var = float(np.sum(lw**2)) / float(np.sum(lw)) ** 2 * noise
    level = 0.5 * (line_level + recent_level)
    # A last week far off that level (beyond _NEW_LEVEL_Z standard errors) is a shift too recent
    # to fit: lean toward it, fully at _NEW_LEVEL_Z + _NEW_LEVEL_SPAN, as a run rate would.
    huber = (w / w0)[-7:]  # a spike day in that week counts as little as in the fit
    week = float(np.sum(huber * d[-7:] * np.exp(-growth * t[-7:])) / np.sum(huber))
    if week > 0 and level > 0:
        z = abs(np.log(week / level)) / np.sqrt(noise / 7 + level_var + 1e-12)
        lean = min(max((z - _NEW_LEVEL_Z) / _NEW_LEVEL_SPAN, 0.0), 1.0)
        level += lean * (week - level)
    return _Fit(f, level, growth, noise, level_var, growth_var)


def _model_point(y: np.ndarray, first_dow: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected spend for the next `h` days and its log-scale standard deviation per day: the
    model's, leaning toward the 7-day run rate as far as the run rate did better in this
    history's own recent weeks (`_run_rate_share`), for forecasts of a week or more."""
    yhat, sd = _fitted_point(y, first_dow, h)
    share = _run_rate_share(y, first_dow) if h >= 7 else 0.0
    if share > 0 and yhat.mean() > 0:
        # The run rate's total, spread over the days as the model spreads its own.
        yhat = (1 - share) * yhat + share * float(np.mean(y[-7:])) * yhat / yhat.mean()
    return yhat, sd


def _fitted_point(y: np.ndarray, first_dow: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(y)
    if n == 0:
        return np.zeros(h), np.zeros(h)
    if n < 7:  # under a week: its mean, with a wide band
        mean = float(np.mean(y))
        rel = float(np.std(y) / mean) if mean > 0 else 0.0
        return np.full(h, mean), np.sqrt(np.log1p(max(rel, 0.25) ** 2) * (1 + np.arange(1, h + 1) / 7))
    return _fit(y, first_dow).path(first_dow, n, h)


def _run_rate_share(y: np.ndarray, first_dow: int) -> float:
    """The share of the forecast to take from the 7-day run rate: where the trend or the level
    shift the model fits is not borne out, a run rate can do better, and the history says so.
    The model and the run rate forecast the `_CHECK_DAYS` days after each of the last
    `_CHECK_ORIGINS` weekly origins that leave that many days, from the days before it; with
    M and R their mean squared relative errors of the total, the run rate's share is
    (M + c) / (M + R + 2c), c a prior that keeps a few origins' luck from deciding (chosen on
    the tuning histories of bench/bench_forecast.py, never the held-out ones)."""
    n, days = len(y), _CHECK_DAYS
    model, rate = [], []
    for j in range(_CHECK_ORIGINS):
        o = n - days - 7 * j
        if o < _CHECK_MIN_TRAIN:
            break
        actual = float(np.sum(y[o:o + days]))
        if actual <= 0:
            continue
        model.append((float(np.sum(_fitted_point(y[:o], first_dow, days)[0])) / actual - 1) ** 2)
        rate.append((float(np.mean(y[o - 7:o])) * days / actual - 1) ** 2)
    if not model:
        return 0.0
    m, r = float(np.mean(model)), float(np.mean(rate))
    return (m + _CHECK_PRIOR) / (m + r + 2 * _CHECK_PRIOR)


def forecast_series(
    y: np.ndarray | list[float],
    first_day: date,
    days: int = 30,
    interval: float = 0.9,
) -> dict[str, Any]:
    """Forecast a daily series (`y[0]` is `first_day`) for the next `days` days.

    Returns a dict of numpy arrays ``date`` (datetime.date), ``yhat`` (expected spend),
    ``lo``, ``hi`` (the central `interval` prediction band of each day: lognormal around the
    expected value, its width from the day-to-day noise, the uncertainty of the level and of
    the growth, and a drift that widens it with the horizon), plus ``method``.
    """
    if days < 1:
        raise ConfigError(f"forecast days must be at least 1, not {days!r}.")
    if not 0 < interval < 1:
        raise ConfigError(f"interval must be a fraction in (0, 1), such as 0.9; got {interval!r}.")
    arr = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0)
    yhat, sd = _model_point(arr, first_day.weekday(), days)
    z = _z(interval)
    centre = yhat * np.exp(-(sd**2) / 2)  # the lognormal's median, for a mean of yhat
    lo = np.minimum(centre * np.exp(-z * sd), yhat)
    hi = np.maximum(centre * np.exp(z * sd), yhat)
    dates = np.array([first_day + timedelta(days=len(arr) + k) for k in range(days)], dtype=object)
    return {"date": dates, "yhat": yhat, "lo": lo, "hi": hi, "method": MODEL_NAME}


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
    * ``blocked_from``: when the forecast says the guard starts refusing calls, named for what
      it is: ``{"date": the first local day the expected spend reaches a global line's block
      point, "line": "global monthly" or "global daily", "limit_usd": the limit, "block_at":
      its fraction, "block_usd": limit x block_at, the spend that blocks}``; None without a
      budget or if no line is reached within the forecast (or, for the monthly line, its month);
    * ``exhaustion_date``: that date alone (None likewise); ``exhaustion`` gives it per window
      (``{"daily": date|None, "monthly": date|None}``);
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
    blocked_from = None
    if budget is not None and dates_hit:
        window = min((w for w in exhaustion if exhaustion[w] is not None), key=lambda w: (exhaustion[w], w))
        raw = budget.daily if window == "daily" else budget.monthly
        limit = float(raw) if raw is not None else 0.0  # a line was reached: it has a limit
        blocked_from = {"date": exhaustion[window], "line": f"global {window}", "limit_usd": limit,
                        "block_at": budget.block_at, "block_usd": limit * budget.block_at}
    out.attrs = {
        "month_end": proj,
        "blocked_from": blocked_from,
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
