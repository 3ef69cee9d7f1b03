"""Builders of synthetic data for tests, benchmarks and examples: nothing here runs in production.

    from holysheep_lab.testing import synthetic_series

    y, first_day = synthetic_series(days=120, trend=0.2, weekend=0.4, seed=1)
    holysheep_lab.analysis.forecast.backtest_series(y, first_day)

Public and documented so that the project's tests and bench scripts, and users checking the
forecast on their own scenarios, build the same histories. Needs numpy only (no pandas).
"""

from __future__ import annotations

from datetime import date

import numpy as np

from holysheep_lab.errors import ConfigError

__all__ = ["synthetic_series"]


def synthetic_series(
    days: int = 180,
    level: float = 50.0,
    trend: float = 0.0,
    growth: str = "linear",
    weekend: float = 0.5,
    noise: float = 0.15,
    seed: int = 0,
    start: date = date(2026, 1, 5),
    spikes: float = 0.0,
) -> tuple[np.ndarray, date]:
    """A daily spend history (values in USD, first day) with a trend, a weekly cycle and noise.

    `trend` is the relative change per 30 days (0.2 = +20 %/month; linear or "exp"
    compounding), `weekend` the Saturday/Sunday level relative to weekdays, `noise` the
    lognormal sigma, `spikes` the daily probability of a 2-5x spike.
    """
    if growth not in ("linear", "exp"):
        raise ConfigError("growth must be 'linear' or 'exp'.")
    rng = np.random.default_rng(seed)
    t = np.arange(days, dtype=np.float64)
    base = level * (1 + trend * t / 30) if growth == "linear" else level * (1 + trend) ** (t / 30)
    dows = (start.weekday() + np.arange(days)) % 7
    season = np.where(dows >= 5, weekend, 1.0)
    y = np.maximum(base, 0) * season * rng.lognormal(-noise**2 / 2, noise, days)
    if spikes:
        hit = rng.random(days) < spikes
        y = np.where(hit, y * rng.uniform(2, 5, days), y)
    return y, start
