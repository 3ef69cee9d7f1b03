"""Budget status: where each budget line (scope x window) stands in its current window.

One concept, one set of columns (`BUDGET_STATUS_COLUMNS`), two sources:

* ``client.budget_status()`` -> a list of dicts, one per line, from the **ledger** (`ledger_status`):
  live, so `reserved_usd` holds the worst cases of calls in flight; no projection
  (`projected_usd` and `runs_out` are None). The global daily and monthly lines are always
  listed, with None limits when the budget has none. Pandas-free.
* ``df.hs.budget_status(budget)`` -> a DataFrame, from a **call log**
  (`holysheep_lab.analysis.budgets.budget_status`): settled calls only, so `reserved_usd` is 0,
  plus the projection to the window's end. One row per limit of the budget.

Both build their rows with `line_status`, which holds the rules:

* ``spent_usd``: settled spend in the window; ``reserved_usd``: in-flight reservations (>= 0);
* ``remaining_usd`` = max(0, limit - spent - reserved): what new calls may still take of the
  limit, never negative (overspend shows as ``used`` > 1); None without a limit;
* ``used`` = spent / limit; ``alert`` = used >= alert_at;
* ``blocked`` = spent + reserved >= ``block_usd`` (limit x block_at, the guard's refusal point):
  the guard refuses calls now;
* ``window_start``, ``window_end`` (UTC; the end is when the line resets), ``limit_usd``,
  ``alert_usd`` (limit x alert_at), ``block_usd``;
* ``projected_usd`` (expected spend at window end) and ``runs_out`` (local date the projection
  reaches block_usd) where a forecast was made, else None.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from holysheep_lab.core.budget import BudgetLine, Window, window_bounds, window_key
from holysheep_lab.core.money import NANOS_PER_USD
from holysheep_lab.ledger.base import bucket_name

if TYPE_CHECKING:
    from holysheep_lab.core.metering import Metering

__all__ = ["BUDGET_STATUS_COLUMNS", "ledger_status", "line_status"]

BUDGET_STATUS_COLUMNS = (
    "scope", "window", "window_start", "window_end", "limit_usd", "alert_usd", "block_usd",
    "spent_usd", "reserved_usd", "remaining_usd", "used", "alert", "blocked", "projected_usd", "runs_out",
)


def line_status(scope: str, window: Window, window_start: datetime, window_end: datetime,
                line: BudgetLine | None, spent_usd: float, reserved_usd: float = 0.0, *,
                projected_usd: float | None = None, runs_out: date | None = None) -> dict[str, Any]:
    """One row of `BUDGET_STATUS_COLUMNS` (see the module doc for the rules); `line` None: no limit."""
    limit = float(line.limit) if line is not None else None
    block = line.block_nanos / NANOS_PER_USD if line is not None else None
    used = spent_usd / limit if limit else None
    return {
        "scope": scope,
        "window": window.value,
        "window_start": window_start,
        "window_end": window_end,
        "limit_usd": limit,
        "alert_usd": limit * line.alert_at if line is not None and limit is not None else None,
        "block_usd": block,
        "spent_usd": spent_usd,
        "reserved_usd": reserved_usd,
        "remaining_usd": max(0.0, limit - spent_usd - reserved_usd) if limit is not None else None,
        "used": used,
        "alert": used is not None and line is not None and used >= line.alert_at,
        "blocked": block is not None and spent_usd + reserved_usd >= block,
        "projected_usd": projected_usd,
        "runs_out": runs_out,
    }


def ledger_status(metering: Metering) -> list[dict[str, Any]]:
    """What ``client.budget_status()`` returns: every budget line now, from the ledger.

    The global daily and monthly lines always (limit None without one), then each limited
    project line; columns and rules as in the module doc.
    """
    budget = metering.budget
    now = metering.clock()
    zone = metering.guard.zone
    lines = budget.all_lines() if budget else []
    keys = {(ln.scope, ln.window): bucket_name(ln.scope, window_key(ln.window, now, zone)) for ln in lines}
    for w in Window:
        keys.setdefault(("global", w), bucket_name("global", window_key(w, now, zone)))
    states = metering.ledger.snapshot(list(keys.values()))
    limits = {(ln.scope, ln.window): ln for ln in lines}
    out = []
    for (scope, window), bucket in keys.items():
        st = states[bucket]
        start, end = window_bounds(window, now, zone)
        out.append(line_status(scope, window, start, end, limits.get((scope, window)),
                               st.spent / NANOS_PER_USD, st.reserved / NANOS_PER_USD))
    return out
