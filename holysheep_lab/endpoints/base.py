"""The endpoint seam: what the metering core needs to know of one wire format.

The core (plan, admit, settle, log) and the transports never read a request or a response
themselves; they ask the request's `Endpoint`. An endpoint is a small stateless object:

    match(path) -> bool                 is this request mine? (path already normalised)
    plan(payload, keep_content) -> RequestFacts   billable input size, output bound, model, stream
    request_usage(payload) -> bool      ask a stream for its usage; True if the caller had not
    usage(body) -> Usage                the usage of a whole answer (ResponseFormatError if unreadable)
    completion_text(body) -> str | None the answer's text, for logs that keep completions
    stream_reader() -> EventReader      reads the usage and text out of one stream's SSE events
                                        (a fresh reader per stream: formats that spread usage
                                        over several events keep state in it)

Adding a wire format is one module here plus its line in `endpoints/__init__.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import InputSize

__all__ = ["Endpoint", "EventReader", "RequestFacts", "StreamEvent", "normalise_path"]

# Azure OpenAI puts the deployment in the path: /openai/deployments/<name>/chat/completions.
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/[^/]+(?=/)")


def normalise_path(path: str) -> str:
    """One spelling of a request path: lower case, no `;params`, query or trailing slash, and
    Azure's deployment segment removed, so `/V1/Chat/Completions/;x?y` matches like the rest."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    path = "/".join(segment.split(";", 1)[0] for segment in path.split("/"))
    path = _AZURE_DEPLOYMENT.sub("", path.lower())
    while path.endswith("/") and len(path) > 1:
        path = path[:-1]
    return path


class RequestFacts(NamedTuple):
    """What the core needs to price and bound one request, read from its body."""

    model: str
    size: InputSize  # the billable input, measured
    max_tokens: int | None  # the caller's output cap, as asked (None: not given)
    answers: int  # how many answers the output bound pays for (chat's n; 0: no output, embeddings)
    stream: bool
    exact_tokens: int = 0  # input already given as tokens (token arrays): counted as is, never scaled
    cap_key: str = "max_tokens"  # the request key that caps the output (named when it is missing)
    extra_output: int = 0  # output tokens billed beyond the cap (chat's predicted-output text)
    conversation_id: str | None = None  # names a chain of calls without storing its text
    content: str | None = None  # the prompt as logged, only when the log keeps content


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """What one decoded SSE event says: its pieces of text, usage if it carries it, whether the
    caller should see it (False: the usage-only event we asked for and they did not), and
    whether it is the stream's end marker (formats without `data: [DONE]`)."""

    texts: tuple[str, ...] = ()
    usage: Usage | None = None
    usage_error: str | None = None
    keep: bool = True
    done: bool = False


class EventReader(Protocol):
    """Reads the events of one stream format."""

    def read(self, event: dict[str, Any], strip_usage: bool) -> StreamEvent:
        """Interpret one decoded `data:` object."""
        ...

    def billing_free(self, events: bytes) -> bool:
        """True if these raw, whole events cannot change the bill (no usage, no end marker):
        they may wait undecoded until their text is needed. False is always safe."""
        ...


class Endpoint(Protocol):
    """One billable wire format (see the module docstring)."""

    name: str

    def match(self, path: str) -> bool: ...

    def plan(self, payload: dict[str, Any], keep_content: bool) -> RequestFacts: ...

    def request_usage(self, payload: dict[str, Any]) -> bool: ...

    def usage(self, body: Any) -> Usage: ...

    def completion_text(self, body: Any) -> str | None: ...

    def stream_reader(self) -> EventReader: ...
