"""An httpx2 async transport on aiohttp: the default wire for `hs.Client`'s async path.

Why: at 64+ calls in flight httpcore2's connection pool (`_assign_requests_to_connections`,
O(requests x connections) per event) dominated `chat_many`; aiohttp's connector does the same
job in O(1) per request. Only the wire changes: httpx2 still builds the request, decodes the
body (content-encoding), and the metered transport above this one still guards, retries and
logs every call, so behaviour is the same as with `httpx2.AsyncHTTPTransport`.

Choices, each matching what httpx2 does when it is given an explicit transport:
- no cookies (DummyCookieJar): cookies are the httpx2 client's business;
- no redirects (`allow_redirects=False`): httpx2 follows them itself when asked;
- no decompression (`auto_decompress=False`): raw bytes plus the original headers go up and
  httpx2.Response decodes them, so nothing is decoded twice;
- no auto headers: only the headers httpx2 put on the request are sent;
- `trust_env=False`: no proxies or .netrc from the environment. httpx2 ignores environment
  proxies too once a transport is passed explicitly; TLS verification follows
  `httpx2.create_ssl_context(verify)` (certifi, SSL_CERT_FILE/SSL_CERT_DIR), as httpx2 does.
- no write timeout: aiohttp has none; bodies here are small JSON.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import NoReturn

import aiohttp
import httpx2
from yarl import URL

__all__ = ["AiohttpTransport"]

# Headers aiohttp would otherwise add on its own (a bare request must go out as httpx2 built it).
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
_HTTP11 = {"http_version": b"HTTP/1.1"}


@lru_cache(maxsize=64)
def _client_timeout(connect: float | None, read: float | None, pool: float | None) -> aiohttp.ClientTimeout:
    # aiohttp's `connect` covers waiting for a pooled connection *and* connecting, so it gets
    # pool + connect; `sock_connect` is the TCP/TLS connect alone, `sock_read` the gap between reads.
    acquire = None if connect is None or pool is None else pool + connect
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)


def _timeout_of(request: httpx2.Request) -> aiohttp.ClientTimeout:
    t = request.extensions.get("timeout") or {}
    return _client_timeout(t.get("connect"), t.get("read"), t.get("pool"))


def _raise_mapped(exc: BaseException, request: httpx2.Request, *, in_body: bool) -> NoReturn:
    """Re-raise an aiohttp/asyncio error as the httpx2 exception httpcore2 would have raised."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        raise httpx2.ConnectTimeout(message, request=request) from exc
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        raise httpx2.ReadTimeout(message, request=request) from exc
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake: nothing sent
        raise httpx2.ConnectError(message, request=request) from exc
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        # The peer hung up early or spoke broken HTTP: httpcore2 calls both RemoteProtocolError.
        raise httpx2.RemoteProtocolError(message, request=request) from exc
    if isinstance(exc, aiohttp.ClientOSError):
        cls = httpx2.ReadError if in_body else httpx2.RemoteProtocolError  # reset before an answer: retryable
        raise cls(message, request=request) from exc
    if isinstance(exc, aiohttp.InvalidURL):
        raise httpx2.UnsupportedProtocol(message, request=request) from exc
    raise httpx2.TransportError(message, request=request) from exc


class _AiohttpStream(httpx2.AsyncByteStream):
    """The response body as it arrives; `aclose()` gives the connection back (or drops it)."""

    __slots__ = ("_done", "_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._response = response
        self._request = request
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():  # as received: SSE stays live
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            _raise_mapped(exc, self._request, in_body=True)
        self._done = True

    async def aclose(self) -> None:
        if self._done:
            self._response.release()  # fully read: the connection goes back to the pool
        else:
            self._response.close()  # abandoned mid-body: the connection cannot be reused


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """`httpx2.AsyncClient(transport=AiohttpTransport())`: HTTP/1.1 over an aiohttp session.

    The session is created on first use, inside the running loop, and belongs to that loop
    (as an `httpx2.AsyncHTTPTransport` does): use one transport per event loop.
    `limit` caps open connections (0: no cap); `keepalive_expiry` is how long an idle
    connection is kept (seconds, httpx2's default 5 s); `verify` is httpx2's `verify=`.
    """

    def __init__(self, *, limit: int = 256, keepalive_expiry: float = 5.0,
                 verify: ssl.SSLContext | bool = True) -> None:
        self._limit = limit
        self._keepalive = keepalive_expiry
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is not None:
            if self._loop is not asyncio.get_running_loop():
                raise RuntimeError("AiohttpTransport is bound to the event loop it was first used on; "
                                   "create one transport per loop.")
            return session
        if self._closed:
            raise RuntimeError("This AiohttpTransport is closed.")
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive)
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                        auto_decompress=False, trust_env=False,
                                        skip_auto_headers=_SKIP_AUTO_HEADERS)
        self._session, self._loop = session, asyncio.get_running_loop()
        return session

    def _ssl_context(self) -> ssl.SSLContext:
        # Built on the first https request only: loading CA certificates costs milliseconds.
        if self._ssl is None:
            self._ssl = self._verify if isinstance(self._verify, ssl.SSLContext) else httpx2.create_ssl_context(self._verify)
        return self._ssl

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        session = self._get_session()
        body = await request.aread()
        url = request.url
        try:
            response = await session.request(
                request.method, URL(str(url), encoded=True),  # already encoded by httpx2: no re-quoting
                data=body or None, headers=request.headers.multi_items(), allow_redirects=False,
                timeout=_timeout_of(request), ssl=self._ssl_context() if url.scheme == "https" else True,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            _raise_mapped(exc, request, in_body=False)
        return httpx2.Response(
            response.status, headers=list(response.raw_headers), stream=_AiohttpStream(response, request),
            extensions={**_HTTP11, "reason_phrase": (response.reason or "").encode("ascii", "replace")},
            request=request,
        )

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __del__(self) -> None:
        # Dropped without aclose() (its loop ended first, e.g. asyncio.run() without aclose):
        # close the sockets now, synchronously, as httpcore2's pool would on collection, so
        # aiohttp does not report an "Unclosed client session" from its own finaliser.
        session = self._session
        if session is not None and not session.closed and session.connector is not None:
            session.connector._close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._session is not None else "idle")
        return f"AiohttpTransport(limit={self._limit}, keepalive_expiry={self._keepalive}, {state})"
