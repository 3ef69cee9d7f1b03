"""OpenAI legacy Completions (`POST .../completions`, not `.../chat/completions`).

Request: `prompt` is a string, a list of strings, a token array or a list of token arrays
(each prompt of a batch gets its own answers), with an optional `suffix`. The output bound is
`max_tokens`, 16 when absent (the API's default), for each of `best_of` (or `n`) generations
of each prompt: the relay bills every generation, returned or not.

Usage and streams are those of Chat Completions (`prompt_tokens`, `completion_tokens`;
`stream_options.include_usage` adds a last chunk with empty `choices`); stream text is in
`choices[].text`.
"""

from __future__ import annotations

import json
from typing import Any

from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import measure_messages
from holysheep_lab.endpoints.base import RequestFacts
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS, ChatEvents, chat_usage
from holysheep_lab.endpoints.common import output_cap, request_model, split_prompts, usage_object
from holysheep_lab.errors import ConfigError

__all__ = ["COMPLETIONS", "CompletionEvents", "Completions", "DEFAULT_MAX_TOKENS"]

_SUFFIX = "/completions"
#: What the API generates per answer when the request sets no max_tokens.
DEFAULT_MAX_TOKENS = 16


def _generations(payload: dict[str, Any]) -> int:
    """Answers billed per prompt: best_of if given (the relay generates them all), else n."""
    most = 1
    for key in ("n", "best_of"):
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, not {value!r}; nothing was sent.")
        most = max(most, value)
    return most


class CompletionEvents(ChatEvents):
    """Reads legacy Completions stream chunks (text in `choices[].text`); the usage chunk and
    `[DONE]` are those of Chat Completions."""

    __slots__ = ()

    def texts(self, choices: list[Any]) -> tuple[str, ...]:
        return tuple(c["text"] for c in choices if isinstance(c, dict) and isinstance(c.get("text"), str) and c["text"])


_EVENTS = CompletionEvents()


class Completions:
    """The legacy Completions adapter."""

    name = "completions"

    def match(self, path: str) -> bool:
        return path.endswith(_SUFFIX) and not CHAT_COMPLETIONS.match(path)

    def plan(self, payload: dict[str, Any], keep_content: bool) -> RequestFacts:
        model = request_model(payload, "completions")
        texts, tokens, prompts = split_prompts(payload.get("prompt", ""), "prompt")
        suffix = payload.get("suffix")
        if suffix:
            texts.append(suffix)
        max_tokens = output_cap(payload, "max_tokens")
        return RequestFacts(
            model=model,
            size=measure_messages(texts, model=model),
            max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            answers=prompts * _generations(payload),
            stream=bool(payload.get("stream")),
            exact_tokens=tokens,
            content=json.dumps(payload.get("prompt"), ensure_ascii=False) if keep_content else None,
        )

    def request_usage(self, payload: dict[str, Any]) -> bool:
        return CHAT_COMPLETIONS.request_usage(payload)  # the same stream_options

    def usage(self, body: Any) -> Usage:
        return chat_usage(usage_object(body, " If the relay omits usage, ask it to include it (for streams: "
                                             "stream_options.include_usage)."))

    def completion_text(self, body: Any) -> str | None:
        try:
            text = body["choices"][0]["text"]
        except (KeyError, IndexError, TypeError):
            return None
        return text if isinstance(text, str) else None

    def stream_reader(self) -> CompletionEvents:
        return _EVENTS


COMPLETIONS = Completions()
