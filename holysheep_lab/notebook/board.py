"""hs.dashboard: live meters, the latest alerts and the spend charts of the last days.

The meter's refresher (see `meter.py`) also redraws the alert list and the status line, so
they never lag the meter; the charts are redrawn from the log by the Refresh button (set as
the Output widget's outputs, so no output capture is involved). When the client
closes, the dashboard's outputs become a static snapshot (meters, status, alerts, charts).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holysheep_lab.core.budget import Budget
from holysheep_lab.core.display import NO_MATH, format_usd
from holysheep_lab.errors import ConfigError, HolySheepError
from holysheep_lab.notebook.meter import BudgetMeter
from holysheep_lab.notebook.render import chart_bundle
from holysheep_lab.notebook.view import MeterState
from holysheep_lab.notebook.widgets import forget, freeze_at_exit, require_ipywidgets

if TYPE_CHECKING:
    import pandas as pd

    from holysheep_lab.core.metering import Metered, Metering

__all__ = ["Dashboard", "dashboard", "latest_day"]


def latest_day(log_dir: Path) -> date | None:
    """The newest day with calls, from folder names (today if a journal holds rows): no reads."""
    from holysheep_lab.log.reader import partition_date

    if not log_dir.is_dir():
        return None
    days = [d for p in log_dir.iterdir() if (d := partition_date(p.name)) is not None]
    journals = log_dir / "_journal"
    if journals.is_dir() and any(f.stat().st_size for f in journals.iterdir() if f.is_file()):
        days.append(datetime.now().date())
    return max(days) if days else None


class Dashboard:
    """Meters (with a client), latest alerts, and daily spend and model-mix charts of the
    last `days` days with calls; `refresh()` (or the button) redraws from the log."""

    def __init__(self, source: Metered | Metering | str | Path, *, days: int = 14, budget: Budget | None = None) -> None:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise ConfigError(f"days must be a whole number in 1..366, not {days!r}.")
        w = require_ipywidgets()
        self.days = days
        self.meter: BudgetMeter | None = None
        self._metering: Metering | None = None
        if isinstance(source, (str, Path)):
            self.log_dir = Path(source)
            self.budget = budget
        else:
            self.meter = BudgetMeter(source)
            self._metering = self.meter.metering
            self.log_dir = self._metering.log_dir
            self.budget = budget or self._metering.budget
        self.button = w.Button(description="Refresh", icon="refresh", tooltip="Re-read the log and redraw")
        self.button.on_click(lambda _b: self.refresh())
        self.status = w.HTML()
        self.alerts = w.HTML()
        self.charts = w.Output()
        self.figures: list[Any] = []  # the charts last drawn
        self._chart_status = ""  # what the charts show (from the log, at the last Refresh)
        self._svgs: list[str] = []
        self._handles: list[Any] = []
        self._frozen = False
        top = [self.meter.box] if self.meter is not None else []
        self.box = w.VBox([*top, w.HBox([self.button, self.status]), w.HTML("<b>Latest alerts</b>"),
                           self.alerts, self.charts])
        self.refresh()
        if self.meter is not None:
            self.meter.on_refresh(self._live)  # the meter's refresher, not a second thread
            assert self._metering is not None
            self._metering.on_close(self.freeze)

    def _live(self, state: MeterState) -> None:
        """Alerts and status from in-memory totals (the meter's refresher calls this)."""
        self.alerts.value = self._alerts_html()
        self.status.value = self._status_html(state)

    def _status_html(self, state: MeterState | None) -> str:
        parts = [self._chart_status] if self._chart_status else []
        if state is not None:
            today = next((ln for ln in state.lines if ln.scope == "global" and ln.window == "daily"), None)
            if today is not None:
                parts.append(f"today {format_usd(today.spent)} spent, {format_usd(today.reserved)} in flight")
            parts.append(f"last minute {state.recent_calls} calls, {format_usd(state.recent_cost)}")
        return f"<span class='{NO_MATH}'>{' · '.join(html.escape(p) for p in parts)}</span>"

    def refresh(self) -> None:
        """Re-read the last days of the log; redraw alerts, status and charts."""
        self.alerts.value = self._alerts_html()
        self.figures = self._charts()
        self.status.value = self._status_html(self.meter.state if self.meter is not None else None)
        bundles = [chart_bundle(chart) for chart in self.figures]
        self._svgs = [b["image/svg+xml"] for b in bundles]  # drawn once: the snapshot reuses them
        # The outputs set as a trait, not captured with `with self.charts:` (which routes output
        # by message id: nbclient and other headless runners stall on it).
        self.charts.outputs = tuple({"output_type": "display_data", "data": bundle, "metadata": {}}
                                    for bundle in bundles)

    def _frame(self) -> pd.DataFrame | None:
        from holysheep_lab.log.reader import read_log

        last = latest_day(self.log_dir)
        if last is None:
            return None
        start = last - timedelta(days=self.days - 1)
        return read_log(self.log_dir, start=start.isoformat())

    def _charts(self) -> list[Any]:
        from holysheep_lab.analysis import charts

        try:
            df = self._frame()
        except HolySheepError as exc:
            self._chart_status = str(exc)
            return []
        if df is None or not len(df):
            self._chart_status = f"no calls logged under {self.log_dir} yet"
            return []
        tz = self.budget.zone if self.budget is not None else None
        self._chart_status = (f"{len(df):,} calls in the last {self.days} days with calls, "
                              f"{format_usd(float(df['cost_usd'].fillna(0).sum()))}")
        return [charts.daily_spend_chart(df, tz=tz), charts.model_share_chart(df, tz=tz)]

    def _alerts_html(self) -> str:
        alerts = self._metering.alerts if self._metering is not None else None
        if alerts is None:
            return "<i>no alert manager attached (hs.Client(alerts=hs.AlertManager(...)))</i>"
        recent = alerts.history[-5:][::-1]
        if not recent:
            return "<i>no alerts yet</i>"
        return f"<div class='{NO_MATH}'>" + "".join(a._repr_html_() for a in recent) + "</div>"

    def close(self) -> None:
        """Stop the meters; the outputs showing this dashboard become its snapshot."""
        if self.meter is not None:
            self.meter.close()
        self.freeze()

    def html(self) -> str:
        """A static snapshot: meters, status, alerts and the charts as SVG (no widgets, no network)."""
        parts = [self.meter._repr_mimebundle_()["text/html"]] if self.meter is not None else []
        parts.append(f"<div class='hs-dashboard-status'>{self.status.value}</div>")
        parts.append(f"<b>Latest alerts</b><div class='hs-dashboard-alerts'>{self.alerts.value}</div>")
        parts += [f"<div class='hs-dashboard-chart'>{svg}</div>" for svg in self._svgs]
        return f"<div class='hs-dashboard {NO_MATH}'>" + "".join(parts) + "</div>"

    def freeze(self) -> None:
        """Replace the outputs showing this dashboard by `html()` (see BudgetMeter.freeze)."""
        if self._frozen:
            return
        if self._metering is not None and self.meter is not None:
            self._live(self.meter.state)
        self._frozen = True
        forget(self)
        snapshot = {"text/html": self.html(), "text/plain": repr(self)}
        for handle in self._handles:
            handle.update(snapshot, raw=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self._frozen:
            return {"text/html": self.html(), "text/plain": repr(self)}
        bundle = dict(self.box._repr_mimebundle_(**kwargs) or {})
        bundle["text/html"] = self.html()  # viewers without the widgets' state show this
        bundle["text/plain"] = repr(self)
        return bundle

    def _ipython_display_(self) -> None:
        self._handles.append(_display_handle(self._repr_mimebundle_()))
        freeze_at_exit(self)  # a kernel shutdown or restart leaves the snapshot, not a dead widget

    def __repr__(self) -> str:
        return f"<Dashboard {str(self.log_dir)!r}, last {self.days} days{', live meters' if self.meter else ''}>"


def _display_handle(bundle: dict[str, Any]) -> Any:
    from IPython.display import display

    show: Callable[..., object] = display  # IPython leaves display() unannotated
    return show(bundle, raw=True, display_id=True)


def dashboard(client_or_log_dir: Metered | Metering | str | Path, *, days: int = 14,
              budget: Budget | None = None) -> Dashboard:
    """A dashboard for a client (live meters + its log) or a log folder (charts only)."""
    return Dashboard(client_or_log_dir, days=days, budget=budget)
