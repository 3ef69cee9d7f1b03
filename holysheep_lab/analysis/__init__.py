"""Spend analytics for call logs: pure functions, the `df.hs` accessor, forecast, charts.

Modules: `frames` (the call-log column conventions every analysis shares), `spend` (sums and
per-call statistics), `forecast` (the daily spend model and its backtest), `budgets` (budget
status from a log, with projection), `reprice` (costs under another price table, what-if
models), `drift` (our cost against the relay's own figure), `charts` (altair), `anomalies`
(runaway spend), `accessor` (``df.hs``). The spend
report (`hs.report`, `Report`) lives in `holysheep_lab.reports.html`, a floor above.

Importing this package imports pandas and registers the `df.hs` accessor. Charts and the
report import altair only when they are built.
"""

from __future__ import annotations

from holysheep_lab.analysis import accessor as _accessor  # noqa: F401  (registers df.hs)
from holysheep_lab.analysis.anomalies import anomalies
from holysheep_lab.analysis.budgets import budget_status
from holysheep_lab.analysis.drift import cost_drift
from holysheep_lab.analysis.forecast import backtest, backtest_series, forecast, forecast_series
from holysheep_lab.analysis.reprice import compare_models, reprice, what_if
from holysheep_lab.analysis.spend import (
    burn_rate,
    by,
    by_model,
    context_chain,
    context_growth,
    daily,
    daily_from_log,
    error_rates,
    latency,
    monthly,
    tokens_per_call,
)

__all__ = [
    "anomalies",
    "backtest",
    "backtest_series",
    "budget_status",
    "burn_rate",
    "by",
    "by_model",
    "compare_models",
    "context_chain",
    "context_growth",
    "cost_drift",
    "daily",
    "daily_from_log",
    "error_rates",
    "forecast",
    "forecast_series",
    "latency",
    "monthly",
    "reprice",
    "tokens_per_call",
    "what_if",
]

