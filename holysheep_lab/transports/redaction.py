"""Keys out of everything we keep: the request's credentials, and error answers that echo them.

A relay that refuses a key often quotes it back (`401 {"error": "invalid key abc123"}`), and
that text would reach the log's `error` column, our exceptions, the SDK's exceptions and the
report. Only the transport sees the request's headers on every path (hs.Client, the SDKs through
`http_client=`, legacy httpx), so it reads the credentials there (`request_secrets`) and gives
error answers (HTTP >= 400) to everything above it with them replaced by ``***``
(`RedactingWire`, between the call flow and the network). Successful answers pass untouched.
"""

from __future__ import annotations

import base64
import binascii
from types import ModuleType
from typing import Any, Protocol

__all__ = ["CREDENTIAL_HEADERS", "AsyncRedactingWire", "RawHeaders", "RedactingWire", "redact_bytes",
           "request_secrets"]

#: Headers whose whole value is a key (OpenAI-style relays, Azure, Anthropic, Google).
CREDENTIAL_HEADERS = ("api-key", "x-api-key", "x-goog-api-key")
_NAMES = frozenset({b"authorization", *(name.encode() for name in CREDENTIAL_HEADERS)})
_MIN_SECRET = 4  # errors.redact ignores shorter ones too: they would blank ordinary words
# Recomputed from the body we hand on: the relay's no longer describe it.
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class RawHeaders(Protocol):
    """httpx2's and httpx's Headers: the raw (name, value) byte pairs, as sent."""

    @property
    def raw(self) -> list[tuple[bytes, bytes]]: ...


def request_secrets(headers: RawHeaders) -> tuple[str, ...]:
    """The credentials in a request's headers: the `Authorization` value after its scheme
    (Bearer, or Basic with its decoded password), and every `CREDENTIAL_HEADERS` value."""
    found: list[str] = []
    # One pass over the raw pairs: this runs on every call (Headers.get decodes and scans per name).
    for raw_name, raw_value in headers.raw:
        name = raw_name.lower()
        if name not in _NAMES:
            continue
        value = raw_value.decode("latin-1").strip()
        if name == b"authorization":
            scheme, _, value = value.partition(" ")
            value = value.strip()
            if value and scheme.lower() == "basic":
                found.extend(_basic_parts(value))
        if value:
            found.append(value)
    return tuple(s for s in dict.fromkeys(found) if len(s) >= _MIN_SECRET) if found else ()


def _basic_parts(value: str) -> list[str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return []
    _user, _, password = decoded.partition(":")
    return [decoded, password] if password else [decoded]


def redact_bytes(body: bytes, secrets: tuple[str, ...]) -> bytes:
    """`body` with every secret (as UTF-8, and as JSON would escape a '/') replaced by ``***``."""
    for secret in secrets:
        raw = secret.encode()
        body = body.replace(raw, b"***")
        if b"/" in raw:
            body = body.replace(raw.replace(b"/", b"\\/"), b"***")
    return body


def _redacted(lib: ModuleType, response: Any, body: bytes, secrets: tuple[str, ...]) -> Any:
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    return lib.Response(response.status_code, headers=headers, content=redact_bytes(body, secrets),
                        extensions=response.extensions)


class RedactingWire:
    """A sync transport (httpx2 or legacy httpx: `lib`) whose error answers never quote the
    request's credentials. The body of an error is read here (it is read whole anyway)."""

    def __init__(self, inner: Any, lib: ModuleType) -> None:
        self._inner = inner
        self._lib = lib

    def handle_request(self, request: Any) -> Any:
        response = self._inner.handle_request(request)
        if response.status_code < 400:
            return response
        secrets = request_secrets(request.headers)
        if not secrets:
            return response
        try:
            body = response.read()
        finally:
            response.close()
        return _redacted(self._lib, response, body, secrets)


class AsyncRedactingWire:
    """The async twin of RedactingWire."""

    def __init__(self, inner: Any, lib: ModuleType) -> None:
        self._inner = inner
        self._lib = lib

    async def handle_async_request(self, request: Any) -> Any:
        response = await self._inner.handle_async_request(request)
        if response.status_code < 400:
            return response
        secrets = request_secrets(request.headers)
        if not secrets:
            return response
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return _redacted(self._lib, response, body, secrets)
