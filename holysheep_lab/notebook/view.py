"""What a budget meter shows, as plain values (pure: no widgets, no I/O).

`meter_state(metering)` reads in-memory totals only (ledger snapshot, the last-minute counter,
the alert manager's last alert, the experiments' tallies), never Parquet; the widget and its
static HTML twin both render from it, so what a notebook shows and what an exported page show agree.

Experiments (`client.experiment(...)`) show as lines of their own, after the budget windows:
spent, in flight, budget, calls, refusals, live while the block runs. An experiment has no
reset (its budget is for one run): its line's `resets_at` is None. When the block ends the line
stays, marked done, with the run's final figures, until the same name runs again (its new run
takes the line). `SeenExperiments` remembers which runs a meter has seen. A notebook cell's scope
(`%hs_budget`) has no line: the extension prints its summary under the cell.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from holysheep_lab.alerts.model import DEFAULT_LEVELS, Level, format_time
from holysheep_lab.core.display import NO_MATH, format_usd
from holysheep_lab.core.money import NANOS_PER_USD, nanos_to_usd
from holysheep_lab.core.pace import reached_at
from holysheep_lab.core.scopes import CallScope, context_for, open_scopes

if TYPE_CHECKING:
    from holysheep_lab.core.metering import Metering

__all__ = [
    "EXPERIMENT_WINDOW",
    "MAX_RUNAWAYS",
    "NO_LIMIT_COLOUR",
    "OK_COLOUR",
    "LineState",
    "MeterState",
    "SeenExperiments",
    "describe",
    "experiment_line",
    "level_for",
    "meter_state",
    "render_html",
]

OK_COLOUR = "#2ecc71"  # under every level
NO_LIMIT_COLOUR = "#95a5a6"
#: The `window` of an experiment's line (as `BudgetExceededError.window` names it).
EXPERIMENT_WINDOW = "experiment"


@dataclass(frozen=True, slots=True)
class LineState:
    """One budget line as shown: amounts in USD, `level` None below the first level.

    `resets_at` is when a calendar window starts afresh; None for a line that never resets (an
    experiment). `calls` and `refused` are an experiment's (None and 0 for a window), `done`
    whether its block has ended (the figures are then final)."""

    scope: str
    window: str
    spent: float
    reserved: float
    limit: float | None
    remaining: float | None
    ratio: float | None
    level: Level | None
    blocking: bool
    resets_at: datetime | None
    calls: int | None = None
    refused: int = 0
    done: bool = False
    blocked_at: datetime | None = None  # when the current pace reaches the block line, if before the reset

    @property
    def key(self) -> tuple[str, str]:
        return (self.scope, self.window)

    @property
    def label(self) -> str:
        if self.window == EXPERIMENT_WINDOW:
            return f"experiment {self.scope.removeprefix('experiment:')}"
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
        """One line of text: amounts, per cent, in flight, remaining, reset time (an experiment:
        its calls and refusals, and whether it runs or is done)."""
        if self.resets_at is not None:
            resets = f"resets {format_time(self.resets_at)}"
            if self.blocked_at is not None:
                resets = f"at this pace blocked {format_time(self.blocked_at)} · {resets}"
        else:
            refused = f", {self.refused:,} refused" if self.refused else ""
            calls = self.calls or 0
            resets = f"{calls:,} call{'' if calls == 1 else 's'}{refused} · {'done' if self.done else 'running'}"
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
    runaways: tuple[str, ...] = ()  # what `core.runaway` found: one sentence each, the costliest first

    @property
    def footer(self) -> str:
        alert = self.last_alert or "none"
        text = f"last minute: {self.recent_calls} calls, {format_usd(self.recent_cost)} · last alert: {alert}"
        return "".join([text, *(f" · runaway: {r}" for r in self.runaways)])


#: Runaways a meter names at most (the costliest).
MAX_RUNAWAYS = 3


def level_for(ratio: float | None, levels: Sequence[Level], alert_at: float | None = None) -> Level | None:
    """The highest level reached; the budget's soft limit (`alert_at`) counts as WARNING at least."""
    if ratio is None:
        return None
    reached = [lv for lv in levels if ratio >= lv.threshold]
    level = reached[-1] if reached else None
    if alert_at is not None and ratio >= alert_at and (level is None or level.threshold < Level.WARNING.threshold):
        level = Level.WARNING
    return level


def experiment_line(scope: CallScope, levels: Sequence[Level], *, done: bool) -> LineState:
    """An experiment's line from its scope's numbers now (`done`: its block has ended)."""
    s = scope.snapshot()
    spent, reserved = nanos_to_usd(s.spent_nanos), nanos_to_usd(s.reserved_nanos)
    limit = ratio = remaining = None
    blocking = False
    if s.limit_nanos is not None:
        limit = nanos_to_usd(s.limit_nanos)
        ratio = s.spent_nanos / s.limit_nanos
        remaining = nanos_to_usd(max(0, s.limit_nanos - s.spent_nanos - s.reserved_nanos))
        blocking = s.spent_nanos + s.reserved_nanos >= s.limit_nanos  # its limit is its block line
    return LineState(s.scope, EXPERIMENT_WINDOW, spent, reserved, limit, remaining, ratio, level_for(ratio, levels),
                     blocking, None, calls=s.calls, refused=s.refused, done=done)


class SeenExperiments:
    """The experiment runs a meter shows: the latest run of each name it has seen.

    A run is seen when the meter refreshes while it is open (`note_open`) or when one of its calls
    ends (`note_call`, from the Metering's listener on the calling thread, in the call's context),
    so a run shorter than the refresher's throttle still gets its line."""

    def __init__(self, metering: Metering) -> None:
        self._owner = metering
        self._lock = threading.Lock()
        self._runs: dict[str, CallScope] = {}

    def _note(self, scopes: Iterable[CallScope]) -> None:
        for s in scopes:
            if s.kind == "experiment" and self._runs.get(s.scope) is not s:
                with self._lock:
                    self._runs[s.scope] = s

    def note_call(self) -> None:
        """Note the experiments the call just ended was made in (cheap: a contextvar read)."""
        self._note(context_for(self._owner).scopes)

    def note_open(self) -> list[CallScope]:
        """Note the experiments open now; returns them."""
        now = [s for s in open_scopes(self._owner) if s.kind == "experiment"]
        self._note(now)
        return now

    def runs(self) -> list[CallScope]:
        """The latest run of each experiment seen, in the order first seen."""
        with self._lock:
            return list(self._runs.values())


def _recent(metering: Metering) -> tuple[int, float]:
    calls, nanos = metering.pace.recent()  # thread-safe: the loop thread adds while we read
    return calls, nanos / NANOS_PER_USD


def meter_state(metering: Metering, experiments: SeenExperiments | None = None) -> MeterState:
    """Read the Metering's in-memory totals (ledger snapshot, recent calls, last alert), and the
    numbers of the `experiments` runs (open ones first noted)."""
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
    rate = metering.pace.rate()
    usd_rate = rate / NANOS_PER_USD if rate is not None else None
    now = metering.clock().astimezone(metering.guard.zone)
    for ln in ledger_status(metering):
        key = (ln["scope"], ln["window"])
        ratio = ln["used"]
        limit_block = block.get(key)
        used = ln["spent_usd"] + ln["reserved_usd"]
        blocking = limit_block is not None and used >= limit_block
        resets = ln["window_end"].astimezone(metering.guard.zone)
        # The pace is this process's, of all its calls: a projection for the global lines only.
        blocked_at = (reached_at(used, limit_block, usd_rate, now, resets)
                      if limit_block is not None and ln["scope"] == "global" else None)
        out.append(LineState(ln["scope"], ln["window"], ln["spent_usd"], ln["reserved_usd"], ln["limit_usd"],
                             ln["remaining_usd"], ratio, level_for(ratio, levels, soft.get(key)), blocking,
                             resets, blocked_at=blocked_at))
    if experiments is not None:
        running = experiments.note_open()
        out += [experiment_line(s, levels, done=not any(s is r for r in running)) for s in experiments.runs()]
    calls, cost = _recent(metering)
    last = alerts.last_alert if alerts is not None else None
    runaways = tuple(r.detail for r in metering.runaways.findings()[:MAX_RUNAWAYS])
    return MeterState(tuple(out), calls, cost, last.title if last is not None else None, runaways)


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
