"""LINE channel: budget alerts pushed through the LINE Messaging API.

LINE Notify, which most older examples use, closed on 2025-03-31; this channel talks to the
Messaging API of a LINE Official Account's bot instead:

    POST {api_base}/v2/bot/message/push        {"to": "<U/C/R id>", "messages": [...]}
    POST {api_base}/v2/bot/message/multicast   {"to": ["<U id>", ...], "messages": [...]}
    Authorization: Bearer <channel access token>
    X-Line-Retry-Key: <UUID>

Limits followed (LINE's reference): a text message holds at most 5,000 characters counted
in UTF-16 code units; a Flex message's `altText` is kept to 400 (the older, stricter limit)
and its bubble far below the 30 KB cap; multicast takes up to 500 user ids and no group or
room ids. A retry key is valid for 24 hours; a request repeated with an already accepted
key is answered 409, which here means "delivered".
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import httpx2

from holysheep_lab.alerts.channel import CONTROL, LOOPBACK, clip, one_line, proxy_for, retry_after_seconds
from holysheep_lab.alerts.model import Alert
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import AlertDeliveryError, ConfigError, redact

__all__ = ["LineChannel", "clip_utf16", "line_flex_message", "line_text_message"]

log = logging.getLogger("holysheep_lab.alerts")

TEXT_LIMIT = 5000  # text message, in UTF-16 code units
ALT_TEXT_LIMIT = 400  # Flex altText: LINE now allows 1,500; 400 holds under both limits
MULTICAST_LIMIT = 500  # user ids per multicast request
PUSH_PATH = "/v2/bot/message/push"
MULTICAST_PATH = "/v2/bot/message/multicast"

_ID = re.compile(r"[UCR][0-9a-f]{32}")
_STYLES = ("flex", "text")
_MAX_TRACKED = 256  # alerts whose retry keys are remembered while they may be retried
_CONCURRENCY = 8  # requests in flight per send() when `to` names several recipients


def clip_utf16(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 code units (how LINE counts), ending in '…'."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    budget, units = limit - 1, 0  # '…' takes one unit
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > budget:
            return text[:i] + "…"
    return text  # not reached


def _stamp(alert: Alert) -> str:
    return alert.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def line_text_message(alert: Alert) -> dict[str, Any]:
    """A LINE text message: the alert's one-line text, then one line per detail."""
    lines = [one_line(alert.text), ""]
    lines += [f"{label}: {one_line(value)}" for label, value in alert.details()]
    lines += ["", f"holysheep-lab · {_stamp(alert)}"]
    return {"type": "text", "text": clip_utf16("\n".join(lines), TEXT_LIMIT)}


def _ink(colour: int) -> str:
    r, g, b = colour >> 16, (colour >> 8) & 0xFF, colour & 0xFF
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 160 else "#FFFFFF"


def line_flex_message(alert: Alert) -> dict[str, Any]:
    """A LINE Flex message: one bubble with a header in the level's colour and a row per
    detail (spent of limit and ratio, in flight, level, scope, window, reset time, ...).
    `altText` (notifications, chat list, old clients) is the alert's one-line text."""
    colour, ink = f"#{alert.level.colour:06X}", _ink(alert.level.colour)
    rows = [
        {
            "type": "box",
            "layout": "baseline",
            "spacing": "sm",
            "contents": [
                {"type": "text", "text": label, "size": "sm", "color": "#888888", "flex": 2},
                {
                    "type": "text",
                    "text": clip(one_line(value), 300) or "-",
                    "size": "sm",
                    "wrap": True,
                    "flex": 5,
                },
            ],
        }
        for label, value in alert.details()[:10]
    ]
    return {
        "type": "flex",
        "altText": clip_utf16(one_line(alert.text), ALT_TEXT_LIMIT),
        "contents": {
            "type": "bubble",
            "header": {
                "type": "box",
                "layout": "vertical",
                "backgroundColor": colour,
                "paddingAll": "12px",
                "contents": [
                    {
                        "type": "text",
                        "text": f"{alert.level.name} · {alert.ratio * 100:.1f}%",
                        "weight": "bold",
                        "size": "lg",
                        "color": ink,
                    },
                    {
                        "type": "text",
                        "text": clip(one_line(alert.title), 200),
                        "size": "sm",
                        "wrap": True,
                        "color": ink,
                    },
                ],
            },
            "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": rows},
            "footer": {
                "type": "box",
                "layout": "vertical",
                "contents": [
                    {
                        "type": "text",
                        "text": f"holysheep-lab · {alert.level.name} fires at "
                        f"{alert.level.percent} · {_stamp(alert)}",
                        "size": "xxs",
                        "color": "#AAAAAA",
                        "wrap": True,
                    }
                ],
            },
        },
    }


@dataclass(frozen=True)
class _Request:
    path: str
    to: str | tuple[str, ...]
    label: str  # recipient(s) for errors: shortened ids


@dataclass(frozen=True)
class _Failure:
    reason: str  # already redacted; starts with the recipient label
    retryable: bool
    status: int | None = None
    retry_after: float | None = None


@dataclass
class _Progress:
    """Retry state of one alert: a retry key per request, and which requests are settled."""

    alert: Alert  # holds the object, so its id() cannot be reused while tracked
    keys: list[str]
    done: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)  # permanent failures


def _label(ids: str | tuple[str, ...]) -> str:
    if isinstance(ids, str):
        return clip(ids, 10)
    return f"{len(ids)} users ({clip(ids[0], 10)}, …)"


def _line_error(content: bytes) -> str:
    """LINE's error body ``{"message": ..., "details": [{"message", "property"}]}`` as text."""
    try:
        data = json.loads(content)
    except ValueError:
        return one_line(content[:200].decode("utf-8", "replace"))
    if not isinstance(data, dict):
        return ""
    text = str(data.get("message") or "")
    details = data.get("details")
    if isinstance(details, list):
        parts = [
            f"{d.get('property')}: {d.get('message')}"
            if d.get("property")
            else str(d.get("message"))
            for d in details[:3]
            if isinstance(d, dict)
        ]
        if parts:
            text += " [" + "; ".join(parts) + "]"
    return one_line(text)[:300]


class LineChannel:
    """Push each alert to LINE users, groups or multi-person chats via the Messaging API.

    `channel_access_token`: the channel's (long-lived) access token, from the LINE
    Developers Console, your channel, tab "Messaging API". It is a secret: it never appears
    in repr, str, errors, delivery records or logs.
    `to`: one id or several: user ids ``U…``, group ids ``C…`` and room ids ``R…`` (33
    characters, from the bot's webhook events; not the @LINE ID people search for). Each
    gets its own push; with ``multicast=True``, user ids go in multicast requests of up to
    500 instead (groups and rooms are always pushed one by one).
    `style`: "flex" (default: a Flex bubble coloured by level; the text is its altText) or
    "text" (a plain text message within LINE's 5,000-character limit).

    Each alert gets a fresh ``X-Line-Retry-Key`` per request; the manager's retries of that
    alert reuse it, so LINE shows a retried push once (a 409 on a repeat counts as
    delivered), and recipients already served are not asked again. 429 is retried after
    LINE's Retry-After (if it sends one) unless the month's message quota is used up;
    400/401/403 are not retried and their error says what to fix.
    """

    def __init__(
        self,
        channel_access_token: str,
        to: str | Iterable[str],
        *,
        api_base: str = "https://api.line.me",
        style: str = "flex",
        multicast: bool = False,
        timeout: float = 5.0,
        name: str | None = None,
        proxy: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        token = channel_access_token
        if not isinstance(token, str) or not token.strip():
            raise ConfigError(
                "LineChannel channel_access_token is empty: copy the channel access token "
                "(long-lived) from the LINE Developers Console, your channel, tab 'Messaging API'."
            )
        if token != token.strip() or re.search(r"\s", token) or CONTROL.search(token):
            raise ConfigError(
                "LineChannel channel_access_token contains spaces or line breaks: paste the "
                "token alone (without 'Bearer ')."
            )
        self._token = token
        self.to = self._recipients(to)
        self.api_base = self._base(api_base)
        if style not in _STYLES:
            raise ConfigError(f"LineChannel style must be 'flex' or 'text', not {style!r}.")
        self.style = style
        self.multicast = bool(multicast)
        self.timeout = positive_seconds("LineChannel timeout", timeout)
        first = clip(self.to[0], 10).rstrip("…")
        more = f"+{len(self.to) - 1}" if len(self.to) > 1 else ""
        self.name = one_line(name) if name else f"line:{first}{more}"
        self._requests = self._plan()
        if proxy is None:
            base = urllib.parse.urlsplit(self.api_base)
            proxy = proxy_for(base.scheme, base.hostname or "")
        self._proxy = proxy
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._progress: OrderedDict[int, _Progress] = OrderedDict()

    # ------------------------------------------------------------------ settings

    def _recipients(self, to: str | Iterable[str]) -> tuple[str, ...]:
        if isinstance(to, str):
            items: list[Any] = [to]
        else:
            try:
                items = list(to)
            except TypeError:
                raise ConfigError(
                    "LineChannel to must be a LINE id or a list of them, such as 'C0123…' "
                    "(a group id from the bot's webhook events)."
                ) from None
        if not items:
            raise ConfigError(
                "LineChannel to is empty: name at least one user (U…), group (C…) "
                "or room (R…) id."
            )
        out: list[str] = []
        for n, item in enumerate(items):
            if not isinstance(item, str) or not _ID.fullmatch(item):
                shown = ""
                if isinstance(item, str) and len(item) <= 40 and self._token not in item:
                    shown = f" {one_line(item)!r}"
                raise ConfigError(
                    f"LineChannel to[{n}]{shown} is not a LINE user, group or room id: use the "
                    "33-character id (U, C or R and 32 hex digits) from the bot's webhook event "
                    "source, not the @LINE ID people search for."
                )
            if item not in out:
                out.append(item)
        return tuple(out)

    @staticmethod
    def _base(api_base: str) -> str:
        fix = (
            "LineChannel api_base must be an https:// URL such as https://api.line.me "
            "(http:// only for a loopback test server)"
        )
        if not isinstance(api_base, str) or CONTROL.search(api_base):
            raise ConfigError(fix + ".")
        parts = urllib.parse.urlsplit(api_base)
        try:
            _ = parts.port
        except ValueError:
            raise ConfigError(fix + "; its port is not a number.") from None
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise ConfigError(fix + f"; got a {parts.scheme or 'scheme-less'} URL.")
        if parts.scheme == "http" and host not in LOOPBACK:
            raise ConfigError(fix + "; plain http would send the token unencrypted.")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigError(fix + ", without user info, query or fragment.")
        return api_base.rstrip("/")

    def _plan(self) -> tuple[_Request, ...]:
        users = [i for i in self.to if i.startswith("U")]
        if not self.multicast or len(users) < 2:
            return tuple(_Request(PUSH_PATH, i, _label(i)) for i in self.to)
        plan = [_Request(PUSH_PATH, i, _label(i)) for i in self.to if not i.startswith("U")]
        for start in range(0, len(users), MULTICAST_LIMIT):
            batch = tuple(users[start : start + MULTICAST_LIMIT])
            if len(batch) == 1:
                plan.append(_Request(PUSH_PATH, batch[0], _label(batch[0])))
            else:
                plan.append(_Request(MULTICAST_PATH, batch, _label(batch)))
        return tuple(plan)

    # ------------------------------------------------------------------ payload

    def messages(self, alert: Alert) -> list[dict[str, Any]]:
        """The message objects pushed for `alert` (one: a Flex bubble or a text message)."""
        return [line_flex_message(alert) if self.style == "flex" else line_text_message(alert)]

    # ------------------------------------------------------------------ sending

    def redact(self, text: str) -> str:
        """`text` without the channel access token."""
        return redact(text, self._token)

    async def _tls(self) -> ssl.SSLContext:
        # Once per channel and off the loop: loading the CA bundle takes tens of ms.
        if self._ssl_context is None:
            self._ssl_context = await asyncio.to_thread(httpx2.create_ssl_context, self._verify)
        return self._ssl_context

    def _track(self, alert: Alert) -> _Progress:
        with self._lock:
            progress = self._progress.get(id(alert))
            if progress is None or progress.alert is not alert:
                keys = [str(uuid.uuid4()) for _ in self._requests]
                progress = self._progress[id(alert)] = _Progress(alert, keys)
                while len(self._progress) > _MAX_TRACKED:
                    self._progress.popitem(last=False)
            self._progress.move_to_end(id(alert))
            return progress

    def _forget(self, alert: Alert) -> None:
        with self._lock:
            self._progress.pop(id(alert), None)

    async def send(self, alert: Alert) -> None:
        progress = self._track(alert)
        todo = [
            n
            for n in range(len(self._requests))
            if n not in progress.done and n not in progress.failed
        ]
        retry: list[_Failure] = []
        if todo:
            messages = self.messages(alert)
            tls = await self._tls()
            gate = asyncio.Semaphore(_CONCURRENCY)

            async def one(transport: httpx2.AsyncHTTPTransport, n: int) -> _Failure | None:
                async with gate:
                    return await self._post(
                        transport, self._requests[n], progress.keys[n], messages
                    )

            async with httpx2.AsyncHTTPTransport(verify=tls, proxy=self._proxy) as transport:
                results = await asyncio.gather(*(one(transport, n) for n in todo))
            for n, failure in zip(todo, results, strict=True):
                if failure is None:
                    progress.done.add(n)
                elif failure.retryable:
                    retry.append(failure)
                else:
                    progress.failed[n] = failure.reason
        if retry:
            waits = [f.retry_after for f in retry if f.retry_after is not None]
            raise AlertDeliveryError(
                self.name,
                self._summary([f.reason for f in retry] + list(progress.failed.values())),
                retryable=True,
                status_code=retry[0].status,
                retry_after=max(waits, default=None),
            )
        self._forget(alert)
        if progress.failed:
            raise AlertDeliveryError(
                self.name, self._summary(list(progress.failed.values())), retryable=False
            )

    def _summary(self, reasons: list[str]) -> str:
        if len(self._requests) == 1:
            return reasons[0]
        head = f"{len(reasons)} of {len(self._requests)} LINE requests failed: "
        return head + "; ".join(reasons[:3]) + ("; …" if len(reasons) > 3 else "")

    def _failure(
        self,
        request: _Request,
        reason: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> _Failure:
        return _Failure(self.redact(f"{request.label}: {reason}"), retryable, status, retry_after)

    async def _post(
        self,
        transport: httpx2.AsyncHTTPTransport,
        request: _Request,
        retry_key: str,
        messages: list[dict[str, Any]],
    ) -> _Failure | None:
        to: str | list[str] = request.to if isinstance(request.to, str) else list(request.to)
        body = json.dumps({"to": to, "messages": messages}, ensure_ascii=False).encode()
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "User-Agent": "holysheep-lab",
            "X-Line-Retry-Key": retry_key,
        }
        outgoing = httpx2.Request(
            "POST",
            self.api_base + request.path,
            content=body,
            headers=headers,
            extensions={"timeout": httpx2.Timeout(self.timeout).as_dict()},
        )
        try:
            # The per-operation timeouts do not bound a server that drips bytes: cap the total.
            async with asyncio.timeout(self.timeout):
                response = await transport.handle_async_request(outgoing)
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
        except TimeoutError:
            return self._failure(
                request, f"no answer from {self.api_base} within {self.timeout:g} s", True
            )
        except (httpx2.HTTPError, OSError) as exc:
            detail = self.redact(one_line(str(exc))) or "no detail"
            return self._failure(
                request, f"{type(exc).__name__} posting to {self.api_base}: {detail}", True
            )
        return self._judge(
            request, response.status_code, content, response.headers.get("Retry-After")
        )

    def _judge(
        self, request: _Request, status: int, content: bytes, retry_after: str | None
    ) -> _Failure | None:
        if 200 <= status < 300:
            return None
        if status == 409:
            # LINE already accepted a request with this retry key: an earlier attempt whose
            # answer was lost got through. Delivered, and not shown twice.
            log.debug(
                "LINE had already accepted this alert for %s (409 on its retry key)", request.label
            )
            return None
        said = _line_error(content)
        line_said = f" (LINE: {said})" if said else ""
        retryable = status in (408, 425) or status >= 500
        wait = None
        if status == 401:
            fix = (
                "LINE refused the channel access token: it is wrong, expired or revoked. Issue a "
                "new long-lived token in the LINE Developers Console (your channel, tab "
                "'Messaging API') and pass it as channel_access_token"
            )
        elif status == 403:
            fix = (
                "LINE forbids this push: make sure the bot is still a member "
                "of that group or chat (invite it again), that the user has added it as a "
                "friend, and that the account's plan allows this API"
            )
        elif status == 400 and "'to'" in said:
            fix = (
                "not a recipient this bot can reach: use a user, group or "
                "room id from this channel's own webhook events (ids differ per provider), "
                "and check the bot is still in that group"
            )
        elif status == 429 and "monthly limit" in said.lower():
            fix = (
                "the LINE Official Account has used up this month's message quota: raise the "
                "limit or plan in LINE Official Account Manager, or wait for next month"
            )
        elif status == 429:
            fix, retryable = "LINE's rate limit was hit", True
            wait = retry_after_seconds(retry_after)
        elif status == 400:
            fix = "LINE rejected the request"
        elif retryable:
            fix = "LINE had a server error"
        else:
            fix = "LINE refused the request"
        return self._failure(request, f"HTTP {status}: {fix}{line_said}", retryable, status, wait)

    def __repr__(self) -> str:
        shown = [clip(i, 10) for i in self.to[:3]] + (["…"] if len(self.to) > 3 else [])
        return (
            f"LineChannel(to={shown}, api_base={self.api_base!r}, style={self.style!r}, "
            f"multicast={self.multicast}, timeout={self.timeout:g}, channel_access_token=***)"
        )

    __str__ = __repr__
