"""OpenAI Embeddings (`POST .../embeddings`): requests and usage. No output, no stream.

`input` is a string, a list of strings (a batch), a token array (a list of ints) or a batch
of token arrays; token ids are counted exactly, one token each, and strings by their bytes.
Usage: `prompt_tokens` (and `total_tokens`, equal to it); nothing is billed as output.
"""

from __future__ import annotations

import json
from typing import Any

from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import measure_messages
from holysheep_lab.endpoints.base import RequestFacts, StreamEvent
from holysheep_lab.endpoints.common import count, relay_cost, request_model, split_prompts, usage_object
from holysheep_lab.errors import ConfigError, ResponseFormatError

__all__ = ["EMBEDDINGS", "Embeddings", "NoEvents"]

_SUFFIX = "/embeddings"
_NOTHING = StreamEvent()


class NoEvents:
    """The stream reader of a format that does not stream: nothing in it is billing-free."""

    __slots__ = ()

    def read(self, event: dict[str, Any], strip_usage: bool) -> StreamEvent:
        return _NOTHING

    def billing_free(self, events: bytes) -> bool:
        return False


_EVENTS = NoEvents()


class Embeddings:
    """The Embeddings adapter."""

    name = "embeddings"

    def match(self, path: str) -> bool:
        return path.endswith(_SUFFIX)

    def plan(self, payload: dict[str, Any], keep_content: bool) -> RequestFacts:
        model = request_model(payload, "embeddings")
        if "input" not in payload:
            raise ConfigError("An embeddings request needs 'input'; nothing was sent.")
        texts, tokens, _ = split_prompts(payload["input"], "input")
        return RequestFacts(
            model=model,
            size=measure_messages(texts, model=model),
            max_tokens=None,
            answers=0,  # no output: the bound is the input alone
            stream=False,
            exact_tokens=tokens,
            content=json.dumps(payload["input"], ensure_ascii=False) if keep_content else None,
        )

    def request_usage(self, payload: dict[str, Any]) -> bool:
        return False

    def usage(self, body: Any) -> Usage:
        usage = usage_object(body, " Ask the relay to pass the embeddings usage through.")
        if usage.get("prompt_tokens") is None and usage.get("total_tokens") is None:
            raise ResponseFormatError("usage.prompt_tokens is missing from the response.")
        # Both count the input; if a relay makes them differ, bill the larger.
        billed = max(count(usage, "prompt_tokens", False), count(usage, "total_tokens", False))
        return Usage(billed, 0, 0, 0, relay_cost(usage))

    def completion_text(self, body: Any) -> str | None:
        return None  # vectors, not text

    def stream_reader(self) -> NoEvents:
        return _EVENTS


EMBEDDINGS = Embeddings()
