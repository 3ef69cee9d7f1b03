"""Rate limits (rpm, tpm) and the retry policy: pure arithmetic, the caller does the waiting.

The limiter keeps a sliding 60 s window of booked send times: each acquire books the
earliest slot (first come, first served) at which no 60 s window holds more than rpm requests
or tpm tokens, and returns how long to wait for it. The lock is held only for that arithmetic,
never while sleeping, so one limiter serves threads and event loops alike (sync callers
`time.sleep`, async callers `await asyncio.sleep`).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from holysheep_lab.core.validate import finite_number
from holysheep_lab.errors import ConfigError, RateLimitError

__all__ = ["RateLimit", "RateLimiter", "Retry", "parse_reset", "parse_retry_after"]

WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Client-side limits: requests and (worst-case) tokens per minute; None means no limit."""

    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ConfigError(f"RateLimit.{name} must be a positive whole number or None, not {v!r}.")


@dataclass(frozen=True, slots=True)
class Retry:
    """Exponential backoff with full jitter, on 429, 5xx and timeouts only.

    `max_attempts` counts the first try; `max_total` caps the seconds spent on one call
    including waits. A server's Retry-After is honoured (and counts against max_total).
    """

    max_attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 20.0
    max_total: float = 120.0
    retry_statuses: frozenset[int] = field(default=frozenset({408, 409, 429, 500, 502, 503, 504}))
    retry_timeouts: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"Retry.max_attempts must be a whole number >= 1, not {self.max_attempts!r}.")
        for name in ("backoff", "max_backoff", "max_total"):
            finite_number(f"Retry.{name}", getattr(self, name), unit="of seconds")
        statuses = self.retry_statuses
        if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Iterable):
            raise ConfigError(f"Retry.retry_statuses must be a set of HTTP status codes such as {{429, 503}}, "
                              f"not {statuses!r}.")
        statuses = frozenset(statuses)
        if any(isinstance(c, bool) or not isinstance(c, int) or not 400 <= c <= 599 for c in statuses):
            raise ConfigError(f"Retry.retry_statuses must hold HTTP error codes (400-599), not {sorted(map(repr, statuses))}.")
        if not isinstance(self.retry_timeouts, bool):
            raise ConfigError(f"Retry.retry_timeouts must be True or False, not {self.retry_timeouts!r}.")
        object.__setattr__(self, "retry_statuses", statuses)

    @classmethod
    def none(cls) -> Retry:
        return cls(max_attempts=1)

    def delay(self, attempt: int, retry_after: float | None = None, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return retry_after + 0.05 * rng()
        cap = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return cap * (0.5 + 0.5 * rng())  # "equal jitter": never zero, never in lockstep


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from Retry-After (seconds or HTTP date) or retry-after-ms; None if absent/bad."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        return max(0.0, when - (now if now is not None else time.time()))


def parse_reset(value: str | None) -> float | None:
    """OpenAI-style reset durations ('1s', '6m0s', '20ms', '1h2m3.5s') to seconds."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    m = _DURATION.match(value.strip())
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


class RateLimiter:
    """Sliding-window rpm/tpm limiter, plus a shared pause set by the server's 429s and headers."""

    def __init__(self, limit: RateLimit | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit or RateLimit()
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: deque[float] = deque()  # booked send times, non-decreasing
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_sum = 0
        self._last = 0.0
        self._paused_until = 0.0

    def acquire(self, tokens: int = 0) -> float:
        """Book a slot for one request of `tokens`; return seconds to wait before sending."""
        rpm, tpm = self.limit.rpm, self.limit.tpm
        if tpm is not None and tokens > tpm:
            raise RateLimitError(
                f"This call's worst case ({tokens} tokens) exceeds the client's whole tpm limit "
                f"({tpm}); it could never be sent. Lower max_tokens or raise RateLimit(tpm=...)."
            )
        with self._lock:
            now = self._clock()
            # Bookings never go back in time, so entries booked WINDOW or more before start are
            # done with. Compared as `booked + WINDOW <= start`: the same sum that moves start to
            # an entry's expiry below, so that entry always leaves (`start - WINDOW` may round
            # below it, and the wait for tokens would never end).
            start = max(now, self._paused_until, self._last)
            if rpm is not None:
                reqs = self._requests
                while reqs and reqs[0] + WINDOW <= start:
                    reqs.popleft()
                if len(reqs) >= rpm:
                    start = reqs[-rpm] + WINDOW
                    while reqs and reqs[0] + WINDOW <= start:
                        reqs.popleft()
                reqs.append(start)
            if tpm is not None and tokens:
                toks = self._tokens
                while True:
                    while toks and toks[0][0] + WINDOW <= start:
                        self._token_sum -= toks.popleft()[1]
                    if self._token_sum + tokens <= tpm:
                        break
                    start = toks[0][0] + WINDOW
                toks.append((start, tokens))
                self._token_sum += tokens
                if rpm is not None:
                    self._requests[-1] = start  # the tpm wait moved this request later
            self._last = start
            return max(0.0, start - now)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (the server said so)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Honour x-ratelimit-remaining-*/reset-* : pause when the server says we are at zero."""
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
                reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
                if reset:
                    self.pause(min(reset, WINDOW))
