"""OpenAI Responses API (`POST .../responses`): requests, usage and stream events.

Request: `input` is a string or a list of items (messages with text/image parts, function
calls and their outputs, reasoning items), plus `instructions`, `tools` and `text` (the output
format, whose JSON schema is billed as input). The output bound is `max_output_tokens`
(reasoning included).

Usage: `input_tokens` includes `input_tokens_details.cached_tokens`, `output_tokens` includes
`output_tokens_details.reasoning_tokens`. A stream has no `[DONE]`: it ends with one of
`response.completed`, `response.incomplete` or `response.failed`, whose `response.usage` is
the bill; text comes in `response.output_text.delta` events. Nothing needs to be asked for.

Refused before sending, because the relay would bill input this request does not show:
`previous_response_id`, `conversation`, a stored `prompt`, `item_reference` items, and
`background` runs (their usage arrives later, in another request).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import measure_messages
from holysheep_lab.endpoints.base import RequestFacts, StreamEvent
from holysheep_lab.endpoints.common import (
    cache_writes,
    conversation_id,
    count,
    output_cap,
    relay_cost,
    request_model,
    usage_object,
)
from holysheep_lab.errors import ConfigError, ResponseFormatError

__all__ = ["RESPONSES", "Responses", "ResponsesEvents", "responses_usage"]

_SUFFIX = "/responses"
_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_NOTHING = StreamEvent()
# Server-side state the relay bills as input without it being in the request.
_STORED_INPUT = {
    "previous_response_id": "previous_response_id makes the relay bill the stored conversation",
    "conversation": "conversation makes the relay bill the stored conversation",
    "prompt": "a stored prompt makes the relay bill its template",
}


def responses_usage(usage: Mapping[str, Any]) -> Usage:
    """A Responses API `usage` object as Usage; ResponseFormatError if it is impossible."""
    inp = count(usage, "input_tokens", True)
    out = count(usage, "output_tokens", True)
    details = usage.get("input_tokens_details")
    cached = count(details, "cached_tokens", False, "usage.input_tokens_details")
    writes = cache_writes(details, usage, "usage.input_tokens_details")
    reasoning = count(usage.get("output_tokens_details"), "reasoning_tokens", False, "usage.output_tokens_details")
    if cached + writes > inp or reasoning > out:
        raise ResponseFormatError(
            f"Impossible usage: cached {cached} + cache writes {writes} > input {inp} or reasoning {reasoning} "
            f"> output {out} (they are parts of those totals)."
        )
    return Usage(inp, out, cached, reasoning, relay_cost(usage), cache_write_tokens=writes)


def _items(payload: Mapping[str, Any]) -> list[Any]:
    """The input as a list of items, the instructions first (they are billed like a message)."""
    raw = payload.get("input")
    if raw is None:
        items: list[Any] = []
    elif isinstance(raw, str):
        items = [{"role": "user", "content": raw}]
    elif isinstance(raw, list):
        items = raw
    else:
        raise ConfigError("'input' must be a string or a list of items; nothing was sent.")
    for item in items:
        if isinstance(item, Mapping) and item.get("type") == "item_reference":
            raise ConfigError(
                "An 'item_reference' input makes the relay bill a stored item this request does not show, so "
                "its cost cannot be bounded; nothing was sent. Send the item itself instead."
            )
    instructions = payload.get("instructions")
    return [{"role": "developer", "content": instructions}, *items] if instructions else items


class ResponsesEvents:
    """Reads Responses API stream events."""

    __slots__ = ()

    def read(self, event: dict[str, Any], strip_usage: bool) -> StreamEvent:
        kind = event.get("type")
        if kind in _TEXT_DELTAS:
            delta = event.get("delta")
            return StreamEvent((delta,)) if isinstance(delta, str) and delta else _NOTHING
        if kind not in _TERMINAL:
            return _NOTHING
        response = event.get("response")
        raw = response.get("usage") if isinstance(response, Mapping) else None
        if not isinstance(raw, Mapping):
            return StreamEvent(done=True)  # e.g. a failed response without usage: settled from what arrived
        try:
            return StreamEvent(usage=responses_usage(raw), done=True)
        except ResponseFormatError as exc:
            return StreamEvent(usage_error=str(exc), done=True)

    def billing_free(self, events: bytes) -> bool:
        # A quote cannot stand unescaped inside a JSON string, so `"usage"` here is always a key;
        # a terminal event's name in the text only costs a decode.
        if b"response.completed" in events or b"response.incomplete" in events or b"response.failed" in events:
            return False
        n = events.count(b'"usage"')
        return n == 0 or n == events.count(b'"usage":null')


_EVENTS = ResponsesEvents()


class Responses:
    """The Responses API adapter."""

    name = "responses"

    def match(self, path: str) -> bool:
        return path.endswith(_SUFFIX)

    def plan(self, payload: dict[str, Any], keep_content: bool) -> RequestFacts:
        model = request_model(payload, "Responses API")
        for key, why in _STORED_INPUT.items():
            if payload.get(key):
                raise ConfigError(
                    f"{why} as input, which this request does not show, so its cost cannot be bounded; "
                    f"nothing was sent. Send the whole conversation as 'input' items instead (with store=False)."
                )
        if payload.get("background"):
            raise ConfigError(
                "background=True returns before the work is done and its usage arrives in a later request, so "
                "its cost cannot be metered; nothing was sent. Call it without background (stream=True for long runs)."
            )
        items = _items(payload)
        tool_choice = payload.get("tool_choice")
        billed_extras = [v for v in (payload.get("tools"), payload.get("text"),
                                     tool_choice if isinstance(tool_choice, Mapping) else None) if v]
        return RequestFacts(
            model=model,
            size=measure_messages(items, billed_extras, model=model),
            max_tokens=output_cap(payload, "max_output_tokens"),
            cap_key="max_output_tokens",
            answers=1,
            stream=bool(payload.get("stream")),
            conversation_id=conversation_id(items),
            content=json.dumps(items, ensure_ascii=False) if keep_content else None,
        )

    def request_usage(self, payload: dict[str, Any]) -> bool:
        return False  # the terminal event always carries the usage

    def usage(self, body: Any) -> Usage:
        return responses_usage(usage_object(body, " Ask the relay to pass the Responses API usage through."))

    def completion_text(self, body: Any) -> str | None:
        output = body.get("output") if isinstance(body, Mapping) else None
        if not isinstance(output, list):
            return None
        parts = [
            part["text"]
            for item in output if isinstance(item, Mapping) and item.get("type") == "message"
            for part in item.get("content") or () if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
        return "".join(parts) if parts else None

    def stream_reader(self) -> ResponsesEvents:
        return _EVENTS


RESPONSES = Responses()
