"""The same metering for legacy `httpx` clients (openai SDK < 3, libraries not yet on httpx2).

httpx and httpx2 share their transport API, so the one call flow of `flow.py` drives
both; only the base classes differ. httpx is imported here and nowhere else. Credentials and
SDK retries are handled as for httpx2 (`redaction`, `sdk`).
"""

from __future__ import annotations

from typing import Unpack

from holysheep_lab.core.metering import Metering, MeteringOptions
from holysheep_lab.errors import HolySheepError, MissingExtraError
from holysheep_lab.transports.flow import call_flow, drive_async, drive_sync, metering_from
from holysheep_lab.transports.redaction import AsyncRedactingWire, RedactingWire, request_secrets
from holysheep_lab.transports.sdk import not_retried_by_sdks
from holysheep_lab.transports.streams import AsyncMeteredStream, SyncMeteredStream

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("httpx", "HttpxMeteredTransport (legacy httpx clients)") from exc

__all__ = ["AsyncHttpxMeteredTransport", "HttpxMeteredTransport"]

class _HttpxSyncStream(SyncMeteredStream, httpx.SyncByteStream):
    pass


class _HttpxAsyncStream(AsyncMeteredStream, httpx.AsyncByteStream):
    pass


class HttpxMeteredTransport(httpx.BaseTransport):
    """`httpx.Client(transport=HttpxMeteredTransport(...))`: metered like MeteredTransport."""

    def __init__(self, transport: httpx.BaseTransport | None = None, *, metering: Metering | None = None,
                 **options: Unpack[MeteringOptions]) -> None:
        self._inner = transport if transport is not None else httpx.HTTPTransport()
        self._wire = RedactingWire(self._inner, httpx)
        self.metering = metering_from(metering, options)
        self._owns_metering = metering is None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        keys = request_secrets(request.headers)
        if keys:
            self.metering.add_secrets(*keys)
        body = request.read()
        try:
            response: httpx.Response = drive_sync(call_flow(self.metering, httpx, request, body, _HttpxSyncStream),
                                                  self._wire)
            return response
        except HolySheepError as exc:
            not_retried_by_sdks(exc)
            raise

    def close(self) -> None:
        self._inner.close()
        if self._owns_metering:
            self.metering.close()


class AsyncHttpxMeteredTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=AsyncHttpxMeteredTransport(...))`."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *, metering: Metering | None = None,
                 **options: Unpack[MeteringOptions]) -> None:
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._wire = AsyncRedactingWire(self._inner, httpx)
        self.metering = metering_from(metering, options)
        self._owns_metering = metering is None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        keys = request_secrets(request.headers)
        if keys:
            self.metering.add_secrets(*keys)
        body = await request.aread()
        try:
            response: httpx.Response = await drive_async(
                call_flow(self.metering, httpx, request, body, _HttpxAsyncStream), self._wire)
            return response
        except HolySheepError as exc:
            not_retried_by_sdks(exc)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._owns_metering:
            self.metering.close()
