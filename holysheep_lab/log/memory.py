"""The reader's memory: the pool its Arrow buffers come from, and handing freed pages back.

`read_log` holds the Arrow table while it builds the frame and frees the table column by
column, so its peak is the table plus what the allocator keeps of the freed columns. Each
file's column is its own buffer (a few hundred KB), so a freed column is scattered holes in
the heap that no allocator returns at once:

* jemalloc (pyarrow's default pool) returns them on a decay timer that it checks only on
  allocator events, which are rare while a frame is built: converting fast, it kept up to
  1 GB of the 10M-row table resident (peak 0.97-1.32x the table over runs);
* glibc's malloc keeps them until `malloc_trim` is called, and returns them then, at once.

So on glibc the reader allocates from the system pool and trims every `TRIM_BYTES` of freed
columns: the 10M peak was 1.04-1.06x in every run, at jemalloc's speed (bench/README.md,
"Issue 13, the reader's goals together"). Trimming after every column was slower (freed pages
that later reads would reuse are faulted in again). Elsewhere (macOS, musl) the pool is
jemalloc with a 500 ms decay.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache

import pyarrow as pa

__all__ = ["TRIM_BYTES", "Freed", "malloc_trim", "memory_pool"]

TRIM_BYTES = 512 << 20  # freed column bytes between trims
_DECAY_MS = 500  # jemalloc only: freed pages go back after this long (pyarrow's default: 1 s)

Trim = Callable[[int], object]


@cache
def malloc_trim() -> Trim | None:
    """glibc's `malloc_trim` (hands the heap's free pages back to the system), or None where
    the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # musl, or a malloc without it
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


@cache
def memory_pool() -> pa.MemoryPool:
    """The pool the reader allocates from: the system allocator where it can be trimmed,
    otherwise jemalloc with a `_DECAY_MS` decay (set once, before its arenas exist; the
    default mimalloc pool keeps every file's decode buffers, 1.5x the table)."""
    if malloc_trim() is not None:
        return pa.system_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # pragma: no cover - a pyarrow build without jemalloc
        return pa.default_memory_pool()
    pa.jemalloc_set_decay_ms(_DECAY_MS)
    return pool


class Freed:
    """Counts the bytes of the Arrow columns a conversion frees and trims the heap every
    `every` bytes. Less stays in the heap for the next allocations (the next read's decoding
    reuses it; trimming it after each read made the next read of a 3M-row log 25 % slower).
    `trim` is injectable (tests)."""

    def __init__(self, trim: Trim | None = None, every: int | None = None) -> None:
        self._trim = trim if trim is not None else malloc_trim()
        self._every = TRIM_BYTES if every is None else every
        self._pending = 0

    def add(self, nbytes: int) -> None:
        self._pending += nbytes
        if self._pending >= self._every:
            self._release()

    def _release(self) -> None:
        self._pending = 0
        if self._trim is not None:
            self._trim(0)
