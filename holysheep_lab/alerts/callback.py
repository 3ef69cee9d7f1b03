"""CallbackChannel: the alert handed to a function of the user's."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from holysheep_lab.alerts.channel import one_line
from holysheep_lab.alerts.model import Alert
from holysheep_lab.errors import AlertDeliveryError, ConfigError

__all__ = ["CallbackChannel"]


class CallbackChannel:
    """Call `fn(alert)`; a coroutine function is awaited on the worker's loop, a plain
    function runs in a worker thread (so a slow one cannot stall other channels).

    A callback that raises is reported as a failed delivery and not retried (it may have
    had side effects); raise ``AlertDeliveryError(name, reason, retryable=True)`` to ask
    for a retry.
    """

    def __init__(self, fn: Callable[[Alert], Any], *, name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError(f"CallbackChannel needs a callable fn(alert), not {type(fn).__name__}.")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"CallbackChannel name must be a non-empty string, not {name!r}.")
        self._fn = fn
        label = getattr(fn, "__qualname__", None) or type(fn).__name__
        self.name = one_line(name or f"callback:{label}")

    async def send(self, alert: Alert) -> None:
        try:
            # An object whose __call__ is `async def` is a coroutine function too.
            if inspect.iscoroutinefunction(self._fn) or inspect.iscoroutinefunction(type(self._fn).__call__):
                await self._fn(alert)
                return
            result = await asyncio.to_thread(self._fn, alert)
            if inspect.isawaitable(result):
                await result
        except AlertDeliveryError:
            raise
        except Exception as exc:  # the user's code failed: report it as this channel's failure
            reason = f"{type(exc).__name__}: {exc}"
            raise AlertDeliveryError(self.name, reason, retryable=False) from exc

    def __repr__(self) -> str:
        return f"CallbackChannel({self.name!r})"
