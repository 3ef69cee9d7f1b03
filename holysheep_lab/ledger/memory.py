"""The in-process ledger: dicts behind one lock, for a single kernel or script."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from holysheep_lab.core.clock import BUCKET_GRACE_S
from holysheep_lab.errors import LedgerError
from holysheep_lab.ledger.base import BucketState, Charge, Refusal, Seeder
from holysheep_lab.ledger.common import (
    SWEEP_EVERY,
    ClosingContext,
    check_id,
    check_ttl,
    merge_charges,
    seed_items,
)

__all__ = ["MemoryLedger"]


@dataclass(slots=True)
class _Bucket:
    spent: int = 0
    reserved: int = 0
    expires_at: float = 0.0


@dataclass(slots=True)
class _Reservation:
    expires_at: float
    amounts: dict[str, int] = field(default_factory=dict)


class MemoryLedger(ClosingContext):
    """Thread-safe in-memory ledger.

    The lock is held only for the arithmetic of one call, never while waiting on anything.
    Expired reservations are purged lazily (a heap ordered by expiry, popped on each call);
    buckets and claims are dropped in a sweep at most every minute, a day after their window.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._expiry_heap: list[tuple[float, str]] = []
        self._claims: dict[str, float] = {}
        self._next_sweep = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryLedger(buckets={len(self._buckets)}, in_flight={len(self._reservations)})"

    # -- internals (caller holds the lock) ---------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError("This MemoryLedger is closed")

    def _drop(self, reservation_id: str) -> None:
        res = self._reservations.pop(reservation_id, None)
        if res is None:
            return
        for bucket, amount in res.amounts.items():
            b = self._buckets.get(bucket)
            if b is not None:
                b.reserved -= amount

    def _purge(self, now: float) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, rid = heapq.heappop(heap)
            res = self._reservations.get(rid)
            # The id may have been settled and reused since: only drop the entry that expired.
            if res is not None and res.expires_at == expires_at:
                self._drop(rid)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            cutoff = now - BUCKET_GRACE_S
            dead = [k for k, b in self._buckets.items() if b.expires_at < cutoff and not b.reserved]
            for k in dead:
                del self._buckets[k]
            for k in [k for k, exp in self._claims.items() if exp <= now]:
                del self._claims[k]

    def _bucket(self, name: str, expires_at: float) -> _Bucket:
        b = self._buckets.get(name)
        if b is None:
            b = self._buckets[name] = _Bucket(expires_at=expires_at)
        elif expires_at > b.expires_at:
            b.expires_at = expires_at
        return b

    # -- the Ledger protocol ------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return False  # this process's memory: no one else changes it

    def use_seeder(self, seeder: Seeder) -> None:
        """Ignored: the state lives as long as the process, which rebuilt it from the log."""

    def reserve(self, reservation_id: str, charges: Sequence[Charge], ttl: float) -> Refusal | None:
        check_id(reservation_id)
        merged = merge_charges(charges)
        ttl = check_ttl(ttl)
        with self._lock:
            self._check_open()
            now = self._clock()
            self._purge(now)
            if reservation_id in self._reservations:
                raise LedgerError(f"Reservation {reservation_id!r} is already in flight")
            for c in merged:
                if c.limit is None:
                    continue
                b = self._buckets.get(c.bucket)
                spent, reserved = (b.spent, b.reserved) if b is not None else (0, 0)
                if spent + reserved + c.amount > c.limit:
                    return Refusal(c.bucket, spent, reserved, c.limit, c.amount)
            res = _Reservation(now + ttl)
            for c in merged:
                self._bucket(c.bucket, c.expires_at).reserved += c.amount
                res.amounts[c.bucket] = c.amount
            self._reservations[reservation_id] = res
            heapq.heappush(self._expiry_heap, (res.expires_at, reservation_id))
            return None

    def renew(self, reservation_id: str, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        with self._lock:
            self._check_open()
            now = self._clock()
            self._purge(now)
            res = self._reservations.get(reservation_id)
            if res is None:
                return False
            # The old heap entry no longer matches the expiry and is skipped when popped.
            res.expires_at = now + ttl
            heapq.heappush(self._expiry_heap, (res.expires_at, reservation_id))
            return True

    def settle(
        self, reservation_id: str | None, charges: Sequence[Charge]
    ) -> Mapping[str, BucketState]:
        merged = merge_charges(charges)
        with self._lock:
            self._check_open()
            self._purge(self._clock())
            if reservation_id is not None:
                self._drop(reservation_id)
            out = {}
            for c in merged:
                b = self._bucket(c.bucket, c.expires_at)
                b.spent += c.amount
                out[c.bucket] = BucketState(b.spent, b.reserved)
            return out

    def release(self, reservation_id: str) -> None:
        with self._lock:
            self._check_open()
            self._drop(reservation_id)

    def snapshot(self, buckets: Sequence[str]) -> dict[str, BucketState]:
        with self._lock:
            self._check_open()
            self._purge(self._clock())
            out = {}
            for name in buckets:
                b = self._buckets.get(name)
                out[name] = BucketState(b.spent, b.reserved) if b is not None else BucketState()
            return out

    def seed(self, spent: Mapping[str, int], expires_at: Mapping[str, float]) -> None:
        items = seed_items(spent, expires_at)
        with self._lock:
            self._check_open()
            for name, value, exp in items:
                b = self._bucket(name, exp)
                b.spent = max(b.spent, value)

    def claim(self, key: str, expires_at: float) -> bool:
        with self._lock:
            self._check_open()
            now = self._clock()
            held = self._claims.get(key)
            if held is not None and held > now:
                return False
            self._claims[key] = float(expires_at)
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._buckets.clear()
            self._reservations.clear()
            self._expiry_heap.clear()
            self._claims.clear()
