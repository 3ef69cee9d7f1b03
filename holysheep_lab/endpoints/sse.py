"""Incremental SSE reading: pure, fed with bytes, shared by every transport and stream format.

It passes the bytes through event by event and asks the stream's `EventReader` what each event
says (text, usage, whether the caller sees it); it remembers the text, the usage and the time
of the first token. After the first token, events the reader calls billing-free are kept as
raw bytes and decoded only if the text is asked for (a cut stream, or a log that keeps
completions): the caller decodes every event anyway, and decoding each one twice was most of
the transport's cost on a stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from holysheep_lab.core import fastjson
from holysheep_lab.core.pricing import Usage
from holysheep_lab.endpoints.base import EventReader

__all__ = ["StreamAccumulator", "data_lines"]


def data_lines(events: bytes) -> Iterator[bytes]:
    """The payloads of the `data:` lines of one or more SSE events."""
    for line in events.splitlines():
        if line.startswith(b"data:"):
            yield line[5:].strip()


class StreamAccumulator:
    """Feed raw SSE bytes; get back the bytes to hand to the caller."""

    __slots__ = ("_buf", "_chunks", "_parts", "_pending", "_reader", "_strip_usage", "done", "first_token_at",
                 "usage", "usage_error")

    def __init__(self, reader: EventReader, *, strip_usage_chunk: bool = False) -> None:
        self._reader = reader
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
                if end > pos and self._reader.billing_free(buf[pos:end]):
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
        if self.first_token_at is not None and self._reader.billing_free(event):
            self._pending.append(event)  # decoded if the text is asked for
            return True
        keep = True
        for data in data_lines(event):
            if data == b"[DONE]":
                self.done = True
            else:
                keep = self._read(data) and keep
        return keep

    def _decode_pending(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            for events in pending:
                for data in data_lines(events):  # never [DONE]: billing_free excludes it
                    self._read(data)

    def _read(self, data: bytes) -> bool:
        """Decode one event's data; False if the caller should not see it."""
        try:
            chunk: Any = fastjson.loads(data)
        except ValueError:
            return True  # a relay's keep-alive or a broken line: pass it on unread
        if not isinstance(chunk, dict):
            return True
        event = self._reader.read(chunk, self._strip_usage)
        if event.usage is not None:
            self.usage = event.usage
        if event.usage_error is not None:
            self.usage_error = event.usage_error
        if event.done:
            self.done = True
        if event.texts:
            if self._pending:
                self._decode_pending()  # earlier text first
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self._parts.extend(event.texts)
            self._chunks += len(event.texts)
        return event.keep
