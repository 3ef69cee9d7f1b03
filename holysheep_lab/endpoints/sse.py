"""Incremental SSE reading of a chat stream: pure, fed with bytes, shared by every transport.

It passes the bytes through event by event, remembers the text, the usage chunk and the time
of the first token, and drops the usage-only event when the caller did not ask for it.
After the first token, content events are kept as raw bytes and decoded only if the text is
asked for (a cut stream, or a log that keeps completions): the caller decodes every event
anyway, and decoding each one twice was most of the transport's cost on a stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from holysheep_lab.core import fastjson as fast_json
from holysheep_lab.core.pricing import Usage
from holysheep_lab.errors import ResponseFormatError

__all__ = ["StreamAccumulator"]

def _data_lines(events: bytes) -> Iterator[bytes]:
    """The payloads of the `data:` lines of one or more SSE events."""
    for line in events.splitlines():
        if line.startswith(b"data:"):
            yield line[5:].strip()


def _content_only(events: bytes) -> bool:
    """True if these whole events carry no usage (absent or null) and no [DONE]: nothing in
    them changes the bill, so they may wait undecoded. A quote cannot stand unescaped inside a
    JSON string, so `"usage"` here is always a key."""
    if b"[DONE]" in events:
        return False
    n = events.count(b'"usage"')
    return n == 0 or n == events.count(b'"usage":null')


class StreamAccumulator:
    """Feed raw SSE bytes; get back the bytes to hand to the caller."""

    __slots__ = ("_buf", "_chunks", "_parts", "_pending", "_strip_usage", "done", "first_token_at", "usage",
                 "usage_error")

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        self._buf = b""
        self._strip_usage = strip_usage_chunk
        self._parts: list[str] = []
        self._chunks = 0
        self._pending: list[bytes] = []  # whole events not decoded yet, in order
        self.usage: Usage | None = None
        self.usage_error: str | None = None
        self.done = False
        self.first_token_at: float | None = None

    @property
    def text(self) -> str:
        """The content received so far."""
        self._decode_pending()
        return "".join(self._parts)

    @property
    def chunks(self) -> int:
        """How many events carried content."""
        self._decode_pending()
        return self._chunks

    def feed(self, data: bytes) -> bytes:
        """Consume `data`; return the complete events to pass on (partial ones wait)."""
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos, bulk_tried = 0, False
        while True:
            if not bulk_tried and self.first_token_at is not None:
                # After the first token, a run of whole content events waits undecoded, as one piece.
                bulk_tried = True
                lf, crlf = buf.rfind(b"\n\n", pos), buf.rfind(b"\r\n\r\n", pos)
                end = max(lf + 2 if lf >= 0 else pos, crlf + 4 if crlf >= 0 else pos)
                if end > pos and _content_only(buf[pos:end]):
                    self._pending.append(buf[pos:end])
                    out.append(buf[pos:end])
                    pos = end
            # SSE events end with a blank line; relays use \n\n (and some \r\n\r\n).
            idx = buf.find(b"\n\n", pos)
            alt = buf.find(b"\r\n\r\n", pos)
            if idx < 0 and alt < 0:
                break
            stop = alt + 4 if alt >= 0 and (idx < 0 or alt < idx) else idx + 2
            event, pos = buf[pos:stop], stop
            if self._handle(event):
                out.append(event)
        self._buf = buf[pos:]
        return b"".join(out)

    def flush(self) -> bytes:
        """The bytes still held at the end of the stream (an unterminated last event)."""
        rest, self._buf = self._buf, b""
        if rest.strip():
            self._handle(rest)
        return rest

    def _handle(self, event: bytes) -> bool:
        """Read one event; return False to drop it from what the caller sees."""
        if self.first_token_at is not None and _content_only(event):
            self._pending.append(event)  # decoded if the text is asked for
            return True
        keep = True
        for data in _data_lines(event):
            if data == b"[DONE]":
                self.done = True
            else:
                keep = self._read(data) and keep
        return keep

    def _decode_pending(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            for events in pending:
                for data in _data_lines(events):  # never [DONE]: see _content_only
                    self._read(data)

    def _read(self, data: bytes) -> bool:
        """Decode one event's data; False if it is the usage-only event the caller did not ask for."""
        try:
            chunk: Any = fast_json.loads(data)
        except ValueError:
            return True  # a relay's keep-alive or a broken line: pass it on unread
        if not isinstance(chunk, dict):
            return True
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            try:
                self.usage = Usage.from_usage(usage)
            except ResponseFormatError as exc:
                self.usage_error = str(exc)
        choices = chunk.get("choices") or []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if content:
                if self._pending:
                    self._decode_pending()  # earlier text first
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self._parts.append(content)
                self._chunks += 1
        return not (self._strip_usage and usage is not None and not choices)
