"""Money is integer nano-dollars: the one home of the USD <-> nanos conversions."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["NANOS_PER_USD", "nanos_to_decimal", "nanos_to_usd", "usd_to_nanos"]

NANOS_PER_USD = 1_000_000_000
_NANOS_PER_USD_DEC = Decimal(NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> float:
    """Exact nanos to the float USD stored for analysis, rounded once, at the edge.

    Below 2**53 nanos ($9M) both operands are exact floats and IEEE division rounds the exact
    quotient once: the same float as Decimal division, at a fraction of the cost.
    """
    if abs(nanos) < 2**53:
        return nanos / NANOS_PER_USD
    return float(Decimal(nanos) / _NANOS_PER_USD_DEC)


def nanos_to_decimal(nanos: int) -> Decimal:
    """Exact USD as a Decimal (for display and events)."""
    return Decimal(nanos) / _NANOS_PER_USD_DEC


def usd_to_nanos(usd: Decimal | float | int | str) -> int:
    """USD to nanos, rounded half-even to the nearest nano; floats go through their repr."""
    return int((Decimal(str(usd)) * _NANOS_PER_USD_DEC).to_integral_value())
