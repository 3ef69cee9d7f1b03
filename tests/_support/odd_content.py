"""Prompts whose token density is far from English prose: digits, base64, emoji, rare CJK."""

from __future__ import annotations

import base64
import random

_rng = random.Random(7)

ODD = {
    "digits": "31415926535897932384626433832795028841971693993751" * 8,
    "base64": base64.b64encode(bytes(_rng.randrange(256) for _ in range(300))).decode(),
    "emoji": "😀🎉👩‍👩‍👧🇯🇵" * 25,
    "rare_cjk": "𠀀𪚥𰻞𠮷龘" * 30,  # CJK extensions B-G: four UTF-8 bytes each, several tokens each
    "mixed": "价格 = $1,234.56 😀 ok; ✓ 𠮷 \u200b",
}


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def non_ascii(text: str) -> int:
    return sum(len(ch.encode("utf-8")) for ch in text if ord(ch) > 127)
