"""WebhookChannel: the alert POSTed as JSON to a webhook, in the style of its service."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx2

from holysheep_lab.alerts.channel import CONTROL, one_line, proxy_for, retry_after_seconds
from holysheep_lab.alerts.model import Alert
from holysheep_lab.alerts.styles import STYLES, WebhookStyle
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import AlertDeliveryError, ConfigError, redact

__all__ = ["WebhookChannel"]


def _style(style: str | WebhookStyle, username: str) -> WebhookStyle:
    if isinstance(style, str) and style in STYLES:
        return STYLES[style](username)
    # A class with the right members is not a style object: its methods would be unbound.
    if not isinstance(style, (str, type)) and isinstance(style, WebhookStyle):
        return style
    shown = repr(style) if isinstance(style, str) else f"a {type(style).__name__}"
    raise ConfigError(
        f"WebhookChannel style must be one of {', '.join(STYLES)}, or a WebhookStyle object "
        f"(name, headers, payload(alert), hint(status)); got {shown}."
    )


class WebhookChannel:
    """POST the alert as JSON to a webhook: Slack, Discord or a generic JSON receiver.

    `style`: "slack" (default), "discord" (posting as `username`), "generic", or a
    `WebhookStyle` object (see holysheep_lab.alerts.styles) for another service.
    The URL is a secret (it holds the token): it never appears in repr, str, errors,
    delivery records or logs; only ``scheme://host/…`` does. The request goes through an
    httpx2 transport directly rather than a Client because the Client logs every request
    URL at INFO. `proxy` (or HTTP(S)_PROXY/NO_PROXY from the environment) is honoured;
    `verify` takes an SSLContext (or a CA bundle path, or False) like httpx2.
    """

    def __init__(
        self,
        url: str,
        style: str | WebhookStyle = "slack",
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        username: str = "holysheep-lab",
        proxy: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self.style = _style(style, username)
        if not isinstance(url, str):
            raise ConfigError("WebhookChannel url must be a string (https://...).")
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        valid = parts.scheme in ("http", "https") and parts.hostname and port != -1
        if not valid or CONTROL.search(url):
            # Never echo the URL: a malformed one is still someone's token.
            raise ConfigError(
                "WebhookChannel url must be an http(s) URL such as https://hooks.slack.com/services/..."
            )
        self.timeout = positive_seconds("WebhookChannel timeout", timeout)
        self.username = username
        self._url = url
        host = parts.hostname if port is None else f"{parts.hostname}:{port}"
        self.safe_url = f"{parts.scheme}://{host}/…"
        self.name = f"webhook:{one_line(self.style.name)}:{parts.hostname}"
        # The style's headers first: the ones given here win.
        self._headers = {**self.style.headers, **(headers or {})}
        for key, value in self._headers.items():
            if CONTROL.search(f"{key}{value}"):
                raise ConfigError(f"WebhookChannel header {one_line(key)!r} contains a line break.")
        candidates = (url, parts.path, parts.query, parts.password, *self._headers.values())
        self._secrets = tuple(s for s in candidates if s and len(s) >= 4)
        if proxy is None:
            proxy = proxy_for(parts.scheme, parts.hostname or "")
        self._proxy = proxy
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None

    async def _tls(self) -> ssl.SSLContext:
        # Made once per channel, off the loop: loading the CA bundle takes ~60 ms, and doing
        # it per send on the worker loop stalls every other delivery.
        if self._ssl_context is None:
            self._ssl_context = await asyncio.to_thread(httpx2.create_ssl_context, self._verify)
        return self._ssl_context

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON body this channel posts for `alert`."""
        return self.style.payload(alert)

    def redact(self, text: str) -> str:
        """`text` without this channel's URL, its parts or header values."""
        return redact(text, *self._secrets)

    async def send(self, alert: Alert) -> None:
        body = json.dumps(self.payload(alert), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "holysheep-lab", **self._headers}
        request = httpx2.Request(
            "POST", self._url, content=body, headers=headers,
            extensions={"timeout": httpx2.Timeout(self.timeout).as_dict()},
        )
        tls = await self._tls()
        try:
            # The per-operation timeouts do not bound a server that drips bytes: cap the total.
            async with asyncio.timeout(self.timeout):
                async with httpx2.AsyncHTTPTransport(verify=tls, proxy=self._proxy) as transport:
                    response = await transport.handle_async_request(request)
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
        except TimeoutError:
            raise AlertDeliveryError(
                self.name, f"no answer from {self.safe_url} within {self.timeout:g} s", retryable=True
            ) from None
        except (httpx2.HTTPError, OSError) as exc:
            # `from None`: the cause carries the request, and so the URL, into any traceback.
            raise AlertDeliveryError(
                self.name,
                f"{type(exc).__name__} posting to {self.safe_url}: "
                f"{self.redact(str(exc)) or 'no detail'}",
                retryable=True,
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = self.redact(one_line(response.text[:200]))
        reason = f"HTTP {status} from {self.safe_url}" + (f": {detail}" if detail else "")
        hint = self.style.hint(status)
        raise AlertDeliveryError(
            self.name,
            reason + (f" — {hint}" if hint else ""),
            retryable=status in (408, 425, 429) or status >= 500,
            status_code=status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def __repr__(self) -> str:
        hdrs = f", headers={sorted(self._headers)}" if self._headers else ""
        return (
            f"WebhookChannel(style={self.style.name!r}, url={self.safe_url!r}, "
            f"timeout={self.timeout:g}{hdrs})"
        )

    __str__ = __repr__
