"""OpenAI Chat Completions (`POST .../chat/completions`): requests, usage and stream events.

Usage: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`, `completion_tokens`
includes `completion_tokens_details.reasoning_tokens`. A stream carries its usage in a last
chunk with empty `choices` when the request sets `stream_options.include_usage`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import measure_messages
from holysheep_lab.endpoints.base import RequestFacts, StreamEvent
from holysheep_lab.endpoints.common import cache_writes, conversation_id, count, output_cap, relay_cost, request_model, usage_object
from holysheep_lab.errors import ConfigError, ResponseFormatError

__all__ = ["CHAT_COMPLETIONS", "ChatCompletions", "ChatEvents", "chat_usage"]

_SUFFIX = "/chat/completions"
_NO_USAGE_HINT = (" If the relay omits usage, ask it to include it (for streams: stream_options.include_usage).")


def chat_usage(usage: Mapping[str, Any]) -> Usage:
    """A Chat Completions `usage` object as Usage; ResponseFormatError if it is impossible."""
    prompt = count(usage, "prompt_tokens", True)
    completion = count(usage, "completion_tokens", True)  # missing or null is not 0: fail closed
    details = usage.get("prompt_tokens_details")
    cached = count(details, "cached_tokens", False, "usage.prompt_tokens_details")
    writes = cache_writes(details, usage, "usage.prompt_tokens_details")
    reasoning = count(usage.get("completion_tokens_details"), "reasoning_tokens", False)
    if cached + writes > prompt or reasoning > completion:
        raise ResponseFormatError(
            f"Impossible usage: cached {cached} + cache writes {writes} > prompt {prompt} or reasoning "
            f"{reasoning} > completion {completion} (they are parts of those totals)."
        )
    return Usage(prompt, completion, cached, reasoning, relay_cost(usage), cache_write_tokens=writes)


def _prediction_bytes(prediction: Any) -> int:
    """Predicted Outputs: the prediction's tokens that the answer rejects are billed as output
    on top of it; no more of them than its text has bytes."""
    if not isinstance(prediction, Mapping):
        return 0
    content = prediction.get("content")
    parts = [content] if isinstance(content, str) else [
        p.get("text") for p in content or () if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
    return sum(len(p.encode("utf-8", "surrogatepass")) for p in parts if isinstance(p, str))


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
        keep = not (strip_usage and raw_usage is not None and not choices)
        return StreamEvent(self.texts(choices), usage, usage_error, keep)

    def texts(self, choices: list[Any]) -> tuple[str, ...]:
        """The pieces of text in a chunk's choices (`delta.content`)."""
        parts: list[str] = []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if content:
                parts.append(content)
        return tuple(parts)

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
        model = request_model(payload, "chat")
        messages = payload.get("messages") or []
        if not isinstance(messages, list):
            raise ConfigError("'messages' must be a list of {role, content} objects; nothing was sent.")
        max_tokens = output_cap(payload, "max_completion_tokens", "max_tokens")
        n = payload.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"n (answers per request) must be a positive integer, not {n!r}; nothing was sent.")
        answers = n if n is not None and n > 1 else 1
        # Billed as input beside the messages: tool (and legacy function) definitions, a forced
        # tool choice, and the response_format's JSON schema.
        extras = [payload.get("tools"), payload.get("functions"), payload.get("response_format"),
                  payload.get("tool_choice") if isinstance(payload.get("tool_choice"), dict) else None]
        return RequestFacts(
            model=model,
            size=measure_messages(messages, [x for x in extras if x], model=model),
            max_tokens=max_tokens,
            answers=answers,
            cap_key="max_tokens (or max_completion_tokens)",
            extra_output=_prediction_bytes(payload.get("prediction")) * answers,
            stream=bool(payload.get("stream")),
            conversation_id=conversation_id(messages),
            content=json.dumps(messages, ensure_ascii=False) if keep_content else None,
        )

    def request_usage(self, payload: dict[str, Any]) -> bool:
        opts = payload.get("stream_options") or {}
        if opts.get("include_usage"):
            return False
        payload["stream_options"] = {**opts, "include_usage": True}
        return True

    def usage(self, body: Any) -> Usage:
        return chat_usage(usage_object(body, _NO_USAGE_HINT))

    def completion_text(self, body: Any) -> str | None:
        try:
            text = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        return text if isinstance(text, str) else None

    def stream_reader(self) -> ChatEvents:
        return _EVENTS


CHAT_COMPLETIONS = ChatCompletions()
