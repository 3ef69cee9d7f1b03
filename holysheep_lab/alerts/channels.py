"""Alert channels: where an Alert goes (webhook, e-mail, the notebook, a callback).

Every channel has a `name` (safe to log), a `__repr__` without secrets, and
``async def send(alert) -> None`` that raises `AlertDeliveryError` on failure. The
manager's worker awaits `send` on its own event loop, with a timeout and retries; blocking
work (smtplib, sync callbacks) runs in a worker thread so one slow channel never stalls
another. ``AlertDeliveryError(..., retryable=False)`` tells the manager not to retry
(a 4xx answer, a refused login: repeating cannot help).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
import smtplib
import ssl
import sys
import threading
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Any, Protocol, TextIO, runtime_checkable

import httpx2

from holysheep_lab.alerts.model import Alert
from holysheep_lab.errors import AlertDeliveryError, ConfigError, redact

__all__ = ["CallbackChannel", "Channel", "EmailChannel", "NotebookChannel", "WebhookChannel"]

_STYLES = ("slack", "discord", "generic")
_SECURITY = ("starttls", "ssl", "none")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# CR/LF and every other control or line-separator character: none may reach a mail header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


@runtime_checkable
class Channel(Protocol):
    """What the AlertManager needs of a channel."""

    name: str

    async def send(self, alert: Alert) -> None:
        """Deliver one alert or raise AlertDeliveryError."""
        ...


def _positive(name: str, value: Any) -> float:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}.")
    return float(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


# --------------------------------------------------------------------------- webhook


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup ("<!channel>" pings everyone): escape user text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack incoming-webhook body: `text` (notification fallback) plus Block Kit blocks."""
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(_clip(value, 300))}"}
        for label, value in alert.details()[:10]  # a section holds at most 10 fields
    ]
    stamp = alert.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {
        "text": _slack_escape(alert.text),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _clip(alert.title, 150)}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack_escape(_clip(alert.text, 2000))},
                "fields": fields,
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"holysheep-lab · {alert.level.name} fires at "
                        f"{alert.level.percent} of the limit · {stamp}",
                    }
                ],
            },
        ],
    }


def discord_payload(alert: Alert, username: str = "holysheep-lab") -> dict[str, Any]:
    """Discord execute-webhook body: one embed coloured by level; mentions disabled."""
    return {
        "username": _clip(username, 80),
        # A project or model name like "@everyone" must not ping anyone.
        "allowed_mentions": {"parse": []},
        "embeds": [
            {
                "title": _clip(alert.title, 256),
                "description": _clip(alert.text, 4096),
                "color": alert.level.colour,
                "fields": [
                    {"name": label, "value": _clip(value, 1024), "inline": True}
                    for label, value in alert.details()[:25]
                ],
                "timestamp": alert.ts.astimezone(UTC).isoformat(),
                "footer": {"text": "holysheep-lab"},
            }
        ],
    }


def generic_payload(alert: Alert) -> dict[str, Any]:
    """Plain JSON of the alert: floats for money, ISO 8601 times."""
    return {"source": "holysheep-lab", **alert.to_dict()}


class WebhookChannel:
    """POST the alert as JSON to a webhook: Slack, Discord or a generic JSON receiver.

    The URL is a secret (it holds the token): it never appears in repr, str, errors,
    delivery records or logs; only ``scheme://host/…`` does. The request goes through an
    httpx2 transport directly rather than a Client because the Client logs every request
    URL at INFO. `proxy` (or HTTP(S)_PROXY/NO_PROXY from the environment) is honoured;
    `verify` takes an SSLContext (or a CA bundle path, or False) like httpx2.
    """

    def __init__(
        self,
        url: str,
        style: str = "slack",
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        username: str = "holysheep-lab",
        proxy: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        if style not in _STYLES:
            raise ConfigError(
                f"WebhookChannel style must be one of {', '.join(_STYLES)}; got {style!r}."
            )
        if not isinstance(url, str):
            raise ConfigError("WebhookChannel url must be a string (https://...).")
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        valid = parts.scheme in ("http", "https") and parts.hostname and port != -1
        if not valid or _CONTROL.search(url):
            # Never echo the URL: a malformed one is still someone's token.
            raise ConfigError(
                "WebhookChannel url must be an http(s) URL such as https://hooks.slack.com/services/..."
            )
        self.style = style
        self.timeout = _positive("WebhookChannel timeout", timeout)
        self.username = username
        self._url = url
        host = parts.hostname if port is None else f"{parts.hostname}:{port}"
        self.safe_url = f"{parts.scheme}://{host}/…"
        self.name = f"webhook:{style}:{parts.hostname}"
        self._headers = dict(headers or {})
        for key, value in self._headers.items():
            if _CONTROL.search(f"{key}{value}"):
                raise ConfigError(f"WebhookChannel header {_one_line(key)!r} contains a line break.")
        candidates = (url, parts.path, parts.query, parts.password, *self._headers.values())
        self._secrets = tuple(s for s in candidates if s and len(s) >= 4)
        host_name = parts.hostname or ""
        if proxy is None and host_name not in _LOOPBACK and not urllib.request.proxy_bypass(host_name):
            proxy = urllib.request.getproxies().get(parts.scheme)
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
        if self.style == "slack":
            return slack_payload(alert)
        if self.style == "discord":
            return discord_payload(alert, self.username)
        return generic_payload(alert)

    def _redact(self, text: str) -> str:
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
                f"{self._redact(str(exc)) or 'no detail'}",
                retryable=True,
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = self._redact(_one_line(response.text[:200]))
        retry_after = _retry_after(response.headers.get("Retry-After"))
        raise AlertDeliveryError(
            self.name,
            f"HTTP {status} from {self.safe_url}" + (f": {detail}" if detail else ""),
            retryable=status in (408, 425, 429) or status >= 500,
            status_code=status,
            retry_after=retry_after,
        )

    def __repr__(self) -> str:
        hdrs = f", headers={sorted(self._headers)}" if self._headers else ""
        return (
            f"WebhookChannel(style={self.style!r}, url={self.safe_url!r}, "
            f"timeout={self.timeout:g}{hdrs})"
        )

    __str__ = __repr__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare for webhooks; fall back to our own backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# --------------------------------------------------------------------------- e-mail


def _addresses(what: str, value: str | Iterable[str]) -> tuple[list[str], list[str]]:
    """(header forms, bare envelope addresses); ConfigError on anything header-unsafe."""
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ConfigError(f"EmailChannel {what} must name at least one address.")
    headers: list[str] = []
    bare: list[str] = []
    for item in items:
        if not isinstance(item, str) or _CONTROL.search(item):
            # Reject rather than strip: an address with a line break is an injection attempt.
            raise ConfigError(f"EmailChannel {what} address contains a line break or is not text.")
        for display, addr in getaddresses([item]):
            if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+", addr or ""):
                raise ConfigError(f"EmailChannel {what}: {_one_line(item)!r} is not an e-mail address.")
            headers.append(f"{display} <{addr}>" if display else addr)
            bare.append(addr)
    return headers, bare


class EmailChannel:
    """Send the alert by SMTP (stdlib smtplib) as multipart/alternative text + HTML.

    `security`: "starttls" (default; fails rather than sending in clear if the server
    does not offer it), "ssl" (implicit TLS, usually port 465) or "none" (plain; a password
    is then only allowed to a loopback host). Addresses with line breaks are refused at
    construction; alert text in the subject is flattened to one line, so a project named
    "x\\r\\nBcc: ..." cannot add a header. `smtp_factory(host, port, timeout)` may return a
    connected ``smtplib.SMTP`` for tests or special set-ups; the channel still does
    STARTTLS, login and sending. The password never appears in repr or errors.
    """

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        sender: str,
        to: str | Iterable[str],
        username: str | None = None,
        password: str | None = None,
        security: str = "starttls",
        timeout: float = 10.0,
        smtp_factory: Callable[[str, int, float], smtplib.SMTP] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        subject_prefix: str = "[holysheep-lab]",
    ) -> None:
        if not isinstance(host, str) or not host or _CONTROL.search(host) or " " in host:
            raise ConfigError("EmailChannel host must be a host name such as 'smtp.example.com'.")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"EmailChannel port must be 1..65535, not {port!r}.")
        if security not in _SECURITY:
            raise ConfigError(
                f"EmailChannel security must be one of {', '.join(_SECURITY)}; got {security!r}."
            )
        if (username is None) != (password is None):
            raise ConfigError("EmailChannel needs both username and password to log in, or neither.")
        if username is not None and _CONTROL.search(username):
            raise ConfigError("EmailChannel username contains a line break.")
        if password is not None and security == "none" and host not in _LOOPBACK:
            raise ConfigError(
                "EmailChannel refuses to send a password unencrypted to a remote host: "
                "use security='starttls' or 'ssl'."
            )
        self.host, self.port, self.security = host, port, security
        self.timeout = _positive("EmailChannel timeout", timeout)
        self.username = username
        self._password = password
        (self._from_header,), (self._envelope_from,) = _single(_addresses("sender", sender))
        self._to_headers, self._envelope_to = _addresses("to", to)
        self._factory = smtp_factory
        self._ssl_context = ssl_context
        self.subject_prefix = _one_line(subject_prefix)
        self.name = f"email:{host}"

    @property
    def recipients(self) -> list[str]:
        """The envelope recipients (bare addresses)."""
        return list(self._envelope_to)

    def subject(self, alert: Alert) -> str:
        """'[holysheep-lab] WARNING: daily budget at 76%' (scope added unless global)."""
        scope = "" if alert.scope == "global" else f" ({alert.scope})"
        pct = math.floor(alert.ratio * 100)  # floor: never claim more than was spent
        text = f"{self.subject_prefix} {alert.level.name}: {alert.window} budget{scope} at {pct}%"
        return _clip(_one_line(text), 200)

    def message(self, alert: Alert) -> EmailMessage:
        """The message this channel sends for `alert`."""
        msg = EmailMessage()
        msg["Subject"] = self.subject(alert)
        msg["From"] = self._from_header
        msg["To"] = ", ".join(self._to_headers)
        msg["Date"] = format_datetime(alert.ts.astimezone(UTC))
        # An explicit domain: make_msgid() would otherwise do a (possibly slow) DNS lookup.
        msg["Message-ID"] = make_msgid(domain="holysheep-lab.local")
        msg["X-Holysheep-Level"] = alert.level.name
        lines = [_one_line(alert.text), ""]
        lines += [f"{label}: {_one_line(value)}" for label, value in alert.details()]
        lines += ["", "-- holysheep-lab"]
        msg.set_content("\n".join(lines))
        msg.add_alternative(
            "<!doctype html><html><body>"
            f"{alert._repr_html_()}"
            "<p style='color:#888;font-size:.8em'>holysheep-lab budget alert</p>"
            "</body></html>",
            subtype="html",
        )
        return msg

    def _connect(self) -> smtplib.SMTP:
        if self._factory is not None:
            return self._factory(self.host, self.port, self.timeout)
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _send_blocking(self, msg: EmailMessage) -> None:
        smtp = self._connect()
        try:
            if self.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
            smtp.send_message(msg, from_addr=self._envelope_from, to_addrs=self._envelope_to)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()  # the message is sent or the error is already on its way up

    async def send(self, alert: Alert) -> None:
        msg = self.message(alert)
        try:
            await asyncio.to_thread(self._send_blocking, msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise AlertDeliveryError(
                self.name,
                f"{type(exc).__name__} via {self.host}:{self.port}: "
                f"{redact(str(exc), self._password)}",
                retryable=_smtp_retryable(exc),
            ) from None

    def __repr__(self) -> str:
        login = f", username={self.username!r}, password=***" if self.username is not None else ""
        return (
            f"EmailChannel(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"sender={self._envelope_from!r}, to={self._envelope_to!r}{login})"
        )

    __str__ = __repr__


def _single(pair: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
    if len(pair[1]) != 1:
        raise ConfigError("EmailChannel sender must be exactly one address.")
    return pair


def _smtp_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (ssl.SSLCertVerificationError, smtplib.SMTPNotSupportedError)):
        return False  # configuration: repeating cannot help
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return False
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500  # 4xx is "try again later" in SMTP
    return True  # connection refused, reset, timeout, server disconnected


# --------------------------------------------------------------------------- notebook


def _kernel_shell() -> Any:
    """The running IPython kernel shell, or None (a script, a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None  # IPython was never imported: we are not in a notebook; don't import it
    shell = ipython.get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


class NotebookChannel:
    """Show the alert as a banner in the running notebook; print it elsewhere.

    Create it in a notebook cell: it displays an (empty) output there at once, and the
    worker thread later updates that display handle, which is safe from threads on
    ipykernel >= 7.1 (plain `display()` from a thread may land in no cell). The banner
    holds the `keep` most recent alerts, newest first. Outside a kernel, `send` prints
    `alert.text` to `stream` (default: sys.stdout at send time).
    """

    def __init__(self, *, keep: int = 3, stream: TextIO | None = None) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"NotebookChannel keep must be a positive int, not {keep!r}.")
        self.name = "notebook"
        self._recent: deque[Alert] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stream = stream
        self._handle: Any = None
        if _kernel_shell() is not None:
            from IPython.display import HTML, display

            self._handle = display(HTML(""), display_id=True)

    @property
    def in_notebook(self) -> bool:
        """True when alerts go to a display handle in a notebook cell."""
        return self._handle is not None

    async def send(self, alert: Alert) -> None:
        with self._lock:
            self._recent.appendleft(alert)
            recent = list(self._recent)
        if self._handle is None:
            print(alert.text, file=self._stream or sys.stdout, flush=True)
            return
        from IPython.display import HTML

        self._handle.update(HTML("".join(a._repr_html_() for a in recent)))

    def __repr__(self) -> str:
        return f"NotebookChannel(in_notebook={self.in_notebook}, keep={self._recent.maxlen})"


# --------------------------------------------------------------------------- callback


class CallbackChannel:
    """Call `fn(alert)`; a coroutine function is awaited on the worker's loop, a plain
    function runs in a worker thread (so a slow one cannot stall other channels).

    A callback that raises is reported as a failed delivery and not retried (it may have
    had side effects); raise ``AlertDeliveryError(name, reason, retryable=True)`` to ask
    for a retry.
    """

    def __init__(self, fn: Callable[[Alert], Any], *, name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError(f"CallbackChannel needs a callable fn(alert), not {type(fn).__name__}.")
        self._fn = fn
        label = getattr(fn, "__qualname__", None) or type(fn).__name__
        self.name = _one_line(name or f"callback:{label}")

    async def send(self, alert: Alert) -> None:
        try:
            if inspect.iscoroutinefunction(self._fn) or inspect.iscoroutinefunction(
                getattr(self._fn, "__call__", None)
            ):
                await self._fn(alert)
                return
            result = await asyncio.to_thread(self._fn, alert)
            if inspect.isawaitable(result):
                await result
        except AlertDeliveryError:
            raise
        except Exception as exc:  # the user's code failed: report it as this channel's failure
            reason = f"{type(exc).__name__}: {exc}"
            raise AlertDeliveryError(self.name, reason, retryable=False) from exc

    def __repr__(self) -> str:
        return f"CallbackChannel({self.name!r})"
