"""A loopback OpenAI-compatible relay that BILLS every request it receives, whatever then happens.

It is the part the fail-closed tests compare against: the simulator answers, this one also keeps
the bill. A request is billed as soon as its body has been read, before anything is answered:

- at its own usage (the tokens it generated) when it answers, even if the answer omits or
  garbles the usage it reports;
- at the request's worst case (its prompt plus `max_tokens`) when it drops the connection
  after reading the request or hangs past the client's read timeout: work the client never
  sees an answer for, which a real relay bills anyway.

With `dedupe_header`, the relay is idempotent: the first request carrying a value of that header
runs (and bills its usage) once, whatever happens to the connection; a repeat of the value bills
nothing more and gets the same usage.

Behaviours are taken per request from a script (a queue), or the default when it is empty:

    ok                   an answer with usage
    reject               HTTP 400 (an answered error: billed nothing)
    drop                 read the request, close the connection without a byte (RemoteProtocolError)
    drop_mid_body        a 200 with Content-Length, then half the body and close (error while reading)
    hang                 read the request, send nothing for `hang` seconds (read timeout), close
    no_usage             an answer without a `usage` object
    null_completion      usage with "completion_tokens": null
    missing_completion   usage without completion_tokens
    zero_usage           usage with every count 0
    zero_output          usage with completion_tokens 0 (the answer is not empty)
    stream               SSE chunks, then a usage chunk if the request asked for it, then [DONE]
    stream_no_usage      SSE chunks and [DONE], never a usage chunk
    stream_zero_usage    SSE chunks, an all-zero usage chunk, [DONE]
    stream_hang          the first chunks, then nothing (the stream stays open) until closed
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import holysheep_lab as hs

BEHAVIOURS = frozenset({
    "ok", "reject", "drop", "drop_mid_body", "hang", "no_usage", "null_completion", "missing_completion", "zero_usage",
    "zero_output", "stream", "stream_no_usage", "stream_zero_usage", "stream_hang",
})
_WORST_CASE = frozenset({"drop", "hang", "stream_hang"})  # no answer seen: the whole budget of the request


@dataclass(frozen=True)
class Bill:
    """One request as the relay billed it."""

    behaviour: str
    model: str
    prompt_tokens: int
    completion_tokens: int

    def nanos(self, prices: hs.PriceTable | None = None) -> int:
        table = prices or hs.PriceTable.default()
        return table.price(self.model).cost_nanos(hs.Usage(self.prompt_tokens, self.completion_tokens))


def prompt_tokens(messages: Any) -> int:
    """The relay's own count: a token per 4 bytes of text, 3 per message, 3 per request."""
    total = 3
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        total += 3 + math.ceil(len(str(content or "").encode()) / 4)
    return total


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when 16 threads connect at once on a
    # loaded machine; a relay's is in the hundreds.
    request_queue_size = 128


class BillingRelay:
    """A threaded loopback relay (http.server) that keeps a bill of what it received."""

    def __init__(self, *, default: str = "ok", hang: float = 5.0, answer_tokens: int = 8,
                 chunk_delay: float = 0.0, answer_delay: float = 0.0, dedupe_header: str | None = None,
                 count_prompt: Callable[[dict[str, Any]], int] | None = None) -> None:
        self.default = default
        self.hang = hang
        self.answer_tokens = answer_tokens  # an answer is this many words, one token each
        self.chunk_delay = chunk_delay
        self.answer_delay = answer_delay  # seconds before a whole (non-streamed) answer
        self.bills: list[Bill] = []
        self.dedupe_header = dedupe_header
        # The relay's own count of a request's input (default: `prompt_tokens` of its messages);
        # the bound tests pass a real tokenizer's count of everything billable.
        self.count_prompt = count_prompt or (lambda body: prompt_tokens(body.get("messages")))
        self.keys: list[str | None] = []  # the dedupe header's value of each request
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": []})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get(relay.dedupe_header) if relay.dedupe_header else None
                relay._serve(self, body, key)

            def _json(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- control ---------------------------------------------------------------------------

    def __enter__(self) -> BillingRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, behaviours: Iterable[str]) -> None:
        """Use these behaviours for the next requests, in order (then the default)."""
        items = list(behaviours)
        unknown = set(items) - BEHAVIOURS
        assert not unknown, unknown
        with self._lock:
            self._script.extend(items)

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.bills)

    def billed_nanos(self, prices: hs.PriceTable | None = None) -> int:
        with self._lock:
            bills = list(self.bills)
        return sum(b.nanos(prices) for b in bills)

    # -- serving ---------------------------------------------------------------------------

    def _next(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _serve(self, h: Any, body: dict[str, Any], key: str | None = None) -> None:
        behaviour = self._next()
        model = str(body.get("model"))
        prompt = self.count_prompt(body)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16_384
        words = min(self.answer_tokens, max_tokens)
        billed = max_tokens if behaviour in _WORST_CASE else words
        if self.dedupe_header is not None and key is not None:
            billed = words  # the one generation runs to its end, whatever the connection does
        if behaviour == "reject":
            prompt = billed = 0
        with self._lock:  # billed on receipt, before anything is answered
            repeat = key is not None and key in self.keys
            self.keys.append(key)
            self.bills.append(Bill(behaviour, model, 0 if repeat else prompt, 0 if repeat else billed))
        text = " ".join(["word"] * words)
        if behaviour == "reject":
            h._json(400, {"error": {"message": "bad request", "type": "invalid_request_error"}})
            return
        if behaviour == "drop":
            h.close_connection = True
            return
        if behaviour == "hang":
            self._closing.wait(self.hang)
            h.close_connection = True
            return
        if behaviour.startswith("stream"):
            self._stream(h, body, behaviour, model, prompt, words)
            return
        usage: dict[str, Any] | None = {"prompt_tokens": prompt, "completion_tokens": words,
                                        "total_tokens": prompt + words}
        if behaviour == "no_usage":
            usage = None
        elif behaviour == "null_completion":
            usage = {"prompt_tokens": prompt, "completion_tokens": None, "total_tokens": None}
        elif behaviour == "missing_completion":
            usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        elif behaviour == "zero_usage":
            usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        elif behaviour == "zero_output":
            usage = {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}
        answer: dict[str, Any] = {
            "id": "chatcmpl-billing", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if usage is not None:
            answer["usage"] = usage
        if behaviour == "drop_mid_body":
            data = json.dumps(answer).encode()
            h.send_response(200)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if self.answer_delay:
            time.sleep(self.answer_delay)
        h._json(200, answer)

    def _stream(self, h: Any, body: dict[str, Any], behaviour: str, model: str, prompt: int, words: int) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("connection", "close")
        h.end_headers()
        h.close_connection = True

        def send(obj: Any) -> None:
            payload = obj if isinstance(obj, str) else json.dumps(obj)
            h.wfile.write(f"data: {payload}\n\n".encode())
            h.wfile.flush()

        def chunk(choices: list[Any], usage: Any = None) -> dict[str, Any]:
            out: dict[str, Any] = {"id": "chatcmpl-billing", "object": "chat.completion.chunk", "model": model,
                                   "choices": choices}
            if usage is not None:
                out["usage"] = usage
            return out

        try:
            send(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]))
            for i in range(words):
                send(chunk([{"index": 0, "delta": {"content": "word" if i == 0 else " word"}}]))
                if behaviour == "stream_hang" and i == 1:
                    self._closing.wait(self.hang)  # the stream stays open, nothing more comes
                    return
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
            asked = bool((body.get("stream_options") or {}).get("include_usage"))
            if behaviour == "stream" and asked:
                send(chunk([], {"prompt_tokens": prompt, "completion_tokens": words, "total_tokens": prompt + words}))
            elif behaviour == "stream_zero_usage":
                send(chunk([], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}))
            send("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; it was billed all the same
