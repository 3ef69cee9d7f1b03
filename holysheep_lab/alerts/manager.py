"""AlertManager: turns settled spend into level-crossing alerts and delivers them.

`observe(events)` runs on the call's hot path. It only does arithmetic and a few dict
look-ups under a lock (no I/O, no await), then hands the alerts to one background worker:
a daemon thread running its own event loop. The worker claims each alert (cross-process
dedup, when a `claim` is wired), records it, notifies subscribers and delivers it to every
channel concurrently, each with a timeout and retries with backoff. A delivery failure is
caught, recorded as a `Delivery` and logged on ``holysheep_lab.alerts``; it never reaches
the call that triggered it.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from holysheep_lab.alerts.channel import Channel, Redacting
from holysheep_lab.alerts.model import Alert, Delivery, Level, parse_levels
from holysheep_lab.core.events import SpendEvent
from holysheep_lab.core.validate import finite_number, positive_int, positive_seconds
from holysheep_lab.errors import AlertDeliveryError, ConfigError, redact

__all__ = ["AlertManager"]

log = logging.getLogger("holysheep_lab.alerts")

# A claimed key outlives its window by this much, so a process whose clock lags a little
# behind cannot claim the same window's level again just after the window ends.
_CLAIM_MARGIN_S = 6 * 3600.0
_MAX_BACKOFF_S = 30.0


class AlertManager:
    """Budget alerts: each level fires when a window's spend crosses it.

    Semantics:

    * A level fires when one settled call moves a window's spend across it:
      ``before < threshold * limit <= after``. A call that jumps over several levels fires
      each of them, lowest first; a level never suppresses another (each has its own
      dedup key ``"{scope}|{window_key}|{level}"``).
    * A level at or above the budget line's block line (``threshold >= block_at``) cannot be
      crossed by spend: a call that would take the spend past the block line is refused. Such
      a level fires instead on the first refused call of that line in the window (its alert
      has ``refused=True`` and shows the spend at that moment). With the defaults
      (``Budget(block_at=0.95)``), EMERGENCY 98 % means "this budget is now refusing calls";
      INFO, WARNING and CRITICAL fire on crossings as before. Each level still fires at most
      once per window, whichever way it fires first.
    * Each level fires at most once per (scope, window_key): a new day or month re-arms
      it. With `claim` (the ledger's ``claim(key, expires_at_epoch) -> bool``) the
      once-only holds across processes; if the claim itself fails the alert is sent anyway
      (a duplicate beats a missed alert). Without it, an in-memory set is used.
    * `cooldown` (seconds, default 300) throttles repeats: once a (scope, window kind,
      level), e.g. ("global", "daily", "WARNING"), has fired, the same triple does not fire
      again within `cooldown` seconds, even if its window re-armed meanwhile (a daily
      WARNING at 23:58 is not repeated at 00:01). A throttled crossing is dropped, not
      replayed later. The cooldown never suppresses a different level, scope or window kind.
    * `fire(alert)` sends an alert by hand, bypassing crossing, dedup and cooldown.

    `channels`: any channels, several of one kind included (two Slack webhooks): each is
    delivered to and recorded separately, under its name, made unique with ``#2``, ``#3``...
    when names repeat (`channel_names`). The same channel object twice is a ConfigError.
    `levels`: None (INFO 50 %, WARNING 75 %, CRITICAL 90 %, EMERGENCY 98 %), a mapping
    ``{"INFO": 0.5, ...}`` or a list of ``(name, ratio)``; ratios in (0, 1.5].
    `clock`: seconds for the cooldown (default `time.monotonic`).
    `tz`: the zone `Alert.resets_at` is shown in (pass the budget's zone); default: as given.
    Delivery: each attempt is bounded by `attempt_timeout`; up to `max_attempts` attempts
    with exponential backoff from `backoff` seconds (with jitter; a webhook's Retry-After
    is honoured up to 30 s). `history` keeps the last `max_history` alerts; at most
    `max_pending` batches (one per observe()/fire()) wait for delivery, beyond that new
    alerts are dropped and counted in `dropped` (a flood must not grow memory unbounded).
    """

    def __init__(
        self,
        channels: Sequence[Channel] = (),
        levels: Mapping[str, float] | Iterable[Level | tuple[str, float]] | None = None,
        cooldown: float = 300.0,
        clock: Callable[[], float] | None = None,
        claim: Callable[[str, float], bool] | None = None,
        *,
        tz: tzinfo | None = None,
        max_attempts: int = 3,
        backoff: float = 0.5,
        attempt_timeout: float = 30.0,
        max_history: int = 1000,
        max_pending: int = 1000,
    ) -> None:
        channels = tuple(channels)
        for ch in channels:
            if not isinstance(ch, Channel) or not isinstance(ch.name, str) or not callable(ch.send):
                raise ConfigError(
                    f"{type(ch).__name__} is not an alert channel (needs .name and async .send(alert))."
                )
        if len({id(ch) for ch in channels}) != len(channels):
            raise ConfigError(
                "AlertManager channels lists the same channel object twice: each would get every "
                "alert twice. Pass it once (two channels of one kind are fine)."
            )
        if claim is not None and not callable(claim):
            raise ConfigError("AlertManager claim must be a callable claim(key, expires_at) -> bool.")
        if clock is not None and not callable(clock):
            raise ConfigError("AlertManager clock must be a callable returning seconds, such as time.monotonic.")
        if tz is not None and not isinstance(tz, tzinfo):
            raise ConfigError(f"AlertManager tz must be a tzinfo (ZoneInfo('Europe/Berlin')), not {tz!r}.")
        self._channels: tuple[Channel, ...] = channels
        # Deliveries are recorded by name, and two Slack webhooks share theirs: keyed by object.
        self._names: dict[int, str] = _unique_names(channels)
        self._levels = parse_levels(levels)
        # Exact money: compare integer nanos against threshold num/den, never float ratios.
        self._thresholds = [(lv, *Decimal(repr(lv.threshold)).as_integer_ratio()) for lv in self._levels]
        self.cooldown = finite_number("AlertManager cooldown", cooldown, unit="of seconds")
        self.backoff = finite_number("AlertManager backoff", backoff, unit="of seconds")
        self.attempt_timeout = positive_seconds("AlertManager attempt_timeout", attempt_timeout)
        self.max_attempts = positive_int("AlertManager max_attempts", max_attempts, what="int")
        self._clock = clock or time.monotonic
        self._claim = claim
        self._tz = tz
        self._max_pending = positive_int("AlertManager max_pending", max_pending, what="int")

        # Guards the dedup/cooldown state and records below (observe runs on many threads).
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # dedup key -> epoch after which it may be forgotten
        self._last_fired: dict[tuple[str, str, str], float] = {}  # (scope, window, level) -> clock()
        history = positive_int("AlertManager max_history", max_history, what="int")
        self._history: deque[Alert] = deque(maxlen=history)
        self._deliveries: deque[Delivery] = deque(maxlen=history * max(1, len(channels)))
        self._subscribers: list[Callable[[Alert], Any]] = []

        self._cv = threading.Condition()  # guards _pending; flush() waits on it
        self._pending = 0
        self._dropped = 0
        self._dropping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._atexit: Callable[[], None] | None = None

    # ------------------------------------------------------------------ public state

    @property
    def levels(self) -> tuple[Level, ...]:
        return self._levels

    @property
    def channels(self) -> tuple[Channel, ...]:
        return self._channels

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Each channel's name as deliveries record it (unique), in the order of `channels`."""
        return tuple(self._names[id(ch)] for ch in self._channels)

    @property
    def history(self) -> list[Alert]:
        """Alerts fired (after claim), oldest first; bounded by `max_history`."""
        with self._lock:
            return list(self._history)

    @property
    def last_alert(self) -> Alert | None:
        with self._lock:
            return self._history[-1] if self._history else None

    @property
    def deliveries(self) -> list[Delivery]:
        """One record per (alert, channel) delivery, oldest first; bounded."""
        with self._lock:
            return list(self._deliveries)

    @property
    def pending(self) -> int:
        """Batches of alerts (one per observe()/fire()) handed to the worker, not yet done."""
        with self._cv:
            return self._pending

    @property
    def dropped(self) -> int:
        """Alerts dropped because `max_pending` batches were already waiting."""
        with self._cv:
            return self._dropped

    def subscribe(self, fn: Callable[[Alert], Any]) -> Callable[[], None]:
        """Call `fn(alert)` (sync, in the worker thread) for every fired alert; returns an
        unsubscribe function. Meant for meters that show the last alert: keep it quick."""
        if not callable(fn):
            raise ConfigError("subscribe() needs a callable fn(alert).")
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    def use_claim(self, claim: Callable[[str, float], bool]) -> None:
        """Wire the ledger's ``claim(key, expires_at)`` for cross-process once-only (the
        metering core calls this). A claim given to the constructor takes precedence."""
        if not callable(claim):
            raise ConfigError("use_claim() needs a callable claim(key, expires_at) -> bool.")
        if self._claim is None:
            self._claim = claim

    def use_zone(self, tz: tzinfo) -> None:
        """Show `Alert.resets_at` in the budget's zone (the metering core may call this).
        A `tz` given to the constructor takes precedence."""
        if self._tz is None:
            self._tz = tz

    # ------------------------------------------------------------------ hot path

    def observe(self, events: Iterable[SpendEvent]) -> list[Alert]:
        """Evaluate level crossings for settled spend and queue the alerts; never raises.

        Returns the alerts queued (before any cross-process claim). Cheap: no I/O.
        """
        try:
            found = self._evaluate(events)
        except Exception:  # a bug here must not fail the user's (already paid) call
            log.exception("alert evaluation failed; the call is unaffected")
            return []
        if found:
            self._submit(found)
        return [alert for alert, _, _ in found]

    def _evaluate(self, events: Iterable[SpendEvent]) -> list[tuple[Alert, str, float]]:
        found: list[tuple[Alert, str, float]] = []
        for ev in events:
            before, after, limit = ev.before_nanos, ev.after_nanos, ev.limit_nanos
            if limit <= 0:
                continue
            if ev.refused:
                # The line is full: the levels its spend can never cross fire now.
                crossed = [lv for lv in self._levels if lv.threshold >= ev.block_at]
            elif after <= before:
                continue
            else:
                # before < limit * num / den <= after, in integers
                crossed = [lv for lv, num, den in self._thresholds if before * den < limit * num <= after * den]
            if not crossed:
                continue
            expires = ev.resets_at.timestamp() + _CLAIM_MARGIN_S
            now = self._clock()
            with self._lock:
                for lv in crossed:
                    key = f"{ev.scope}|{ev.window_key}|{lv.name}"
                    if key in self._seen:
                        continue
                    self._seen[key] = expires
                    throttle = (ev.scope, ev.window, lv.name)
                    last = self._last_fired.get(throttle)
                    if last is not None and now - last < self.cooldown:
                        log.debug("alert %s throttled by the %.0f s cooldown", key, self.cooldown)
                        continue
                    self._last_fired[throttle] = now
                    found.append((self._alert(ev, lv), key, expires))
                if len(self._seen) > 4096:
                    self._forget_expired()
        return found

    def _forget_expired(self) -> None:
        cutoff = time.time()
        for key in [k for k, exp in self._seen.items() if exp < cutoff]:
            del self._seen[key]

    def _alert(self, ev: SpendEvent, level: Level) -> Alert:
        resets = ev.resets_at.astimezone(self._tz) if self._tz is not None else ev.resets_at
        return Alert(
            level=level, scope=ev.scope, window=ev.window, window_key=ev.window_key,
            spent=ev.after, limit=ev.limit, ratio=ev.ratio, reserved=ev.reserved,
            resets_at=resets, ts=ev.ts, project=ev.project, model=ev.model, refused=ev.refused,
        )

    def fire(self, alert: Alert) -> None:
        """Send `alert` now (manual or test alerts): no crossing, dedup or cooldown check."""
        if not isinstance(alert, Alert):
            raise TypeError(f"fire() needs an hs.Alert, not {type(alert).__name__}")
        if self._closed:
            raise RuntimeError("this AlertManager is closed")
        self._submit([(alert, None, 0.0)])

    # ------------------------------------------------------------------ worker

    def _submit(self, batch: Sequence[tuple[Alert, str | None, float]]) -> None:
        """Queue one call's alerts as a batch: a channel gets a batch in order (INFO before
        WARNING), while different batches are delivered concurrently, so one hanging
        channel delays no other channel and builds no queue behind a single slow send."""
        if self._closed:
            log.warning("%d alert(s) dropped: the AlertManager is closed", len(batch))
            return
        with self._cv:
            if self._pending >= self._max_pending:
                self._dropped += len(batch)
                if not self._dropping:  # once per overflow episode, not once per alert
                    self._dropping = True
                    log.error("alerts dropped: %d batches already wait for delivery", self._pending)
                return
            self._dropping = False
            self._pending += 1
        try:
            self._ensure_worker().call_soon_threadsafe(self._spawn, batch)
        except RuntimeError:  # closed by close() in another thread just now
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()
            log.warning("%d alert(s) dropped: the AlertManager is closed", len(batch))

    def _ensure_worker(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._cv:
            if self._closed:
                raise RuntimeError("AlertManager is closed")
            if self._loop is None:
                # The loop is created here and run by the thread: callbacks scheduled before
                # the thread starts simply wait in its queue, so no start-up handshake.
                new_loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._run_loop, args=(new_loop,), name="holysheep-alerts", daemon=True
                )
                self._loop, self._thread = new_loop, thread
                thread.start()
                # A daemon thread dies with the interpreter: give pending alerts a moment.
                self._atexit = functools.partial(_flush_at_exit, weakref.ref(self))
                atexit.register(self._atexit)
            return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def _spawn(self, batch: Sequence[tuple[Alert, str | None, float]]) -> None:
        task = asyncio.get_running_loop().create_task(self._process(batch))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _process(self, batch: Sequence[tuple[Alert, str | None, float]]) -> None:
        try:
            fired: list[Alert] = []
            for alert, key, expires in batch:
                if key is not None and self._claim is not None and not self._claimed(key, expires):
                    log.debug("alert %s already fired by another process", key)
                    continue
                fired.append(alert)
                with self._lock:
                    self._history.append(alert)
                    subscribers = list(self._subscribers)
                for fn in subscribers:
                    try:
                        fn(alert)
                    except Exception:  # a subscriber's bug must not stop delivery to the channels
                        log.exception("alert subscriber %r failed", fn)
            if fired:
                await asyncio.gather(*(self._deliver_all(fired, ch) for ch in self._channels))
        finally:
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()

    async def _deliver_all(self, alerts: list[Alert], channel: Channel) -> None:
        for alert in alerts:
            await self._deliver(alert, channel)

    def _claimed(self, key: str, expires: float) -> bool:
        try:
            return bool(self._claim(key, expires))  # type: ignore[misc]
        except Exception as exc:  # fail open: a duplicate alert beats a missed one
            log.warning("alert claim for %s failed (%s); sending anyway", key, type(exc).__name__)
            return True

    async def _deliver(self, alert: Alert, channel: Channel) -> None:
        attempts, ok, error = 0, False, None
        name = self._names[id(channel)]
        try:
            while attempts < self.max_attempts:
                attempts += 1
                retry_after: float | None = None
                try:
                    async with asyncio.timeout(self.attempt_timeout):
                        await channel.send(alert)
                    ok, error = True, None
                    break
                except AlertDeliveryError as exc:
                    error = str(exc)
                    retry_after = exc.retry_after
                    if not exc.retryable:
                        break
                except TimeoutError:
                    error = f"{name}: no result within {self.attempt_timeout:g} s"
                except Exception as exc:  # a channel bug: recorded and logged like any failure
                    error = f"{name}: {type(exc).__name__}: {exc}"
                    log.error(
                        "alert channel %s raised %s", name, type(exc).__name__, exc_info=True
                    )
                if attempts < self.max_attempts:
                    delay = self.backoff * 2 ** (attempts - 1) * random.uniform(0.5, 1.0)
                    if retry_after is not None:
                        delay = max(delay, retry_after)
                    await asyncio.sleep(min(delay, _MAX_BACKOFF_S))
        except asyncio.CancelledError:
            # close() gave up waiting: record the loss rather than let it vanish.
            reason = f"{name}: cancelled by close() ({error})"
            self._record(alert, channel, False, attempts, reason)
            raise
        error = self._record(alert, channel, ok, attempts, error)
        if ok:
            log.debug("alert %r delivered to %s (attempts: %d)", alert.title, name, attempts)
        else:
            log.warning(
                "alert %r not delivered to %s after %d attempt(s): %s",
                alert.title, name, attempts, error,
            )

    def _record(
        self, alert: Alert, channel: Channel, ok: bool, attempts: int, error: str | None
    ) -> str | None:
        """Record one delivery; returns its error as recorded (redacted), for the log too."""
        if error is not None:
            error = _redact_for(channel, error)
        record = Delivery(alert, self._names[id(channel)], ok, attempts, error, datetime.now(UTC))
        with self._lock:
            self._deliveries.append(record)
        return error

    # ------------------------------------------------------------------ lifecycle

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued alert is delivered (or failed); False on timeout."""
        if threading.current_thread() is self._thread:
            # From a subscriber or callback: the worker would wait for itself.
            raise RuntimeError("flush() cannot be called from the alert worker")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout` s), then stop the worker. Idempotent."""
        if self._closed:
            return
        self.flush(timeout)
        with self._cv:  # no new worker can start after this
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout=max(timeout, 1.0))
        except TimeoutError:
            log.warning("alert worker did not stop within %.1f s", timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=max(timeout, 1.0))
        if not thread.is_alive():
            loop.close()
        if self._atexit is not None:
            atexit.unregister(self._atexit)  # this manager's own partial: others stay registered
            self._atexit = None
        self._loop = self._thread = None

    def __enter__(self) -> AlertManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        levels = ", ".join(f"{lv.name} {lv.percent}" for lv in self._levels)
        channels = ", ".join(repr(ch) for ch in self._channels)
        return (
            f"AlertManager(levels=[{levels}], channels=[{channels}], cooldown={self.cooldown:g}, "
            f"fired={len(self._history)}, pending={self.pending})"
        )


def _unique_names(channels: Sequence[Channel]) -> dict[int, str]:
    """id(channel) -> its name, the second and later of a repeated name suffixed #2, #3..."""
    out: dict[int, str] = {}
    taken: set[str] = set()
    for ch in channels:
        name, n = ch.name, 1
        while name in taken:
            n += 1
            name = f"{ch.name}#{n}"
        taken.add(name)
        out[id(ch)] = name
    return out


def _redact_for(channel: Channel, text: str) -> str:
    # A channel bug's exception text was never redacted by the channel: its own secrets go
    # here; anything key-shaped also goes for custom channels that quote a secret.
    return channel.redact(text) if isinstance(channel, Redacting) else redact(text)


async def _cancel_all() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _flush_at_exit(ref: weakref.ref[AlertManager]) -> None:
    manager = ref()
    if manager is not None and not manager._closed:
        manager.flush(timeout=5.0)

