"""Anthropic Messages (`POST .../v1/messages`, also `/messages`): requests, usage and stream events.

Request: `system` (a string or text blocks), `messages`, `tools`, and `max_tokens`, which the
API requires (thinking tokens count against it), so a request without it is refused here.

Usage: unlike OpenAI's, `input_tokens` EXCLUDES `cache_read_input_tokens` and
`cache_creation_input_tokens`. So Usage.input_tokens = input + cache reads + cache writes,
cached_input_tokens = cache reads and cache_write_tokens = cache writes, of which
`cache_creation.ephemeral_1h_input_tokens` are 1-hour writes (the price's cache_write and
cache_write_1h rates: Anthropic bills them at 1.25x and 2x the input price).
`output_tokens_details.thinking_tokens` is the reasoning part of `output_tokens`.

Stream: `message_start` carries the input usage (and the output so far); `message_delta`
carries the final, cumulative `usage.output_tokens` and, from newer APIs, cumulative input
counts that replace the start's; `message_stop` ends it. The bill is read at `message_delta`
only: a stream cut before it is settled from what arrived, never from the start's partial count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import measure_messages
from holysheep_lab.endpoints.base import RequestFacts, StreamEvent
from holysheep_lab.endpoints.common import conversation_id, count, output_cap, relay_cost, request_model, usage_object
from holysheep_lab.errors import ConfigError, ResponseFormatError

__all__ = ["ANTHROPIC_MESSAGES", "AnthropicMessages", "MessagesEvents", "anthropic_usage"]

_NOTHING = StreamEvent()
_DONE = StreamEvent(done=True)


def anthropic_usage(usage: Mapping[str, Any]) -> Usage:
    """An Anthropic `usage` object as Usage (cache reads and writes added into the input)."""
    uncached = count(usage, "input_tokens", True)
    out = count(usage, "output_tokens", True)
    reads = count(usage, "cache_read_input_tokens", False)
    by_ttl = usage.get("cache_creation")
    hour = count(by_ttl, "ephemeral_1h_input_tokens", False, "usage.cache_creation")
    if usage.get("cache_creation_input_tokens") is None:
        # Only the per-TTL split given: the writes are its sum.
        writes = count(by_ttl, "ephemeral_5m_input_tokens", False, "usage.cache_creation") + hour
    else:
        writes = count(usage, "cache_creation_input_tokens", False)
    thinking = count(usage.get("output_tokens_details"), "thinking_tokens", False, "usage.output_tokens_details")
    if thinking > out or hour > writes:
        raise ResponseFormatError(f"Impossible usage: thinking {thinking} > output {out}, or 1-hour cache writes "
                                  f"{hour} > cache writes {writes} (each a part of that total).")
    return Usage.from_anthropic(uncached, out, reads, writes, ephemeral_1h_input_tokens=hour,
                                reasoning_tokens=thinking, relay_cost_usd=relay_cost(usage))


class MessagesEvents:
    """Reads one Anthropic stream: it remembers `message_start`'s usage until `message_delta`."""

    __slots__ = ("_start",)

    def __init__(self) -> None:
        self._start: dict[str, Any] = {}

    def read(self, event: dict[str, Any], strip_usage: bool) -> StreamEvent:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            text = delta.get("text") if isinstance(delta, Mapping) else None
            return StreamEvent((text,)) if isinstance(text, str) and text else _NOTHING
        if kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, Mapping) else None
            if isinstance(usage, Mapping):
                self._start = dict(usage)
            return _NOTHING
        if kind == "message_delta":
            raw = event.get("usage")
            if not isinstance(raw, Mapping):
                return _NOTHING
            merged = {**self._start, **{k: v for k, v in raw.items() if v is not None}}
            try:
                return StreamEvent(usage=anthropic_usage(merged))
            except ResponseFormatError as exc:
                return StreamEvent(usage_error=str(exc))
        if kind == "message_stop":
            return _DONE
        return _NOTHING

    def billing_free(self, events: bytes) -> bool:
        # Only message_start and message_delta carry usage; a quote cannot stand unescaped in a
        # JSON string, so `"usage"` is always a key. The end marker's name in text costs a decode.
        return b'"usage"' not in events and b"message_stop" not in events


class AnthropicMessages:
    """The Anthropic Messages adapter."""

    name = "anthropic.messages"

    def match(self, path: str) -> bool:
        # Not any `.../messages`: OpenAI's Assistants API posts to /v1/threads/<id>/messages.
        return path.endswith("/v1/messages") or path == "/messages"

    def plan(self, payload: dict[str, Any], keep_content: bool) -> RequestFacts:
        model = request_model(payload, "Anthropic Messages")
        messages = payload.get("messages") or []
        if not isinstance(messages, list):
            raise ConfigError("'messages' must be a list of {role, content} objects; nothing was sent.")
        max_tokens = output_cap(payload, "max_tokens")
        if max_tokens is None:
            raise ConfigError("Anthropic's Messages API requires max_tokens (the output cap); nothing was sent.")
        system = payload.get("system")
        turns = [{"role": "system", "content": system}, *messages] if system else messages
        billed_extras = [payload[k] for k in ("tools", "output_format", "output_config") if payload.get(k)]
        if isinstance(payload.get("tool_choice"), Mapping):
            billed_extras.append(payload["tool_choice"])
        return RequestFacts(
            model=model,
            size=measure_messages(turns, billed_extras, model=model),
            max_tokens=max_tokens,
            answers=1,
            stream=bool(payload.get("stream")),
            conversation_id=conversation_id(turns),
            content=json.dumps(turns, ensure_ascii=False) if keep_content else None,
        )

    def request_usage(self, payload: dict[str, Any]) -> bool:
        return False  # message_start and message_delta always carry it

    def usage(self, body: Any) -> Usage:
        return anthropic_usage(usage_object(body, " Ask the relay to pass Anthropic's usage through."))

    def completion_text(self, body: Any) -> str | None:
        content = body.get("content") if isinstance(body, Mapping) else None
        if not isinstance(content, list):
            return None
        parts = [b["text"] for b in content
                 if isinstance(b, Mapping) and b.get("type") == "text" and isinstance(b.get("text"), str)]
        return "".join(parts) if parts else None

    def stream_reader(self) -> MessagesEvents:
        return MessagesEvents()  # one per stream: it holds the start's usage


ANTHROPIC_MESSAGES = AnthropicMessages()
