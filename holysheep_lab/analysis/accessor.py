"""The `df.hs` accessor: a thin front over the pure functions in `spend` and `forecast`.

Registered when `holysheep_lab.analysis` is imported: at `import holysheep_lab` if pandas is
already imported, else lazily, on first use of `hs.read_log` / `hs.report` or of
`holysheep_lab.analysis`. It checks the columns
every method needs in `__init__` and holds nothing but the frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

import pandas as pd

from holysheep_lab.analysis import reprice as _rp
from holysheep_lab.analysis import spend as _sp
from holysheep_lab.analysis.anomalies import anomalies as _anomalies
from holysheep_lab.analysis.budgets import budget_status as _budget_status
from holysheep_lab.analysis.display import shown
from holysheep_lab.analysis.drift import cost_drift as _cost_drift
from holysheep_lab.analysis.forecast import backtest as _backtest
from holysheep_lab.analysis.forecast import forecast as _forecast
from holysheep_lab.analysis.plot import Plot
from holysheep_lab.core.budget import Budget
from holysheep_lab.core.pricing import RELAY_COST_TOLERANCE, PriceTable
from holysheep_lab.core.runaway import GROWTH_MIN_CALLS, GROWTH_MIN_FACTOR, GROWTH_MIN_INCREASING, GROWTH_MIN_TOKENS

__all__ = ["REQUIRED_COLUMNS", "HolySheepAccessor"]

#: Columns every call log has; methods that need more (latency_ms, conversation_id, ...)
#: name what is missing when called.
REQUIRED_COLUMNS = ("ts", "model", "status", "cost_usd")


@pd.api.extensions.register_dataframe_accessor("hs")
class HolySheepAccessor:
    """Spend analytics on a call-log DataFrame: ``df.hs.daily()``, ``df.hs.forecast()``, ...

    Every method returns a new tidy DataFrame (see the function of the same name in
    `holysheep_lab.analysis.spend` / `.forecast` for its columns) that displays money, shares and
    milliseconds readably, its values exact (`holysheep_lab.analysis.display`). `tz` is the IANA
    zone of calendar days and months (None = local), as for budgets.
    """

    __slots__ = ("_df",)

    def __init__(self, df: pd.DataFrame) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            # AttributeError is what pandas expects from a failing accessor.
            raise AttributeError(
                f"df.hs needs the call-log column(s) {', '.join(missing)}; this DataFrame lacks "
                "them. Read the log with hs.read_log(path)."
            )
        self._df = df

    def __repr__(self) -> str:
        return f"<df.hs accessor: {len(self._df)} calls>"

    @property
    def plot(self) -> Plot:
        """The charts of this log (offline, interactive): see `holysheep_lab.analysis.plot`."""
        return Plot(self._df)

    def daily(self, by: str | None = None, tz: str | tzinfo | None = None) -> pd.DataFrame:
        """Spend per local day (optionally per `by` label): see `spend.daily`."""
        return shown(_sp.daily(self._df, by=by, tz=tz))

    def monthly(self, by: str | None = None, tz: str | tzinfo | None = None) -> pd.DataFrame:
        """Spend per calendar month: see `spend.monthly`."""
        return shown(_sp.monthly(self._df, by=by, tz=tz))

    def by_model(self) -> pd.DataFrame:
        """Totals per model: see `spend.by`."""
        return shown(_sp.by_model(self._df))

    def by(self, column: str) -> pd.DataFrame:
        """Totals per value of `column`: see `spend.by`."""
        return shown(_sp.by(self._df, column))

    def latency(self, by: str | None = "model") -> pd.DataFrame:
        """p50/p95/p99 latency per group: see `spend.latency`."""
        return shown(_sp.latency(self._df, by=by))

    def tokens_per_call(self, by: str | None = "model") -> pd.DataFrame:
        """Token use per answered call: see `spend.tokens_per_call`."""
        return shown(_sp.tokens_per_call(self._df, by=by))

    def error_rates(self, by: str | None = "model") -> pd.DataFrame:
        """Error, blocked and retry rates: see `spend.error_rates`."""
        return shown(_sp.error_rates(self._df, by=by))

    def burn_rate(self, now: datetime | None = None, tz: str | tzinfo | None = None) -> pd.DataFrame:
        """Spend rate over trailing and calendar periods: see `spend.burn_rate`."""
        return shown(_sp.burn_rate(self._df, now=now, tz=tz))

    def budget_status(self, budget: Budget, now: datetime | None = None) -> pd.DataFrame:
        """Spent, remaining, flags, projection and run-out date per budget line: see
        `budgets.budget_status` (the same columns as ``client.budget_status()``)."""
        return shown(_budget_status(self._df, budget, now=now))

    def context_growth(
        self, min_calls: int = GROWTH_MIN_CALLS, min_growth: float = GROWTH_MIN_FACTOR,
        min_increasing: float = GROWTH_MIN_INCREASING, min_tokens: int = GROWTH_MIN_TOKENS,
    ) -> pd.DataFrame:
        """Conversations whose prompt keeps growing: see `spend.context_growth`."""
        return shown(_sp.context_growth(self._df, min_calls=min_calls, min_growth=min_growth,
                                        min_increasing=min_increasing, min_tokens=min_tokens))

    def anomalies(self, tz: str | tzinfo | None = None, now: datetime | None = None, **options: Any) -> pd.DataFrame:
        """Growing conversations, retry storms and spend days off the forecast band, one row
        each: see `anomalies.anomalies` (its options pass through)."""
        return shown(_anomalies(self._df, tz=tz, now=now, **options))

    def forecast(
        self,
        days: int = 30,
        tz: str | tzinfo | None = None,
        budget: Budget | None = None,
        interval: float = 0.9,
        now: datetime | None = None,
    ) -> pd.DataFrame:
        """Daily spend forecast (date, yhat, lo, hi) with month-end projection and
        budget-exhaustion date in ``.attrs``: see `forecast.forecast`."""
        return shown(_forecast(self._df, days=days, tz=tz, budget=budget, interval=interval, now=now))

    def backtest(
        self, horizon: int = 14, min_train: int = 28, step: int = 1, tz: str | tzinfo | None = None
    ) -> pd.DataFrame:
        """Rolling-origin backtest vs the two naive baselines: see `forecast.backtest`."""
        return shown(_backtest(self._df, horizon=horizon, min_train=min_train, step=step, tz=tz))

    # -- prices (issue 11): see `reprice` and `drift` ------------------------------------------

    def reprice(self, table: PriceTable | Mapping[str, Any]) -> pd.DataFrame:
        """This log with its costs recomputed under `table` (a PriceTable, or a dict of
        hs.Price: only those models), plus `repriced`: see `reprice.reprice`."""
        return shown(_rp.reprice(self._df, table))

    def what_if(self, model: str, table: PriceTable | Mapping[str, Any] | None = None, *,
                instead_of: str | Sequence[str] | None = None) -> pd.DataFrame:
        """This log as if its calls had gone to `model` (same tokens): see `reprice.what_if`."""
        return shown(_rp.what_if(self._df, model, table, instead_of=instead_of))

    def compare_models(self, models: Sequence[str] | Mapping[str, Any],
                       table: PriceTable | Mapping[str, Any] | None = None, *,
                       instead_of: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Total cost of this log on each of `models`: see `reprice.compare_models`."""
        return shown(_rp.compare_models(self._df, models, table, instead_of=instead_of))

    def cost_drift(self, tolerance: float = RELAY_COST_TOLERANCE) -> pd.DataFrame:
        """Calls whose relay-reported cost differs from ours above `tolerance`: see `drift.cost_drift`."""
        return shown(_cost_drift(self._df, tolerance))

    def report(self, budget: Budget | None = None, title: str | None = None,
               tz: str | tzinfo | None = None) -> Any:
        """The spend report, a self-contained HTML page: see `holysheep_lab.reports.html.report`."""
        from holysheep_lab.reports.html import report

        return report(self._df, budget=budget, title=title, tz=tz)
