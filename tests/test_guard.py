"""The headline promise: budgets never overshoot, under concurrency and across processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from _support.other_process import call_from_another_process

import holysheep_lab as hs
from holysheep_lab.core.budget import Budget
from holysheep_lab.core.guard import Guard
from holysheep_lab.ledger import MemoryLedger
from holysheep_lab.log import read_table


def test_guard_refuses_exactly_at_the_block_limit():
    # $1 x 0.5 = 500,000,000 nanos
    guard = Guard(Budget(daily=1, monthly=None, alert_at=0.5, block_at=0.5, tz="UTC"), MemoryLedger())
    guard.reserve("a", 300_000_000)
    guard.reserve("b", 200_000_000)  # exactly at the limit: allowed
    with pytest.raises(hs.BudgetExceededError) as info:
        guard.reserve("c", 1)
    assert info.value.reserved == Decimal("0.5") and info.value.spent == 0


def test_settle_and_release_move_money_and_emit_events():
    guard = Guard(Budget(daily=1, monthly=10, tz="UTC"), MemoryLedger())
    res = guard.reserve("a", 400_000_000)
    events = guard.settle(res, 123_000_000)
    assert {(e.scope, e.window) for e in events} == {("global", "daily"), ("global", "monthly")}
    ev = next(e for e in events if e.window == "daily")
    assert (ev.before, ev.after, ev.limit) == (Decimal(0), Decimal("0.123"), Decimal(1))
    assert guard.settle(res, 999) == []  # settling twice is a no-op
    res2 = guard.reserve("b", 100)
    guard.release(res2)
    states = guard.ledger.snapshot(list(guard.buckets().values()))
    assert all(s.reserved == 0 for s in states.values())


def test_windows_follow_the_budget_zone_across_dst():
    now = datetime(2026, 10, 25, 22, 30, tzinfo=UTC)  # 23:30 local on the 25-hour Berlin day
    guard = Guard(Budget(daily=1, tz="Europe/Berlin"), MemoryLedger(), clock=lambda: now)
    res = guard.reserve("a", 1)
    keys = sorted(c.bucket for _, c, _, _ in res.lines)
    assert keys == ["global|day:2026-10-25", "global|month:2026-10"]
    day_end = next(end for line, _, _, end in res.lines if line.window.value == "daily")
    assert day_end == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)


async def test_400_concurrent_calls_never_overshoot(log_dir):
    limit = Decimal("0.20")
    with hs.Simulator(latency=0.005) as sim:
        client = hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=limit, monthly=None, block_at=0.95))
        prompts = [f"request {i} " + "lorem " * (i % 50) for i in range(400)]
        results = await asyncio.gather(
            *(client.achat("claude-sonnet-4.5", p, max_tokens=200) for p in prompts), return_exceptions=True
        )
        await client.aclose()
        completed = sim.completed
        received = sim.requests
    ok = [r for r in results if isinstance(r, hs.ChatResult)]
    refused = [r for r in results if isinstance(r, hs.BudgetExceededError)]
    assert len(ok) + len(refused) == 400, [r for r in results if not isinstance(r, (hs.ChatResult, hs.BudgetExceededError))][:3]
    assert ok and refused
    spent = sum(Decimal(r.record.cost_nanos) for r in ok) / 10**9
    assert spent <= limit * Decimal("0.95")
    assert received == completed == len(ok)  # refused calls never reached the server
    table = read_table(log_dir)
    statuses = table.column("status").to_pylist()
    assert statuses.count("ok") == len(ok) and statuses.count("blocked") == len(refused)
    assert set(table.column("call_id").to_pylist()) >= {r.call_id for r in ok}


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import holysheep_lab as hs
    base_url, log_dir, ledger_path, limit = sys.argv[1:5]

    async def main():
        client = hs.Client(base_url=base_url, log_dir=log_dir, ledger=hs.SQLiteLedger(ledger_path),
                           budget=hs.Budget(daily=float(limit), monthly=None))
        rs = await asyncio.gather(*(client.achat("gpt-4.1", "hello " * (i % 40), max_tokens=150)
                                    for i in range(100)), return_exceptions=True)
        await client.aclose()
        ok = [r.record.cost_nanos for r in rs if isinstance(r, hs.ChatResult)]
        other = [type(r).__name__ for r in rs if not isinstance(r, (hs.ChatResult, hs.BudgetExceededError))]
        print(json.dumps({"ok": len(ok), "nanos": sum(ok), "other": other}))

    asyncio.run(main())
    """
)


def test_four_processes_share_one_sqlite_budget(log_dir, tmp_path):
    limit = 0.05
    ledger_path = tmp_path / "ledger.sqlite"
    with hs.Simulator(latency=0.002) as sim:
        procs = [
            subprocess.Popen([sys.executable, "-c", CHILD, sim.base_url, str(log_dir), str(ledger_path), str(limit)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        completed = sim.completed
    reports = []
    for (out, err), p in zip(outs, procs, strict=True):
        assert p.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["other"] == [] for r in reports)
    total = sum(r["nanos"] for r in reports)
    assert total <= int(limit * 0.95 * 10**9)
    assert sum(r["ok"] for r in reports) == completed > 0
    table = read_table(log_dir)
    assert table.column("status").to_pylist().count("ok") == completed
    assert len(set(table.column("call_id").to_pylist())) == table.num_rows == 400


def test_second_process_blocks_at_once_when_today_is_spent(log_dir):
    budget = dict(daily=0.01, monthly=None)
    with hs.Simulator() as sim:
        with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(**budget)) as c:
            while True:
                try:
                    c.chat("claude-sonnet-4.5", "word " * 60, max_tokens=60)
                except hs.BudgetExceededError:
                    break
        before = sim.requests
        out = call_from_another_process(sim.base_url, log_dir, daily=0.01, model="claude-sonnet-4.5",
                                        prompt="word " * 60, max_tokens=60)
        assert out.stdout.strip() == "BLOCKED daily", out.stderr[-2000:]
        assert sim.requests == before


def test_alerts_rearm_on_a_new_day_across_dst_and_month_end(log_dir):
    """The same levels fire again in the next window: a 25-hour DST day, then a new month."""
    from datetime import timedelta

    now = [datetime(2026, 10, 24, 21, 30, tzinfo=UTC)]  # 23:30 on Oct 24 in Berlin
    fired = []
    alerts = hs.AlertManager(channels=[hs.CallbackChannel(lambda a: fired.append((a.level.name, a.window_key)))],
                             cooldown=0)
    budget = hs.Budget(daily=0.01, monthly=None, tz="Europe/Berlin", alert_at=1.0, block_at=1.0)
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget, alerts=alerts,
                                          clock=lambda: now[0]) as c:
        def spend_until_refused():
            for _ in range(100):
                try:
                    c.chat("gpt-4.1", "word " * 30, max_tokens=40)
                except hs.BudgetExceededError:
                    return
        spend_until_refused()
        now[0] = datetime(2026, 10, 25, 22, 59, tzinfo=UTC)  # 23:59 on the 25-hour day (CET again)
        spend_until_refused()
        now[0] += timedelta(minutes=2)  # 00:01 on Oct 26: a new day
        spend_until_refused()
        now[0] = datetime(2026, 10, 31, 22, 59, tzinfo=UTC)  # 23:59 on Oct 31
        spend_until_refused()
        now[0] += timedelta(minutes=2)  # 00:01 on Nov 1: a new day and month
        spend_until_refused()
        alerts.flush(5)
    by_day = {}
    for level, key in fired:
        by_day.setdefault(key, []).append(level)
    assert list(by_day) == ["day:2026-10-24", "day:2026-10-25", "day:2026-10-26", "day:2026-10-31", "day:2026-11-01"]
    for levels in by_day.values():
        # the worst-case estimate stops spending above ~80 %: INFO and WARNING, each once a day
        assert levels[:2] == ["INFO", "WARNING"] and len(levels) == len(set(levels))
