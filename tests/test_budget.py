from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from holysheep_lab.core.budget import Budget, Window, window_bounds, window_key
from holysheep_lab.core.money import usd_to_nanos as to_nanos
from holysheep_lab.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"daily": -1}, "positive"),
        ({"daily": 0}, "positive"),
        ({"monthly": "lots"}, "number"),
        ({"alert_at": 0}, r"\(0, 1\]"),
        ({"block_at": 1.5}, r"\(0, 1\]"),
        ({"alert_at": 0.9, "block_at": 0.8}, "must not exceed"),
        ({"tz": "Mars/Olympus"}, "IANA"),
    ],
)
def test_invalid_budgets_say_what_is_allowed(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Budget(**kwargs)


def test_limits_may_be_none_and_projects_nest():
    b = Budget(daily=None, monthly=50, projects={"nlp": Budget(daily=5, monthly=None)}, tz="UTC")
    lines = list(b.lines("nlp"))
    assert [(ln.scope, ln.window) for ln in lines] == [("global", Window.MONTH), ("project:nlp", Window.DAY)]
    assert [(ln.scope, ln.window) for ln in b.lines("other")] == [("global", Window.MONTH)]


def test_block_limit_has_no_float_dust():
    # LiteLLM pinned a $25 budget at 25.000000000000004; we floor exact decimals.
    line = next(Budget(daily=25, block_at=1.0, tz="UTC").lines())
    assert line.block_nanos == 25_000_000_000
    assert next(Budget(daily=0.3, block_at=0.95, tz="UTC").lines()).block_nanos == 285_000_000
    assert to_nanos(Decimal("0.1")) * 3 == to_nanos("0.3")


@pytest.mark.parametrize(
    "zone, day, hours",
    [
        ("Europe/Berlin", datetime(2026, 3, 29, 12, tzinfo=UTC), 23),
        ("Europe/Berlin", datetime(2026, 10, 25, 12, tzinfo=UTC), 25),
        ("America/New_York", datetime(2026, 3, 8, 17, tzinfo=UTC), 23),
        ("America/New_York", datetime(2026, 11, 1, 17, tzinfo=UTC), 25),
        ("Asia/Bangkok", datetime(2026, 3, 29, 12, tzinfo=UTC), 24),
    ],
)
def test_dst_days_are_23_or_25_hours(zone, day, hours):
    start, end = window_bounds(Window.DAY, day, ZoneInfo(zone))
    assert (end - start).total_seconds() == hours * 3600
    assert start.astimezone(ZoneInfo(zone)).hour == 0


def test_month_is_the_calendar_month_in_the_zone():
    tz = ZoneInfo("Asia/Tokyo")
    # 2026-02-28 16:00 UTC is already March 1st in Tokyo
    ts = datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert window_key(Window.MONTH, ts, tz) == "month:2026-03"
    start, end = window_bounds(Window.MONTH, ts, tz)
    assert start == datetime(2026, 2, 28, 15, tzinfo=UTC) and end == datetime(2026, 3, 31, 15, tzinfo=UTC)
    feb = window_bounds(Window.MONTH, datetime(2026, 2, 10, tzinfo=UTC), ZoneInfo("UTC"))
    assert (feb[1] - feb[0]).days == 28
    dec = window_bounds(Window.MONTH, datetime(2026, 12, 31, 23, tzinfo=UTC), ZoneInfo("UTC"))
    assert dec[1] == datetime(2027, 1, 1, tzinfo=UTC)


def test_resets_at_local_midnight():
    b = Budget(daily=1, tz="America/New_York")
    r = b.resets_at(datetime(2026, 11, 28, 3, tzinfo=UTC))  # 22:00 on the 27th in New York
    assert r["daily"] == datetime(2026, 11, 28, 5, tzinfo=UTC)
    assert r["monthly"] == datetime(2026, 12, 1, 5, tzinfo=UTC)
    assert "America/New_York" in repr(b)
