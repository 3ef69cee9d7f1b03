"""Time-sortable unique ids: 48-bit milliseconds then 80 random bits, as 32 hex digits."""

from __future__ import annotations

import os
import time

__all__ = ["new_id"]


def new_id() -> str:
    """Sorts by creation time (to the millisecond); unique across processes and machines."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
