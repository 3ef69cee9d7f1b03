"""Helpers shared by the fail-closed tests: the ledger's day bucket and the logged rows."""

from __future__ import annotations

from typing import Any

import holysheep_lab as hs
from holysheep_lab.core.metering import Metering
from holysheep_lab.log import read_table


def day_state(metering: Metering) -> tuple[int, int]:
    """(spent, reserved) nanos in the global daily bucket of this metering's ledger."""
    bucket = metering.guard.buckets()[("global", "daily")]
    state = metering.ledger.snapshot([bucket])[bucket]
    return state.spent, state.reserved


def rows(log_dir: Any) -> list[dict[str, Any]]:
    return sorted(read_table(log_dir).to_pylist(), key=lambda r: (r["ts"], r["call_id"]))


def logged_nanos(log_dir: Any) -> int:
    return sum(r["cost_nanos"] or 0 for r in rows(log_dir))


def restarted_spent(log_dir: Any, budget: hs.Budget | None = None) -> int:
    """What a fresh client on this log folder believes was spent today (the log is the truth).
    Its own memory ledger: relearned from the log alone, not from the folder's shared ledger."""
    with hs.Client(base_url="http://127.0.0.1:9/v1", log_dir=log_dir, budget=budget, ledger=hs.MemoryLedger()) as fresh:
        return day_state(fresh.metering)[0]
