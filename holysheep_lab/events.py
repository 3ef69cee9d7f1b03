"""Events the metering core emits after each settled call (to alerts and meters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = ["SpendEvent"]


@dataclass(frozen=True, slots=True)
class SpendEvent:
    """One budget line's spend moved from `before` to `after` (USD) in window `window_key`.

    `limit` is the line's full limit (alert ratios are spend / limit); `block_at` the
    fraction at which calls are refused. `reserved` is what is still in flight.
    """

    scope: str  # "global" or "project:NAME"
    window: str  # "daily" or "monthly"
    window_key: str  # "day:2026-11-28" / "month:2026-11"
    before: Decimal
    after: Decimal
    reserved: Decimal
    limit: Decimal
    block_at: float
    alert_at: float
    resets_at: datetime
    ts: datetime
    model: str | None = None
    project: str | None = None

    @property
    def ratio(self) -> float:
        return float(self.after / self.limit) if self.limit else 0.0

    @property
    def ratio_before(self) -> float:
        return float(self.before / self.limit) if self.limit else 0.0
