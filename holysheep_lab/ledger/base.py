"""The Ledger contract: atomic reservations against spend buckets.

A bucket is one scope in one window, named like ``global|day:2026-11-28`` or
``project:nlp|month:2026-11``. Money is integer nano-dollars. The guard decides which
buckets a call touches and with which limits; the ledger only does the atomic arithmetic,
so memory, SQLite and Redis ledgers share one behaviour (and one contract test suite).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeAlias, runtime_checkable

__all__ = ["BucketState", "Charge", "Ledger", "Refusal", "Seeder", "bucket_name"]

# () -> (spent, expires_at) per bucket, as for `Ledger.seed`: the spend relearned from the log.
Seeder: TypeAlias = Callable[[], tuple[Mapping[str, int], Mapping[str, float]]]


def bucket_name(scope: str, window_key: str) -> str:
    """The bucket of one scope in one window: 'global|day:2026-11-28'."""
    return f"{scope}|{window_key}"


class Charge(NamedTuple):
    """Reserve `amount` nanos in `bucket`, refusing if spent + reserved + amount > `limit`.

    `limit` None: count, never refuse. `expires_at` (epoch seconds) is when the bucket's
    window is over; a ledger may drop the bucket some time after that.
    """

    bucket: str
    amount: int
    limit: int | None
    expires_at: float


class BucketState(NamedTuple):
    """What a bucket holds now: settled spend and in-flight reservations (nanos)."""

    spent: int = 0
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why `reserve` refused: the first bucket whose limit the charge would pass."""

    bucket: str
    spent: int
    reserved: int
    limit: int
    amount: int


@runtime_checkable
class Ledger(Protocol):
    """Atomic spend bookkeeping, shared by every call of a client (or of many processes)."""

    @property
    def shared(self) -> bool:
        """True if other processes change this state too (a SQLite file, Redis), so a view
        of it must be re-read now and then; False for one process's own memory."""
        ...

    def use_seeder(self, seeder: Seeder) -> None:
        """How to relearn the spend if the ledger loses its state while in use (a Redis
        restarted empty): it calls `seeder()` and seeds the result before approving anything.

        The Metering core registers one on every ledger; a ledger that cannot lose its state
        under a running process (memory, a SQLite file) ignores it.
        """
        ...

    def reserve(self, reservation_id: str, charges: Sequence[Charge], ttl: float) -> Refusal | None:
        """All-or-nothing: reserve every charge, or none and return the first Refusal.

        The reservation expires `ttl` seconds from now (a killed process's reservation
        must not hold budget forever); expired reservations are dropped before checking.
        """
        ...

    def renew(self, reservation_id: str, ttl: float) -> bool:
        """Extend a live reservation: it now expires `ttl` seconds from now (sooner or later
        than before). False, changing nothing, if it is not live: settled, released, expired
        (a lapsed reservation is never revived; the caller reserves anew if it must).
        The caller renews while its call is alive; a dead process stops renewing, so its
        reservations lapse at most one ttl after its last renewal.
        """
        ...

    def settle(self, reservation_id: str | None, charges: Sequence[Charge]) -> Mapping[str, BucketState]:
        """Drop the reservation (if any) and add each charge's amount (the actual cost) to spent.

        The charges name the same buckets as at reserve time, so settling a reservation
        that already expired still records the spend: the money was spent. With
        `reservation_id` None this records spend that was never reserved (an unguarded,
        e.g. unpriced, call). Limits are not checked here. Returns each bucket's state after.
        """
        ...

    def release(self, reservation_id: str) -> None:
        """Drop the reservation without spending (the call failed or was cancelled)."""
        ...

    def snapshot(self, buckets: Sequence[str]) -> dict[str, BucketState]:
        """The current state of these buckets (absent ones are zero)."""
        ...

    def seed(self, spent: Mapping[str, int], expires_at: Mapping[str, float]) -> None:
        """Raise each bucket's spent to at least the given value (rebuilding from the log).

        Never lowers a bucket: several processes seeding a shared ledger from the same log
        must not double it nor undo each other's spend.
        """
        ...

    def claim(self, key: str, expires_at: float) -> bool:
        """True exactly once per key until `expires_at` (epoch s): one alert per level per window."""
        ...

    def close(self) -> None:
        """Release connections; the ledger is unusable after."""
        ...
