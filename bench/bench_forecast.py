"""The daily spend forecast against statsforecast's AutoETS and the 7-day run rate, same cuts.

    python bench/bench_forecast.py [--set heldout|tuning|both] [--histories 48] [--no-ets]

Histories (fixed seeds; the tuning set, seeds 0.., is what the model was developed on, the
held-out set, seeds 1000.., is what the figures are): 161 days of trend x weekly cycle x
lognormal noise with one level shift, drawn per history:

* growth -1 %/day to +2 %/day (compounding), weekly amplitude 0-50 % (a weekend dip of that
  depth, or a weekday wave of that amplitude), noise sigma 10-20 %, a level shift x0.6-x1.6
  on a day 4-44 days before the first cut;
* eight cuts per history, every 7 days from day 84 to day 133: each method forecasts the next 28 days
  from the days before the cut.

Per cut: the 28-day total error |sum(forecast) - sum(actual)| / sum(actual), and whether each
actual day fell inside the 80 % band (ours: `forecast_series(..., interval=0.8)`; AutoETS:
its own `level=[80]` interval). Per history: the mean over its cuts. Writes
bench/results/forecast.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

from holysheep_lab.analysis.forecast import baseline_last7, forecast_series

DAYS = 161
CUTS = (84, 91, 98, 105, 112, 119, 126, 133)
HORIZON = 28
FIRST = date(2026, 1, 5)  # a Monday
SEEDS = {"tuning": 0, "heldout": 1000}


def history(seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """One daily spend history and the parameters it was drawn with."""
    rng = np.random.default_rng(seed)
    growth = float(rng.uniform(-0.01, 0.02))
    amplitude = float(rng.uniform(0.0, 0.5))
    noise = float(rng.uniform(0.10, 0.20))
    shift_day = int(rng.integers(CUTS[0] - 44, CUTS[0] - 4 + 1))
    shift = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    wave = bool(rng.random() < 0.5)
    level = float(rng.uniform(5, 200))
    t = np.arange(DAYS, dtype=np.float64)
    dows = (FIRST.weekday() + np.arange(DAYS)) % 7
    if wave:
        phase = float(rng.uniform(0, 2 * np.pi))
        weekly = 1 + amplitude * np.sin(2 * np.pi * dows / 7 + phase)
    else:
        weekly = np.where(dows >= 5, 1 - amplitude, 1.0)
    base = level * (1 + growth) ** t * np.where(t >= shift_day, shift, 1.0)
    y = base * weekly * rng.lognormal(-noise**2 / 2, noise, DAYS)
    params = {"seed": seed, "growth_per_day": round(growth, 4), "weekly_amplitude": round(amplitude, 3),
              "weekly_shape": "wave" if wave else "weekend_dip", "noise": round(noise, 3),
              "shift_day": shift_day, "shift": round(shift, 3)}
    return y, params


def total_error(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(abs(pred.sum() - actual.sum()) / actual.sum() * 100)


def ours(y: np.ndarray, first: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fc = forecast_series(y, first, days=HORIZON, interval=0.8)
    return fc["yhat"], fc["lo"], fc["hi"]


def run_rate(y: np.ndarray, first: date) -> np.ndarray:
    return baseline_last7(y, first, HORIZON)


def auto_ets(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from statsforecast.models import AutoETS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = AutoETS(season_length=7).fit(y.astype(np.float64)).predict(HORIZON, level=[80])
    return np.asarray(out["mean"]), np.asarray(out["lo-80"]), np.asarray(out["hi-80"])


def evaluate(name: str, start_seed: int, count: int, with_ets: bool) -> dict[str, Any]:
    per_history = []
    seconds: dict[str, list[float]] = {"ours": [], "auto_ets": [], "run_rate": []}
    inside: dict[str, list[float]] = {"ours": [], "auto_ets": []}
    for seed in range(start_seed, start_seed + count):
        y, params = history(seed)
        errs: dict[str, list[float]] = {"ours": [], "auto_ets": [], "run_rate": []}
        for cut in CUTS:
            train, actual = y[:cut], y[cut : cut + HORIZON]
            t0 = time.perf_counter()
            pred, lo, hi = ours(train, FIRST)
            seconds["ours"].append(time.perf_counter() - t0)
            errs["ours"].append(total_error(pred, actual))
            inside["ours"].extend(((actual >= lo) & (actual <= hi)).tolist())
            t0 = time.perf_counter()
            errs["run_rate"].append(total_error(run_rate(train, FIRST), actual))
            seconds["run_rate"].append(time.perf_counter() - t0)
            if with_ets:
                t0 = time.perf_counter()
                pred, lo, hi = auto_ets(train)
                seconds["auto_ets"].append(time.perf_counter() - t0)
                errs["auto_ets"].append(total_error(pred, actual))
                inside["auto_ets"].extend(((actual >= lo) & (actual <= hi)).tolist())
        per_history.append({**params, **{f"{k}_total_error_pct": round(float(np.mean(v)), 2)
                                         for k, v in errs.items() if v}})
    methods = ["ours", "run_rate", *(["auto_ets"] if with_ets else [])]
    mean = {m: round(float(np.mean([h[f"{m}_total_error_pct"] for h in per_history])), 2) for m in methods}
    worse = [h["seed"] for h in per_history if h["ours_total_error_pct"] > h["run_rate_total_error_pct"] + 1.0]
    worst = max(per_history, key=lambda h: h["ours_total_error_pct"])
    out = {
        "set": name, "histories": count, "cuts_per_history": len(CUTS), "horizon_days": HORIZON,
        "mean_28d_total_error_pct": mean,
        "worst_history_pct": {m: max(h[f"{m}_total_error_pct"] for h in per_history) for m in methods},
        "worst_history_of_ours": worst,
        "histories_where_ours_is_worse_than_run_rate_by_more_than_1pt": worse,
        "max_excess_over_run_rate_pct": round(max(h["ours_total_error_pct"] - h["run_rate_total_error_pct"]
                                                  for h in per_history), 2),
        "band80_coverage_pct": {m: round(float(np.mean(v)) * 100, 1) for m, v in inside.items() if v},
        "median_ms_per_forecast": {m: round(statistics.median(v) * 1000, 2) for m, v in seconds.items() if v},
        "per_history": per_history,
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=["heldout", "tuning", "both"], default="heldout")
    ap.add_argument("--histories", type=int, default=48)
    ap.add_argument("--no-ets", action="store_true", help="skip AutoETS (quick iterations)")
    args = ap.parse_args()
    sets = ["tuning", "heldout"] if args.set == "both" else [args.set]
    if not args.no_ets:
        auto_ets(history(0)[0][:84])  # compile statsforecast's numba code before timing
    results = {}
    for name in sets:
        res = evaluate(name, SEEDS[name], args.histories, not args.no_ets)
        results[name] = res
        print(f"{name}: mean 28-day total error % {res['mean_28d_total_error_pct']}; worst history "
              f"{res['worst_history_pct']}; 80 % band coverage {res['band80_coverage_pct']}; "
              f"ours > run rate + 1pt on {len(res['histories_where_ours_is_worse_than_run_rate_by_more_than_1pt'])} "
              f"(max excess {res['max_excess_over_run_rate_pct']}); ms/forecast {res['median_ms_per_forecast']}",
              flush=True)
    if args.histories == 48 and not args.no_ets:
        path = save("forecast", {"command": f"python bench/bench_forecast.py --set {args.set}",
                                 "first_day": str(FIRST), "days": DAYS, "cuts": list(CUTS), **results})
        print(f"saved {path}")


if __name__ == "__main__":
    main()
