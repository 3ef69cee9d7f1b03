"""An aiohttp app on a loopback port in a thread of its own, recording every request: the base of
the local stand-ins for services (LINE, Teams, a relay that echoes keys)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

__all__ = ["Call", "LocalService"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # path and query
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int  # what the fake answered

    def json(self) -> Any:
        return json.loads(self.body)


class LocalService:
    """An aiohttp app on a loopback port in its own thread; records every request."""

    def __init__(self, script: Iterable[int | str] = (), *, retry_after: str | None = None) -> None:
        self.calls: list[Call] = []
        self.script: deque[int | str] = deque(script)
        self.retry_after = retry_after
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._got = threading.Condition()
        self.port = 0

    async def answer(self, request: web.Request, body: bytes) -> web.Response:
        raise NotImplementedError

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        response = await self.answer(request, body)
        with self._got:
            self.calls.append(Call(request.method, request.path_qs, dict(request.headers), body,
                                   time.monotonic(), response.status))
            self._got.notify_all()
        return response

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # No access log: it would print request paths (a webhook's signature) into the tests' logs.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._got:
            while len(self.calls) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._got.wait(left)
        return True

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
