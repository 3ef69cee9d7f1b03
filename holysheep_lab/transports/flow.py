"""The life of one metered request, written once for every HTTP stack.

`call_flow` is a generator that yields what it needs done (send, sleep, read, close) and is
run by `drive_sync` or `drive_async` over an inner transport. So sync, async, batch, streaming
and SDK calls through `http_client=` share one behaviour, and the flow holds no lock while it
waits. httpx2, legacy httpx and aiohttp-backed transports all drive it (they share the
transport API; `lib` names the module whose Request and exception classes to use).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from holysheep_lab.core.guard import attempt_ttl
from holysheep_lab.core.limits import Retry, parse_retry_after
from holysheep_lab.core.metering import (
    MAX_INPUT_HEADER,
    PAYLOAD_EXTENSION,
    PROJECT_HEADER,
    CallPlan,
    Metering,
    MeteringOptions,
)
from holysheep_lab.errors import APIConnectionError, APITimeoutError, HolySheepError
from holysheep_lab.log.schema import CallRecord

__all__ = ["OUTCOME_KEY", "CallOutcome", "MeteredStreamFactory", "call_flow", "drive_async", "drive_sync",
           "metering_from", "outcome_of", "read_unkept", "read_whole"]

#: `response.extensions[OUTCOME_KEY]` is the CallOutcome of a metered call.
OUTCOME_KEY = "holysheep"


@dataclass(slots=True)
class CallOutcome:
    """What the metering made of a response. A stream fills `record` when it ends; the object is
    shared (not copied) when an HTTP client copies the response's extensions."""

    record: CallRecord | None = None
    error: HolySheepError | None = None
    payload: Any = None  # the parsed JSON body, so callers need not parse it again


def outcome_of(response: Any) -> CallOutcome | None:
    """The CallOutcome of a response from a metered transport (None for pass-through calls)."""
    outcome = response.extensions.get(OUTCOME_KEY)
    return outcome if isinstance(outcome, CallOutcome) else None


@dataclass(slots=True)
class _Send:
    request: Any


@dataclass(slots=True)
class _Sleep:
    seconds: float


@dataclass(slots=True)
class _Read:
    response: Any


@dataclass(slots=True)
class _Close:
    response: Any


_Action = _Send | _Sleep | _Read | _Close



class MeteredStreamFactory(Protocol):
    """Wraps a streamed response's body so the stream settles its call when it ends."""

    def __call__(self, metering: Metering, plan: CallPlan, inner: Any, status_code: int,
                 outcome: CallOutcome) -> Any: ...


def call_flow(metering: Metering, lib: ModuleType, request: Any, body: bytes,
              metered_stream: MeteredStreamFactory) -> Generator[_Action, Any, Any]:
    """The life of one request. Yields actions; returns the response to hand back."""
    ours = _our_headers(request.headers)
    plan = metering.plan(request.method, request.url.path, body, ours, request.extensions.get(PAYLOAD_EXTENSION))
    if plan is None:
        return (yield _Send(request))
    request = _for_relay(lib, request, body, plan, ours)
    if metering.idempotency_header is not None:
        # One key for every attempt (the caller's, or the call's id), so a resend is billed once.
        if metering.idempotency_header not in request.headers:
            request.headers[metering.idempotency_header] = plan.call_id
        plan.idempotent = True
    # Held as long as one attempt can go without progress; renewed at each step below.
    plan.ttl = attempt_ttl(request.extensions.get("timeout"), metering.guard.reservation_ttl)
    metering.admit(plan)  # BudgetExceededError: logged as blocked, nothing sent
    try:
        response = yield from _send_with_retries(metering, lib, request, plan)
        if response.status_code >= 400:
            # This flow has made the retry decision; an SDK retrying on top (the openai and
            # anthropic SDKs retry 408/409/429/5xx) would multiply the attempts and log one row
            # per SDK attempt. Those SDKs obey this (non-standard) header.
            response.headers["x-should-retry"] = "false"
        if plan.stream and 200 <= response.status_code < 300:
            return _stream_response(metering, plan, response, metered_stream)
        metering.guard.keep_alive(plan.reservation)
        content = yield _Read(response)  # a failed read of a 2xx body leaves the call in doubt
        record, payload, error = metering.complete(plan, response.status_code, content, response.headers)
        response.extensions[OUTCOME_KEY] = CallOutcome(record, error, payload)
        return response
    except BaseException as exc:
        # Timeouts, connection errors, Ctrl-C, task cancellation, a refused resend: settle and
        # log (at the worst case if the relay may have billed the last attempt), then re-raise.
        metering.fail(plan, exc, plan.http_status)
        raise


_OURS = {PROJECT_HEADER.encode(): PROJECT_HEADER, MAX_INPUT_HEADER.encode(): MAX_INPUT_HEADER}


def _our_headers(headers: Any) -> dict[str, str]:
    """Our own request headers (project, input bound), found in one pass over the raw pairs:
    the metering reads only these, and a Headers look-up decodes and scans every pair."""
    found: dict[str, str] = {}
    for name, value in headers.raw:
        ours = _OURS.get(name.lower())
        if ours is not None and ours not in found:  # the first, as Headers.get gives
            try:
                found[ours] = value.decode()
            except UnicodeDecodeError:
                found[ours] = value.decode("latin-1")  # as Headers decodes a non-UTF-8 value
    return found


def _for_relay(lib: ModuleType, request: Any, body: bytes, plan: CallPlan, ours: dict[str, str]) -> Any:
    """The request as the relay gets it: without our headers, with the planned body."""
    if not ours and plan.body is body:
        return request
    dropped = (PROJECT_HEADER, MAX_INPUT_HEADER, "content-length")
    kept = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in dropped]
    extensions = {k: v for k, v in request.extensions.items() if k != PAYLOAD_EXTENSION}
    return lib.Request(request.method, request.url, headers=kept, content=plan.body, extensions=extensions)


def _send_with_retries(metering: Metering, lib: ModuleType, request: Any, plan: CallPlan) -> Generator[_Action, Any, Any]:
    """Send until an answer is final: rate-limited, retrying timeouts, dropped connections and
    retryable statuses with backoff, within the retry policy's attempts and total time.

    An attempt that reached the relay and got no answer (read timeout, connection dropped after
    sending) may have been billed: it stays charged, and a resend is reserved anew
    (`Metering.resend`; BudgetExceededError ends the call). Only a failure to connect proves
    that nothing was sent."""
    retry: Retry = metering.retry
    deadline = plan.started + retry.max_total
    while True:
        wait = metering.limiter.acquire(plan.rate_tokens)
        if wait > 0:
            yield _Sleep(wait)
        if plan.attempts or wait > 0:  # after waits and backoffs: held for this attempt
            metering.guard.keep_alive(plan.reservation)
        plan.attempts += 1
        plan.in_doubt = True  # from the first byte sent until an answer is in hand
        try:
            response = yield _Send(request)
        except (lib.ConnectError, lib.ConnectTimeout, lib.PoolTimeout) as exc:
            plan.in_doubt = False  # no connection: the relay never saw this attempt
            if not _can_retry(plan, retry, deadline, 0.0):
                raise _unreachable(request, exc) from exc
            yield _Sleep(retry.delay(plan.attempts))
            continue
        except lib.TimeoutException as exc:
            if not (retry.retry_timeouts and _can_retry(plan, retry, deadline, 0.0)):
                raise APITimeoutError(f"The relay did not answer in time after {plan.attempts} attempt(s).") from exc
            metering.resend(plan, exc)
            yield _Sleep(retry.delay(plan.attempts))
            continue
        except lib.RemoteProtocolError as exc:
            # Dropped after sending (a server restart, a proxy): maybe billed, so charged.
            if not _can_retry(plan, retry, deadline, 0.0):
                raise _unreachable(request, exc) from exc
            metering.resend(plan, exc)
            yield _Sleep(retry.delay(plan.attempts))
            continue
        # A relay's error answer bills nothing; a 2xx is billed, and in doubt until it is read.
        plan.in_doubt = 200 <= response.status_code < 300
        plan.http_status = status = response.status_code
        if _RATE_HEADERS in _header_names(response.headers):
            metering.limiter.observe_headers(response.headers)
        if status in retry.retry_statuses:
            after = parse_retry_after(response.headers)
            if status == 429 and after:
                metering.limiter.pause(after)  # every call of this client waits, not only this one
            delay = retry.delay(plan.attempts, after)
            if _can_retry(plan, retry, deadline, delay):
                yield _Close(response)
                yield _Sleep(delay)
                continue
        return response


_RATE_HEADERS = b"x-ratelimit-"


def _header_names(headers: Any) -> bytes:
    """Every header name of a response, lower case, in one string (for a cheap `in` test)."""
    return b"\n".join(name for name, _ in headers.raw).lower()


def _unreachable(request: Any, exc: BaseException) -> APIConnectionError:
    return APIConnectionError(
        f"Could not reach the relay at {request.url.host}:{request.url.port or ''} "
        f"({type(exc).__name__}). Check base_url and the network."
    )


def _can_retry(plan: CallPlan, retry: Retry, deadline: float, delay: float) -> bool:
    return plan.attempts < retry.max_attempts and time.perf_counter() + delay < deadline


def _stream_response(metering: Metering, plan: CallPlan, response: Any, cls: MeteredStreamFactory) -> Any:
    # Wrap the body stream in place (as httpx's own client does): no copy of the response.
    outcome = CallOutcome()
    response.stream = cls(metering, plan, response.stream, response.status_code, outcome)
    response.extensions[OUTCOME_KEY] = outcome
    return response


def read_whole(response: Any) -> bytes:
    """Read a response's body onto it (as its caller will read it) and close it."""
    try:
        return response.read()  # type: ignore[no-any-return]
    finally:
        response.close()


def read_unkept(response: Any) -> bytes:
    """The body of a response whose content nobody reads again (the outcome carries the parsed
    answer): joined straight from its stream unless it is content-encoded. The decoding and
    chunking layers of `Response.read` cost about 25 us a call for nothing here."""
    if b"content-encoding" in _header_names(response.headers):
        return read_whole(response)
    try:
        return b"".join(response.stream)
    finally:
        response.close()


def drive_sync(flow: Generator[_Action, Any, Any], inner: Any, read: Callable[[Any], bytes] = read_whole) -> Any:
    """Run a call flow with blocking I/O; `read` reads (and closes) a response's body."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            action = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(action, _Send):
                value = inner.handle_request(action.request)
            elif isinstance(action, _Sleep):
                time.sleep(action.seconds)
            elif isinstance(action, _Read):
                value = read(action.response)
            else:
                read_whole(action.response)
        except BaseException as exc:  # handed to the flow, which releases and re-raises
            error = exc


async def drive_async(flow: Generator[_Action, Any, Any], inner: Any) -> Any:
    """Run a call flow on the running event loop (never blocks it)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            action = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            if isinstance(action, _Send):
                value = await inner.handle_async_request(action.request)
            elif isinstance(action, _Sleep):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, _Read):
                try:
                    value = await action.response.aread()
                finally:
                    await action.response.aclose()
            else:
                await action.response.aread()
                await action.response.aclose()
        except BaseException as exc:
            error = exc


def metering_from(metering: Metering | None, options: MeteringOptions) -> Metering:
    if metering is None:
        return Metering(**options)
    if options:
        raise TypeError("Pass either metering= or the budget/log_dir/ledger/... keywords, not both.")
    return metering


