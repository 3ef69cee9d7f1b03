"""The metering core: plan, admit, settle and log one call. Independent of any HTTP library.

Transports (httpx2, legacy httpx) drive it; it never sends anything itself. Every call that
reaches `plan` ends as exactly one log row: ok, error, blocked, unpriced or unknown; a call that
is sent again after an attempt with an unknown outcome also logs that attempt, as an `unknown`
row of its own (`<call_id>.<attempt>`), when it decides to resend.

Fail closed on money: what the relay may have billed is charged. An attempt that was sent and got
no answer is charged at its worst case (`unknown`), an answer without usable usage at its
reservation (`usage_missing`), and a call still in flight when the metering closes (or the
interpreter exits) at its worst case, before the log writer closes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

from holysheep_lab.core import fastjson
from holysheep_lab.core.budget import Budget, Window, window_bounds, window_key
from holysheep_lab.core.clock import BUCKET_GRACE_S
from holysheep_lab.core.events import SpendEvent
from holysheep_lab.core.guard import Guard, Reservation
from holysheep_lab.core.ids import new_id
from holysheep_lab.core.limits import RateLimit, RateLimiter, Retry
from holysheep_lab.core.money import nanos_to_usd
from holysheep_lab.core.pace import SpendPace
from holysheep_lab.core.pricing import RELAY_COST_TOLERANCE, Price, PriceTable, Usage, relay_drift
from holysheep_lab.core.runaway import RunawayWatch
from holysheep_lab.core.scopes import NO_CONTEXT, CallContext, context_for
from holysheep_lab.core.tokens import InputSize, TokenEstimator
from holysheep_lab.endpoints import Endpoint, RequestFacts, find_endpoint, normalise_path
from holysheep_lab.endpoints.passthrough import Passthrough, metered_names
from holysheep_lab.errors import (
    BudgetExceededError,
    ConfigError,
    HolySheepError,
    LedgerUnavailableError,
    ResponseFormatError,
    UnknownModelError,
    UnmeteredEndpointError,
    redact,
)
from holysheep_lab.ledger.base import Ledger, bucket_name
from holysheep_lab.log.schema import CallRecord

if TYPE_CHECKING:
    from holysheep_lab.alerts import AlertManager

__all__ = ["MAX_INPUT_HEADER", "PAYLOAD_EXTENSION", "PROJECT_HEADER", "CallPlan", "CostDriftWarning", "LogKeptWarning",
           "Metered", "Metering", "MeteringOptions", "UsageMissingWarning"]

log = logging.getLogger("holysheep_lab")

#: hs.Client passes a per-call project in this header; the transport strips it before sending.
PROJECT_HEADER = "x-holysheep-project"
#: A per-call bound on the whole input, in tokens, for parts that cannot be measured before
#: sending (a file_id, a PDF): hs.Client's `max_input_tokens=`, or any SDK's extra_headers.
#: Stripped before sending, like PROJECT_HEADER.
MAX_INPUT_HEADER = "x-holysheep-max-input-tokens"
#: hs.Client hands the request's dict to the transport here, so it is not parsed back from JSON.
PAYLOAD_EXTENSION = "holysheep_payload"
_NO_USAGE = Usage()
#: Rows whose cost is spend (seeded into the ledger at start-up).
_SPENDING = frozenset({"ok", "error", "unknown"})


class UsageMissingWarning(UserWarning):
    """An answer came without usable usage: it is charged at its reservation, its row flagged."""


class CostDriftWarning(UserWarning):
    """The relay's own cost figure for a call is further from ours than `relay_cost_tolerance`."""


class LogKeptWarning(UserWarning):
    """The call log's disk refused a row: it is kept in memory and written when the disk is back."""


class MeteringOptions(TypedDict, total=False):
    """The keywords every metered entry point takes (Client, transports, legacy adapters)."""

    budget: Budget | None
    log_dir: str | Path | None
    ledger: Ledger | None
    alerts: AlertManager | None
    rate_limit: RateLimit | None
    retry: Retry | None
    prices: PriceTable | Mapping[str, Any] | str | Path | None
    project: str | None
    allow_unpriced: bool
    log_content: bool
    passthrough: Sequence[str] | None
    idempotency_header: str | None
    relay_cost_tolerance: float | None


@runtime_checkable
class Metered(Protocol):
    """Anything that meters its calls through one Metering (hs.Client does): what the meter
    widgets and the dashboard take, so they need not import the client."""

    @property
    def metering(self) -> Metering: ...


def _default_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CallPlan:
    """What the metering knows about a call before it is sent."""

    call_id: str
    ts: datetime
    started: float  # perf_counter
    endpoint: Endpoint
    model: str
    project: str | None
    price: Price | None
    max_tokens: int | None
    output_bound: int
    size: InputSize
    input_bound: int
    estimate_nanos: int
    stream: bool
    strip_usage_chunk: bool  # we asked for the usage chunk; the caller did not
    body: bytes
    conversation_id: str | None
    prompt: str | None
    reservation: Reservation | None = None
    attempts: int = 0
    http_status: int | None = None  # of the last answer received
    ttft_ms: float | None = None
    finished: bool = False
    # The last attempt reached the relay and its answer is not in hand (sent and unanswered,
    # or a 2xx whose body is still to be read): ending now, the relay may have billed it.
    in_doubt: bool = False
    idempotent: bool = False  # every attempt carries one idempotency key: the relay bills it once
    ttl: float = 0.0  # how long its reservation is held per renewal (0: the guard's default)
    record: CallRecord | None = None  # the call's row, once it is logged
    context: CallContext = NO_CONTEXT  # the experiment / notebook cell it was made in (tags, caps)

    @property
    def rate_tokens(self) -> int:
        return self.input_bound + self.output_bound


class Metering:
    """Prices, guards, rate-limits and logs calls. One per client; shared by its transports."""

    def __init__(
        self,
        *,
        budget: Budget | None = None,
        log_dir: str | Path | None = None,
        ledger: Ledger | None = None,
        alerts: AlertManager | None = None,
        rate_limit: RateLimit | None = None,
        retry: Retry | None = None,
        prices: PriceTable | Mapping[str, Any] | str | Path | None = None,
        project: str | None = None,
        allow_unpriced: bool = False,
        log_content: bool = False,
        passthrough: Sequence[str] | None = None,
        idempotency_header: str | None = None,
        relay_cost_tolerance: float | None = RELAY_COST_TOLERANCE,
        clock: Callable[[], datetime] = _default_clock,
        secrets: tuple[str, ...] = (),
    ) -> None:
        from holysheep_lab.ledger.machine import machine_ledger
        from holysheep_lab.log import LogWriter

        _check_options(budget, ledger, alerts, rate_limit, retry, project, log_dir, clock)
        for name, flag in (("allow_unpriced", allow_unpriced), ("log_content", log_content)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{name} must be True or False, not {flag!r}.")
        if relay_cost_tolerance is not None and (isinstance(relay_cost_tolerance, bool) or not isinstance(
                relay_cost_tolerance, int | float) or not relay_cost_tolerance >= 0):
            raise ConfigError(f"relay_cost_tolerance must be a fraction >= 0 (0.05: 5 %) or None, "
                              f"not {relay_cost_tolerance!r}.")
        self.budget = budget
        self.prices = PriceTable.coerce(prices)
        self.project = project
        self.allow_unpriced = allow_unpriced
        self.log_content = log_content
        self.passthrough = Passthrough(passthrough)  # POSTs without an adapter sent anyway, unmetered
        self.clock = clock
        self.retry = retry or Retry()
        self.limiter = RateLimiter(rate_limit)
        self.estimator = TokenEstimator()
        self.log_dir = Path(log_dir or os.environ.get("HOLYSHEEP_LOG_DIR") or "holysheep_logs")
        self.writer = LogWriter(self.log_dir)
        # Default: one budget per machine, in the log folder (ledger=hs.MemoryLedger(): per process).
        self.ledger: Ledger = ledger if ledger is not None else machine_ledger(self.log_dir)
        # A refusal is when a budget line is at its block line: alert levels above it (the
        # default EMERGENCY 98 % over block_at 0.95) can only fire then (see AlertManager).
        self.guard = Guard(budget, self.ledger, clock=clock, reservation_ttl=self.retry.max_total + 300,
                           on_refusal=_alert_refusals(alerts) if alerts is not None else None)
        self.alerts = alerts
        if alerts is not None:
            # One alert per level per window across processes (the ledger is shared), and
            # reset times shown in the budget's zone.
            alerts.use_claim(self.ledger.claim)
            alerts.use_zone(self.guard.zone)
        if idempotency_header is not None and (not isinstance(idempotency_header, str)
                                               or not idempotency_header.strip()):
            raise ConfigError(f"idempotency_header must be a header name, not {idempotency_header!r}.")
        # The relay bills a repeated value of this header once: every attempt of a call carries
        # the same value, so resends share the call's one reservation (see `resend`).
        self.idempotency_header = idempotency_header.strip().lower() if idempotency_header else None
        # A relay that reports its own cost (usage.cost) and differs from ours by more than
        # this fraction gets a CostDriftWarning per call: our table or theirs is wrong.
        self.relay_cost_tolerance = relay_cost_tolerance
        self._secrets = tuple(dict.fromkeys(s for s in secrets if s))
        self._secrets_lock = threading.Lock()
        self.pace = SpendPace()  # the meters' last minute, and the spend per second their projections use
        self.runaways = RunawayWatch()  # growing conversations and retry storms, for the meters
        self._listeners: list[Callable[[CallRecord, list[SpendEvent]], None]] = []
        self._on_close: list[Callable[[], None]] = []  # views that freeze when the metering closes
        self.calls = 0
        self.closed = False
        self._ledger_down = False
        # Admitted, not yet logged, with the pid that sent them: settled at close or exit (a
        # forked child inherits its parent's calls in flight and must not log them again).
        self._open: dict[str, tuple[int, CallPlan]] = {}
        self._open_lock = threading.Lock()
        # (method, path) -> its adapter: a client sends to a few paths, and matching is pure.
        self._endpoints: dict[tuple[str, str], Endpoint | None] = {}
        # Calls still in flight at interpreter exit are settled before the writer closes.
        self.writer.before_close(self._settle_open)
        # A shared ledger that restarts empty (Redis without persistence) relearns the
        # spend from the log before it approves anything, in every process.
        self.ledger.use_seeder(lambda: self._spend_from_log(calibrate=False))
        self._rebuild_from_log()

    # -- secrets -------------------------------------------------------------------------------

    @property
    def secrets(self) -> tuple[str, ...]:
        """The keys redacted from every stored or raised text (the client's, and each request's)."""
        return self._secrets

    def add_secrets(self, *values: str) -> None:
        """Also redact these (the transports pass each request's credentials)."""
        known = self._secrets
        if all(v in known for v in values):
            return  # the common case: the same key on every call
        with self._secrets_lock:
            self._secrets = tuple(dict.fromkeys((*self._secrets, *(v for v in values if v))))

    # -- start-up ------------------------------------------------------------------------------

    def _rebuild_from_log(self, *, calibrate: bool = True) -> None:
        """Seed the ledger with this month's spend and calibrate the estimator from the log.

        The log is the truth: a restarted kernel keeps today's and this month's spend.
        """
        spent, expires = self._spend_from_log(calibrate=calibrate)
        if spent:
            self.ledger.seed(spent, expires)

    def _spend_from_log(self, *, calibrate: bool) -> tuple[dict[str, int], dict[str, float]]:
        """This month's logged spend per ledger bucket, and the buckets' expiry times."""
        spent: dict[str, int] = {}
        expires: dict[str, float] = {}
        from holysheep_lab.log import may_hold_rows

        if not may_hold_rows(self.log_dir):
            return spent, expires  # a fresh log: no pyarrow import at start-up
        from holysheep_lab.log import read_table

        now = self.clock()
        zone = self.guard.zone
        month_start = window_bounds(Window.MONTH, now, zone)[0]
        cols = ["ts", "status", "cost_nanos", "project", "model", "input_tokens", "input_bytes",
                "input_non_ascii_bytes", "input_messages", "usage_missing", "input_words"]
        table = read_table(self.log_dir, start=month_start, columns=cols, below=False)
        if table.num_rows == 0:
            return spent, expires
        projects = set(self.budget.projects) if self.budget else set()
        rows = table.to_pydict()
        # Window maths once per local day (a day lies in one month, so its keys hold for the
        # whole [start, end)), not once per row: a month of logs can hold millions of calls.
        # Bounds, not clock arithmetic: right for any offset (UTC+00:07, +05:45) and DST day.
        days: list[tuple[datetime, datetime, list[tuple[str, float]]]] = []
        day: tuple[datetime, datetime, list[tuple[str, float]]] | None = None
        for ts, status, cost, project, model, itok, ibytes, inon, imsg, missing, iwords in zip(
                *(rows[c] for c in cols), strict=True):
            if cost and status in _SPENDING:
                if day is None or not day[0] <= ts < day[1]:
                    day = next((d for d in days if d[0] <= ts < d[1]), None)
                    if day is None:
                        day_start, day_end = window_bounds(Window.DAY, ts, zone)
                        day = (day_start, day_end, [(window_key(w, ts, zone), window_bounds(w, ts, zone)[1].timestamp()
                                             + BUCKET_GRACE_S) for w in Window])
                        days.append(day)
                keys = day[2]
                scopes = ("global", f"project:{project}") if project in projects else ("global",)
                for key, end in keys:
                    for scope in scopes:
                        b = bucket_name(scope, key)
                        spent[b] = spent.get(b, 0) + cost
                        expires[b] = end
            if calibrate and status == "ok" and not missing and iwords and itok is not None:
                self.estimator.observe(model, InputSize(ibytes or 0, inon or 0, imsg or 1, words=iwords), itok)
        return spent, expires

    # -- one call ------------------------------------------------------------------------------

    def plan(self, method: str, path: str, body: bytes, headers: Mapping[str, str],
             payload: dict[str, Any] | None = None) -> CallPlan | None:
        """Plan a billable call (None: pass it through unmetered). Raises before sending:
        ConfigError for a request body we cannot read, UnknownModelError (logged), and
        UnmeteredEndpointError for a POST no adapter meters unless `passthrough` names its path
        (then it goes through, logged as 'unmetered'). Other methods (GET /models) pass.
        `payload` is the already-parsed body when the caller has it (hs.Client does)."""
        try:
            endpoint = self._endpoints[method, path]
        except KeyError:
            endpoint = find_endpoint(method, path)
            if len(self._endpoints) >= _ENDPOINT_CACHE:
                self._endpoints.clear()
            self._endpoints[method, path] = endpoint
        if endpoint is None:
            if method.upper() == "POST":
                self._unmetered(method, path, body, headers)
            return None
        if payload is None:
            try:
                payload = fastjson.loads(body)
            except ValueError as exc:
                raise ConfigError(f"The {endpoint.name} request body is not JSON; nothing was sent.") from exc
        if not isinstance(payload, dict):
            raise ConfigError(f"A {endpoint.name} request needs a JSON object body; nothing was sent.")
        return self._plan(endpoint, payload, body, headers)

    def _unmetered(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Refuse a POST that no adapter meters, or log it as 'unmetered' (one row, cost null:
        unknown, not $0) if the user let its path through."""
        normal = normalise_path(path)
        if not self.passthrough.allows(normal):
            raise UnmeteredEndpointError(method, path, normal, metered_names())
        model: Any = None
        if body[:1] == b"{":  # a JSON body may name its model; multipart uploads are not read
            try:
                parsed = fastjson.loads(body)
            except ValueError:
                parsed = None
            model = parsed.get("model") if isinstance(parsed, dict) else None
        context = context_for(self)
        self._write(self._record(
            new_id(), self.clock(), model if isinstance(model, str) else "unknown",
            headers.get(PROJECT_HEADER) or self.project, InputSize(len(body), 0, 0, 0), None, context,
            status="unmetered", attempts=1, cost_usd=None, cost_nanos=None, estimated_cost_usd=None, endpoint=normal,
        ), context)

    def _plan(self, endpoint: Endpoint, payload: dict[str, Any], body: bytes, headers: Mapping[str, str]) -> CallPlan:
        facts = endpoint.plan(payload, self.log_content)
        model = facts.model
        project = headers.get(PROJECT_HEADER) or self.project
        context = context_for(self)
        started = time.perf_counter()
        ts = self.clock()
        try:
            price: Price | None = self.prices.price(model, at=ts)  # the price in effect when the call starts
        except UnknownModelError as exc:
            if not self.allow_unpriced:
                self._write(self._record(new_id(), ts, model, project, facts.size, facts.max_tokens, context,
                                         status="error", error="unknown model: no price; not sent", attempts=0,
                                         estimated_cost_usd=None, endpoint=endpoint.name), context)
                raise exc from None
            price = None
        output_bound = _output_bound(facts, price)
        input_bound = _input_bound(facts, self.estimator.bound(model, facts.size), headers)
        estimate = price.worst_case_nanos(input_bound, output_bound) if price else 0
        strip = False
        if facts.stream and endpoint.request_usage(payload):
            # The usage event is how a stream's cost is known; hide it from callers who did not ask.
            body = json.dumps(payload).encode()
            strip = True
        return CallPlan(
            call_id=new_id(), ts=ts, started=started, endpoint=endpoint, model=model, project=project, price=price,
            max_tokens=facts.max_tokens, output_bound=output_bound, size=facts.size, input_bound=input_bound,
            estimate_nanos=estimate, stream=facts.stream, strip_usage_chunk=strip, body=body,
            conversation_id=facts.conversation_id, prompt=facts.content, context=context,
        )

    def preview(self, endpoint: Endpoint, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> CallPlan:
        """Plan a request body without sending or logging it (for `client.estimate`)."""
        self.prices.price(endpoint.plan(payload, False).model)  # UnknownModelError, not logged: nothing was attempted
        return self._plan(endpoint, payload, b"", headers or {})

    def admit(self, plan: CallPlan) -> None:
        """Reserve the worst case; BudgetExceededError (logged as 'blocked') if it would pass.
        LogError (nothing sent, nothing logged) if the log's disk cannot take the call's row."""
        self.writer.check_room()  # like money: a call whose row cannot be kept is not paid for
        if plan.price is not None:
            try:
                if self._ledger_down:
                    # A shared ledger that lost its state (a restarted Redis) must relearn the
                    # spend from the log before it may approve anything; seeding never lowers.
                    self._rebuild_from_log(calibrate=False)
                    self._ledger_down = False
                plan.reservation = self.guard.reserve(plan.call_id, plan.estimate_nanos, project=plan.project,
                                                      model=plan.model, ttl=plan.ttl or None,
                                                      scopes=plan.context.scopes)
            except (BudgetExceededError, LedgerUnavailableError) as exc:
                self._ledger_down = self._ledger_down or isinstance(exc, LedgerUnavailableError)
                plan.finished = True
                plan.record = self._write(self._plan_record(plan, status="blocked", attempts=0,
                                                            error=_short(str(exc))), plan.context)
                raise
        # else unpriced (opt-in): nothing to reserve, logged as 'unpriced'
        with self._open_lock:
            self._open[plan.call_id] = (_pid[0], plan)

    def resend(self, plan: CallPlan, exc: BaseException) -> None:
        """The last attempt was sent and got no answer, and the call will be sent again.

        That attempt may have been billed: it stays charged at its worst case and is logged now
        as an `unknown` row of its own; the next attempt gets its own reservation first.
        BudgetExceededError if the budget cannot take another attempt (the call then ends, see
        `fail`, as `unknown` at the bound of the attempt already sent)."""
        if plan.finished or plan.idempotent:
            return  # idempotent: the relay bills the key once; the call's reservation covers it
        attempt = plan.attempts
        previous = plan.reservation
        if previous is not None:
            try:
                plan.reservation = self.guard.reserve(f"{plan.call_id}/{attempt + 1}", plan.estimate_nanos,
                                                      project=plan.project, model=plan.model, ttl=plan.ttl or None,
                                                      scopes=plan.context.scopes)
            except BudgetExceededError as refusal:
                raise refusal from exc
        plan.in_doubt = False  # the unknown attempt is accounted for below; the next is not sent yet
        cost = plan.estimate_nanos if plan.price is not None else None
        events = self._spend(plan, previous, cost)
        record = self._write(self._plan_record(
            plan, call_id=f"{plan.call_id}.{attempt}", status="unknown", attempts=attempt,
            http_status=None, latency_ms=(time.perf_counter() - plan.started) * 1000,
            cost_nanos=cost, cost_usd=nanos_to_usd(cost) if cost is not None else None, usage_missing=True,
            input_tokens=plan.input_bound, output_tokens=plan.output_bound,
            error=_short(f"{self._describe(exc)}; sent again, this attempt charged at its bound"),
        ), plan.context)
        self._observed(record, cost, events)

    def complete(self, plan: CallPlan, status_code: int, body: bytes,
                 headers: Mapping[str, str]) -> tuple[CallRecord, Any, HolySheepError | None]:
        """Settle and log a non-streamed answer. Returns (record, parsed JSON or None, error).

        An answer whose usage is missing, null or implausible is charged at its reservation,
        flagged `usage_missing`, warned about, and handed back (no error): it was paid for."""
        parsed: Any = None
        error: HolySheepError | None = None
        usage: Usage | None = None
        missing: str | None = None
        answered = 200 <= status_code < 300
        try:
            parsed = fastjson.loads(body)
        except ValueError:
            kind = "an HTML page" if body.lstrip()[:1] == b"<" else "malformed JSON"
            error = ResponseFormatError(f"The relay answered HTTP {status_code} with {kind} instead of a {plan.endpoint.name} answer.",
                                        status_code=status_code, body=body.decode("utf-8", "replace"))
            if answered:
                missing = f"{kind} instead of an answer"
        if error is None and answered:
            try:
                usage = plan.endpoint.usage(parsed)
            except ResponseFormatError as exc:
                missing = str(exc)
            else:
                missing = _implausible(plan, usage, lambda: plan.endpoint.completion_text(parsed))
            if missing is not None:
                usage = None
        if error is None and not answered:
            error = _http_error(status_code, parsed, body)
        text = plan.endpoint.completion_text(parsed) if self.log_content else None
        record = self._finish(plan, status_code, usage, error, answered=answered, completion=text, missing=missing)
        return record, parsed, error

    def fail(self, plan: CallPlan, exc: BaseException, status_code: int | None = None) -> CallRecord | None:
        """The call ended without an answer (timeout, connection, cancel, refused resend).

        If its last attempt reached the relay and no answer came (`plan.in_doubt`), the relay
        may have billed it: it is charged at its worst case and logged `unknown`. Otherwise
        (nothing was sent, or the relay answered with an error) the reservation is released."""
        if plan.finished:
            return None
        return self._finish(plan, status_code, None, None, answered=False, unknown=plan.in_doubt,
                            error_text=self._describe(exc))

    def stream_done(self, plan: CallPlan, status_code: int, usage: Usage | None,
                    received: Callable[[], tuple[str, int]], cut: bool,
                    error_text: str | None = None) -> CallRecord | None:
        """Settle a stream from its usage event. A stream that ended without usable usage (cut,
        abandoned, or the relay sent none) is charged at its reservation, flagged `usage_missing`.
        `received()` gives (text, content events) so far; it is only asked for when needed.
        Returns the call's record (None if it was logged before without one)."""
        if plan.finished:
            return plan.record
        if usage is None:
            missing: str | None = "no usage event" if cut else "the stream ended without a usage event"
        else:
            missing = _implausible(plan, usage, lambda: received()[0])
            if missing is not None:
                usage = None
        if cut and error_text is None:
            error_text = "stream cut before its end"
        return self._finish(plan, status_code, usage, None, answered=True, partial=cut, error_text=error_text,
                            completion=received()[0] if self.log_content else None, missing=missing)

    # -- shared ending -------------------------------------------------------------------------

    def _describe(self, exc: BaseException) -> str:
        """`Kind: message` of an exception (and of its cause), redacted, for the error column."""
        kind = type(exc).__name__
        text = f"{kind}: {redact(str(exc), *self.secrets)}" if str(exc) else kind
        cause = exc.__cause__
        if cause is not None:
            text = f"after {type(cause).__name__}, {text}"
        return _short(text)

    def _claim(self, plan: CallPlan) -> bool:
        """True once per call: whoever ends it (answer, failure, close or exit) logs it alone."""
        with self._open_lock:
            if plan.finished:
                return False
            plan.finished = True
            self._open.pop(plan.call_id, None)
            return True

    def _spend(self, plan: CallPlan, res: Reservation | None, cost: int | None) -> list[SpendEvent]:
        """Settle `res` at `cost` (release it if nothing was spent)."""
        if res is None:
            return []
        try:
            if cost:
                return self.guard.settle(res, cost, events=self.alerts is not None or bool(self._listeners))
            self.guard.release(res)
        except LedgerUnavailableError:
            # The call is logged below; the ledger relearns it from the log (see admit) once it
            # is back, so the spend is not lost.
            self._ledger_down = True
            log.warning("ledger unavailable while settling call %s; it will be re-seeded from the log", plan.call_id)
        return []

    def _observed(self, record: CallRecord, cost: int | None, events: list[SpendEvent]) -> None:
        if cost:
            self.pace.add(cost)
        if events and self.alerts is not None:
            self.alerts.observe(events)
        for fn in list(self._listeners):
            fn(record, events)

    def _finish(self, plan: CallPlan, status_code: int | None, usage: Usage | None, error: HolySheepError | None,
                *, answered: bool, partial: bool = False, error_text: str | None = None,
                completion: str | None = None, missing: str | None = None, unknown: bool = False) -> CallRecord:
        """Settle and log the call. `missing`: why an answer's usage cannot be used (it is then
        charged at the reservation); `unknown`: sent, no answer (charged at the bound)."""
        if not self._claim(plan):
            assert plan.record is not None, "an ended call is logged"
            return plan.record  # ended meanwhile (by close or exit): one row per call
        cost: int | None = 0
        status = "ok"
        at_bound = unknown or missing is not None or (answered and usage is None)
        if usage is not None:
            if plan.price is not None:
                cost = plan.price.cost_nanos(usage)
            else:
                cost, status = None, "unpriced"
        elif at_bound:
            # Billed, or maybe billed, and no count: the worst case, never $0.
            if plan.price is not None:
                cost = plan.estimate_nanos
            else:
                cost, status = None, "unpriced"
        failed = error is not None or error_text is not None
        if unknown:
            status = "unknown"
        elif failed and status != "unpriced":
            status = "error"
        events = self._spend(plan, plan.reservation, cost)
        if usage is not None and status == "ok":
            self.estimator.observe(plan.model, plan.size, usage.input_tokens)
        # No usable count: the row carries the bound it was charged at (and says so).
        counted = usage or (Usage(plan.input_bound, plan.output_bound) if at_bound else _NO_USAGE)
        if missing is not None:
            reason = f"usage missing ({missing}); charged at the reservation"
            error_text = f"{error_text}; {reason}" if error_text else reason
            log.warning("call %s: %s", plan.call_id, reason)
            _warn(f"The relay's answer had no usable usage ({_short(missing, 120)}); it is charged at its "
                  "worst case and its row is flagged usage_missing.", UsageMissingWarning)
        record = plan.record = self._write(self._plan_record(
            plan,
            status=status,
            attempts=plan.attempts,
            http_status=status_code,
            latency_ms=(time.perf_counter() - plan.started) * 1000,
            cost_nanos=cost,
            cost_usd=nanos_to_usd(cost) if cost is not None else None,
            partial=partial,
            ttft_ms=plan.ttft_ms,
            completion=completion,
            input_tokens=counted.input_tokens,
            output_tokens=counted.output_tokens,
            cached_input_tokens=counted.cached_input_tokens,
            reasoning_tokens=counted.reasoning_tokens,
            cache_write_tokens=counted.cache_write_tokens,
            cache_write_1h_tokens=counted.cache_write_1h_tokens,
            relay_cost_usd=counted.relay_cost_usd,
            usage_missing=at_bound and usage is None,
            error=_short(redact(error_text or str(error), *self.secrets)) if error_text or error is not None else None,
        ), plan.context)
        if record.relay_cost_usd is not None and cost is not None and usage is not None:
            self._check_drift(record, cost)
        self._observed(record, cost, events)
        return record

    def _check_drift(self, record: CallRecord, cost: int) -> None:
        """Warn when the relay's own figure for the call is too far from ours."""
        tolerance = self.relay_cost_tolerance
        relay = record.relay_cost_usd
        if tolerance is None or relay is None:
            return
        ours = nanos_to_usd(cost)
        drift = relay_drift(ours, relay)
        if abs(drift) <= tolerance:
            return
        source = self.prices.source(record.model)
        log.warning("call %s: the relay charged $%.6f, our price says $%.6f (%+.1f %%)", record.call_id, relay,
                    ours, drift * 100)
        _warn(f"The relay charged ${relay:.6f} for a {record.model} call our prices ({source}) put at "
              f"${ours:.6f} ({drift:+.1%}, above the {tolerance * 100:g} % tolerance). One price list is wrong: "
              "df.hs.cost_drift() lists such calls; prices= corrects ours.", CostDriftWarning)

    def _settle_open(self) -> None:
        """End every call still in flight (a stream not read to its end, a call in another
        thread) at its worst case, as `unknown`: the metering is closing or the process exits."""
        pid = _pid[0]
        with self._open_lock:
            plans = [plan for owner, plan in self._open.values() if owner == pid]
        for plan in plans:
            self._finish(plan, plan.http_status, None, None, answered=False, unknown=True, partial=plan.stream,
                         error_text="still in flight when the meter closed (client closed, or the interpreter "
                                    "exited); charged at its bound")

    def _record(self, call_id: str, ts: datetime, model: str, project: str | None, size: InputSize,
                max_tokens: int | None, context: CallContext, **rest: Any) -> CallRecord:
        """The log row of a call that ended before it had a plan (an unknown model, an unmetered
        path): the request's side here, how it ended (status, cost...) in `rest`."""
        return CallRecord(
            call_id=call_id, ts=ts, model=model, project=project, price_version=self.prices.version,
            input_bytes=size.text_bytes, input_non_ascii_bytes=size.non_ascii_bytes,
            input_messages=size.messages, max_tokens=max_tokens, experiment=context.experiment,
            notebook_cell=context.notebook_cell, notebook_path=context.notebook_path,
            input_words=_input_words(size), **rest,
        )

    def _plan_record(self, plan: CallPlan, *, status: str, attempts: int, call_id: str | None = None,
                     http_status: int | None = None, latency_ms: float | None = None, cost_nanos: int | None = 0,
                     cost_usd: float | None = 0.0, partial: bool = False, ttft_ms: float | None = None,
                     completion: str | None = None, input_tokens: int = 0, output_tokens: int = 0,
                     cached_input_tokens: int = 0, reasoning_tokens: int = 0, cache_write_tokens: int = 0,
                     cache_write_1h_tokens: int = 0, relay_cost_usd: float | None = None, usage_missing: bool = False,
                     error: str | None = None) -> CallRecord:
        """The log row of a planned call (or of one of its attempts); the keywords say how it
        ended. Every field is passed by name in one call: merging keyword dicts cost more than
        building the row (this runs once per call)."""
        size, context = plan.size, plan.context
        return CallRecord(
            call_id=call_id or plan.call_id, ts=plan.ts, model=plan.model, status=status, input_tokens=input_tokens,
            output_tokens=output_tokens, cached_input_tokens=cached_input_tokens, reasoning_tokens=reasoning_tokens,
            cost_usd=cost_usd, estimated_cost_usd=nanos_to_usd(plan.estimate_nanos) if plan.price else None,
            latency_ms=latency_ms, attempts=attempts, http_status=http_status, error=error, project=plan.project,
            price_version=self.prices.version, cost_nanos=cost_nanos, relay_cost_usd=relay_cost_usd, ttft_ms=ttft_ms,
            stream=plan.stream, partial=partial, endpoint=plan.endpoint.name, input_bytes=size.text_bytes,
            max_tokens=plan.max_tokens, conversation_id=plan.conversation_id, prompt=plan.prompt, completion=completion,
            input_non_ascii_bytes=size.non_ascii_bytes, input_messages=size.messages, usage_missing=usage_missing,
            cache_write_tokens=cache_write_tokens, cache_write_1h_tokens=cache_write_1h_tokens,
            input_words=_input_words(size), experiment=context.experiment, notebook_cell=context.notebook_cell,
            notebook_path=context.notebook_path,
        )

    def _write(self, record: CallRecord, context: CallContext) -> CallRecord:
        """Log `record` and count it in the scopes (experiment, notebook cell) it was made in."""
        if not self.writer.append(record):
            # Paid for: the caller still gets its answer; the row and its spend (already in the
            # ledger) wait in memory and are written before the next row, once the disk is back.
            log.warning("call %s: the call log refused its row (%s); kept in memory", record.call_id,
                        self.writer.last_error)
            _warn(f"The call log could not be written ({self.writer.last_error}); the row is kept "
                  "in memory and written when the disk takes it again.", LogKeptWarning)
        self.calls += 1  # a display counter: a rare lost increment under threads is harmless
        self.runaways.observe(record)
        for scope in context.scopes:
            scope.observe(record)
        return record

    # -- observers -----------------------------------------------------------------------------

    def subscribe(self, fn: Callable[[CallRecord, list[SpendEvent]], None]) -> Callable[[], None]:
        """Call `fn(record, events)` after every logged call; returns an unsubscribe function."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def on_close(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call `fn` on the closing thread once this metering has closed; returns an unsubscribe."""
        self._on_close.append(fn)
        return lambda: self._on_close.remove(fn) if fn in self._on_close else None

    def close(self) -> None:
        """Settle the calls still in flight (at their worst case), then close the log."""
        if self.closed:
            return
        self.closed = True
        self._settle_open()
        self.writer.close()
        if self.alerts is not None:
            self.alerts.flush(5.0)
        for fn in list(self._on_close):
            fn()


# Frames of these packages are not the caller's: a warning points past them, at user code.
_LIBRARY_PACKAGES = frozenset({"holysheep_lab", "httpx2", "httpcore2", "httpx", "httpcore", "openai", "anthropic",
                               "aiohttp", "asyncio", "contextlib", "concurrent", "threading"})


_ENDPOINT_CACHE = 256  # paths remembered by `Metering.plan`

# This process's id, kept up to date across fork: os.getpid() is a system call on every call.
_pid = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _warn(message: str, category: type[Warning]) -> None:
    """Warn at the first frame outside the libraries of a call: once per call site of the user."""
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and \
            str(frame.f_globals.get("__name__", "")).partition(".")[0] in _LIBRARY_PACKAGES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _input_words(size: InputSize) -> int | None:
    """The prose words a row keeps to calibrate the input bound: none for a call with images or
    files, which says nothing of prose."""
    return None if size.media_tokens or size.unmeasured else size.words


def _implausible(plan: CallPlan, usage: Usage, answer: Callable[[], str | None]) -> str | None:
    """Why reported usage cannot be what was billed (None: it can). `answer()` gives the text."""
    if usage.input_tokens == 0 and usage.output_tokens == 0:
        return "all-zero usage"
    if usage.input_tokens == 0 and plan.size.text_bytes > 0:
        return "zero input tokens for a non-empty request"
    if usage.output_tokens == 0 and answer():
        return "zero output tokens for a non-empty answer"
    return None


def _check_options(budget: Any, ledger: Any, alerts: Any, rate_limit: Any, retry: Any, project: Any,
                   log_dir: Any, clock: Any) -> None:
    """ConfigError, naming the setting and the fix, for any option of the wrong kind."""
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be hs.Budget(...), not {type(budget).__name__}.")
    if isinstance(ledger, (str, Path)):
        raise ConfigError(f"ledger must be a ledger object, not a path: a string is not a ledger; say "
                          f'ledger=hs.SQLiteLedger("{ledger}") (or hs.RedisLedger(url)).')
    if ledger is not None and not isinstance(ledger, Ledger):
        raise ConfigError(f"ledger must be hs.MemoryLedger(), hs.SQLiteLedger(path) or hs.RedisLedger(url), "
                          f"not {type(ledger).__name__}.")
    if alerts is not None:
        from holysheep_lab.alerts import AlertManager  # only then: the channels import httpx2 & co

        if not isinstance(alerts, AlertManager):
            raise ConfigError(f"alerts must be hs.AlertManager(channels=[...]), not {type(alerts).__name__}.")
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise ConfigError(f"rate_limit must be hs.RateLimit(...), not {type(rate_limit).__name__}.")
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigError(f"retry must be hs.Retry(...), not {type(retry).__name__}.")
    if project is not None and (not isinstance(project, str) or not project.strip()):
        raise ConfigError(f"project must be a non-empty string or None, not {project!r}.")
    if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
        raise ConfigError(f"log_dir must be a folder path (str or Path), not {type(log_dir).__name__}.")
    if not callable(clock):
        raise ConfigError("clock must be a callable returning an aware datetime.")


def _alert_refusals(alerts: AlertManager) -> Callable[[SpendEvent], None]:
    def observe(event: SpendEvent) -> None:
        alerts.observe((event,))

    return observe


def _output_bound(facts: RequestFacts, price: Price | None) -> int:
    """The most output the relay can bill: the request's cap, else the model's declared cap;
    with neither, nothing bounds it, so the call is refused (ConfigError, nothing sent)."""
    if not facts.answers:
        return 0  # no output (embeddings)
    caps = [c for c in (facts.max_tokens, price.max_output if price else None) if c]
    if not caps:
        if price is None:
            return facts.extra_output  # unpriced (allow_unpriced): no money to bound
        raise ConfigError(
            f"{facts.model} declares no output cap and the request sets no {facts.cap_key}, so nothing bounds "
            f"what the call may cost; nothing was sent. Set {facts.cap_key.split(' ', 1)[0]}=..., or give the "
            "model a max_output in prices=."
        )
    return min(caps) * facts.answers + facts.extra_output


def _input_bound(facts: RequestFacts, measured: int, headers: Mapping[str, str]) -> int:
    """The input bound: what was measured, or the caller's explicit bound (MAX_INPUT_HEADER)
    where it is larger; required when a part cannot be measured (ConfigError, nothing sent)."""
    measured += facts.exact_tokens
    raw = headers.get(MAX_INPUT_HEADER)
    explicit: int | None = None
    if raw is not None:
        try:
            explicit = int(str(raw).strip())
        except ValueError:
            explicit = 0
        if explicit < 1:
            raise ConfigError(f"{MAX_INPUT_HEADER} (max_input_tokens=) must be a positive whole number of tokens, "
                              f"not {raw!r}; nothing was sent.")
    if facts.size.unmeasured and explicit is None:
        parts = ", ".join(facts.size.unmeasured[:3])
        raise ConfigError(
            f"The request has parts whose size cannot be known before sending ({parts}); the relay bills their "
            "tokens, so no bound would hold and nothing was sent. Give the call an explicit bound on its whole "
            f"input: hs.Client.chat(..., max_input_tokens=N), or the header '{MAX_INPUT_HEADER}: N' "
            "(openai/anthropic SDKs: extra_headers=...)."
        )
    return max(measured, explicit or 0)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _http_error(status_code: int, parsed: Any, body: bytes) -> HolySheepError:
    from holysheep_lab.errors import APIError, RateLimitError, ServerError

    message = ""
    if isinstance(parsed, dict):
        err = parsed.get("error")
        message = err.get("message", "") if isinstance(err, dict) else str(err or "")
    message = message or body[:200].decode("utf-8", "replace")
    cls = RateLimitError if status_code == 429 else ServerError if status_code >= 500 else APIError
    hint = {
        401: " Check HOLYSHEEP_API_KEY (or api_key=).",
        403: " The key may lack access to this model.",
        404: " Check base_url and the model name.",
        429: " The relay is rate-limiting: set hs.RateLimit(rpm=...) or raise Retry(max_attempts=...).",
    }.get(status_code, " The relay failed; retry later." if status_code >= 500 else "")
    return cls(f"HTTP {status_code} from the relay: {message}.{hint}", status_code=status_code, body=body.decode("utf-8", "replace"))


