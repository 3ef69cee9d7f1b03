"""ipywidgets, imported on first use, with the install hint when it is missing.

The meter and the dashboard both build widgets; importing them here (not at module import)
keeps `import holysheep_lab` and `hs.BudgetMeter` free of ipywidgets until a widget is made.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import sys
import threading
from types import ModuleType
from typing import Protocol

from holysheep_lab.errors import MissingExtraError

__all__ = ["Freezable", "forget", "freeze_at_exit", "in_kernel", "require_ipywidgets"]


def require_ipywidgets() -> ModuleType:
    """The ipywidgets module, or MissingExtraError saying how to install it."""
    try:
        return importlib.import_module("ipywidgets")
    except ImportError as exc:
        raise MissingExtraError("ipywidgets", "Budget meters") from exc


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not a script or a terminal IPython); never imports IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class Freezable(Protocol):
    """A live view that can turn its notebook outputs into their static snapshot."""

    def freeze(self) -> None: ...


# Displayed views, held until they freeze: one on screen must keep refreshing even when the
# notebook kept no name for it (`display(client.meter())`).
_LIVE: dict[int, Freezable] = {}
_LIVE_LOCK = threading.Lock()
_hooked = False


def freeze_at_exit(view: Freezable) -> None:
    """At kernel shutdown or restart, `view.freeze()` unless it froze before (`forget`): its
    outputs become their HTML snapshot while the frontend still listens (the kernel sends the
    display updates before it exits), so a notebook saved afterwards shows no dead widget."""
    global _hooked  # noqa: PLW0603 - one exit hook per process
    if not in_kernel():
        return
    with _LIVE_LOCK:
        _LIVE[id(view)] = view
        if not _hooked:
            atexit.register(_freeze_all)
            _hooked = True


def forget(view: Freezable) -> None:
    """`view` froze (or closed): nothing left to do for it at exit."""
    with _LIVE_LOCK:
        _LIVE.pop(id(view), None)


def _freeze_all() -> None:
    with _LIVE_LOCK:
        views = list(_LIVE.values())
    for view in views:
        with contextlib.suppress(Exception):  # at exit, a view that cannot freeze keeps its last output
            view.freeze()
