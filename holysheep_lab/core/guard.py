"""The guard: reserve a call's worst case in every budget line it touches, before sending.

Refusal happens here, atomically in the ledger, so concurrent calls can never together pass
a block threshold (checking spend after the fact, the common design, overshoots). After the
call the reservation is settled to the actual cost, or released if nothing was spent.

A reservation lives as long as its call: it is held for one `ttl` (the time within which the
call must make progress or fail: its HTTP timeouts, see `attempt_ttl`) and renewed while the
call is alive (`keep_alive`, at most every RENEW_EVERY seconds: as a stream is read, between
retries). A process that dies stops renewing, so its holds lapse one ttl later; a call that
hangs past its own timeouts has passed its deadline and lapses too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from holysheep_lab.core.budget import Budget, BudgetLine, Window, local_zone, window_bounds, window_key
from holysheep_lab.core.clock import BUCKET_GRACE_S
from holysheep_lab.core.events import SpendEvent
from holysheep_lab.core.money import nanos_to_decimal
from holysheep_lab.core.scopes import CallScope, hold
from holysheep_lab.core.scopes import release as release_holds
from holysheep_lab.core.scopes import settle as settle_holds
from holysheep_lab.errors import BudgetExceededError, LedgerUnavailableError
from holysheep_lab.ledger.base import BucketState, Charge, Ledger, bucket_name

__all__ = ["RENEW_EVERY", "TTL_SLACK", "UNBOUNDED_TTL", "Guard", "Reservation", "attempt_ttl"]

log = logging.getLogger("holysheep_lab")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A live call renews its reservation at most this often (seconds), and at least every ttl / 4.
RENEW_EVERY = 30.0
#: Added to a call's timeouts: the hold outlives the longest wait by this much.
TTL_SLACK = 60.0
#: The hold of one wait that has no timeout (timeout=None): renewed as the call goes on.
UNBOUNDED_TTL = 3_600.0


def attempt_ttl(timeouts: Mapping[str, float | None] | None, default: float) -> float:
    """How long one attempt can go without progress before it fails: its pool, connect, write
    and read timeouts (httpx's `request.extensions["timeout"]`) plus TTL_SLACK; `default` when
    the transport does not say. A reservation held this long and renewed at each step (each
    stream read, each retry) lapses only when its process is dead or the call passed a deadline."""
    if not timeouts:
        return default
    total = TTL_SLACK
    for key in ("pool", "connect", "write", "read"):
        value = timeouts.get(key)
        total += UNBOUNDED_TTL if value is None or not math.isfinite(value) else max(0.0, float(value))
    return total



@dataclass(slots=True)
class Reservation:
    """An accepted reservation: which lines, which buckets, how much."""

    id: str
    amount: int
    lines: list[tuple[BudgetLine | None, Charge, str, datetime]]  # line, charge, window_key, resets_at
    project: str | None
    model: str | None
    done: bool = False
    ttl: float = 0.0  # each renewal holds it this long
    renewed_at: float = 0.0  # epoch seconds (the guard's clock) of the reserve or last renewal
    scopes: tuple[CallScope, ...] = ()  # the experiments / notebook cell it is also held in


class Guard:
    """Budget lines -> ledger charges. With no budget it still counts spend (for meters)."""

    def __init__(
        self,
        budget: Budget | None,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reservation_ttl: float = 900.0,
        on_refusal: Callable[[SpendEvent], None] | None = None,
    ) -> None:
        self.budget = budget
        self._on_refusal = on_refusal
        self.ledger = ledger
        self.clock = clock
        self.reservation_ttl = reservation_ttl
        self._zone = budget.zone if budget is not None else local_zone()
        # (valid from, valid to, {project: template}): window maths once per window, not per call.
        self._cache: tuple[datetime, datetime, dict[str | None, list[Any]]] = (_EPOCH, _EPOCH, {})

    @property
    def zone(self) -> tzinfo:
        return self._zone

    def _plan(self, amount: int, project: str | None, now: datetime) -> list[tuple[BudgetLine | None, Charge, str, datetime]]:
        template = self._template(project, now)
        return [(line, Charge(bucket, amount, limit, expires), key, end) for line, bucket, limit, expires, key, end in template]

    def _template(self, project: str | None, now: datetime) -> list[tuple[BudgetLine | None, str, int | None, float, str, datetime]]:
        """The buckets a call in `project` touches now; cached until the current windows end."""
        valid_from, valid_to, templates = self._cache
        if not valid_from <= now < valid_to:
            bounds = {w: window_bounds(w, now, self._zone) for w in Window}
            valid_from = max(start for start, _ in bounds.values())
            valid_to = min(end for _, end in bounds.values())
            templates = {}
            self._cache = (valid_from, valid_to, templates)
        template = templates.get(project)
        if template is None:
            lines: list[tuple[str, Window, BudgetLine | None]] = [
                (ln.scope, ln.window, ln) for ln in (self.budget.lines(project) if self.budget else ())
            ]
            # Global spend is counted per window even without a limit, so meters always have it.
            limited = {(scope, window) for scope, window, _ in lines}
            lines += [("global", w, None) for w in Window if ("global", w) not in limited]
            template = []
            for scope, window, line in lines:
                key = window_key(window, now, self._zone)
                end = window_bounds(window, now, self._zone)[1]
                limit = line.block_nanos if line is not None else None
                template.append((line, bucket_name(scope, key), limit, end.timestamp() + BUCKET_GRACE_S, key, end))
            templates[project] = template
        return template

    def reserve(self, call_id: str, amount: int, *, project: str | None = None, model: str | None = None,
                ttl: float | None = None, scopes: Sequence[CallScope] = ()) -> Reservation:
        """Reserve `amount` nanos in every line and in every scope (an experiment's or a notebook
        cell's budget) for `ttl` seconds (default: `reservation_ttl`); BudgetExceededError
        (nothing reserved) if any would pass."""
        now = self.clock()
        plan = self._plan(amount, project, now)
        ttl = ttl or self.reservation_ttl
        if scopes:
            # The scopes first (in-process arithmetic); given back if the ledger refuses or fails.
            refused = hold(scopes, call_id, amount)
            if refused is not None:
                raise BudgetExceededError(
                    scope=refused.scope.scope, window=refused.scope.kind, spent=nanos_to_decimal(refused.spent),
                    reserved=nanos_to_decimal(refused.reserved), limit=nanos_to_decimal(refused.limit),
                    estimate=nanos_to_decimal(amount), resets_at=None, model=model,
                )
        try:
            refusal = self.ledger.reserve(call_id, [c for _, c, _, _ in plan], ttl)
        except BaseException:
            release_holds(scopes, call_id)
            raise
        if refusal is not None:
            release_holds(scopes, call_id)
            line, _, key, end = next(p for p in plan if p[1].bucket == refusal.bucket)
            assert line is not None  # unlimited charges are never refused
            if self._on_refusal is not None:
                # Nothing moved: before = after = what is spent; `refused` marks the line as full.
                self._on_refusal(SpendEvent(
                    line.scope, line.window.value, key, refusal.spent, refusal.spent, refusal.reserved,
                    line.limit_nanos, line.block_at, line.alert_at, end, now, model, project, refused=True))
            raise BudgetExceededError(
                scope=line.scope,
                window=line.window.value,
                spent=nanos_to_decimal(refusal.spent),
                reserved=nanos_to_decimal(refusal.reserved),
                limit=nanos_to_decimal(refusal.limit),
                estimate=nanos_to_decimal(amount),
                resets_at=end.astimezone(self.zone),
                model=model,
            )
        return Reservation(call_id, amount, plan, project, model, ttl=ttl, renewed_at=now.timestamp(),
                           scopes=tuple(scopes))

    def renew(self, reservation: Reservation, ttl: float | None = None) -> bool:
        """Hold the reservation `ttl` more seconds from now (default: its own ttl). False if it
        had lapsed (its call was idle past its ttl): it is then held again, without a limit,
        since its call is alive and may still be billed up to its worst case."""
        if reservation.done:
            return False
        ttl = ttl or reservation.ttl or self.reservation_ttl
        now = self.clock().timestamp()
        reservation.renewed_at = now
        if self.ledger.renew(reservation.id, ttl):
            return True
        if reservation.done:
            return False  # settled meanwhile (another thread ended the call)
        log.warning("the reservation of call %s had lapsed while the call was idle; holding it again", reservation.id)
        held = [Charge(c.bucket, c.amount, None, c.expires_at) for _, c, _, _ in reservation.lines]
        self.ledger.reserve(reservation.id, held, ttl)  # limit None: counted, never refused
        if reservation.done:
            self.ledger.release(reservation.id)  # ended while we held it again: give it back
        return False

    def keep_alive(self, reservation: Reservation | None) -> None:
        """Renew if it is due (RENEW_EVERY, or a quarter of the ttl, since the last renewal).
        Cheap when not due: one clock read. A ledger that cannot be reached is logged, not
        raised: the call is already under way (the hold then lapses at its ttl)."""
        if reservation is None or reservation.done:
            return
        if self.clock().timestamp() - reservation.renewed_at < min(RENEW_EVERY, reservation.ttl / 4):
            return
        try:
            self.renew(reservation)
        except LedgerUnavailableError as exc:
            log.warning("could not renew the reservation of call %s: %s", reservation.id, exc)

    def settle(self, reservation: Reservation, actual: int, *, events: bool = True) -> list[SpendEvent]:
        """Turn the reservation into spend of `actual` nanos; return one event per limited line
        (none when `events` is False: nobody listens)."""
        if reservation.done:
            return []
        reservation.done = True
        if reservation.scopes:
            settle_holds(reservation.scopes, reservation.id, actual)  # first: it cannot fail
        charges = [Charge(c.bucket, actual, c.limit, c.expires_at) for _, c, _, _ in reservation.lines]
        after = self.ledger.settle(reservation.id, charges)
        return self._events(reservation, actual, after) if events else []

    def release(self, reservation: Reservation) -> None:
        """Give the reservation back: the call failed or was cancelled before costing anything."""
        if not reservation.done:
            reservation.done = True
            if reservation.scopes:
                release_holds(reservation.scopes, reservation.id)
            self.ledger.release(reservation.id)

    def _events(self, reservation: Reservation, actual: int, after: Mapping[str, BucketState]) -> list[SpendEvent]:
        events: list[SpendEvent] = []
        now = self.clock()
        for line, charge, key, end in reservation.lines:
            if line is None:
                continue
            state = after.get(charge.bucket)
            if state is None:
                continue
            events.append(SpendEvent(
                line.scope, line.window.value, key, state.spent - actual, state.spent, state.reserved,
                line.limit_nanos, line.block_at, line.alert_at, end, now, reservation.model, reservation.project,
            ))
        return events

    def buckets(self, now: datetime | None = None) -> dict[tuple[str, str], str]:
        """(scope, window) -> current bucket name for every line (meters read these)."""
        now = now or self.clock()
        out: dict[tuple[str, str], str] = {}
        lines = self.budget.all_lines() if self.budget else []
        scopes = {(ln.scope, ln.window) for ln in lines} | {("global", w) for w in Window}
        for scope, window in scopes:
            out[(scope, window.value)] = bucket_name(scope, window_key(window, now, self.zone))
        return out
