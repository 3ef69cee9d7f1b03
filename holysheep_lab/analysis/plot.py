"""`df.hs.plot`: the charts of a call log, one method each.

Every method returns an altair chart (from `holysheep_lab.analysis.charts`) that displays
offline by itself: interactive, with dollar axes and tooltips, and a static SVG for viewers that
run no scripts. The same objects go into reports and dashboards.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from holysheep_lab.analysis import charts as _charts
from holysheep_lab.analysis.forecast import forecast as _forecast
from holysheep_lab.core.budget import Budget
from holysheep_lab.errors import ConfigError, HolySheepError

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

__all__ = ["Plot"]


class Plot:
    """Charts of one call-log frame: ``df.hs.plot.daily()``, ``.by_model()``, ``.by("experiment")``,
    ``.cumulative(budget=...)``, ``.forecast()``, ``.latency()``, ``.model_share()``."""

    __slots__ = ("_df",)

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def __repr__(self) -> str:
        return f"<df.hs.plot: {len(self._df)} calls; daily, by_model, by, cumulative, forecast, latency, model_share>"

    def daily(self, by: str = "model", tz: str | tzinfo | None = None, top: int = 6) -> alt.Chart:
        """Spend per day, stacked by `by` (the `top` costliest labels, the rest as 'other')."""
        return _charts.daily_spend_chart(self._df, tz=tz, by=by, top=top)

    def by(self, column: str, top: int = 12) -> alt.Chart:
        """Spend per value of `column` (project, experiment, notebook_cell, status...), costliest first."""
        return _charts.by_chart(self._df, column, top=top)

    def by_model(self, top: int = 12) -> alt.Chart:
        """Spend per model, costliest first (tooltips: calls, share, cost per call, tokens)."""
        return _charts.by_chart(self._df, "model", top=top)

    def cumulative(self, budget: Budget | None = None, tz: str | tzinfo | None = None, forecast: bool = True,
                   now: datetime | None = None) -> alt.LayerChart:
        """This month's spend so far, continued by the forecast to the month's end (when the log
        has enough history), against the monthly limit and block line of `budget`."""
        _check_budget(budget)
        zone = tz if tz is not None else (budget.zone if budget is not None else None)
        fc = self._forecast(days=31, tz=zone, budget=budget, now=now) if forecast else None
        return _charts.cumulative_chart(self._df, budget, fc, tz=zone)

    def forecast(self, days: int = 30, tz: str | tzinfo | None = None, budget: Budget | None = None,
                 interval: float = 0.9, history: int = 60, now: datetime | None = None) -> alt.LayerChart:
        """The last `history` days of spend and the next `days` days' forecast with its band."""
        _check_budget(budget)
        zone = tz if tz is not None else (budget.zone if budget is not None else None)
        fc = _forecast(self._df, days=days, tz=zone, budget=budget, interval=interval, now=now)
        return _charts.forecast_chart(self._df, fc, tz=zone, history=history)

    def latency(self, bins: int = 40) -> alt.Chart:
        """The latency distribution per model (share of calls per log-spaced bin)."""
        return _charts.latency_chart(self._df, bins=bins)

    def model_share(self, tz: str | tzinfo | None = None, top: int = 6) -> alt.Chart:
        """Each model's share of spend, week by week."""
        return _charts.model_share_chart(self._df, tz=tz, top=top)

    def _forecast(self, *, days: int, tz: str | tzinfo | None, budget: Budget | None,
                  now: datetime | None) -> pd.DataFrame | None:
        if not len(self._df):
            return None
        try:
            return _forecast(self._df, days=days, tz=tz, budget=budget, now=now)
        except HolySheepError:
            return None  # nothing to forecast from (no priced call): the chart shows what was spent


def _check_budget(budget: Budget | None) -> None:
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be hs.Budget(...), not {type(budget).__name__}.")
