"""What the simulator says, as pure functions shared by every wire format: token counts of a
request's text, and an answer's tokens and text (deterministic: same request, same answer).

- prompt tokens of a message = ``ceil(b / 4) + 4``, ``b`` the UTF-8 size of its text content:
  never more than a client's byte-based bound (``bytes + per-message overhead``);
- completion tokens = ``1 + hash(seed, model, request text, limit) % limit``;
- cached = ``floor(prompt * cached_ratio)``, reasoning = ``floor(completion * reasoning_ratio)``
  (parts of those totals); the text is lorem ipsum, about 0.75 words per visible token.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "IMAGE_TOKENS",
    "SimulatedCompletion",
    "compact",
    "content_bytes",
    "count_prompt_tokens",
    "dumps",
    "pieces",
    "simulate_answer",
    "simulate_completion",
    "text_bytes",
]

DEFAULT_MAX_TOKENS = 256
#: Tokens of one image part in the formats after chat (OpenAI's 1024x1024, high detail).
IMAGE_TOKENS = 765
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
# Compact JSON from one reusable encoder: json.dumps with options builds a new one per call.
dumps = json.JSONEncoder(separators=(",", ":")).encode


def content_bytes(content: Any) -> int:
    """UTF-8 size of a message's text (non-text parts count as their compact JSON)."""
    if isinstance(content, str):
        return len(content.encode("utf-8", "surrogatepass"))
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"].encode("utf-8", "surrogatepass"))
            else:
                total += len(compact(part))
        return total
    return 0


def compact(value: Any) -> bytes:
    """UTF-8 compact JSON (never larger than what a client measures of the same value)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def text_bytes(value: Any) -> int:
    """UTF-8 size of the strings in `value` (keys and `type` tags left out, as a client's byte
    bound measures them), image parts counted as IMAGE_TOKENS * 4 bytes."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, Mapping):
        if value.get("type") in _IMAGE_PARTS:
            return IMAGE_TOKENS * 4
        return sum(text_bytes(v) for k, v in value.items() if k != "type")
    if isinstance(value, list | tuple):
        return sum(text_bytes(v) for v in value)
    return 0 if value is None else len(compact(value))


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """The simulator's prompt tokens: sum of ``ceil(content_bytes / 4) + 4`` per message.

    Always <= the UTF-8 size of the messages' JSON: each message object costs at least
    ``{"role":"","content":""}`` (24 bytes) around its content, more than the 4-token overhead.
    """
    return sum((content_bytes(m.get("content")) + 3) // 4 + 4 for m in messages)


@dataclass(frozen=True, slots=True)
class SimulatedCompletion:
    """What the simulator answers to one request (see `simulate_completion`)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    text: str
    finish_reason: str


def simulate_completion(
    body: Mapping[str, Any],
    *,
    seed: int = 0,
    cached_ratio: float = 0.0,
    reasoning_ratio: float = 0.0,
) -> SimulatedCompletion:
    """The completion the simulator answers to a validated request `body`: a pure function."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    messages = body["messages"]
    # Hash what the caller said (not stream flags or ids), so the stream and the plain call agree.
    h = zlib.crc32(f"{seed}\0{body['model']}\0{limit}".encode())
    prompt = 0
    for m in messages:
        content = m.get("content")
        h = zlib.crc32(str(m.get("role")).encode("utf-8", "surrogatepass"), h)
        if isinstance(content, str):
            data = content.encode("utf-8", "surrogatepass")
            h = zlib.crc32(data, h)
            size = len(data)
        else:
            size = content_bytes(content)
            h = zlib.crc32(size.to_bytes(8, "little"), h)
        prompt += (size + 3) // 4 + 4
    return _answer(h, prompt, limit, cached_ratio, reasoning_ratio)


def simulate_answer(
    model: str,
    said: Iterable[Any],
    prompt_tokens: int,
    limit: int,
    *,
    seed: int = 0,
    cached_ratio: float = 0.0,
    reasoning_ratio: float = 0.0,
) -> SimulatedCompletion:
    """An answer of any wire format: `said` is what the caller said (hashed: not stream flags or
    ids, so the stream and the plain call agree), `prompt_tokens` its count, `limit` the cap."""
    h = zlib.crc32(f"{seed}\0{model}\0{limit}".encode())
    for part in said:
        h = zlib.crc32(part.encode("utf-8", "surrogatepass") if isinstance(part, str) else compact(part), h)
    return _answer(h, prompt_tokens, limit, cached_ratio, reasoning_ratio)


def _answer(h: int, prompt: int, limit: int, cached_ratio: float, reasoning_ratio: float) -> SimulatedCompletion:
    completion = 1 + h % limit
    reasoning = math.floor(completion * reasoning_ratio)
    visible = completion - reasoning
    # About 0.75 words per token, the usual rule of thumb for English text.
    words = max(1, round(visible * 0.75)) if visible else 0
    return SimulatedCompletion(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=math.floor(prompt * cached_ratio),
        reasoning_tokens=reasoning,
        text=_lorem().text((h >> 8) * 2654435761, words),
        finish_reason="length" if completion == limit else "stop",
    )


def pieces(text: str, words_per_piece: int) -> list[str]:
    """`text` in stream pieces of `words_per_piece` words (they join back to `text`)."""
    words = text.split(" ") if text else []
    k = words_per_piece
    return [" ".join(words[i : i + k]) + (" " if i + k < len(words) else "") for i in range(0, len(words), k)]


_VOCAB = [
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim", "veniam",
    "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo",
    "consequat", "duis", "aute", "irure", "in", "reprehenderit", "voluptate", "velit", "esse", "cillum", "fugiat",
    "nulla", "pariatur", "excepteur", "sint", "occaecat", "cupidatat", "non", "proident", "sunt", "culpa", "qui",
    "officia", "deserunt", "mollit", "anim", "id", "est", "laborum", "the", "model", "answers", "a", "question",
    "about", "cost", "budget", "tokens", "data"
]


class _Lorem:
    """A fixed lorem-ipsum corpus with word offsets, so any text is one slice (no per-call work)."""

    __slots__ = ("_ends", "_sentences", "_starts", "_text", "_words")

    def __init__(self, words: int = 4096) -> None:
        rng = random.Random(20240601)
        out: list[str] = []
        self._sentences: list[int] = []
        while len(out) < words:
            self._sentences.append(len(out))
            length = rng.randint(6, 14)
            sentence = [rng.choice(_VOCAB) for _ in range(length)]
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += "."
            out.extend(sentence)
        out = out[:words]
        self._words = len(out)
        # Twice over, so a slice that starts near the end needs no wrap-around.
        doubled = out + out
        self._text = " ".join(doubled)
        self._starts: list[int] = []
        self._ends: list[int] = []
        pos = 0
        for w in doubled:
            self._starts.append(pos)
            pos += len(w)
            self._ends.append(pos)
            pos += 1

    def text(self, key: int, words: int) -> str:
        """`words` words starting at a sentence chosen by `key`."""
        if words <= 0:
            return ""
        start = self._sentences[key % len(self._sentences)]
        full, rest = divmod(words, self._words)
        if not full:
            return self._text[self._starts[start] : self._ends[start + words - 1]]
        # Longer than the corpus (max_tokens in the thousands): repeat it; rare, so plain joins.
        cycle = self._text[self._starts[start] : self._ends[start + self._words - 1]]
        tail = self._text[self._starts[start] : self._ends[start + rest - 1]] if rest else ""
        return " ".join([cycle] * full + ([tail] if tail else []))


@cache
def _lorem() -> _Lorem:
    return _Lorem()

