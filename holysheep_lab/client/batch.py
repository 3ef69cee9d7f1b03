"""Many calls at once, bounded, in order, with an exception in place of each failure.

The runner knows only a coroutine function `call(prompt) -> ChatResult`: it never sees the
client, so the client can use it without an import cycle. It fills a results list the caller
owns, so what finished before an interrupt is still there (`BatchInterrupted.results`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from holysheep_lab.client.progress import BatchProgress
from holysheep_lab.client.results import ChatResult, Messages
from holysheep_lab.core.display import format_usd
from holysheep_lab.errors import BudgetExceededError, ConfigError, HolySheepError, UnknownModelError

if TYPE_CHECKING:
    from holysheep_lab.client.frames import ReadableFrame

__all__ = ["BATCH_COLUMNS", "BatchInterrupted", "Call", "Outcome", "batch_frame", "prompt_text", "run_batch"]

Call = Callable[[Messages], Awaitable[ChatResult]]
Outcome = ChatResult | BaseException

BATCH_COLUMNS = ("prompt", "text", "model", "input_tokens", "output_tokens", "cost_usd", "latency_ms", "error")


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a kernel interrupt) stopped a batch. Nothing paid for is lost:

    * `results`: one entry per prompt, in prompt order: the ChatResult or exception of every
      prompt that finished, None where it had not (its call was cancelled: reservation released,
      logged if it had been sent);
    * `resume()`: runs the unfinished prompts with the same model and options and returns the
      whole batch, as the interrupted call would have (`await exc.resume()` after `achat_many`).

    A KeyboardInterrupt, so scripts that stop on Ctrl-C still stop.
    """

    def __init__(self, results: list[Outcome | None], resume: Callable[[], Any]) -> None:
        self.results = results
        self._resume = resume
        answered = self.answered
        cost = sum(r.cost_usd or 0.0 for r in answered)
        super().__init__(
            f"Batch interrupted: {len(answered)} of {len(results)} prompts answered ({format_usd(cost)}), "
            f"{len(self.pending)} not run. exc.results holds every finished one in prompt order (None where "
            "unfinished); exc.resume() runs the rest.")

    @property
    def answered(self) -> list[ChatResult]:
        return [r for r in self.results if isinstance(r, ChatResult)]

    @property
    def pending(self) -> list[int]:
        """Positions of the prompts that did not finish."""
        return [i for i, r in enumerate(self.results) if r is None]

    def resume(self) -> Any:
        """Run the unfinished prompts; the whole batch's results (list, or frame with as_frame=True)."""
        return self._resume()


async def run_batch(
    call: Call,
    prompts: Sequence[Messages],
    *,
    concurrency: int = 8,
    progress: BatchProgress | None = None,
    results: list[Outcome | None] | None = None,
) -> list[Outcome]:
    """`call` on every prompt, at most `concurrency` at a time; results in prompt order, and
    refusals and failures (HolySheepError) returned in their place, not raised.

    With `results` (one slot per prompt) only the prompts whose slot is None run, and each
    slot is filled as its call finishes, so the caller keeps them if the batch is interrupted.
    Cancellation (Ctrl-C through `chat_many`, a kernel interrupt, task.cancel()) cancels the
    calls in flight; each releases its reservation and is logged before this re-raises.
    """
    check_concurrency(concurrency)
    slots: list[Outcome | None] = results if results is not None else [None] * len(prompts)
    if len(slots) != len(prompts):
        raise ConfigError(f"results has {len(slots)} slots for {len(prompts)} prompts.")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, prompt: Messages) -> None:
        result: Outcome
        async with gate:
            try:
                result = await call(prompt)
            except HolySheepError as exc:
                result = exc.with_traceback(None)  # returned, not raised: its frames say nothing
        slots[i] = result
        if progress is not None:
            progress.update(result)

    await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts) if slots[i] is None))
    return [r for r in slots if r is not None]


def check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a whole number >= 1, not {concurrency!r}.")
    return concurrency


def prompt_text(prompt: Messages) -> str:
    """The prompt as one string: itself, or the last user message's text of a message list."""
    if isinstance(prompt, str):
        return prompt
    messages: Sequence[Any] = [prompt] if isinstance(prompt, Mapping) else prompt
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role", "user") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping)).strip()
    return str(prompt)


def _row(prompt: Messages, result: Outcome | None, model: str) -> dict[str, Any]:
    if isinstance(result, ChatResult):
        return {"prompt": prompt_text(prompt), "text": result.text, "model": result.model,
                "input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens,
                "cost_usd": result.cost_usd if result.cost_usd is not None else math.nan,
                "latency_ms": result.latency_ms, "error": None}
    # Refused or unpriced: nothing was sent, nothing spent. Other failures may have been charged
    # (a timeout at its worst case): their cost is in the log, not known here (NaN).
    unsent = isinstance(result, (BudgetExceededError, UnknownModelError, ConfigError))
    return {"prompt": prompt_text(prompt), "text": None, "model": model,
            "input_tokens": 0 if unsent else None, "output_tokens": 0 if unsent else None,
            "cost_usd": 0.0 if unsent else math.nan, "latency_ms": None,
            "error": None if result is None else f"{type(result).__name__}: {result}"}


def batch_frame(prompts: Sequence[Messages], results: Sequence[Outcome | None], model: str) -> ReadableFrame:
    """One row per prompt, in prompt order (`BATCH_COLUMNS`); money and ms shown readably."""
    import pandas as pd

    from holysheep_lab.client.frames import ReadableFrame

    df = pd.DataFrame([_row(p, r, model) for p, r in zip(prompts, results, strict=True)], columns=list(BATCH_COLUMNS))
    for col in ("input_tokens", "output_tokens"):
        df[col] = df[col].astype("Int64")
    df["latency_ms"] = df["latency_ms"].astype("float64")
    return ReadableFrame(df)
