"""A relay that refuses every key and quotes it back, as real relays do in their 401 bodies.

It listens on 127.0.0.1 in a thread of its own. Every request is answered 401 with a JSON error
(the OpenAI shape) whose message contains the credential the request carried: the bearer token,
the `api-key` / `x-api-key` header, or the password of a Basic header. `gzip=True` compresses the
answer (relays behind a CDN do), so redaction must happen after decoding.
"""

from __future__ import annotations

import asyncio
import base64
import gzip as gzip_module
import json
import threading

from aiohttp import web

__all__ = ["EchoRelay"]


class EchoRelay:
    def __init__(self, *, gzip: bool = False, status: int = 401) -> None:
        self.gzip = gzip
        self.status = status
        self.seen: list[str] = []  # the credential of each request, as received
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def _credential(request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            return base64.b64decode(value).decode().partition(":")[2]
        return value or request.headers.get("api-key") or request.headers.get("x-api-key") or ""

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        key = self._credential(request)
        self.seen.append(key)
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}. You can find your key at "
                                                f"https://relay.example/keys (key={key})",
                                     "type": "invalid_request_error", "code": "invalid_api_key", "param": key}})
        data = body.encode()
        headers = {"Content-Type": "application/json"}
        if self.gzip:
            data = gzip_module.compress(data)
            headers["Content-Encoding"] = "gzip"
        return web.Response(status=self.status, body=data, headers=headers)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> EchoRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
