"""Metered httpx2 transports: the one place every call is guarded, sent, retried and logged.

Use them under `httpx2.Client(transport=...)` / `httpx2.AsyncClient(transport=...)`, e.g. as the
openai or anthropic SDK's `http_client`. The work is done by `flow.call_flow`. Each request's
credentials are kept out of what is stored and raised (`redaction`), and our errors pass the
SDKs' retry loops unretried (`sdk`).
"""

from __future__ import annotations

from typing import Unpack

import httpx2

from holysheep_lab.core.metering import Metering, MeteringOptions
from holysheep_lab.errors import ConfigError, HolySheepError
from holysheep_lab.transports.flow import (
    OUTCOME_KEY,
    CallOutcome,
    call_flow,
    drive_async,
    drive_sync,
    metering_from,
    outcome_of,
    read_unkept,
)
from holysheep_lab.transports.redaction import AsyncRedactingWire, RedactingWire, request_secrets
from holysheep_lab.transports.sdk import not_retried_by_sdks
from holysheep_lab.transports.streams import AsyncMeteredStream, SyncMeteredStream

__all__ = ["OUTCOME_KEY", "AsyncMeteredTransport", "CallOutcome", "MeteredTransport", "outcome_of"]


class MeteredTransport(httpx2.BaseTransport):
    """An httpx2 transport that meters chat completions and passes everything else through.

    Use it under `httpx2.Client(transport=...)`, e.g. as the openai SDK's `http_client`.
    """

    def __init__(self, transport: httpx2.BaseTransport | None = None, *, metering: Metering | None = None,
                 **options: Unpack[MeteringOptions]) -> None:
        if transport is not None and not isinstance(transport, httpx2.BaseTransport):
            raise ConfigError(f"MeteredTransport wraps an httpx2.BaseTransport, not {type(transport).__name__}; "
                              "for an async client use hs.AsyncMeteredTransport.")
        self._inner = transport if transport is not None else httpx2.HTTPTransport()
        self._wire = RedactingWire(self._inner, httpx2)
        self.metering = metering_from(metering, options)
        self._owns_metering = metering is None

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        keys = request_secrets(request.headers)
        if keys:
            self.metering.add_secrets(*keys)
        body = request.read()
        try:
            response: httpx2.Response = drive_sync(
                call_flow(self.metering, httpx2, request, body, SyncMeteredStream), self._wire)
        except HolySheepError as exc:
            not_retried_by_sdks(exc)
            raise
        return response

    def handle_unkept(self, request: httpx2.Request, body: bytes) -> httpx2.Response:
        """Meter and send a request whose response content nobody reads (hs.Client's own calls:
        the outcome carries the parsed answer, and the client's key is already among the
        metering's secrets). `body` is the request's content; the response comes back closed."""
        try:
            response: httpx2.Response = drive_sync(
                call_flow(self.metering, httpx2, request, body, SyncMeteredStream), self._wire, read_unkept)
        except HolySheepError as exc:
            not_retried_by_sdks(exc)
            raise
        return response

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
        if transport is not None and not isinstance(transport, httpx2.AsyncBaseTransport):
            raise ConfigError(f"AsyncMeteredTransport wraps an httpx2.AsyncBaseTransport, not "
                              f"{type(transport).__name__}; for a sync client use hs.MeteredTransport.")
        self._inner = transport if transport is not None else httpx2.AsyncHTTPTransport()
        self._wire = AsyncRedactingWire(self._inner, httpx2)
        self.metering = metering_from(metering, options)
        self._owns_metering = metering is None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        keys = request_secrets(request.headers)
        if keys:
            self.metering.add_secrets(*keys)
        body = await request.aread()
        try:
            response: httpx2.Response = await drive_async(
                call_flow(self.metering, httpx2, request, body, AsyncMeteredStream), self._wire)
        except HolySheepError as exc:
            not_retried_by_sdks(exc)
            raise
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._owns_metering:
            self.metering.close()

    def __repr__(self) -> str:
        return f"AsyncMeteredTransport(log_dir={str(self.metering.log_dir)!r}, budget={self.metering.budget!r})"
