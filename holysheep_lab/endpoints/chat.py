"""OpenAI Chat Completions (`POST .../chat/completions`): requests, usage and stream events.

Usage: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`, `completion_tokens`
includes `completion_tokens_details.reasoning_tokens`. A stream carries its usage in a last
chunk with empty `choices` when the request sets `stream_options.include_usage`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import measure_messages
from holysheep_lab.endpoints.base import RequestFacts, StreamEvent
from holysheep_lab.errors import ConfigError, ResponseFormatError

__all__ = ["CHAT_COMPLETIONS", "ChatCompletions", "ChatEvents", "chat_usage"]

_SUFFIX = "/chat/completions"


def _count(obj: Any, key: str, required: bool) -> int:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if value is None:
        if required:
            raise ResponseFormatError(f"usage.{key} is missing from the response.")
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ResponseFormatError(f"usage.{key} must be a non-negative integer; got {value!r}.")
    return value


def chat_usage(usage: Mapping[str, Any]) -> Usage:
    """A Chat Completions `usage` object as Usage; ResponseFormatError if it is impossible."""
    prompt = _count(usage, "prompt_tokens", True)
    completion = _count(usage, "completion_tokens", False)
    cached = _count(usage.get("prompt_tokens_details"), "cached_tokens", False)
    reasoning = _count(usage.get("completion_tokens_details"), "reasoning_tokens", False)
    if cached > prompt or reasoning > completion:
        raise ResponseFormatError(
            f"Impossible usage: cached {cached} > prompt {prompt} or reasoning {reasoning} > "
            f"completion {completion} (they are parts of those totals)."
        )
    relay_cost = usage.get("cost")
    if isinstance(relay_cost, bool) or not isinstance(relay_cost, (int, float)):
        relay_cost = None
    return Usage(prompt, completion, cached, reasoning, relay_cost)


def _conversation_id(messages: list[Any]) -> str | None:
    # The opening (system + first user message) names a chain without storing its text.
    # repr keeps key order, which is stable for messages built by the same code: cheap and enough.
    opening = [m for m in messages[:2] if isinstance(m, dict)]
    if not opening:
        return None
    return hashlib.blake2b(repr(opening).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class ChatEvents:
    """Reads Chat Completions stream chunks."""

    __slots__ = ()

    def read(self, event: dict[str, Any], strip_usage: bool) -> StreamEvent:
        usage: Usage | None = None
        usage_error: str | None = None
        raw_usage = event.get("usage")
        if isinstance(raw_usage, dict):
            try:
                usage = chat_usage(raw_usage)
            except ResponseFormatError as exc:
                usage_error = str(exc)
        choices = event.get("choices") or []
        parts: list[str] = []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if content:
                parts.append(content)
        keep = not (strip_usage and raw_usage is not None and not choices)
        return StreamEvent(tuple(parts), usage, usage_error, keep)

    def billing_free(self, events: bytes) -> bool:
        # A quote cannot stand unescaped inside a JSON string, so `"usage"` here is always a key.
        if b"[DONE]" in events:
            return False
        n = events.count(b'"usage"')
        return n == 0 or n == events.count(b'"usage":null')


_EVENTS = ChatEvents()


class ChatCompletions:
    """The Chat Completions adapter."""

    name = "chat.completions"

    def match(self, path: str) -> bool:
        return path.endswith(_SUFFIX)

    def plan(self, payload: dict[str, Any], keep_content: bool) -> RequestFacts:
        model = payload.get("model")
        if not isinstance(model, str):
            raise ConfigError("A chat request needs a JSON object with a 'model' string; nothing was sent.")
        messages = payload.get("messages") or []
        if not isinstance(messages, list):
            raise ConfigError("'messages' must be a list of {role, content} objects; nothing was sent.")
        max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
            raise ConfigError(f"max_tokens must be a positive integer, not {max_tokens!r}; nothing was sent.")
        n = payload.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"n (answers per request) must be a positive integer, not {n!r}; nothing was sent.")
        answers = n if n is not None and n > 1 else 1
        return RequestFacts(
            model=model,
            size=measure_messages(messages, payload.get("tools") or payload.get("functions")),
            max_tokens=max_tokens,
            answers=answers,
            stream=bool(payload.get("stream")),
            conversation_id=_conversation_id(messages),
            content=json.dumps(messages, ensure_ascii=False) if keep_content else None,
        )

    def request_usage(self, payload: dict[str, Any]) -> bool:
        opts = payload.get("stream_options") or {}
        if opts.get("include_usage"):
            return False
        payload["stream_options"] = {**opts, "include_usage": True}
        return True

    def usage(self, body: Any) -> Usage:
        usage = body.get("usage") if isinstance(body, Mapping) else None
        if not isinstance(usage, Mapping):
            raise ResponseFormatError(
                "The response has no 'usage' object, so its cost cannot be known. If the relay "
                "omits usage, ask it to include it (for streams: stream_options.include_usage)."
            )
        return chat_usage(usage)

    def completion_text(self, body: Any) -> str | None:
        try:
            text = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        return text if isinstance(text, str) else None

    def stream_reader(self) -> ChatEvents:
        return _EVENTS


CHAT_COMPLETIONS = ChatCompletions()
