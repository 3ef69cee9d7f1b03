"""A batch's cost before it runs: the guard's worst case, the expected total, the budget's room.

The worst case is what the guard would reserve for each call (so the batch can never cost more).
The expected total is calibrated from the log: per model, the input tokens its logged calls had
per byte of prompt and the share of `max_tokens` their answers used (all models pooled when
this model has too few calls; the worst case when the log has none). Nothing is sent or logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from holysheep_lab.client.results import BatchEstimate, LineFit, ModelEstimate
from holysheep_lab.core.money import NANOS_PER_USD
from holysheep_lab.core.pricing import Usage
from holysheep_lab.core.tokens import PER_MESSAGE_OVERHEAD, PER_REQUEST_OVERHEAD
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS

if TYPE_CHECKING:
    from holysheep_lab.core.metering import CallPlan, Metering

__all__ = ["CALIBRATION_DAYS", "MIN_CALLS", "Calibration", "calibrations", "estimate_batch"]

CALIBRATION_DAYS = 30  # the history that calibrates: recent calls, same prompts and settings
MIN_CALLS = 5  # fewer logged calls of a model than this: use every model's calls


@dataclass(frozen=True, slots=True)
class Calibration:
    """What logged answers looked like: input tokens per prompt byte, share of max_tokens used."""

    calls: int
    tokens_per_byte: float
    output_share: float  # output tokens / max_tokens (or / the output bound when max_tokens was unset)
    source: str  # "31 logged calls of gpt-4.1"

    def expected_tokens(self, plan: CallPlan) -> tuple[int, int]:
        overhead = PER_MESSAGE_OVERHEAD * plan.size.messages + PER_REQUEST_OVERHEAD
        tokens_in = min(plan.input_bound, math.ceil(plan.size.text_bytes * self.tokens_per_byte) + overhead)
        tokens_out = min(plan.output_bound, math.ceil(plan.output_bound * self.output_share))
        return tokens_in, tokens_out


def calibrations(metering: Metering, models: Sequence[str]) -> dict[str, Calibration | None]:
    """Per model, its calibration from the last CALIBRATION_DAYS of the log (None: no history)."""
    from holysheep_lab.log import may_hold_rows, read_table

    if not may_hold_rows(metering.log_dir):
        return dict.fromkeys(models)
    start = metering.clock() - timedelta(days=CALIBRATION_DAYS)
    table = read_table(metering.log_dir, start=start, below=False,
                       columns=["model", "status", "input_tokens", "output_tokens", "input_bytes", "max_tokens",
                                "usage_missing"])
    rows = table.to_pydict()
    per: dict[str, list[tuple[int, int, int, int]]] = {}
    for model, status, tin, tout, nbytes, cap, missing in zip(
            *(rows[c] for c in ("model", "status", "input_tokens", "output_tokens", "input_bytes", "max_tokens",
                                "usage_missing")), strict=True):
        if status == "ok" and not missing and tin is not None and tout is not None and nbytes and cap:
            per.setdefault(model, []).append((tin, tout, nbytes, cap))

    def fit(samples: list[tuple[int, int, int, int]], source: str) -> Calibration:
        tin = sum(s[0] for s in samples)
        nbytes = sum(s[2] for s in samples)
        share = sum(min(1.0, s[1] / s[3]) for s in samples) / len(samples)
        return Calibration(len(samples), tin / nbytes, share, source)

    pooled = [s for samples in per.values() for s in samples]
    out: dict[str, Calibration | None] = {}
    for model in models:
        own = per.get(model, [])
        if len(own) >= MIN_CALLS:
            out[model] = fit(own, f"{len(own)} logged calls of {model}")
        elif len(pooled) >= MIN_CALLS:
            out[model] = fit(pooled, f"{len(pooled)} logged calls of other models")
        else:
            out[model] = None
    return out


def _room(lines: Sequence[Mapping[str, Any]], project: str | None) -> list[tuple[str, str, float]]:
    """(scope, window, USD left below the block limit) of every limited line the batch counts on,
    from budget-status rows (`client.budget_status()`: block_usd, spent_usd, reserved_usd)."""
    scopes = {"global", f"project:{project}"} if project else {"global"}
    return [(ln["scope"], ln["window"], ln["block_usd"] - ln["spent_usd"] - ln["reserved_usd"])
            for ln in lines if ln["block_usd"] is not None and ln["scope"] in scopes]


def estimate_batch(metering: Metering, models: Sequence[str], prompts: int, bodies: Sequence[dict[str, Any]],
                   lines: Sequence[Mapping[str, Any]], project: str | None = None) -> BatchEstimate:
    """`bodies` holds one request body per (model, prompt), model by model; `lines` the budget's
    status rows now."""
    worst: dict[str, int] = dict.fromkeys(models, 0)
    expected: dict[str, int] = dict.fromkeys(models, 0)
    cal = calibrations(metering, models)
    for body in bodies:
        plan = metering.preview(CHAT_COMPLETIONS, body)  # UnknownModelError (with a "did you mean") first
        model = body["model"]
        worst[model] += plan.estimate_nanos
        c = cal[model]
        if c is None or plan.price is None:
            expected[model] += plan.estimate_nanos
        else:
            tokens_in, tokens_out = c.expected_tokens(plan)
            expected[model] += plan.price.cost_nanos(Usage(tokens_in, tokens_out))
    room = _room(lines, project)
    out = []
    for model in models:
        w, e = worst[model] / NANOS_PER_USD, expected[model] / NANOS_PER_USD
        c = cal[model]
        fits = tuple(LineFit(scope, window, left, w <= left, e <= left) for scope, window, left in room)
        out.append(ModelEstimate(model, prompts, w, e, c.source if c is not None else "no history: worst case", fits))
    return BatchEstimate(tuple(out))
