"""Build holysheep_lab/core/words.txt: common English words that are ONE token in every bundled
offline tokenizer (o200k_base, cl100k_base, llama3, qwen3), per spelling.

The input bound (core/tokens.py) counts such a word as one unit, scaled by what calibration
learned, instead of one token per byte. tests/test_bounds.py checks every line of the file
against the tokenizers again, so a wrong line fails the suite.

Each line: `word flags`, flags a hex digit of the spellings that are one token:
1 = " word", 2 = "word", 4 = " Word", 8 = "Word". Most frequent first.

Run (needs wordfreq and quicktok-v1, not dependencies of the package):
    uv run --with wordfreq --with quicktok-v1 python tools/make_words.py
"""

from __future__ import annotations

import re
from pathlib import Path

import quicktok
import wordfreq

TOP = 20_000
ENCODINGS = ("o200k_base", "cl100k_base", "llama3", "qwen3")
OUT = Path(__file__).resolve().parent.parent / "holysheep_lab" / "core" / "words.txt"


def main() -> None:
    encs = [quicktok.get_encoding(name) for name in ENCODINGS]

    def one(text: str) -> bool:
        return all(len(enc.encode(text)) == 1 for enc in encs)

    lines = []
    for word in wordfreq.top_n_list("en", TOP):
        if not re.fullmatch("[a-z]+", word):
            continue
        cap = word.capitalize()
        flags = one(" " + word) * 1 | one(word) * 2 | one(" " + cap) * 4 | one(cap) * 8
        if flags:
            lines.append(f"{word} {flags:x}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} words -> {OUT}")


if __name__ == "__main__":
    main()
