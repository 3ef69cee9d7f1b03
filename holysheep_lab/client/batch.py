"""Many calls at once, bounded, in order, with an exception in place of each failure.

The runner knows only a coroutine function `call(prompt) -> ChatResult`: it never sees the
client, so the client can use it without an import cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from holysheep_lab.client.results import ChatResult, Messages
from holysheep_lab.errors import BudgetExceededError, ConfigError, HolySheepError

__all__ = ["Call", "run_batch"]

Call = Callable[[Messages], Awaitable[ChatResult]]


class _Progress:
    """tqdm.auto when available (a widget in Jupyter, text elsewhere); silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        self.cost = 0.0
        self.refused = 0
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, unit="call", desc="holysheep")

    def update(self, result: ChatResult | BaseException) -> None:
        if isinstance(result, BudgetExceededError):
            self.refused += 1
        elif isinstance(result, ChatResult) and result.cost_usd:
            self.cost += result.cost_usd
        if self._bar is not None:
            self._bar.set_postfix(cost=f"${self.cost:.4f}", refused=self.refused, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def run_batch(
    call: Call,
    prompts: Sequence[Messages],
    *,
    concurrency: int = 8,
    progress: bool = False,
) -> list[ChatResult | BaseException]:
    """`call` on every prompt, at most `concurrency` at a time; results in prompt order, and
    refusals and failures (HolySheepError) returned in their place, not raised.

    Cancellation (Ctrl-C through `chat_many`, a kernel interrupt, task.cancel()) cancels the
    calls in flight; each releases its reservation and is logged before this re-raises.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a whole number >= 1, not {concurrency!r}.")
    results: list[ChatResult | BaseException | None] = [None] * len(prompts)
    gate = asyncio.Semaphore(concurrency)
    bar = _Progress(len(prompts), progress)

    async def one(i: int, prompt: Messages) -> None:
        result: ChatResult | BaseException
        async with gate:
            try:
                result = await call(prompt)
            except HolySheepError as exc:
                result = exc
        results[i] = result
        bar.update(result)

    try:
        await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    finally:
        bar.close()
    return [r for r in results if r is not None]
