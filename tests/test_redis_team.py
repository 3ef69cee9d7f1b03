"""A team sharing one budget through Redis: 4 processes, one Redis, one log folder, one relay.

Each process is tests/_support/team_worker.py (an hs.Client on hs.RedisLedger), driven phase by
phase over stdin so an outage lands exactly between phases. Redis is a real redis-server on a
free loopback port, without persistence: SIGKILL loses its state, as a crash would, and the
clients must relearn the spend from the shared log. (The same 4 x 100 on one SQLite ledger is
tests/test_guard.py::test_four_processes_share_one_sqlite_budget.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from _support.redis_server import RedisServer, require_redis_server

import holysheep_lab as hs
from holysheep_lab.core.guard import Guard
from holysheep_lab.log import read_table

WORKER = Path(__file__).parent / "_support" / "team_worker.py"
BLOCK_AT = Decimal("0.95")


class Team:
    """N worker processes; `run({i: n})` makes worker i do n concurrent calls, all at once."""

    def __init__(self, n: int, base_url: str, log_dir: Path, redis_url: str, limit: float, *, fail_open: bool = False):
        self.procs = [
            subprocess.Popen([sys.executable, str(WORKER), base_url, str(log_dir), redis_url, str(limit),
                              "1" if fail_open else "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        for p in self.procs:
            self._expect(p, "ready")

    def _expect(self, p: subprocess.Popen, what: str | None = None) -> str:
        line = p.stdout.readline()
        if not line:
            p.wait(10)
            raise AssertionError(f"worker exited {p.returncode}: {p.stderr.read()[-3000:]}")
        if what is not None:
            assert line.strip() == what, line
        return line

    def run(self, counts: dict[int, int] | int) -> list[dict]:
        if isinstance(counts, int):
            counts = dict.fromkeys(range(len(self.procs)), counts)
        for i, n in counts.items():  # send every command first: the workers run concurrently
            self.procs[i].stdin.write(f"run {n}\n")
            self.procs[i].stdin.flush()
        return [json.loads(self._expect(self.procs[i])) for i in counts]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.stdin.write("quit\n")
                p.stdin.flush()
        for p in self.procs:
            try:
                assert p.wait(30) == 0, p.stderr.read()[-3000:]
            finally:
                if p.poll() is None:
                    p.kill()


@pytest.fixture
def redis():
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def sim():
    with hs.Simulator(latency=0.002) as s:
        yield s


def ok_nanos(reports: list[dict]) -> int:
    return sum(sum(r["ok"]) for r in reports)


def errors(reports: list[dict]) -> list[str]:
    return [e for r in reports for e in r["errors"]]


def day_state(redis_url: str, limit: float):
    """Spent and in-flight nanos of today's global bucket, read from Redis itself."""
    ledger = hs.RedisLedger(redis_url)
    try:
        guard = Guard(hs.Budget(daily=limit, monthly=None, block_at=0.95, tz="UTC"), ledger)
        (state,) = ledger.snapshot([b for b in guard.buckets().values() if "|day:" in b]).values()
        return state
    finally:
        ledger.close()


def logged(log_dir: Path) -> list[dict]:
    return read_table(log_dir).to_pylist()


def test_four_processes_share_one_redis_budget(redis, sim, log_dir):
    limit = 0.10
    team = Team(4, sim.base_url, log_dir, redis.url, limit)
    try:
        reports = team.run(100)
    finally:
        team.close()
    spent = ok_nanos(reports)
    answered = sum(len(r["ok"]) for r in reports)
    assert set(errors(reports)) == {"BudgetExceededError"}  # nothing else went wrong
    assert 0 < spent <= Decimal(limit) * BLOCK_AT * 10**9  # zero overshoot
    assert answered == sim.completed == sim.requests  # refused calls never reached the relay
    rows = logged(log_dir)
    ids = [r["call_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 400  # every call logged exactly once
    statuses = [r["status"] for r in rows]
    assert statuses.count("ok") == answered and statuses.count("blocked") == 400 - answered
    assert sum(r["cost_nanos"] for r in rows) == spent
    state = day_state(redis.url, limit)
    assert (state.spent, state.reserved) == (spent, 0)  # Redis agrees with the log to the nano


def test_redis_killed_mid_run_fails_closed_relearns_and_recovers(redis, sim, log_dir):
    limit = 0.10
    cap = Decimal(limit) * BLOCK_AT * 10**9
    team = Team(4, sim.base_url, log_dir, redis.url, limit)
    try:
        before = team.run(5)
        assert errors(before) == [] and ok_nanos(before) > 0

        redis.kill()  # SIGKILL: its state is gone
        sent = sim.requests
        outage = team.run({0: 5, 1: 5, 2: 5})  # worker 3 stays idle through the outage
        assert set(errors(outage)) == {"LedgerUnavailableError"} and len(errors(outage)) == 15
        text = outage[0]["unavailable"]
        assert "unreachable" in text and "fail closed" in text and "fail_open=True" in text
        assert sim.requests == sent  # refused before sending

        redis.start()  # same port, empty
        after = team.run(100)
    finally:
        team.close()
    assert "LedgerUnavailableError" not in errors(after)  # recovered
    assert any(r["ok"] for r in after) and "BudgetExceededError" in errors(after)
    spent = ok_nanos(before) + ok_nanos(after)
    assert spent <= cap  # the spend before the kill still counted after it: no overshoot
    rows = logged(log_dir)
    assert [r["status"] for r in rows].count("blocked") == len(errors(outage)) + len(errors(after))
    assert sum(r["cost_nanos"] for r in rows) == spent
    state = day_state(redis.url, limit)
    assert (state.spent, state.reserved) == (spent, 0)  # relearned from the log, then kept exact


def test_spent_budget_still_refuses_after_a_restart_even_for_an_idle_process(redis, sim, log_dir):
    limit = 0.01
    team = Team(2, sim.base_url, log_dir, redis.url, limit)
    try:
        for _ in range(30):  # worker 0 spends the budget until no call fits; worker 1 makes none
            (spend,) = team.run({0: 4})
            if not spend["ok"]:
                break
        assert spend["errors"] == ["BudgetExceededError"] * 4
        assert sim.completed > 0
        redis.kill()
        redis.start()  # a restart between two calls: no client saw the outage
        sent = sim.requests
        after = team.run({0: 3, 1: 3})
    finally:
        team.close()
    assert errors(after) == ["BudgetExceededError"] * 6, after
    assert sim.requests == sent


def test_fail_open_lets_calls_through_during_the_outage_and_counts_them_after(redis, sim, log_dir):
    limit = 0.10
    cap = Decimal(limit) * BLOCK_AT * 10**9
    team = Team(2, sim.base_url, log_dir, redis.url, limit, fail_open=True)
    try:
        before = team.run(5)
        redis.kill()
        outage = team.run(10)  # allowed, unbudgeted, but logged with their cost
        assert errors(outage) == [] and all(len(r["ok"]) == 10 for r in outage)
        redis.start()
        after = team.run(100)
    finally:
        team.close()
    assert errors(after) and set(errors(after)) == {"BudgetExceededError"}
    # What was spent while Redis was away is relearned from the log: refusals come that much sooner.
    spent_budgeted = ok_nanos(before) + ok_nanos(outage) + ok_nanos(after)
    assert spent_budgeted <= cap  # the outage's spend counts once Redis is back: no overshoot after it
    state = day_state(redis.url, limit)
    assert (state.spent, state.reserved) == (spent_budgeted, 0)
