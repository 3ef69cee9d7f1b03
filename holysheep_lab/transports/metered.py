"""Metered httpx2 transports: the one place every call is guarded, sent, retried and logged.

The call flow is written once, as a generator that yields what it needs done (send, sleep,
read, close) and is driven by a sync or an async driver. So sync, async, batch, streaming and
the openai SDK (through `http_client=`) share one behaviour, and the flow holds no lock while
it waits. The same flow drives legacy `httpx` transports (see `legacy.py`): both libraries
share this API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Unpack

import httpx2

from holysheep_lab.core.limits import Retry, parse_retry_after
from holysheep_lab.core.metering import PAYLOAD_EXTENSION, PROJECT_HEADER, CallPlan, Metering, MeteringOptions
from holysheep_lab.endpoints.sse import StreamAccumulator
from holysheep_lab.errors import APIConnectionError, APITimeoutError, HolySheepError
from holysheep_lab.log.schema import CallRecord

__all__ = ["OUTCOME_KEY", "AsyncMeteredTransport", "CallOutcome", "MeteredTransport", "outcome_of"]

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
    return response.extensions.get(OUTCOME_KEY)


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


def call_flow(metering: Metering, lib: ModuleType, request: Any, body: bytes, metered_stream: Any) -> Generator[_Action, Any, Any]:
    """The life of one request. Yields actions; returns the response to hand back."""
    headers = request.headers
    plan = metering.plan(request.method, request.url.path, body, headers, request.extensions.get(PAYLOAD_EXTENSION))
    if plan is None:
        return (yield _Send(request))
    if PROJECT_HEADER in headers or plan.body is not body:
        new_headers = [(k, v) for k, v in headers.multi_items() if k.lower() not in (PROJECT_HEADER, "content-length")]
        extensions = {k: v for k, v in request.extensions.items() if k != PAYLOAD_EXTENSION}
        request = lib.Request(request.method, request.url, headers=new_headers, content=plan.body,
                              extensions=extensions)
    metering.admit(plan)  # BudgetExceededError: logged as blocked, nothing sent
    retry: Retry = metering.retry
    deadline = plan.started + retry.max_total
    response = None
    try:
        while True:
            wait = metering.limiter.acquire(plan.rate_tokens)
            if wait > 0:
                yield _Sleep(wait)
            plan.attempts += 1
            try:
                response = yield _Send(request)
            except lib.TimeoutException as exc:
                if not (retry.retry_timeouts and _can_retry(plan, retry, deadline, 0.0)):
                    raise APITimeoutError(f"The relay did not answer in time after {plan.attempts} attempt(s).") from exc
                yield _Sleep(retry.delay(plan.attempts))
                continue
            except (lib.ConnectError, lib.RemoteProtocolError) as exc:
                # Connect errors sent nothing; a dropped connection may be a server restart.
                if not _can_retry(plan, retry, deadline, 0.0):
                    raise APIConnectionError(
                        f"Could not reach the relay at {request.url.host}:{request.url.port or ''} "
                        f"({type(exc).__name__}). Check base_url and the network."
                    ) from exc
                yield _Sleep(retry.delay(plan.attempts))
                continue
            metering.limiter.observe_headers(response.headers)
            status = response.status_code
            if status in retry.retry_statuses:
                after = parse_retry_after(response.headers)
                if status == 429 and after:
                    metering.limiter.pause(after)  # every call of this client waits, not only this one
                delay = retry.delay(plan.attempts, after)
                if _can_retry(plan, retry, deadline, delay):
                    yield _Close(response)
                    yield _Sleep(delay)
                    continue
            break
        if response.status_code >= 400:
            # This flow has made the retry decision; an SDK retrying on top (the openai and
            # anthropic SDKs retry 408/409/429/5xx) would multiply the attempts and log one row
            # per SDK attempt. Those SDKs obey this (non-standard) header.
            response.headers["x-should-retry"] = "false"
        if plan.stream and 200 <= response.status_code < 300:
            return _stream_response(metering, plan, response, metered_stream)
        content = yield _Read(response)
        record, payload, error = metering.complete(plan, response.status_code, content, response.headers)
        response.extensions[OUTCOME_KEY] = CallOutcome(record, error, payload)
        return response
    except BaseException as exc:
        # Timeouts, connection errors, Ctrl-C, task cancellation: release and log, then re-raise.
        metering.fail(plan, exc, response.status_code if response is not None else None)
        raise


def _can_retry(plan: CallPlan, retry: Retry, deadline: float, delay: float) -> bool:
    return plan.attempts < retry.max_attempts and time.perf_counter() + delay < deadline


def _stream_response(metering: Metering, plan: CallPlan, response: Any, cls: Any) -> Any:
    # Wrap the body stream in place (as httpx's own client does): no copy of the response.
    outcome = CallOutcome()
    response.stream = cls(metering, plan, response.stream, response.status_code, outcome)
    response.extensions[OUTCOME_KEY] = outcome
    return response


class _StreamBase:
    """Shared by the sync and async stream wrappers: feed, then settle exactly once."""

    def __init__(self, metering: Metering, plan: CallPlan, inner: Any, status_code: int, outcome: CallOutcome) -> None:
        self._metering = metering
        self._plan = plan
        self._inner = inner  # the relay's body stream
        self._status_code = status_code
        self._outcome = outcome
        self._acc = StreamAccumulator(plan.endpoint.stream_reader(), strip_usage_chunk=plan.strip_usage_chunk)
        self._error: str | None = None

    def _feed(self, chunk: bytes) -> bytes:
        out = self._acc.feed(chunk)
        if self._plan.ttft_ms is None and self._acc.first_token_at is not None:
            self._plan.ttft_ms = (self._acc.first_token_at - self._plan.started) * 1000
        return out

    def _settle(self) -> None:
        acc = self._acc
        cut = not acc.done
        if self._error is None and acc.usage_error:
            self._error = acc.usage_error
        record = self._metering.stream_done(self._plan, self._status_code, acc.usage,
                                         lambda: (acc.text, acc.chunks), cut, self._error)
        if record is not None:
            self._outcome.record = record


class _SyncMeteredStream(_StreamBase, httpx2.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                out = self._feed(chunk)
                if out:
                    yield out
            rest = self._acc.flush()
            if rest:
                yield rest
        except BaseException as exc:
            self._error = f"{type(exc).__name__} while streaming"
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._settle()


class _AsyncMeteredStream(_StreamBase, httpx2.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                out = self._feed(chunk)
                if out:
                    yield out
            rest = self._acc.flush()
            if rest:
                yield rest
        except BaseException as exc:
            self._error = f"{type(exc).__name__} while streaming"
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._settle()


def drive_sync(flow: Generator[_Action, Any, Any], inner: Any) -> Any:
    """Run a call flow with blocking I/O."""
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
                try:
                    value = action.response.read()
                finally:
                    action.response.close()
            else:
                action.response.read()
                action.response.close()
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


def _metering_from(metering: Metering | None, options: MeteringOptions) -> Metering:
    if metering is None:
        return Metering(**options)
    if options:
        raise TypeError("Pass either metering= or the budget/log_dir/ledger/... keywords, not both.")
    return metering


class MeteredTransport(httpx2.BaseTransport):
    """An httpx2 transport that meters chat completions and passes everything else through.

    Use it under `httpx2.Client(transport=...)`, e.g. as the openai SDK's `http_client`.
    """

    def __init__(self, transport: httpx2.BaseTransport | None = None, *, metering: Metering | None = None,
                 **options: Unpack[MeteringOptions]) -> None:
        self._inner = transport if transport is not None else httpx2.HTTPTransport()
        self.metering = _metering_from(metering, options)
        self._owns_metering = metering is None

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        return drive_sync(call_flow(self.metering, httpx2, request, body, _SyncMeteredStream), self._inner)

    def close(self) -> None:
        self._inner.close()
        if self._owns_metering:
            self.metering.close()

    def __repr__(self) -> str:
        return f"MeteredTransport(log_dir={str(self.metering.log_dir)!r}, budget={self.metering.budget!r})"


class AsyncMeteredTransport(httpx2.AsyncBaseTransport):
    """The async twin of MeteredTransport, for `httpx2.AsyncClient` / `openai.AsyncOpenAI`."""

    def __init__(self, transport: httpx2.AsyncBaseTransport | None = None, *, metering: Metering | None = None,
                 **options: Unpack[MeteringOptions]) -> None:
        self._inner = transport if transport is not None else httpx2.AsyncHTTPTransport()
        self.metering = _metering_from(metering, options)
        self._owns_metering = metering is None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        return await drive_async(call_flow(self.metering, httpx2, request, body, _AsyncMeteredStream), self._inner)

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._owns_metering:
            self.metering.close()

    def __repr__(self) -> str:
        return f"AsyncMeteredTransport(log_dir={str(self.metering.log_dir)!r}, budget={self.metering.budget!r})"
