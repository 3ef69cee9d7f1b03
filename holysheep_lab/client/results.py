"""What the client gives back: one chat call (ChatResult), the guard's worst case (Estimate), a
batch's cost before it runs (BatchEstimate), where each budget line stands (BudgetStatus), and
the prompt type the client and the batch runner accept (Messages).

Plain values with no client behind them, so the client and `batch` both import them from here.
Amounts are exact floats; what they show goes through `core.display` (one money rule).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from holysheep_lab.core.display import NO_MATH, column_kind, format_ms, format_share, format_usd
from holysheep_lab.core.pricing import Usage
from holysheep_lab.log.schema import CallRecord

if TYPE_CHECKING:
    from holysheep_lab.client.frames import ReadableFrame

__all__ = ["BatchEstimate", "BudgetStatus", "ChatResult", "Estimate", "LineFit", "Messages", "ModelEstimate"]

Messages = str | Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Estimate:
    """The guard's worst case for a call, computed without sending it."""

    model: str
    input_tokens_bound: int
    output_tokens_bound: int
    cost_usd: float

    def __str__(self) -> str:
        return (f"worst case {format_usd(self.cost_usd)} for {self.model} "
                f"(≤ {self.input_tokens_bound:,} in + {self.output_tokens_bound:,} out tokens)")

    def _repr_html_(self) -> str:
        return f"<div class='{NO_MATH}' style='font-family:sans-serif'>{html.escape(str(self))}</div>"


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
        cost = format_usd(self.cost_usd) if self.cost_usd is not None else "unpriced"
        return (
            f"<div class='{NO_MATH}' style='font-family:sans-serif'><div style='white-space:pre-wrap'>"
            f"{html.escape(self.text)}</div>"
            f"<div style='color:#666;font-size:85%;margin-top:4px'>{html.escape(self.model)} · "
            f"{self.usage.input_tokens:,} in / {self.usage.output_tokens:,} out tokens · {html.escape(cost)} · "
            f"{html.escape(format_ms(self.latency_ms))}</div></div>"
        )


# -- tables of plain rows ------------------------------------------------------------------------

def _cell(column: str, value: Any) -> str:
    """One value as shown in a table: money, share or ms by the column's name."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, bool):
        return "yes" if value else "no"
    kind = column_kind(column)
    if isinstance(value, (int, float)):
        if kind == "usd":
            return format_usd(value)
        if kind == "share":
            return format_share(value)
        if kind == "ms":
            return format_ms(value)
        if isinstance(value, float):
            return f"{value:,.4g}"
        return f"{value:,}"
    return str(value)


def _text_table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.rjust(w) if v[:1] in "$-0123456789" else v.ljust(w)
                        for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _html_table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c, r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    cap = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f"<div class='{NO_MATH}'><table class='dataframe'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


class BudgetStatus(list[dict[str, Any]]):
    """Every budget line now (what `client.budget_status()` returns): one dict per line, with
    exact float amounts, shown as a readable table; `to_frame()` for pandas, `line()` for one."""

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def line(self, window: str = "daily", scope: str = "global") -> dict[str, Any]:
        """The row of one line, e.g. `status.line("monthly", "project:nlp")`; KeyError if absent."""
        for row in self:
            if row.get("window") == window and row.get("scope") == scope:
                return row
        raise KeyError(f"no budget line {scope} {window}; lines: {[(r.get('scope'), r.get('window')) for r in self]}")

    def to_frame(self) -> ReadableFrame:
        """The lines as a DataFrame (same columns, exact floats, readable display)."""
        import pandas as pd

        from holysheep_lab.client.frames import ReadableFrame

        return ReadableFrame(pd.DataFrame(list(self), columns=self.columns()))

    def __repr__(self) -> str:
        return f"BudgetStatus:\n{_text_table(self.columns(), self)}" if self else "BudgetStatus: no lines"

    def _repr_html_(self) -> str:
        return _html_table(self.columns(), self, "budget status")


@dataclass(frozen=True, slots=True)
class LineFit:
    """Whether a batch fits what is left of one budget line (up to its block limit)."""

    scope: str
    window: str
    left_usd: float  # block limit - spent - in flight, now
    worst_fits: bool  # the guard would admit every call even at its worst case
    expected_fits: bool

    @property
    def label(self) -> str:
        scope = "" if self.scope == "global" else f" {self.scope.removeprefix('project:')}"
        return f"{self.window}{scope}"

    @property
    def verdict(self) -> str:
        if self.worst_fits:
            return "fits"
        return "likely (not at worst case)" if self.expected_fits else "no"


@dataclass(frozen=True, slots=True)
class ModelEstimate:
    """One model's cost for a batch: the guard's worst case and the expected (calibrated) total."""

    model: str
    prompts: int
    worst_case_usd: float  # the sum of what the guard would reserve: the most the batch can cost
    expected_usd: float  # the worst case x what this model's calls cost of their worst case so far
    basis: str  # where `expected_usd` comes from ("31 logged calls of gpt-4.1", "no history: worst case")
    fits: tuple[LineFit, ...]

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "prompts": self.prompts, "worst_case_usd": self.worst_case_usd,
                               "expected_usd": self.expected_usd, "basis": self.basis}
        for f in self.fits:
            out[f"fits {f.label}"] = f.verdict
        return out


@dataclass(frozen=True, slots=True)
class BatchEstimate:
    """`client.estimate_many(...)`: per model, worst case and expected totals and whether the
    batch fits what is left of each budget line. Nothing was sent."""

    models: tuple[ModelEstimate, ...]

    def __getitem__(self, model: str) -> ModelEstimate:
        for m in self.models:
            if m.model == model:
                return m
        raise KeyError(model)

    def rows(self) -> list[dict[str, Any]]:
        return [m.row() for m in self.models]

    def to_frame(self) -> ReadableFrame:
        import pandas as pd

        from holysheep_lab.client.frames import ReadableFrame

        return ReadableFrame(pd.DataFrame(self.rows()))

    def _columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows():
            seen.update(dict.fromkeys(r))
        return list(seen)

    def __repr__(self) -> str:
        return f"BatchEstimate (nothing sent):\n{_text_table(self._columns(), self.rows())}"

    def _repr_html_(self) -> str:
        return _html_table(self._columns(), self.rows(), "batch estimate (nothing sent)")
