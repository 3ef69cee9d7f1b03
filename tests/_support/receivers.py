"""Real local receivers for alert tests: an aiohttp webhook server and an aiosmtpd server.

Both listen on 127.0.0.1 in a thread of their own, so the code under test talks to them
over real sockets exactly as it would to Slack or an SMTP relay.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["Received", "SMTPReceiver", "WebhookReceiver", "closed_port", "self_signed_cert"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Records every POST. Answers with `statuses` in turn (then 200); `hang=True` never
    answers until stop(); `retry_after` adds that header to non-2xx answers."""

    def __init__(self, statuses: Iterable[int] = (), *, hang: bool = False, retry_after: str | None = None) -> None:
        self.requests: list[Received] = []
        self._statuses = deque(statuses)
        self._hang = hang
        self._retry_after = retry_after
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._got = threading.Condition()
        self.port = 0

    def url(self, path: str = "/services/T0001/B0002/s3cretTOKENxyz") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._got:
            self.requests.append(Received(request.path_qs, dict(request.headers), body, time.monotonic()))
            self._got.notify_all()
        if self._hang:
            assert self._release is not None
            await self._release.wait()
        status = self._statuses.popleft() if self._statuses else 200
        headers = {"Retry-After": self._retry_after} if self._retry_after and status >= 300 else {}
        return web.Response(status=status, text="ok" if status < 300 else "boom", headers=headers)

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        # No access log: it would print the webhook path (the token) into the tests' captured logs.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self._release is not None and self._runner is not None
        self._release.set()
        await self._runner.cleanup()

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._got:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._got.wait(left)
        return True

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """(cert, key) for CN/SAN 127.0.0.1, made with the openssl CLI."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class _Handler:
    def __init__(self, owner: SMTPReceiver) -> None:
        self.owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.owner._got:
            self.owner.messages.append(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "data": bytes(envelope.original_content or envelope.content),
                    "authenticated": bool(session.authenticated),
                    "tls": session.ssl is not None,
                }
            )
            self.owner._got.notify_all()
        return "250 Message accepted"


class SMTPReceiver:
    """aiosmtpd on loopback. With `login`, AUTH is offered (also without TLS, for tests);
    with `tls_context`, STARTTLS is offered and required."""

    def __init__(self, *, login: tuple[str, str] | None = None, tls_context: ssl.SSLContext | None = None) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[dict[str, Any]] = []
        self._got = threading.Condition()
        self.port = closed_port()

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
            ok = login is not None and (auth_data.login.decode(), auth_data.password.decode()) == login
            return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

        kwargs: dict[str, Any] = {}
        if login is not None:
            kwargs.update(authenticator=authenticator, auth_require_tls=tls_context is not None)
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._got:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._got.wait(left)
        return True

    def __enter__(self) -> SMTPReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
