"""The same metering for legacy `httpx` clients (openai SDK < 3, libraries not yet on httpx2).

httpx and httpx2 share their transport API, so the one call flow of `flow.py` drives
both; only the base classes differ. httpx is imported here and nowhere else.
"""

from __future__ import annotations

import sys
from typing import Unpack

from holysheep_lab.core.metering import Metering, MeteringOptions
from holysheep_lab.errors import HolySheepError, MissingExtraError
from holysheep_lab.transports.flow import call_flow, drive_async, drive_sync, metering_from
from holysheep_lab.transports.streams import AsyncMeteredStream, SyncMeteredStream

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError("httpx", "HttpxMeteredTransport (legacy httpx clients)") from exc

__all__ = ["AsyncHttpxMeteredTransport", "HttpxMeteredTransport"]

# The SDKs built on legacy httpx (openai < 3, anthropic < 1) retry *any* exception a transport
# raises, max_retries times with back-off, then wrap it in their APIConnectionError: a refused
# call would be refused three times (three 'blocked' rows, seconds of sleeping) before it
# surfaced. They let their own base error through untouched, unretried, so our errors also
# become instances of it (when that SDK is loaded): `except hs.BudgetExceededError` and
# `except openai.OpenAIError` both catch them. Our flow has already retried what it should.
_SDK_BASE_ERRORS = (("openai", "OpenAIError"), ("anthropic", "AnthropicError"))


def _sdk_bases() -> tuple[type[BaseException], ...]:
    found = (getattr(sys.modules.get(module), name, None) for module, name in _SDK_BASE_ERRORS)
    return tuple(base for base in found if isinstance(base, type) and issubclass(base, Exception))


_FINAL_CLASSES: dict[tuple[type[HolySheepError], tuple[type[BaseException], ...]], type[HolySheepError]] = {}


def _final_class(cls: type[HolySheepError], bases: tuple[type[BaseException], ...]) -> type[HolySheepError]:
    """One subclass per (error, SDK bases): the same class every time, so `except` clauses agree."""
    key = (cls, bases)
    final = _FINAL_CLASSES.get(key)
    if final is None:
        final = _FINAL_CLASSES.setdefault(key, type(cls.__name__, (cls, *bases), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}))
    return final


def _not_retried_by_sdks(exc: HolySheepError) -> None:
    bases = tuple(b for b in _sdk_bases() if not isinstance(exc, b))
    if bases:
        exc.__class__ = _final_class(type(exc), bases)


class _HttpxSyncStream(SyncMeteredStream, httpx.SyncByteStream):
    pass


class _HttpxAsyncStream(AsyncMeteredStream, httpx.AsyncByteStream):
    pass


class HttpxMeteredTransport(httpx.BaseTransport):
    """`httpx.Client(transport=HttpxMeteredTransport(...))`: metered like MeteredTransport."""

    def __init__(self, transport: httpx.BaseTransport | None = None, *, metering: Metering | None = None,
                 **options: Unpack[MeteringOptions]) -> None:
        self._inner = transport if transport is not None else httpx.HTTPTransport()
        self.metering = metering_from(metering, options)
        self._owns_metering = metering is None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        try:
            response: httpx.Response = drive_sync(call_flow(self.metering, httpx, request, body, _HttpxSyncStream),
                                                  self._inner)
            return response
        except HolySheepError as exc:
            _not_retried_by_sdks(exc)
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
        self.metering = metering_from(metering, options)
        self._owns_metering = metering is None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        try:
            response: httpx.Response = await drive_async(
                call_flow(self.metering, httpx, request, body, _HttpxAsyncStream), self._inner)
            return response
        except HolySheepError as exc:
            _not_retried_by_sdks(exc)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._owns_metering:
            self.metering.close()
