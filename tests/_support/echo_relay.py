"""A relay that refuses every key and quotes it back, as real relays do in their 401 bodies.

It listens on 127.0.0.1 in a thread of its own. Every request is answered 401 with a JSON error
(the OpenAI shape) whose message contains the credential the request carried: the bearer token,
the `api-key` / `x-api-key` header, or the password of a Basic header. `gzip=True` compresses the
answer (relays behind a CDN do), so redaction must happen after decoding.
"""

from __future__ import annotations

import base64
import gzip as gzip_module
import json

from aiohttp import web

from _support.local_service import LocalService

__all__ = ["EchoRelay"]


class EchoRelay(LocalService):
    def __init__(self, *, gzip: bool = False, status: int = 401) -> None:
        super().__init__()
        self.gzip = gzip
        self.status = status
        self.seen: list[str] = []  # the credential of each request, as received

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

    async def answer(self, request: web.Request, body: bytes) -> web.Response:
        key = self._credential(request)
        self.seen.append(key)
        text = json.dumps({"error": {"message": f"Incorrect API key provided: {key}. You can find your key at "
                                                f"https://relay.example/keys (key={key})",
                                     "type": "invalid_request_error", "code": "invalid_api_key", "param": key}})
        data = text.encode()
        headers = {"Content-Type": "application/json"}
        if self.gzip:
            data = gzip_module.compress(data)
            headers["Content-Encoding"] = "gzip"
        return web.Response(status=self.status, body=data, headers=headers)
