"""The pace of spend and the projected block time: unit rules with a fake clock, and the meter's
line against a real simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import holysheep_lab as hs
from holysheep_lab.alerts.model import format_time as hs_time
from holysheep_lab.core.pace import HORIZON_S, MIN_OBSERVED_S, RECENT_S, SLOT_S, SpendPace, reached_at
from holysheep_lab.notebook import BudgetMeter


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_the_rate_is_spend_over_the_time_observed_and_forgets_past_the_horizon():
    clock = Clock()
    pace = SpendPace(clock)
    assert pace.rate() is None
    for _ in range(10):  # 10 calls of 1,000 nanos, one every 6 s
        pace.add(1_000)
        clock.t += 6
    assert pace.rate() == pytest.approx(10_000 / 60)
    pace2 = SpendPace(clock)
    pace2.add(5)
    pace2.add(5)
    clock.t += MIN_OBSERVED_S + 1
    assert pace2.rate() is None  # two calls are no pace
    clock.t += HORIZON_S + 20
    pace.add(0)
    pace.add(0)
    pace.add(0)
    assert pace.rate() == 0  # the old spend has left the horizon


def test_recent_counts_about_the_last_minute_in_whole_slots():
    clock = Clock()  # 1_000_000 s: the start of a slot
    pace = SpendPace(clock)
    assert pace.recent() == (0, 0)
    pace.add(7)
    clock.t += RECENT_S + SLOT_S - 1  # the first slot still overlaps the last minute
    pace.add(5)
    assert pace.recent() == (2, 12)
    clock.t += 1  # now it does not
    assert pace.recent() == (1, 5)
    clock.t += HORIZON_S  # long after: nothing is left
    assert pace.recent() == (0, 0)


def test_reached_at_only_before_the_reset_and_only_below_the_line():
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    midnight = datetime(2026, 12, 3, tzinfo=UTC)
    assert reached_at(5.0, 9.5, 1.0 / 3600, now, midnight) == now + timedelta(hours=4.5)
    assert reached_at(5.0, 9.5, 0.1 / 3600, now, midnight) is None  # 45 h away: after the reset
    assert reached_at(9.6, 9.5, 1.0, now, midnight) is None  # already blocking
    assert reached_at(5.0, 9.5, None, now, midnight) is None and reached_at(5.0, 9.5, 0.0, now, midnight) is None


def test_the_meter_says_when_this_pace_reaches_the_block_line():
    clock = Clock()
    noon = datetime(2026, 12, 2, 12, tzinfo=UTC)
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, ledger=hs.MemoryLedger(), clock=lambda: noon,
                                          budget=hs.Budget(daily=0.05, monthly=1000.0, tz="UTC")) as client:
        client.metering.pace = SpendPace(clock)  # a minute of calls, in no time
        meter = BudgetMeter(client, interval=5.0, idle=60.0)
        for _ in range(6):
            client.chat("gpt-4.1", "Summarise the quarter in three bullet points.", max_tokens=64)
            clock.t += 10
        meter.refresh()
        day, month = (next(ln for ln in meter.state.lines if ln.window == w) for w in ("daily", "monthly"))
        rate = client.metering.pace.rate() / 1e9  # USD per second over those 60 s
        expected = (0.95 * 0.05 - day.spent - day.reserved) / rate  # to the block line, 95 % of $0.05
        assert 60 < expected < 12 * 3600  # so before midnight: the meter must say when
        assert day.blocked_at is not None and abs((day.blocked_at - noon).total_seconds() - expected) < 1
        assert f"at this pace blocked {hs_time(day.blocked_at)}" in day.detail
        # The month's block line at this pace lies past its reset: no projection there.
        assert (0.95 * 1000.0 - month.spent) / rate > (month.resets_at - noon).total_seconds()
        assert month.blocked_at is None and "at this pace" not in month.detail
        meter.close()
