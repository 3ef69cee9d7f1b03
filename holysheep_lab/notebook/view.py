"""What a budget meter shows, as plain values (pure: no widgets, no I/O).

`meter_state(metering)` reads in-memory totals only (ledger snapshot, the last-minute counter,
the alert manager's last alert), never Parquet; the widget and its static HTML twin both
render from it, so what a notebook shows and what an exported page shows agree.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from holysheep_lab.alerts.model import DEFAULT_LEVELS, Level, format_time
from holysheep_lab.core.display import NO_MATH, format_usd
from holysheep_lab.core.money import NANOS_PER_USD

if TYPE_CHECKING:
    from holysheep_lab.core.metering import Metering

__all__ = [
    "NO_LIMIT_COLOUR",
    "OK_COLOUR",
    "LineState",
    "MeterState",
    "describe",
    "level_for",
    "meter_state",
    "render_html",
]

OK_COLOUR = "#2ecc71"  # under every level
NO_LIMIT_COLOUR = "#95a5a6"


@dataclass(frozen=True, slots=True)
class LineState:
    """One budget line as shown: amounts in USD, `level` None below the first level."""

    scope: str
    window: str
    spent: float
    reserved: float
    limit: float | None
    remaining: float | None
    ratio: float | None
    level: Level | None
    blocking: bool
    resets_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.scope, self.window)

    @property
    def label(self) -> str:
        scope = "" if self.scope == "global" else f" {self.scope.removeprefix('project:')}"
        return f"{self.window}{scope}"

    @property
    def percent(self) -> float:
        return round(min(self.ratio or 0.0, 1.0) * 100, 1)

    @property
    def colour(self) -> str:
        if self.limit is None:
            return NO_LIMIT_COLOUR
        return f"#{self.level.colour:06x}" if self.level is not None else OK_COLOUR

    @property
    def detail(self) -> str:
        """One line of text: amounts, per cent, in flight, remaining, reset time."""
        resets = f"resets {format_time(self.resets_at)}"
        if self.limit is None:
            return f"{format_usd(self.spent)} spent · {format_usd(self.reserved)} in flight · no limit · {resets}"
        level = f" {self.level.name}" if self.level is not None else ""
        block = " · BLOCKING" if self.blocking else ""
        return (f"{format_usd(self.spent)} of {format_usd(self.limit)} · {(self.ratio or 0) * 100:.1f}%{level} · "
                f"{format_usd(self.reserved)} in flight · {format_usd(self.remaining or 0)} left{block} · {resets}")


@dataclass(frozen=True, slots=True)
class MeterState:
    """Everything a meter shows at one moment."""

    lines: tuple[LineState, ...]
    recent_calls: int
    recent_cost: float
    last_alert: str | None

    @property
    def footer(self) -> str:
        alert = self.last_alert or "none"
        return f"last minute: {self.recent_calls} calls, {format_usd(self.recent_cost)} · last alert: {alert}"


def level_for(ratio: float | None, levels: Sequence[Level], alert_at: float | None = None) -> Level | None:
    """The highest level reached; the budget's soft limit (`alert_at`) counts as WARNING at least."""
    if ratio is None:
        return None
    reached = [lv for lv in levels if ratio >= lv.threshold]
    level = reached[-1] if reached else None
    if alert_at is not None and ratio >= alert_at and (level is None or level.threshold < Level.WARNING.threshold):
        level = Level.WARNING
    return level


def _recent(metering: Metering) -> tuple[int, float]:
    calls, nanos = metering.recent.totals()  # thread-safe: the loop thread adds while we read
    return calls, nanos / NANOS_PER_USD


def meter_state(metering: Metering) -> MeterState:
    """Read the Metering's in-memory totals (ledger snapshot, recent calls, last alert)."""
    from holysheep_lab.reports.budget import ledger_status

    alerts = metering.alerts
    levels: Sequence[Level] = alerts.levels if alerts is not None else DEFAULT_LEVELS
    budget = metering.budget
    soft: dict[tuple[str, str], float] = {}
    block: dict[tuple[str, str], float] = {}
    if budget is not None:
        for limit in budget.all_lines():
            soft[(limit.scope, limit.window.value)] = limit.alert_at
            block[(limit.scope, limit.window.value)] = limit.block_nanos / NANOS_PER_USD
    out = []
    for ln in ledger_status(metering):
        key = (ln["scope"], ln["window"])
        ratio = ln["used"]
        limit_block = block.get(key)
        blocking = limit_block is not None and ln["spent_usd"] + ln["reserved_usd"] >= limit_block
        out.append(LineState(ln["scope"], ln["window"], ln["spent_usd"], ln["reserved_usd"], ln["limit_usd"],
                             ln["remaining_usd"], ratio, level_for(ratio, levels, soft.get(key)), blocking,
                             ln["window_end"].astimezone(metering.guard.zone)))
    calls, cost = _recent(metering)
    last = alerts.last_alert if alerts is not None else None
    return MeterState(tuple(out), calls, cost, last.title if last is not None else None)


def render_html(state: MeterState, title: str = "holysheep budget") -> str:
    """A static HTML twin of the widget (for exported notebooks and viewers without widgets)."""
    rows = []
    for ln in state.lines:
        rows.append(
            f"<div class='hs-meter-line' data-scope='{html.escape(ln.scope, quote=True)}' data-window='{ln.window}' "
            f"data-percent='{ln.percent}' style='display:flex;align-items:center;gap:8px;margin:2px 0'>"
            f"<span style='width:9em'>{html.escape(ln.label)}</span>"
            f"<span style='width:220px;height:12px;background:#eee;border-radius:3px;overflow:hidden'>"
            f"<span style='display:block;height:100%;width:{ln.percent}%;background:{ln.colour}'></span></span>"
            f"<span style='font-size:90%'>{html.escape(ln.detail)}</span></div>"
        )
    return (f"<div class='hs-meter {NO_MATH}' style='font-family:system-ui,sans-serif'><b>{html.escape(title)}</b>"
            + "".join(rows) + f"<div class='hs-meter-footer' style='color:#555;font-size:90%'>"
            f"{html.escape(state.footer)}</div></div>")


def describe(state: MeterState) -> str:
    """A one-line text summary (the meter's text/plain form)."""
    parts = [f"{ln.label} {ln.percent:.0f}%" if ln.limit is not None else f"{ln.label} {format_usd(ln.spent)}"
             for ln in state.lines]
    return "BudgetMeter(" + ", ".join(parts) + ")"
