"""The reader's memory (log/memory.py): freed Arrow columns go back to the system while a
frame is built, measured on the real C heap, and the conversion's wiring to it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from holysheep_lab.log import CallRecord, LogWriter, memory, read_log

LINUX = sys.platform.startswith("linux")


def test_freed_trims_every_so_many_bytes_and_keeps_the_rest_for_reuse():
    calls: list[int] = []
    freed = memory.Freed(trim=calls.append, every=100)
    freed.add(60)
    assert calls == []
    freed.add(60)  # 120 >= 100: one trim, the count starts again
    assert calls == [0]
    freed.add(99)
    assert calls == [0]
    freed.add(1)
    assert calls == [0, 0]


def test_without_malloc_trim_the_reader_uses_jemalloc_and_counts_harmlessly(monkeypatch):
    monkeypatch.setattr(memory, "malloc_trim", lambda: None)  # macOS, musl
    assert memory.memory_pool.__wrapped__().backend_name == "jemalloc"
    freed = memory.Freed(every=1)
    freed.add(1 << 40)  # nothing to call: no error, nothing trimmed


@pytest.mark.skipif(not LINUX, reason="glibc's malloc_trim is Linux's")
def test_on_linux_the_reader_uses_the_trimmable_system_pool():
    assert memory.malloc_trim() is not None, "glibc's malloc_trim not found: the reader would keep freed columns"
    assert memory.memory_pool().backend_name == "system"


TRIM_SCRIPT = """
import pyarrow as pa
from holysheep_lab.log.memory import Freed, memory_pool
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
pool = memory_pool()
b = pa.allocate_buffer(1 << 20, memory_pool=pool); del b  # glibc's mmap threshold rises past the chunks
size = 448 << 10  # a file's column of a 55k-row part
chunks = []
for _ in range(1200):
    c = pa.allocate_buffer(size, memory_pool=pool)
    memoryview(c).cast("B")[::4096] = b"\\1" * len(range(0, size, 4096))  # resident
    chunks.append(c)
before = rss()
dropped = chunks[::2]; del chunks[::2]  # every other chunk: holes between live ones
n = sum(c.size for c in dropped); del dropped
after_free = rss()
Freed(every=n).add(n)
print(n, before - after_free, before - rss())
"""


@pytest.mark.skipif(not LINUX, reason="glibc's malloc_trim is Linux's")
def test_freed_columns_scattered_in_the_heap_leave_memory_at_the_trim():
    out = subprocess.run([sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, check=True)
    freed, by_free, by_trim = map(int, out.stdout.split())
    assert by_free < freed * 0.2, "the heap's holes were returned without a trim: the test shows nothing"
    assert by_trim > freed * 0.8, f"the trim returned {by_trim} of {freed} freed bytes"


def test_read_log_hands_freed_columns_back_as_it_converts(tmp_path, monkeypatch):
    t0 = datetime(2026, 3, 14, 12, tzinfo=UTC)
    with LogWriter(tmp_path, roll_interval=None) as w:
        w.append_many([CallRecord(call_id=f"call-{i:03d}", ts=t0 + timedelta(seconds=i), model="gpt-4.1",
                                  status="ok", input_tokens=i, output_tokens=1, cost_usd=0.001 * i)
                       for i in range(50)])
    trims: list[int] = []
    monkeypatch.setattr(memory, "malloc_trim", lambda: trims.append)
    expected = read_log(tmp_path)
    assert trims == [], "a 50-row log frees far less than TRIM_BYTES"
    monkeypatch.setattr(memory, "TRIM_BYTES", 1)  # a trim after every column converted from the files
    got = read_log(tmp_path)
    pd.testing.assert_frame_equal(got, expected)
    assert len(trims) >= len(["call_id", "ts", "model", "status", "input_tokens", "output_tokens", "cost_usd"])
    assert len(trims) <= len(got.columns)
