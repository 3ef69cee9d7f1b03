"""Ordinary English prose, to calibrate the input bound the way a user's first calls would."""

from __future__ import annotations

import random

__all__ = ["ENGLISH", "english_prompts"]

ENGLISH = """\
The quarterly results were better than most analysts expected. Revenue grew by eleven percent, \
driven mainly by strong demand in the European market, while costs stayed roughly flat. The \
board has decided to keep the dividend unchanged and to invest the extra cash in new products.
When you write a summary, start with the most important point and leave the details for later. \
Readers who only look at the first sentence should still know what happened and why it matters. \
Short paragraphs and plain words help more than clever phrases.
Our team spent the last two weeks moving the old reporting system to the new platform. Most of \
the work went smoothly, but a few of the monthly reports took longer than planned because the \
data had to be cleaned first. We expect to finish the remaining tasks by the end of next month.
Please explain, in simple terms, how a neural network learns from examples. I have a background \
in statistics but I have never trained a model myself, so I would like to understand the main \
ideas before I read any of the technical papers that my colleagues have recommended.
The weather in the north of the country will stay cold and wet for the rest of the week. In the \
south it should be dry, with some sunshine in the afternoon. Drivers are asked to take care on \
the roads near the coast, where strong winds are likely during the night.
She opened the letter slowly, as if she already knew what it would say. Her brother had written \
from the city to tell her that he would not be coming home for the summer after all. There was \
work to be done, he said, and he could not leave it to anyone else.
Can you review this draft and tell me whether the argument is clear? I am not sure the second \
section follows from the first, and I think the conclusion may be too strong for the evidence we \
have. Any suggestions for a better title would also be welcome.
Customers can return any item within thirty days of purchase, as long as it is in its original \
condition. Refunds are usually processed within five working days. If you have any questions \
about your order, our support team is happy to help by phone or email.
"""

_SENTENCES = [s.strip() + "." for s in ENGLISH.replace("?", ".").split(".") if s.strip()]


def english_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` prompts of 3 to 12 sentences of the text above, in a random order."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_SENTENCES) for _ in range(rng.randint(3, 12))) for _ in range(n)]
