"""EmailChannel: the alert sent by SMTP as multipart/alternative text + HTML."""

from __future__ import annotations

import asyncio
import math
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from holysheep_lab.alerts.channel import CONTROL, LOOPBACK, clip, one_line
from holysheep_lab.alerts.model import Alert
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import AlertDeliveryError, ConfigError, redact

__all__ = ["EmailChannel"]

_SECURITY = ("starttls", "ssl", "none")


def _addresses(what: str, value: str | Iterable[str]) -> tuple[list[str], list[str]]:
    """(header forms, bare envelope addresses); ConfigError on anything header-unsafe."""
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ConfigError(f"EmailChannel {what} must name at least one address.")
    headers: list[str] = []
    bare: list[str] = []
    for item in items:
        if not isinstance(item, str) or CONTROL.search(item):
            # Reject rather than strip: an address with a line break is an injection attempt.
            raise ConfigError(f"EmailChannel {what} address contains a line break or is not text.")
        for display, addr in getaddresses([item]):
            if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+", addr or ""):
                raise ConfigError(f"EmailChannel {what}: {one_line(item)!r} is not an e-mail address.")
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
        if not isinstance(host, str) or not host or CONTROL.search(host) or " " in host:
            raise ConfigError("EmailChannel host must be a host name such as 'smtp.example.com'.")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"EmailChannel port must be 1..65535, not {port!r}.")
        if security not in _SECURITY:
            raise ConfigError(
                f"EmailChannel security must be one of {', '.join(_SECURITY)}; got {security!r}."
            )
        if (username is None) != (password is None):
            raise ConfigError("EmailChannel needs both username and password to log in, or neither.")
        if username is not None and CONTROL.search(username):
            raise ConfigError("EmailChannel username contains a line break.")
        if password is not None and security == "none" and host not in LOOPBACK:
            raise ConfigError(
                "EmailChannel refuses to send a password unencrypted to a remote host: "
                "use security='starttls' or 'ssl'."
            )
        self.host, self.port, self.security = host, port, security
        self.timeout = positive_seconds("EmailChannel timeout", timeout)
        self.username = username
        self._password = password
        (self._from_header,), (self._envelope_from,) = _single(_addresses("sender", sender))
        self._to_headers, self._envelope_to = _addresses("to", to)
        self._factory = smtp_factory
        self._ssl_context = ssl_context
        self.subject_prefix = one_line(subject_prefix)
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
        return clip(one_line(text), 200)

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
        lines = [one_line(alert.text), ""]
        lines += [f"{label}: {one_line(value)}" for label, value in alert.details()]
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
                f"{self.redact(str(exc))}",
                retryable=_smtp_retryable(exc),
            ) from None

    def redact(self, text: str) -> str:
        """`text` without the SMTP password."""
        return redact(text, self._password)

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
