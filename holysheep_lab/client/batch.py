"""Many calls at once, bounded, in order, with an exception in place of each failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from holysheep_lab.errors import BudgetExceededError, HolySheepError

if TYPE_CHECKING:
    from holysheep_lab.client.client import ChatResult, Client, Messages

__all__ = ["run_batch"]


class _Progress:
    """tqdm.auto when available (a widget in Jupyter, text elsewhere); silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, unit="call", desc="holysheep")
        self.cost = 0.0
        self.refused = 0

    def update(self, result: Any) -> None:
        if isinstance(result, BudgetExceededError):
            self.refused += 1
        elif not isinstance(result, BaseException) and result.cost_usd:
            self.cost += result.cost_usd
        if self._bar is not None:
            self._bar.set_postfix(cost=f"${self.cost:.4f}", refused=self.refused, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def run_batch(
    client: Client,
    prompts: Sequence[Messages],
    model: str,
    *,
    concurrency: int = 8,
    progress: bool = False,
    on_result: Callable[[int, Any], None] | None = None,
    **params: Any,
) -> list[ChatResult | BaseException]:
    """Results in prompt order; refusals and failures are returned, not raised.

    Cancellation (Ctrl-C through `chat_many`, a kernel interrupt, task.cancel()) cancels the
    calls in flight; each releases its reservation and is logged before this re-raises.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        from holysheep_lab.errors import ConfigError

        raise ConfigError(f"concurrency must be a whole number >= 1, not {concurrency!r}.")
    results: list[Any] = [None] * len(prompts)
    gate = asyncio.Semaphore(concurrency)
    bar = _Progress(len(prompts), progress)

    async def one(i: int, prompt: Messages) -> None:
        async with gate:
            try:
                results[i] = await client.achat(model, prompt, **params)
            except HolySheepError as exc:
                results[i] = exc
        bar.update(results[i])
        if on_result is not None:
            on_result(i, results[i])

    try:
        await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    finally:
        bar.close()
    return results
