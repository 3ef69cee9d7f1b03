"""A safe upper bound on a request's input tokens, for any script and content.

Byte-level BPE tokenizers (OpenAI, Anthropic, Gemini, DeepSeek, Llama 3, Qwen) never emit more
text tokens than UTF-8 bytes, so `bytes + overheads` is safe for anything: English, Thai, rare
CJK, emoji, digits, base64, URL-encoding or code (the seed's chars/4 undercounts several-fold).
It is also loose: English prose is about 0.2 tokens a byte.

Calibration may tighten the bound only where that is proven safe for the content, so the text
is split in two kinds:

- **prose words**: a common English word (lower case or Capitalised, from `words.txt`) standing
  alone as one pre-token: after a space, a line break or the start, and not followed by a letter,
  digit, mark, `_` or apostrophe. `words.txt` holds only words that are ONE token in every
  bundled offline tokenizer (o200k_base, cl100k_base, llama3, qwen3) in that spelling (the
  tests check every line). Tokenizers split text into such pre-tokens before merging, so each
  of these words costs one token there, whatever is around it.
- **everything else** (digits, base64, URL-encoding, emoji, CJK, other scripts, punctuation,
  rare words, code symbols): counted at its bytes, always; no calibration touches it.

The bound is `overheads + other bytes + words x u`. Until a model has MIN_OBSERVATIONS calls
with enough prose words, u is the words' bytes (the safe bound). After that u is the worst
tokens-per-word seen for that model (all of a call's tokens charged to its words, which
overstates them) times MARGIN, and never below 1, what the known tokenizers provably spend.

Images are bounded by the provider's rules (`image_tokens`), with a safe upper bound when the
pixels are unknown. Parts whose size cannot be known before sending (a `file_id`, a remote file,
an inline PDF) are listed in `InputSize.unmeasured`: the metering refuses such a request unless
the caller gives an explicit bound.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, NamedTuple

__all__ = ["MIN_OBSERVATIONS", "MIN_WORDS", "InputSize", "TokenEstimator", "image_tokens", "measure_messages",
           "prose_words"]

PER_MESSAGE_OVERHEAD = 8  # role + separators; OpenAI documents 3-4, keep slack for others
PER_REQUEST_OVERHEAD = 8
PER_EXTRA_OVERHEAD = 24  # each tool definition or output schema: the relay wraps it in its own text
MIN_OBSERVATIONS = 20  # calls of a model before its words are counted at a calibrated rate
MIN_WORDS = 32  # prose words a call needs to say anything about a model's rate
MARGIN = 1.25
_ASCII = bytes(range(128))

# -- prose words -------------------------------------------------------------------------------

# Spellings (bits in words.txt): " word", "word", " Word", "Word".
_SPACE_LOWER, _LOWER, _SPACE_CAPITAL, _CAPITAL = 1, 2, 4, 8
# An ASCII letter run standing alone, after one space (kept with the word, as tokenizers do) or
# after the start or a line break; not followed by a letter, digit, `_` or apostrophe (they
# would join its pre-token). Marks after it are checked separately (rare, and not in \w).
_SPACED = re.compile(r" ([A-Za-z]+)(?![\w'’])")
_LINE = re.compile(r"(?<![^\n\r])([A-Za-z]+)(?![\w'’])")


@cache
def _spellings() -> tuple[frozenset[str], frozenset[str]]:
    """(spellings that are one token after a space, spellings that are one token alone)."""
    from importlib.resources import files

    text = files("holysheep_lab.core").joinpath("words.txt").read_text("ascii")
    spaced: set[str] = set()
    alone: set[str] = set()
    for line in text.splitlines():
        word, _, hexflags = line.partition(" ")
        flags = int(hexflags, 16)
        capital = word.capitalize()
        if flags & _SPACE_LOWER:
            spaced.add(word)
        if flags & _SPACE_CAPITAL:
            spaced.add(capital)
        if flags & _LOWER:
            alone.add(word)
        if flags & _CAPITAL:
            alone.add(capital)
    return frozenset(spaced), frozenset(alone)


def prose_words(text: str) -> tuple[int, int]:
    """(count, bytes) of the prose words in `text` (see the module docstring)."""
    spaced, alone = _spellings()
    if text.isascii():  # the common case: C-speed scans and set look-ups
        a = [w for w in _SPACED.findall(text) if w in spaced]
        b = [w for w in _LINE.findall(text) if w in alone]
        return len(a) + len(b), sum(map(len, a)) + len(a) + sum(map(len, b))
    count = size = 0
    for pattern, known in ((_SPACED, spaced), (_LINE, alone)):
        for match in pattern.finditer(text):
            end = match.end()
            if match.group(1) not in known:
                continue
            if end < len(text) and unicodedata.category(text[end])[0] == "M":
                continue  # a combining mark joins the word's pre-token
            count += 1
            size += end - match.start()
    return count, size


# -- images --------------------------------------------------------------------------------

#: Unknown model family and unknown pixels: above every rule below but gpt-4o-mini's.
GENERIC_IMAGE_TOKENS = 6_000
_CLAUDE_MAX = 4_800  # ~3.6 megapixels at 750 pixels a token: above the largest image Claude takes
_GEMINI_MAX = 258 * 16  # 3072 px square, in 768 px tiles
# OpenAI's published rules. Tiles: (model prefix, base, per 512 px tile) after fitting in 2048 px
# and scaling the short side to 768 px; `detail: low` is the base alone. Patches: (prefix,
# multiplier) of 32 px patches, at most 1536. Longest prefix first.
_OPENAI_TILES = (("gpt-4o-mini", 2_833, 5_667), ("computer-use", 65, 129), ("gpt-5-chat", 70, 140),
                 ("o1", 75, 150), ("o3", 75, 150), ("gpt-5", 70, 140), ("gpt-4", 85, 170), ("chatgpt", 85, 170))
_OPENAI_PATCHES = (("gpt-4.1-mini", 1.62), ("gpt-4.1-nano", 2.46), ("gpt-5-mini", 1.62), ("gpt-5-nano", 2.46),
                   ("o4-mini", 1.72))


def _family(model: str) -> str:
    return model.lower().rsplit("/", 1)[-1]


def _tiles(w: int, h: int) -> int:
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = math.ceil(w * scale), math.ceil(h * scale)
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = math.ceil(w * scale), math.ceil(h * scale)
    # Rounding up never buys a tile the provider's scaling does not give: at most 2 x 4.
    short, long = sorted((math.ceil(w / 512), math.ceil(h / 512)))
    return min(2, short) * min(4, long)


def _patches(w: int, h: int) -> int:
    return min(1536, math.ceil(w / 32) * math.ceil(h / 32))


def image_tokens(model: str, width: int | None, height: int | None, detail: str | None) -> int:
    """An upper bound on one image's input tokens for `model` (pixels None: unknown)."""
    name = _family(model)
    pixels = (width, height) if width and height and width > 0 and height > 0 else None
    for prefix, multiplier in _OPENAI_PATCHES:
        if name.startswith(prefix):
            return math.ceil((_patches(*pixels) if pixels else 1536) * multiplier)
    for prefix, base, tile in _OPENAI_TILES:
        if name.startswith(prefix):
            return base if detail == "low" else base + tile * (_tiles(*pixels) if pixels else 8)
    if pixels is None:
        return _CLAUDE_MAX if name.startswith("claude") else _GEMINI_MAX if name.startswith("gemini") else GENERIC_IMAGE_TOKENS
    w, h = pixels
    claude = min(_CLAUDE_MAX, math.ceil(w * h / 750))
    fit = min(1.0, 3072 / max(w, h))  # Gemini scales an image to fit 3072 px, then tiles it at 768 px
    gemini = 258 * min(4, math.ceil(math.ceil(w * fit) / 768)) * min(4, math.ceil(math.ceil(h * fit) / 768))
    if name.startswith("claude"):
        return claude
    if name.startswith("gemini"):
        return gemini
    # An unknown family: the largest of the rules above, bar gpt-4o-mini's.
    return max(85 + 170 * _tiles(w, h), math.ceil(_patches(w, h) * 2.46), claude, gemini)


def _pixels(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the start of a PNG, GIF, WebP or JPEG file, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return w, h
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return w, h
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + length
    return None


_HEAD_B64 = 262_144  # base64 characters decoded to find the pixels (192 KiB of file)


def _decode_head(b64: str) -> bytes | None:
    head = b64[:_HEAD_B64].strip()
    head = head[: len(head) - len(head) % 4]
    try:
        return base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return None


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:...;base64,` URL."""
    if not url.startswith("data:"):
        return None
    meta, sep, data = url[5:].partition(",")
    if not sep or not meta.endswith(";base64"):
        return None
    return meta[: -len(";base64")].lower(), data


_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-ndjson", "application/csv")


# -- measuring a request -------------------------------------------------------------------------


class InputSize(NamedTuple):
    """The measurable size of a request's input.

    text_bytes / non_ascii_bytes: UTF-8 size of its text; messages: how many turns; images: how
    many image parts; words / word_bytes: its prose words (see the module docstring) and the
    bytes they cover; media_tokens: the images' and inline files' bound, in tokens;
    extras: tool definitions and output schemas; unmeasured: parts no bound can be given for.
    """

    text_bytes: int
    non_ascii_bytes: int
    messages: int
    images: int = 0
    words: int = 0
    word_bytes: int = 0
    media_tokens: int = 0
    extras: int = 0
    unmeasured: tuple[str, ...] = ()

    def overhead(self) -> int:
        return PER_MESSAGE_OVERHEAD * self.messages + PER_REQUEST_OVERHEAD + PER_EXTRA_OVERHEAD * self.extras

    def safe_bound(self) -> int:
        """Tokens can never exceed this, whatever the tokenizer's vocabulary."""
        return self.text_bytes + self.overhead() + self.media_tokens


class _Walk:
    """Collects a request's billable text, images and files."""

    __slots__ = ("images", "media", "model", "texts", "unmeasured")

    def __init__(self, model: str) -> None:
        self.model = model
        self.texts: list[str] = []
        self.images = 0
        self.media = 0
        self.unmeasured: list[str] = []

    def value(self, value: Any) -> None:
        if isinstance(value, str):
            self.texts.append(value)
        elif type(value) is dict or isinstance(value, Mapping):  # dict first: the ABC check is slow
            kind = value.get("type")
            if kind in ("image_url", "input_image", "image"):
                self.image(value)
            elif kind in ("file", "input_file", "document"):
                self.file(value)
            else:
                for k, v in value.items():
                    if k != "type":
                        self.value(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self.value(v)
        elif value is not None:
            self.texts.append(json.dumps(value))

    def image(self, part: Mapping[str, Any]) -> None:
        self.images += 1
        detail = part.get("detail")
        source = part.get("image_url", part.get("source"))
        if isinstance(source, Mapping):
            detail = source.get("detail", detail)
            data = source.get("data") if source.get("type") == "base64" else None
            source = source.get("url", data and f"data:;base64,{data}")
        pixels = None
        parsed = _data_url(source) if isinstance(source, str) else None
        if parsed is not None:
            head = _decode_head(parsed[1])
            pixels = _pixels(head) if head else None
        w, h = pixels if pixels else (None, None)
        self.media += image_tokens(self.model, w, h, detail if isinstance(detail, str) else None)

    def file(self, part: Mapping[str, Any]) -> None:
        body = part.get("file") if isinstance(part.get("file"), Mapping) else part
        source = part.get("source") if isinstance(part.get("source"), Mapping) else None
        assert isinstance(body, Mapping)
        for key in ("title", "context", "filename"):  # billed beside the file where given
            if isinstance(part.get(key), str):
                self.texts.append(part[key])
            elif key == "filename" and isinstance(body.get(key), str):
                self.texts.append(body[key])
        if source is not None:  # Anthropic: base64, text, url, file or content
            kind = source.get("type")
            if kind == "text" and isinstance(source.get("data"), str):
                self.texts.append(source["data"])
                return
            if kind == "content":
                self.value(source.get("content"))
                return
            if kind == "base64" and isinstance(source.get("data"), str):
                self.inline(str(source.get("media_type") or ""), source["data"], "a document (base64)")
                return
            self.unmeasured.append(f"a document ({kind or 'unknown'} source)")
            return
        data = body.get("file_data")
        if isinstance(data, str):
            parsed = _data_url(data)
            media_type, b64 = parsed if parsed else ("", data)
            self.inline(media_type, b64, "a file part (file_data)")
            return
        ref = body.get("file_id") or body.get("file_url")
        self.unmeasured.append(f"a file part ({'file_id' if body.get('file_id') else 'file_url'}={str(ref)[:60]!r})")

    def inline(self, media_type: str, b64: str, what: str) -> None:
        """Inline file data: text is measured as its decoded bytes; anything else (a PDF, whose
        pages the relay turns into text and images) cannot be bounded from its bytes."""
        if media_type.startswith(_TEXT_TYPES):
            try:
                self.texts.append(base64.b64decode(b64, validate=False).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                self.unmeasured.append(f"{what} that is not base64")
            return
        self.unmeasured.append(f"{what} of type {media_type or 'unknown'}")


def measure_messages(messages: Sequence[Any], tools: Any = None, *, model: str = "") -> InputSize:
    """Measure messages, and tool definitions or output schemas (`tools`: one object or a list
    of them, billed as input too). `model` picks the image rules."""
    walk = _Walk(model)
    for m in messages:
        walk.value(m)
    extras = 0
    if tools:
        items = tools if isinstance(tools, (list, tuple)) else [tools]
        for item in items:
            extras += len(item) if isinstance(item, (list, tuple)) else 1
            walk.texts.append(json.dumps(item, separators=(",", ":")))
    text = "".join(walk.texts)
    data = text.encode("utf-8", "surrogatepass")
    non_ascii = 0 if text.isascii() else len(data.translate(None, _ASCII))
    # One pass over the strings joined by line breaks: a word cannot span two strings, and one
    # that starts a string starts its own pre-token, as after a line break.
    words, word_bytes = prose_words(walk.texts[0] if len(walk.texts) == 1 else "\n".join(walk.texts))
    return InputSize(len(data), non_ascii, len(messages), walk.images, words, word_bytes, walk.media, extras,
                     tuple(walk.unmeasured))


class TokenEstimator:
    """Per-model tokens per prose word, learned from observed calls (see the module docstring).

    `bound(model, size)` = overheads + other bytes + words x max(1, worst rate seen x MARGIN) +
    media, never above the safe bound, once MIN_OBSERVATIONS calls of the model with at least
    MIN_WORDS prose words were seen; the safe bound before. Thread-safe; observing is cheap.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worst: dict[str, float] = {}
        self._seen: dict[str, int] = {}

    def observe(self, model: str, size: InputSize, input_tokens: int) -> None:
        if size.words < MIN_WORDS or size.images or size.media_tokens or size.unmeasured:
            return  # little prose, or parts whose tokens are not text: says nothing of the rate
        rate = input_tokens / size.words  # every token charged to the words: an overstatement
        with self._lock:
            self._seen[model] = self._seen.get(model, 0) + 1
            if rate > self._worst.get(model, 0.0):
                self._worst[model] = rate

    def bound(self, model: str, size: InputSize) -> int:
        safe = size.safe_bound()
        if not size.words:
            return safe
        with self._lock:
            seen = self._seen.get(model, 0)
            worst = self._worst.get(model, 0.0)
        if seen < MIN_OBSERVATIONS or worst <= 0:
            return safe
        rate = max(1.0, worst * MARGIN)
        learned = size.overhead() + size.text_bytes - size.word_bytes + math.ceil(size.words * rate) + size.media_tokens
        return min(safe, learned)
