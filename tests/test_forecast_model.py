"""The forecast model on trend x weekly-cycle x noise histories with level shifts (seeds apart
from the benchmark's), its 80 % band, level shifts and growth, the block line it names, and
that it needs numpy only."""

from __future__ import annotations

import importlib
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import holysheep_lab.analysis  # noqa: F401  (registers df.hs)
from holysheep_lab.core.budget import Budget

F = importlib.import_module("holysheep_lab.analysis.forecast")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
bench = importlib.import_module("bench_forecast")
FIRST = date(2026, 1, 5)


def test_beats_the_run_rate_with_an_honest_band_on_unseen_histories():
    ours, rate, inside = [], [], []
    for seed in range(5000, 5016):  # neither the tuning (0..) nor the held-out (1000..) seeds
        y, _ = bench.history(seed)
        for cut in (98, 126):
            train, actual = y[:cut], y[cut : cut + 28]
            fc = F.forecast_series(train, FIRST, days=28, interval=0.8)
            ours.append(bench.total_error(fc["yhat"], actual))
            rate.append(bench.total_error(F.baseline_last7(train, FIRST, 28), actual))
            inside.extend((actual >= fc["lo"]) & (actual <= fc["hi"]))
    assert np.mean(ours) < 0.7 * np.mean(rate), (np.mean(ours), np.mean(rate))
    assert 0.72 <= np.mean(inside) <= 0.88


def test_a_level_shift_is_followed():
    rng = np.random.default_rng(7)
    level = np.where(np.arange(112) < 84, 100.0, 60.0)  # a project retired four weeks ago
    y = level * rng.lognormal(-0.01, 0.12, 112)
    fc = F.forecast_series(y, FIRST, days=28)
    assert fc["yhat"].mean() == pytest.approx(60, rel=0.08)


def test_compounding_growth_is_extrapolated():
    rng = np.random.default_rng(3)
    t = np.arange(112 + 28)
    y = 20 * 1.02 ** t * np.where((FIRST.weekday() + t) % 7 >= 5, 0.6, 1.0) * rng.lognormal(-0.01, 0.12, len(t))
    fc = F.forecast_series(y[:112], FIRST, days=28)
    assert bench.total_error(fc["yhat"], y[112:]) < 8
    assert bench.total_error(F.baseline_last7(y[:112], FIRST, 28), y[112:]) > 20  # what a run rate misses


def test_growth_that_stopped_is_not_extrapolated():
    # 2 %/day for months, flat for the last six weeks: the 12-week fit still sees a slope,
    # the history's own last weeks show the run rate doing better, and the forecast follows it.
    rng = np.random.default_rng(7)
    t = np.arange(140)
    level = 10 * 1.02 ** np.minimum(t, 100)
    y = level * rng.lognormal(-0.00125, 0.05, len(t))
    fc = F.forecast_series(y, FIRST, days=28)
    assert fc["yhat"].sum() == pytest.approx(28 * level[-1], rel=0.04)
    # A day-ahead forecast (spend_days' band) is the model's alone, leaning nowhere.
    fitted = F.forecast_series(y[:60], FIRST, days=1)["yhat"][0]
    assert fitted == pytest.approx(float(F._fitted_point(y[:60], FIRST.weekday(), 1)[0][0]))


def test_blocked_from_names_the_line_its_limit_and_block_point():
    ts = pd.date_range(pd.Timestamp(date(2026, 10, 2), tz="UTC") + pd.Timedelta(hours=12), periods=50, freq="D")
    df = pd.DataFrame({"ts": ts.as_unit("us"), "model": "m", "status": "ok", "cost_usd": np.full(50, 10.0)})
    fc = df.hs.forecast(days=20, tz="UTC", budget=Budget(daily=None, monthly=250, block_at=0.95, tz="UTC"))
    assert fc.attrs["blocked_from"] == {"date": date(2026, 11, 24), "line": "global monthly", "limit_usd": 250.0,
                                        "block_at": 0.95, "block_usd": pytest.approx(237.5)}
    assert fc.attrs["exhaustion_date"] == date(2026, 11, 24)
    daily = df.hs.forecast(days=5, tz="UTC", budget=Budget(daily=9, monthly=1000, tz="UTC"))
    assert daily.attrs["blocked_from"]["line"] == "global daily"
    assert daily.attrs["blocked_from"]["limit_usd"] == 9.0
    assert df.hs.forecast(days=5, tz="UTC").attrs["blocked_from"] is None


def test_the_model_needs_numpy_only():
    code = ("import sys, importlib, numpy as np, datetime as dt; "
            "f = importlib.import_module('holysheep_lab.analysis.forecast'); "
            "f.forecast_series(np.ones(60), dt.date(2026, 1, 1)); "
            "print(sorted(m for m in ('statsforecast', 'scipy', 'statsmodels', 'numba', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
