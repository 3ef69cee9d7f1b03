"""ipywidgets, imported on first use, with the install hint when it is missing.

The meter and the dashboard both build widgets; importing them here (not at module import)
keeps `import holysheep_lab` and `hs.BudgetMeter` free of ipywidgets until a widget is made.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from holysheep_lab.errors import MissingExtraError

__all__ = ["require_ipywidgets"]


def require_ipywidgets() -> ModuleType:
    """The ipywidgets module, or MissingExtraError saying how to install it."""
    try:
        return importlib.import_module("ipywidgets")
    except ImportError as exc:
        raise MissingExtraError("ipywidgets", "Budget meters") from exc
