"""What a chat call gives back (ChatResult), what the guard would reserve (Estimate), and the
prompt type both the client and the batch runner accept (Messages).

Plain values with no client behind them, so the client and `batch` both import them from here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from holysheep_lab.core.pricing import Usage
from holysheep_lab.log.schema import CallRecord

__all__ = ["ChatResult", "Estimate", "Messages"]

Messages = str | Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Estimate:
    """The guard's worst case for a call, computed without sending it."""

    model: str
    input_tokens_bound: int
    output_tokens_bound: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class ChatResult:
    """One answered chat call: its text, usage and exact cost."""

    text: str
    usage: Usage
    cost_usd: float | None
    model: str
    latency_ms: float
    raw: dict[str, Any] = field(repr=False)
    record: CallRecord = field(repr=False)

    @property
    def call_id(self) -> str:
        return self.record.call_id

    def __str__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        cost = f"${self.cost_usd:.6f}" if self.cost_usd is not None else "unpriced"
        return (
            f"<div style='font-family:sans-serif'><div style='white-space:pre-wrap'>{html.escape(self.text)}</div>"
            f"<div style='color:#666;font-size:85%;margin-top:4px'>{html.escape(self.model)} · "
            f"{self.usage.input_tokens} in / {self.usage.output_tokens} out tokens · {cost} · "
            f"{self.latency_ms:.0f} ms</div></div>"
        )
