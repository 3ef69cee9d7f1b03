"""A private event-loop thread, so sync code can run coroutines even inside Jupyter.

Jupyter's kernel already runs a loop in the main thread; patching it (nest_asyncio, now
archived) is fragile. Instead one daemon thread runs one loop for the process, and sync
callers wait on it. Ctrl-C / kernel interrupts cancel the task and wait for its clean-up,
so reservations are released and answered calls logged before the interrupt propagates.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["loop_thread", "run_sync"]

T = TypeVar("T")


class _LoopThread:
    """The one loop and the daemon thread that runs it, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.loop is None or self.loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self.thread = threading.Thread(target=run, name="holysheep-loop", daemon=True)
                self.thread.start()
                ready.wait()
                self.loop = loop
            return self.loop


_private = _LoopThread()


def loop_thread() -> asyncio.AbstractEventLoop:
    """The process's private loop (started on first use)."""
    return _private.get()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the private loop and wait for it; safe to call from any thread.

    On Ctrl-C the task is cancelled and this waits until the coroutine has actually finished
    (a cancelled future reports done at once, before the task's clean-up has run). The
    coroutine sees the caller's context variables.
    """
    loop = loop_thread()
    if threading.current_thread() is _private.thread:
        raise RuntimeError("run_sync was called from the private loop itself; await the coroutine instead.")
    finished = threading.Event()
    caller = contextvars.copy_context()

    async def runner() -> T:
        # The caller's context variables (an experiment's budget scope) hold in this task too,
        # set here in the task's own context, whatever context the loop thread schedules it in.
        for var, value in caller.items():
            var.set(value)
        try:
            return await coro
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(runner(), loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        finished.wait(30)  # reservations released, answered calls logged
        raise
