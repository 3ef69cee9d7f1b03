"""`hs.Client.chat` hands its request straight to the metered transport, skipping httpx2's
per-call client machinery: what reaches the relay must be what `httpx2.Client.send` would send
(headers, body, timeouts), our own headers must not, and a relay's cookies must still come back.
The answer's body is read straight from the stream: compressed or chunked answers must still
arrive whole and decoded."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

import holysheep_lab as hs

ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4.1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


class Relay:
    """A loopback relay that records every request and sets a cookie on the first answer."""

    def __init__(self, framing: str = "plain") -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                relay.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                out = json.dumps(ANSWER).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if framing == "gzip":
                    out = gzip.compress(out)
                    self.send_header("Content-Encoding", "gzip")
                if framing == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    half = len(out) // 2
                    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (out[:half], out[half:], b""))
                else:
                    self.send_header("Content-Length", str(len(out)))
                if len(relay.requests) == 1:
                    self.send_header("Set-Cookie", "route=node-7; Path=/")
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Relay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as r:
        yield r


class Recording(httpx2.BaseTransport):
    """The user's own transport: it must still carry every call, with the client's timeouts."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.timeouts: list[dict[str, float | None]] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.timeouts.append(request.extensions["timeout"])
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_the_relay_gets_what_httpx2_would_send_and_not_our_headers(relay: Relay, tmp_path: Path) -> None:
    transport = Recording()
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "héllo"}], "max_tokens": 20,
            "temperature": 0.5}
    with hs.Client(api_key="sk-test-123456", base_url=relay.base_url, log_dir=tmp_path, ledger=hs.MemoryLedger(),
                   timeout=33, transport=transport) as client:
        result = client.chat("gpt-4.1", "héllo", max_tokens=20, temperature=0.5, project="nlp", max_input_tokens=500)
        assert result.text == "hello there" and result.record.project == "nlp"
        expected = httpx2.Client(base_url=relay.base_url, headers={"Authorization": "Bearer sk-test-123456"}).build_request(
            "POST", "/chat/completions", json=body)
    path, headers, sent = relay.requests[0]
    assert path == "/v1/chat/completions"
    assert sent == expected.content  # the same JSON bytes as httpx2's json=
    assert headers == {k.lower(): v for k, v in expected.headers.items()}  # same headers, none of ours
    assert transport.timeouts == [{"connect": 10.0, "read": 33.0, "write": 33.0, "pool": 33.0}]


def test_a_cookie_the_relay_sets_goes_back_on_the_next_call(relay: Relay, tmp_path: Path) -> None:
    with hs.Client(base_url=relay.base_url, log_dir=tmp_path, ledger=hs.MemoryLedger()) as client:
        client.chat("gpt-4.1", "one", max_tokens=10)
        client.chat("gpt-4.1", "two", max_tokens=10)
    assert "cookie" not in relay.requests[0][1]
    assert relay.requests[1][1]["cookie"] == "route=node-7"


@pytest.mark.parametrize("framing", ["gzip", "chunked"])
def test_compressed_and_chunked_answers_arrive_decoded_and_priced(framing: str, tmp_path: Path) -> None:
    with Relay(framing) as relay, hs.Client(base_url=relay.base_url, log_dir=tmp_path,
                                             ledger=hs.MemoryLedger()) as client:
        result = client.chat("gpt-4.1", "hi", max_tokens=10)
    assert result.text == "hello there"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 3)
    assert result.record.status == "ok" and result.cost_usd and result.cost_usd > 0
