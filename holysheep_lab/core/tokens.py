"""A safe upper bound on a request's input tokens, calibrated from the log.

Byte-level BPE tokenizers (OpenAI, Anthropic, Gemini, DeepSeek) never emit more text tokens
than UTF-8 bytes, so `bytes + per-message overhead` is safe for any script: English, Thai,
Chinese or code (the seed's chars/4 undercounts Thai several-fold). It is also loose, so the
bound tightens itself per model and per script class from what the log observed, keeping a
margin over the worst ratio seen, and falls back to bytes until it has seen enough calls.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["InputSize", "TokenEstimator", "measure_messages"]

PER_MESSAGE_OVERHEAD = 8  # role + separators; OpenAI documents 3-4, keep slack for others
PER_REQUEST_OVERHEAD = 8
IMAGE_TOKENS = 3_000  # upper bound for one image part (high detail tiles), no pixels to count
MIN_OBSERVATIONS = 20
MARGIN = 1.25
# Script classes by share of non-ASCII bytes: token density differs several-fold between them.
_CLASS_EDGES = (0.1, 0.5)
_ASCII = bytes(range(128))


@dataclass(frozen=True, slots=True)
class InputSize:
    """The measurable size of a request's input: text bytes, non-ASCII bytes, messages, images."""

    text_bytes: int
    non_ascii_bytes: int
    messages: int
    images: int

    @property
    def script_class(self) -> int:
        share = self.non_ascii_bytes / self.text_bytes if self.text_bytes else 0.0
        return sum(share >= edge for edge in _CLASS_EDGES)

    def safe_bound(self) -> int:
        """Tokens can never exceed this, whatever the tokenizer's vocabulary."""
        return (
            self.text_bytes
            + PER_MESSAGE_OVERHEAD * self.messages
            + PER_REQUEST_OVERHEAD
            + IMAGE_TOKENS * self.images
        )


def _walk_text(value: Any, out: list[str], images: list[int]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, Mapping):
        kind = value.get("type")
        if kind in ("image_url", "input_image", "image"):
            images[0] += 1
            return
        for k, v in value.items():
            if k != "type":
                _walk_text(v, out, images)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk_text(v, out, images)
    elif value is not None:
        out.append(json.dumps(value))


def measure_messages(messages: Sequence[Any], tools: Any = None) -> InputSize:
    """Measure messages (and tool schemas, which are billed as input too)."""
    parts: list[str] = []
    images = [0]
    for m in messages:
        _walk_text(m, parts, images)
    if tools:
        parts.append(json.dumps(tools, separators=(",", ":")))
    text = "".join(parts)
    data = text.encode("utf-8", "surrogatepass")
    non_ascii = 0 if text.isascii() else len(data.translate(None, _ASCII))
    return InputSize(len(data), non_ascii, len(messages), images[0])


class TokenEstimator:
    """Per-model, per-script-class tokens-per-byte ratios learned from observed calls.

    `bound(model, size)` = min(safe bound, ceil(bytes x worst ratio seen x margin) + overhead)
    once at least MIN_OBSERVATIONS calls of that class were seen; the safe bound before.
    Thread-safe; observations are cheap (a max and a count).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worst: dict[tuple[str, int], float] = {}
        self._seen: dict[tuple[str, int], int] = {}

    def observe(self, model: str, size: InputSize, input_tokens: int) -> None:
        if size.text_bytes < 64 or size.images:
            return  # tiny or image prompts say little about text density
        overhead = PER_MESSAGE_OVERHEAD * size.messages + PER_REQUEST_OVERHEAD
        ratio = max(0, input_tokens - overhead) / size.text_bytes
        key = (model, size.script_class)
        with self._lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            if ratio > self._worst.get(key, 0.0):
                self._worst[key] = ratio

    def bound(self, model: str, size: InputSize) -> int:
        safe = size.safe_bound()
        key = (model, size.script_class)
        with self._lock:
            seen = self._seen.get(key, 0)
            worst = self._worst.get(key, 0.0)
        if seen < MIN_OBSERVATIONS or worst <= 0:
            return safe
        learned = math.ceil(size.text_bytes * min(1.0, worst * MARGIN))
        learned += PER_MESSAGE_OVERHEAD * size.messages + PER_REQUEST_OVERHEAD + IMAGE_TOKENS * size.images
        return min(safe, learned)
