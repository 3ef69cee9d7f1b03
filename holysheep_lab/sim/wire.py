"""The seam between the simulator's server and its wire formats (one module each).

The server does everything that is the same for every format: routing, auth, latency, fault
selection, counters, and writing (whole, truncated, cut). A `WireFormat` only says what a
request of its kind is and what the answer looks like:

    validate(body) -> str | None    why a parsed body is invalid (a 400), or None
    answer(call) -> dict            the whole JSON answer (no_usage / negative_usage applied)
    stream(call) -> list[bytes]     the SSE events of a streamed answer, the end marker
                                    included (cut_stream / malformed applied), or None if
                                    the request does not stream
    error(status, code, message, kind) -> dict   the format's error body
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from holysheep_lab.sim.config import SimConfig
from holysheep_lab.sim.text import dumps

__all__ = ["OPENAI_NO_MODEL", "Call", "WireFormat", "cut", "envelope_problem", "openai_error", "sse", "sse_data"]


@dataclass(frozen=True, slots=True)
class Call:
    """One valid request as its wire format sees it."""

    body: Mapping[str, Any]
    call_id: str  # unique per simulator; the format adds its own prefix
    created: int  # epoch seconds
    cfg: SimConfig
    fault: str | None  # None or one of BODY_FAULTS

    @property
    def model(self) -> str:
        return str(self.body["model"])


class WireFormat(Protocol):
    name: str  # as the client's adapter names it, e.g. "chat.completions"
    paths: tuple[str, ...]  # what it answers, exactly

    def validate(self, body: Any) -> str | None: ...

    def answer(self, call: Call) -> dict[str, Any]: ...

    def stream(self, call: Call) -> list[bytes] | None: ...

    def error(self, status: int, code: str | None, message: str, kind: str) -> dict[str, Any]: ...


#: OpenAI's wording for a request without a model.
OPENAI_NO_MODEL = "you must provide a model parameter"


def envelope_problem(body: Any, no_model: str = OPENAI_NO_MODEL) -> str | None:
    """Why `body` is not a JSON object naming a model (what every format checks first), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return no_model
    return None


def openai_error(status: int, code: str | None, message: str, kind: str) -> dict[str, Any]:
    """An OpenAI-style error: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def sse_data(payload: Any) -> bytes:
    """One `data:`-only SSE event (Chat Completions style)."""
    return b"data: " + dumps(payload).encode() + b"\n\n"


def sse(event: str, payload: Any) -> bytes:
    """One named SSE event (Responses API and Anthropic style)."""
    return f"event: {event}\ndata: ".encode() + dumps(payload).encode() + b"\n\n"


def cut(events: list[bytes], fault: str | None, end: list[bytes], head: int = 1) -> list[bytes]:
    """Apply a stream fault to `events` (`head` preamble events, then the text): cut_stream
    keeps the preamble and two text events (the server then hangs up); malformed sends the
    first event, a truncated text event, then `end` (the format's end marker, if it has one
    apart from the event that carries the bill)."""
    if fault == "cut_stream":
        return events[: min(len(events), head + 2)]
    if fault == "malformed":
        broken = events[min(head, len(events) - 1)]
        return [events[0], broken[: len(broken) // 2] + b"\n\n", *end]
    return events
