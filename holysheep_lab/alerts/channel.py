"""The Channel contract, and the small text and HTTP helpers the channels share.

Every channel has a `name` (safe to log), a `__repr__` without secrets, and
``async def send(alert) -> None`` that raises `AlertDeliveryError` on failure. The
manager's worker awaits `send` on its own event loop, with a timeout and retries; blocking
work (smtplib, sync callbacks) runs in a worker thread so one slow channel never stalls
another. ``AlertDeliveryError(..., retryable=False)`` tells the manager not to retry
(a 4xx answer, a refused login: repeating cannot help).
"""

from __future__ import annotations

import math
import re
import urllib.request
from typing import Protocol, runtime_checkable

from holysheep_lab.alerts.model import Alert

__all__ = [
    "CONTROL",
    "LOOPBACK",
    "Channel",
    "Redacting",
    "clip",
    "one_line",
    "proxy_for",
    "retry_after_seconds",
]

# CR/LF and every other control or line-separator character: none may reach a header.
CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


@runtime_checkable
class Channel(Protocol):
    """What the AlertManager needs of a channel."""

    name: str

    async def send(self, alert: Alert) -> None:
        """Deliver one alert or raise AlertDeliveryError."""
        ...


@runtime_checkable
class Redacting(Protocol):
    """A channel that holds secrets (a URL token, a password) and can hide them in text.

    The manager applies it to every failure it records for the channel, including a
    channel bug's exception text, which the channel never had a chance to redact.
    """

    def redact(self, text: str) -> str:
        """`text` with this channel's secrets (and anything key-shaped) replaced by ``***``."""
        ...


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in '…' if it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """`text` with line breaks and control characters turned into spaces, stripped."""
    return CONTROL.sub(" ", text).strip()


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds, or None (absent, an HTTP date, negative, not finite)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare for chat APIs; fall back to the manager's backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def proxy_for(scheme: str, host: str) -> str | None:
    """The HTTP(S)_PROXY from the environment for this host, unless NO_PROXY or a loopback
    host exempts it (a test server on 127.0.0.1 must not go through the office proxy)."""
    if host in LOOPBACK or urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)
