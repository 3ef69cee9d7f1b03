"""The same metering for legacy `httpx` clients (openai SDK < 3, libraries not yet on httpx2).

httpx and httpx2 share their transport API, so the one call flow of `transport.py` drives
both; only the base classes differ. httpx is imported here and nowhere else.
"""

from __future__ import annotations

from typing import Unpack

from .errors import MissingExtraError
from .metering import Meter, MeterOptions
from .transport import _AsyncMeteredStream, _meter_from, _SyncMeteredStream, call_flow, drive_async, drive_sync

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("httpx", "HttpxMeteredTransport (legacy httpx clients)") from exc

__all__ = ["AsyncHttpxMeteredTransport", "HttpxMeteredTransport"]


class _HttpxSyncStream(_SyncMeteredStream, httpx.SyncByteStream):
    pass


class _HttpxAsyncStream(_AsyncMeteredStream, httpx.AsyncByteStream):
    pass


class HttpxMeteredTransport(httpx.BaseTransport):
    """`httpx.Client(transport=HttpxMeteredTransport(...))`: metered like MeteredTransport."""

    def __init__(self, transport: httpx.BaseTransport | None = None, *, meter: Meter | None = None,
                 **options: Unpack[MeterOptions]) -> None:
        self._inner = transport if transport is not None else httpx.HTTPTransport()
        self.meter = _meter_from(meter, options)
        self._owns_meter = meter is None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        return drive_sync(call_flow(self.meter, httpx, request, body, _HttpxSyncStream), self._inner)

    def close(self) -> None:
        self._inner.close()
        if self._owns_meter:
            self.meter.close()


class AsyncHttpxMeteredTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=AsyncHttpxMeteredTransport(...))`."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *, meter: Meter | None = None,
                 **options: Unpack[MeterOptions]) -> None:
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self.meter = _meter_from(meter, options)
        self._owns_meter = meter is None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        return await drive_async(call_flow(self.meter, httpx, request, body, _HttpxAsyncStream), self._inner)

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._owns_meter:
            self.meter.close()
