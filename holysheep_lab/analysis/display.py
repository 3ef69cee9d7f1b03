"""How `df.hs` frames display: money in $, shares in %, milliseconds, token counts.

Every frame the accessor returns is a `ReadableFrame` (`holysheep_lab.client.frames`): its
`repr` and notebook HTML format each column by what it holds (the one rule of
`core.display`), while its values stay the exact floats the analysis computed (sum them, compare
them, `.to_parquet` them). Most columns say what they hold by name (`cost_usd`, `share`,
`p95_ms`); `KINDS` names the analysis columns that do not.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from holysheep_lab.client.frames import ReadableFrame, readable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KINDS", "shown"]

#: Analysis columns whose names do not say what they hold: forecast bands and errors in USD,
#: per-call token statistics, a relay's cost drift (a fraction of ours).
KINDS = MappingProxyType({
    "yhat": "usd", "lo": "usd", "hi": "usd", "mae": "usd", "cost_per_call": "usd",
    "input_mean": "tokens", "input_p50": "tokens", "input_p95": "tokens",
    "output_mean": "tokens", "output_p50": "tokens", "output_p95": "tokens",
    "tokens_per_call_added": "tokens", "drift": "share",
})


def shown(df: pd.DataFrame) -> ReadableFrame:
    """`df` (an analysis result) as a ReadableFrame: same values and `.attrs`, readable display."""
    return readable(df, {str(c): KINDS[str(c)] for c in df.columns if str(c) in KINDS})
