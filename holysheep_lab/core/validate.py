"""Checks of user settings, done at construction: each failure is a ConfigError naming the fix."""

from __future__ import annotations

import math
from typing import Any

from holysheep_lab.errors import ConfigError

__all__ = ["finite_number", "positive_int", "positive_seconds"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_number(name: str, value: Any, *, minimum: float = 0.0, inclusive: bool = True, unit: str = "") -> float:
    """`value` as a float if it is a finite number >= minimum (> minimum if not inclusive)."""
    ok = _is_number(value) and math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        what = f" {unit}" if unit else ""
        raise ConfigError(f"{name} must be a finite number{what} {bound}, not {value!r}.")
    return float(value)


def positive_seconds(name: str, value: Any) -> float:
    """A duration in seconds: finite and > 0."""
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}.")
    return float(value)


def positive_int(name: str, value: Any, *, what: str = "whole number") -> int:
    """A count: an int (not a bool) >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive {what}, not {value!r}.")
    return value
