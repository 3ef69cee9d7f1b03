"""Stream wrappers: pass a metered stream's bytes through and settle its call exactly once.

The wrapper reads the stream's events with its endpoint's `EventReader` (through the pure
`StreamAccumulator`) and settles from the usage event, or from what arrived if the stream was
cut. Subclass with a library's byte-stream base (httpx2 here; legacy httpx in `legacy.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2

from holysheep_lab.core.metering import CallPlan, Metering
from holysheep_lab.endpoints.sse import StreamAccumulator
from holysheep_lab.transports.flow import CallOutcome

__all__ = ["AsyncMeteredStream", "MeteredStream", "SyncMeteredStream"]


class MeteredStream:
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
        # The call is alive while its stream is read: its reservation lives on (a clock read
        # per chunk; a renewal at most every RENEW_EVERY seconds).
        self._metering.guard.keep_alive(self._plan.reservation)
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


class SyncMeteredStream(MeteredStream, httpx2.SyncByteStream):
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


class AsyncMeteredStream(MeteredStream, httpx2.AsyncByteStream):
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
