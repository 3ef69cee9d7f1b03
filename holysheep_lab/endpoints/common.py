"""Small readers every adapter shares: token counts, caps, the model, a conversation's name.

Requests that cannot be read raise ConfigError (nothing was sent); answers whose usage cannot
be read raise ResponseFormatError (the core then settles at the worst case, never at $0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from holysheep_lab.errors import ConfigError, ResponseFormatError

__all__ = ["cache_writes", "conversation_id", "count", "output_cap", "relay_cost", "request_model", "split_prompts", "usage_object"]


def count(obj: Any, key: str, required: bool, where: str = "usage") -> int:
    """A token count `obj[key]`: a non-negative int; 0 if absent and not `required`."""
    # `type(...) is dict` and None first: parsed JSON is a dict or absent, and the Mapping check is slow.
    value = obj.get(key) if type(obj) is dict or (obj is not None and isinstance(obj, Mapping)) else None
    if value is None:
        if required:
            raise ResponseFormatError(f"{where}.{key} is missing from the response.")
        return 0
    if (type(value) is not int and (isinstance(value, bool) or not isinstance(value, int))) or value < 0:
        raise ResponseFormatError(f"{where}.{key} must be a non-negative integer; got {value!r}.")
    return value


def cache_writes(details: Any, usage: Mapping[str, Any], where: str) -> int:
    """Prompt-cache writes an OpenAI-shaped usage reports: in its details (``cache_write_tokens``,
    as the openai SDK's types and OpenRouter name them; ``cache_creation_tokens``, LiteLLM) or,
    from LiteLLM's Anthropic passthrough, as ``usage.cache_creation_input_tokens``. A part of the
    input total either way; they are billed above the input price, so they must not be read as
    plain input."""
    if type(details) is dict or (details is not None and isinstance(details, Mapping)):
        for key in ("cache_write_tokens", "cache_creation_tokens"):
            if details.get(key) is not None:
                return count(details, key, False, where)
    return count(usage, "cache_creation_input_tokens", False)


def relay_cost(usage: Mapping[str, Any]) -> float | None:
    """The relay's own cost figure (`usage.cost`, USD), if it gives a number."""
    value = usage.get("cost")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def usage_object(body: Any, hint: str) -> Mapping[str, Any]:
    """The answer's `usage` object, or a ResponseFormatError that says how to get one."""
    usage = body.get("usage") if type(body) is dict or isinstance(body, Mapping) else None
    if type(usage) is not dict and not isinstance(usage, Mapping):
        raise ResponseFormatError(f"The response has no 'usage' object, so its cost cannot be known.{hint}")
    return usage


def request_model(payload: Mapping[str, Any], what: str) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"A {what} request needs a JSON object with a 'model' string; nothing was sent.")
    return model


def output_cap(payload: Mapping[str, Any], *keys: str) -> int | None:
    """The caller's output cap: the first of `keys` present (None: none given). ConfigError
    unless it is a positive integer."""
    for key in keys:
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, not {value!r}; nothing was sent.")
        return value
    return None


def conversation_id(turns: Sequence[Any]) -> str | None:
    """A short hash of a conversation's opening: the turns up to its first user turn (system
    and developer messages, then that turn). It names a chain of calls without storing its text,
    and every call of the chain has it, the first included (whose later turns do not exist yet).
    repr keeps key order, which is stable for requests built by the same code: cheap and enough."""
    opening = []
    for turn in turns:
        if type(turn) is dict or isinstance(turn, Mapping):  # dict first: the ABC check is slow
            opening.append(turn)
            if turn.get("role") == "user":
                break
    if not opening:
        return None
    return hashlib.blake2b(repr(opening).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def split_prompts(value: Any, what: str) -> tuple[list[Any], int, int]:
    """(texts, token ids, prompts) of an embeddings `input` or a completions `prompt`: a string,
    a list of strings, a token array or a list of token arrays. Anything else inside a batch
    is measured as text, so nothing is left out of the bound."""
    if isinstance(value, str):
        return [value], 0, 1
    if not isinstance(value, list):
        raise ConfigError(f"'{what}' must be a string, a list of strings or token arrays; nothing was sent.")
    if value and all(type(v) is int for v in value):
        return [], len(value), 1  # one token array
    texts: list[Any] = []
    tokens = 0
    for item in value:
        if isinstance(item, list):
            ids = sum(1 for v in item if type(v) is int)
            tokens += ids
            if ids < len(item):
                texts.append([v for v in item if type(v) is not int])
        else:
            texts.append(item)
    return texts, tokens, max(1, len(value))
