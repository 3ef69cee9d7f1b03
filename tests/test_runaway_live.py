"""Runaways seen while they happen: the live watch of a Metering against a real simulator, and
the same rules as df.hs.anomalies() on the log it wrote."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import holysheep_lab as hs
from holysheep_lab.core.runaway import GROWTH_MIN_CALLS, RunawayWatch
from holysheep_lab.log import read_log
from holysheep_lab.log.schema import CallRecord


@pytest.fixture
def sim():
    with hs.Simulator() as s:
        yield s


def test_a_conversation_resending_its_growing_history_is_flagged_live_and_in_the_log(sim, log_dir):
    history = [{"role": "system", "content": "You are terse."}]
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, ledger=hs.MemoryLedger()) as client:
        for turn in range(8):
            history.append({"role": "user", "content": f"Question {turn}: " + "context word " * 1500})
            answer = client.chat("gpt-4.1", history, max_tokens=16)
            history.append({"role": "assistant", "content": answer.text})
            found = client.metering.runaways.findings()
            assert (turn + 1 >= GROWTH_MIN_CALLS) == bool(found)  # flagged once the rule can tell
        (runaway,) = client.metering.runaways.findings()
    assert runaway.kind == "context_growth" and runaway.calls == 8 and runaway.score >= 2
    assert "growing history" in runaway.detail and "8 calls" in runaway.detail
    logged = read_log(log_dir).hs.anomalies()
    growth = logged[logged["kind"] == "context_growth"]
    assert list(growth["subject"]) == [runaway.subject] and int(growth["calls"].iloc[0]) == runaway.calls


def test_an_ordinary_chat_and_independent_calls_are_not_flagged(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, ledger=hs.MemoryLedger()) as client:
        for i in range(12):
            client.chat("gpt-4.1", f"independent question {i}", max_tokens=16)
        assert client.metering.runaways.findings() == []


def _record(i: int, *, attempts: int, status: str = "ok") -> CallRecord:
    return CallRecord(call_id=f"c{i}", ts=datetime(2026, 12, 2, 10, 0, i % 60, tzinfo=UTC), model="gpt-4.1",
                      status=status, attempts=attempts, cost_nanos=1000)


def test_retry_storms_need_enough_events_and_a_large_enough_share():
    calm = RunawayWatch()
    for i in range(40):
        calm.observe(_record(i, attempts=2 if i % 10 == 0 else 1))  # 4 retries in 40 calls
    assert calm.findings() == []
    storm = RunawayWatch()
    for i in range(20):
        storm.observe(_record(i, attempts=3, status="error" if i % 2 else "ok"))
    (found,) = storm.findings()
    assert (found.kind, found.subject, found.calls) == ("retry_storm", "gpt-4.1", 20)
    assert found.score == pytest.approx((20 * 2 + 10) / 20) and found.cost_nanos == 20_000


def test_findings_are_bounded_the_stalest_forgotten(monkeypatch):
    monkeypatch.setattr("holysheep_lab.core.runaway.MAX_CONVERSATIONS", 3)
    watch = RunawayWatch()
    for conv in "abcd":  # four growing conversations, one after another
        for step in range(GROWTH_MIN_CALLS):
            watch.observe(CallRecord(call_id=f"{conv}{step}", ts=datetime(2026, 12, 2, tzinfo=UTC), model="m",
                                     status="ok", conversation_id=conv, input_tokens=10_000 * (step + 1)))
    assert sorted(r.subject for r in watch.findings()) == ["b", "c", "d"]
