"""Events the metering core emits after each settled call (to alerts and meters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from holysheep_lab.core.money import nanos_to_decimal, usd_to_nanos

__all__ = ["SpendEvent"]


@dataclass(frozen=True, slots=True)
class SpendEvent:
    """One budget line's spend moved from `before` to `after` in window `window_key`.

    Amounts are kept in integer nano-dollars (one is built per budget line on every settled
    call, so no Decimal work happens unless someone reads them); `before`, `after`, `reserved`
    and `limit` give them in USD. `limit` is the line's full limit (alert ratios are
    spend / limit); `block_at` the fraction at which calls are refused. `reserved` is what is
    still in flight. A `refused` event says a call was refused at the block line (nothing was
    spent: `before` = `after`); alerts use it for levels the spend can never reach.
    """

    scope: str  # "global" or "project:NAME"
    window: str  # "daily" or "monthly"
    window_key: str  # "day:2026-11-28" / "month:2026-11"
    before_nanos: int
    after_nanos: int
    reserved_nanos: int
    limit_nanos: int
    block_at: float
    alert_at: float
    resets_at: datetime
    ts: datetime
    model: str | None = None
    project: str | None = None
    refused: bool = False  # a call was refused at this line's block limit; spend did not move

    @classmethod
    def from_usd(cls, scope: str, window: str, window_key: str, before: Decimal | float | str,
                 after: Decimal | float | str, reserved: Decimal | float | str, limit: Decimal | float | str,
                 block_at: float, alert_at: float, resets_at: datetime, ts: datetime,
                 model: str | None = None, project: str | None = None) -> SpendEvent:
        """The same event from USD amounts (for tests and hand-made events)."""
        return cls(scope, window, window_key, usd_to_nanos(before), usd_to_nanos(after), usd_to_nanos(reserved), usd_to_nanos(limit),
                   block_at, alert_at, resets_at, ts, model, project)

    @property
    def before(self) -> Decimal:
        return nanos_to_decimal(self.before_nanos)

    @property
    def after(self) -> Decimal:
        return nanos_to_decimal(self.after_nanos)

    @property
    def reserved(self) -> Decimal:
        return nanos_to_decimal(self.reserved_nanos)

    @property
    def limit(self) -> Decimal:
        return nanos_to_decimal(self.limit_nanos)

    @property
    def ratio(self) -> float:
        return self.after_nanos / self.limit_nanos if self.limit_nanos else 0.0

    @property
    def ratio_before(self) -> float:
        return self.before_nanos / self.limit_nanos if self.limit_nanos else 0.0
