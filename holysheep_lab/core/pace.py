"""The pace of spend: how fast this process spends now, and when a budget line is reached at it.

A meter shows "at this pace: blocked at 14:32" on a line that the current rate would take to
its block line before the window resets: the warning people ask for before the refusal, not
after. The rate is the spend of the last `HORIZON_S` seconds in `SLOT_S`-second slots (a fixed
ring, so a burst of a million calls costs no memory), over the time actually observed. The same
slots give the meter its "last minute" of calls and spend (`recent`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

__all__ = ["HORIZON_S", "MIN_CALLS", "MIN_OBSERVED_S", "RECENT_S", "SLOT_S", "SpendPace", "reached_at"]

HORIZON_S = 900.0
SLOT_S = 10.0
#: A pace needs this much history before it is shown (a few seconds of calls say little).
MIN_OBSERVED_S = 30.0
MIN_CALLS = 3

#: What `recent` counts: the calls of about the last minute (whole slots: 60 to 70 s).
RECENT_S = 60.0

_SLOTS = int(HORIZON_S / SLOT_S)


class SpendPace:
    """Spend per second over the last `HORIZON_S` seconds; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._nanos = [0] * _SLOTS
        self._calls = [0] * _SLOTS
        self._slot_ids = [-1] * _SLOTS  # which absolute slot each ring entry holds
        self._first: float | None = None

    def add(self, cost_nanos: int) -> None:
        now = self._clock()
        slot = int(now // SLOT_S)
        i = slot % _SLOTS
        with self._lock:
            if self._first is None:
                self._first = now
            if self._slot_ids[i] != slot:
                self._slot_ids[i], self._nanos[i], self._calls[i] = slot, 0, 0
            self._nanos[i] += cost_nanos
            self._calls[i] += 1

    def recent(self) -> tuple[int, int]:
        """(calls, nanos) of the slots that overlap the last `RECENT_S` seconds."""
        current = int(self._clock() // SLOT_S)
        oldest = current - int(RECENT_S // SLOT_S)
        with self._lock:
            live = [k for k in range(_SLOTS) if oldest <= self._slot_ids[k] <= current]
            return sum(self._calls[k] for k in live), sum(self._nanos[k] for k in live)

    def rate(self) -> float | None:
        """Nanos per second over the observed part of the horizon; None until `MIN_CALLS` calls
        over `MIN_OBSERVED_S` seconds."""
        now = self._clock()
        oldest = int(now // SLOT_S) - _SLOTS + 1
        with self._lock:
            if self._first is None:
                return None
            live = [k for k in range(_SLOTS) if self._slot_ids[k] >= oldest]
            nanos = sum(self._nanos[k] for k in live)
            calls = sum(self._calls[k] for k in live)
            observed = min(HORIZON_S, now - self._first)
        if calls < MIN_CALLS or observed < MIN_OBSERVED_S:
            return None
        return nanos / observed


def reached_at(used: float, line: float, rate: float | None, now: datetime, resets_at: datetime) -> datetime | None:
    """When spend (`used`, settled and in flight) reaches `line` at `rate` per second (one unit
    for all three), if that is before `resets_at`; None if it is not, if the line is already
    reached (the meter says BLOCKING), or if there is no pace yet."""
    if rate is None or rate <= 0 or used >= line:
        return None
    at = now + timedelta(seconds=(line - used) / rate)
    return at if at < resets_at else None
