"""Time helpers shared by the core, the log and the analysis: epoch microseconds, UTC now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["BUCKET_GRACE_S", "EPOCH", "micros_to_datetime", "to_micros", "utc_now"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
#: Budget buckets outlive their window by a day, so late settles and meters still find them.
BUCKET_GRACE_S = 86_400.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch, exactly; a naive datetime is taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - EPOCH) // _US


def micros_to_datetime(us: int) -> datetime:
    """The UTC datetime of `us` microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=int(us))
