"""One alert to send and a manager that delivers it, shared by the channel tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from holysheep_lab.alerts import Alert, AlertManager, Level
from holysheep_lab.alerts.channel import Channel

BERLIN = ZoneInfo("Europe/Berlin")
RESETS = datetime(2026, 11, 29, 0, 0, tzinfo=BERLIN)
TS = datetime(2026, 11, 28, 14, 3, 7, tzinfo=UTC)


def alert(level: Level = Level.WARNING, *, spent: str = "7.62", project: str | None = None,
          model: str | None = "gpt-4.1", scope: str = "global") -> Alert:
    """A daily alert: `spent` of $10 spent, $0.12 in flight, resets at Berlin midnight."""
    return Alert(level, scope, "daily", "day:2026-11-28", Decimal(spent), Decimal(10),
                 float(Decimal(spent) / 10), Decimal("0.12"), RESETS, TS, project, model)


def deliver(channel: Channel, *alerts: Alert, **kw: Any) -> AlertManager:
    """Fire `alerts` through a manager with only `channel` (no cooldown) and wait until delivered."""
    kw.setdefault("backoff", 0.01)
    m = AlertManager([channel], cooldown=0, **kw)
    for a in alerts:
        m.fire(a)
    assert m.flush(10)
    m.close()
    return m
