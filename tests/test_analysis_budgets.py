"""Budget status, one concept: the same columns and rules from the ledger (client.budget_status())
and from a call log (df.hs.budget_status()); holysheep_lab.reports.budget, holysheep_lab.analysis.budgets."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import holysheep_lab as hs
from holysheep_lab.core.budget import Budget, Window
from holysheep_lab.reports.budget import BUDGET_STATUS_COLUMNS, line_status

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(days=1)


def test_line_status_rules():
    (line,) = Budget(daily=10, monthly=None, alert_at=0.5, block_at=0.9).lines()
    s = line_status("global", Window.DAY, START, END, line, spent_usd=4.0, reserved_usd=5.5)
    assert tuple(s) == BUDGET_STATUS_COLUMNS
    assert (s["limit_usd"], s["alert_usd"], s["block_usd"]) == (10.0, 5.0, pytest.approx(9.0))
    assert s["remaining_usd"] == pytest.approx(0.5)  # what new calls may still take: minus in flight
    assert s["used"] == pytest.approx(0.4) and not s["alert"]  # settled spend only
    assert s["blocked"]  # 4 spent + 5.5 in flight is past the 9 USD refusal point
    over = line_status("global", Window.DAY, START, END, line, spent_usd=12.0)
    assert over["remaining_usd"] == 0.0 and over["used"] == pytest.approx(1.2)  # never negative
    assert over["alert"] and over["blocked"] and over["reserved_usd"] == 0.0
    free = line_status("global", Window.MONTH, START, END, None, spent_usd=3.0)
    assert free["limit_usd"] is free["remaining_usd"] is free["used"] is free["block_usd"] is None
    assert not free["alert"] and not free["blocked"] and free["projected_usd"] is None


def test_client_and_log_give_the_same_columns_and_numbers(log_dir):
    import pandas as pd

    import holysheep_lab.analysis  # noqa: F401  (df.hs)

    budget = hs.Budget(daily=0.05, monthly=None, alert_at=0.5, block_at=0.9, tz="UTC")
    with hs.Simulator(latency=0.5) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget) as c:
        c.chat("gpt-4.1", "hi", max_tokens=5)
        in_flight = threading.Thread(target=c.chat, args=("gpt-4.1", "again"), kwargs={"max_tokens": 500})
        in_flight.start()
        try:
            deadline = time.monotonic() + 5
            while True:  # the second call's worst case is reserved while the simulator answers
                lines = {(ln["scope"], ln["window"]): ln for ln in c.budget_status()}
                day = lines[("global", "daily")]
                if day["reserved_usd"] > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        finally:
            in_flight.join()
        assert day["reserved_usd"] > 0, "the call in flight never showed"
        assert day["remaining_usd"] == pytest.approx(max(0.0, 0.05 - day["spent_usd"] - day["reserved_usd"]))
        assert day["blocked"] == (day["spent_usd"] + day["reserved_usd"] >= day["block_usd"])
        month = lines[("global", "monthly")]  # no monthly limit: listed, with None limits
        assert month["limit_usd"] is None and month["remaining_usd"] is None and month["used"] is None
        settled = {(ln["scope"], ln["window"]): ln for ln in c.budget_status()}[("global", "daily")]
        now = datetime.now(UTC)
    assert all(tuple(ln) == BUDGET_STATUS_COLUMNS for ln in lines.values())
    frame = hs.read_log(log_dir).hs.budget_status(budget, now=now)
    assert tuple(frame.columns) == BUDGET_STATUS_COLUMNS
    row = frame.iloc[0]
    assert (row.scope, row.window) == ("global", "daily") and row.reserved_usd == 0.0
    for key in ("limit_usd", "alert_usd", "block_usd", "spent_usd", "remaining_usd", "used", "alert", "blocked"):
        assert row[key] == pytest.approx(settled[key], abs=1e-9), key  # the log holds what the ledger settled
    assert pd.Timestamp(settled["window_end"]) == row.window_end


def test_client_budget_status_does_not_import_pandas(tmp_path):
    code = f"""
import sys
import holysheep_lab as hs
with hs.Client(base_url="http://127.0.0.1:9/v1", api_key="k", log_dir={str(tmp_path)!r},
               budget=hs.Budget(daily=1, monthly=10)) as c:
    assert len(c.budget_status()) == 2
print('pandas' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "False"
