"""Time-sortable unique ids: 48-bit milliseconds then 80 random bits, as 32 hex digits."""

from __future__ import annotations

import os
import random
import time

__all__ = ["new_id"]

# Seeded from the OS once per process (and again in a forked child, which would otherwise
# repeat its parent's sequence): unique across processes and machines like os.urandom, without
# a system call per id.
_random = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))
_bits = _random.getrandbits


def new_id() -> str:
    """Sorts by creation time (to the millisecond); unique across processes and machines."""
    return f"{time.time_ns() // 1_000_000:012x}{_bits(80):020x}"
