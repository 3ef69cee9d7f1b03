"""LogWriter: journal format, rolling into hive-partitioned Parquet, threads, fork, bad input."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import threading
import time
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from holysheep_lab.errors import ConfigError, LogError
from holysheep_lab.log import CALL_SCHEMA, CallRecord, LogWriter, read_table
from holysheep_lab.log import writer as writer_mod

T0 = datetime(2026, 3, 14, 12, 0, 0, 123456, tzinfo=UTC)


def rec(i: int, ts: datetime | None = None, **kw) -> CallRecord:
    fields = {"model": "gpt-4.1", "status": "ok", "input_tokens": 10 + i, "output_tokens": 5,
              "cost_usd": 0.001 * i, **kw}
    return CallRecord(call_id=f"call-{i:06d}", ts=ts or T0 + timedelta(seconds=i), **fields)


def parts(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("date=*/*.parquet"))


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_record_fields_cover_the_schema():
    # The writer reads each schema column off the record by name.
    assert set(CALL_SCHEMA.names) <= {f.name for f in fields(CallRecord)}


def test_journal_is_json_lines_with_a_header_and_exact_micros(log_dir):
    w = LogWriter(log_dir)
    w.append(rec(1))
    lines = w.journal_path.read_bytes().split(b"\n")
    header, row = json.loads(lines[0]), json.loads(lines[1])
    assert header["holysheep_journal"] == 1 and header["columns"] == CALL_SCHEMA.names
    assert header["writer"] == w.name and str(os.getpid()) in w.name
    assert row[header["columns"].index("ts")] == (T0 + timedelta(seconds=1) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert lines[2] == b""  # every record ends with its newline
    w.close()


def test_journal_lives_under_the_journal_folder_and_holds_a_lock(log_dir):
    w = LogWriter(log_dir)
    path = w.journal_path
    assert path.parent == log_dir / "_journal" and path.suffix == ".jsonl"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert not writer_mod.try_lock(fd)  # a live writer's journal is locked
    finally:
        os.close(fd)
    w.close()
    assert not path.exists()  # nothing was appended: no leftovers


def test_rows_are_readable_before_any_roll(log_dir):
    with LogWriter(log_dir, roll_interval=None) as w:
        for i in range(5):
            w.append(rec(i))
        assert parts(log_dir) == []
        assert read_table(log_dir)["call_id"].to_pylist() == [f"call-{i:06d}" for i in range(5)]


def test_roll_writes_zstd_parquet_per_utc_date_atomically(log_dir):
    tz = timezone(timedelta(hours=-8))
    late = datetime(2026, 3, 14, 20, 0, tzinfo=tz)  # 2026-03-15 04:00 UTC
    w = LogWriter(log_dir)
    w.append(rec(1, ts=datetime(2026, 3, 14, 23, 59, 59, 999999, tzinfo=UTC)))
    w.append(rec(2, ts=late))
    written = w.roll()
    assert sorted(p.relative_to(log_dir).parent.name for p in written) == ["date=2026-03-14", "date=2026-03-15"]
    assert all(p.name == f"part-{w.name}-000000.parquet" for p in written)
    for p in written:
        meta = pq.ParquetFile(p).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert "date" not in pq.read_schema(p).names  # the partition lives only in the path
        assert pq.read_schema(p).equals(CALL_SCHEMA, check_metadata=False)
    assert not list(log_dir.rglob("*.tmp"))
    # The sealed journal is gone; appends continue in a fresh one.
    assert [p.name for p in (log_dir / "_journal").glob("*.jsonl")] == [w.journal_path.name]
    assert w.journal_path.name.endswith("-000001.jsonl")
    assert w.roll() == []  # nothing new
    w.close()
    assert read_table(log_dir).num_rows == 2


def test_roll_rows_rolls_in_the_background(log_dir):
    w = LogWriter(log_dir, roll_rows=10, roll_interval=None)
    for i in range(25):
        w.append(rec(i))
    # Every roll takes at least roll_rows rows, and fewer than roll_rows may stay waiting.
    wait_for(lambda: sum(pq.read_metadata(p).num_rows for p in parts(log_dir)) >= 25 - 9)
    w.close()
    assert read_table(log_dir).num_rows == 25
    assert not list((log_dir / "_journal").glob("*.jsonl"))


def test_roll_interval_uses_the_injected_clock(log_dir):
    now = [1000.0]
    w = LogWriter(log_dir, roll_interval=30.0, clock=lambda: now[0])
    w.append(rec(1))
    time.sleep(0.05)
    assert parts(log_dir) == []
    now[0] += 31
    w.append(rec(2))  # the interval passed: this append wakes the roller
    wait_for(lambda: len(parts(log_dir)) == 1)
    w.close()


def test_append_from_many_threads_and_an_event_loop(log_dir):
    w = LogWriter(log_dir, roll_rows=500)

    def worker(k: int) -> None:
        for i in range(1500):
            w.append(rec(k * 100_000 + i))

    async def logger() -> None:
        for i in range(300):
            w.append(rec(900_000 + i))
            if i % 50 == 0:
                await asyncio.sleep(0)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    asyncio.run(logger())
    for t in threads:
        t.join()
    w.close()
    ids = read_table(log_dir, columns=["call_id"])["call_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 6 * 1500 + 300


def test_append_many_and_context_manager(log_dir):
    with LogWriter(log_dir) as w:
        w.append_many(rec(i) for i in range(100))
        w.append_many([])
    assert read_table(log_dir).num_rows == 100
    with pytest.raises(LogError, match="closed"):
        w.append(rec(1000))
    w.close()  # idempotent


class Status(enum.StrEnum):
    OK = "ok"


def test_values_are_coerced_to_their_column_types(log_dir):
    odd = CallRecord(call_id="odd", ts=datetime(2026, 3, 14, 12), model="m", status=Status.OK,
                     input_tokens=np.int64(7), output_tokens=True, cached_input_tokens=3.0,
                     cost_usd=Decimal("0.25"), latency_ms=np.float32(1.5), stream=np.bool_(True))
    with LogWriter(log_dir) as w:
        w.append(odd)
    row = read_table(log_dir).to_pylist()[0]
    assert row["ts"] == datetime(2026, 3, 14, 12, tzinfo=UTC)  # naive means UTC
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == ("ok", 7, 1)
    assert (row["cached_input_tokens"], row["cost_usd"], row["latency_ms"], row["stream"]) == (3, 0.25, 1.5, True)


@pytest.mark.parametrize("bad", [
    {"input_tokens": 1.5}, {"input_tokens": "7"}, {"model": None}, {"call_id": 5},
    {"cost_usd": "0.1"}, {"ts": "2026-03-14"},
])
def test_unstorable_values_raise_before_anything_is_written(log_dir, bad):
    w = LogWriter(log_dir)
    w.append(rec(1))  # warms the fast path with a good signature
    size = w.journal_path.stat().st_size
    with pytest.raises(TypeError, match="call log column"):
        w.append(CallRecord(**{**rec(2).as_row(), **bad}))
    assert w.journal_path.stat().st_size == size
    w.close()
    assert read_table(log_dir).num_rows == 1


def test_int_too_big_for_int64_never_blocks_a_roll(log_dir):
    from holysheep_lab.log import LogWriteWarning

    w = LogWriter(log_dir)
    with pytest.raises(TypeError, match="int64"):  # checked when a record's shape is new
        w.append(rec(1, max_tokens=2**64))
    w.append(rec(2, max_tokens=5))
    # A known shape takes the fast path without range checks: the roll stores null and warns.
    w.append(rec(3, max_tokens=2**64))
    with pytest.warns(LogWriteWarning, match="max_tokens"):
        w.close()
    assert read_table(log_dir)["max_tokens"].to_pylist() == [5, None]


def test_lone_surrogate_keeps_the_row(log_dir):
    with LogWriter(log_dir) as w:
        w.append(rec(1, completion="bad \ud800 text"))
    assert read_table(log_dir)["completion"].to_pylist() == ["bad ? text"]


def test_unwritable_folder_is_a_clear_log_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # Root ignores chmod, so use paths the kernel refuses for anyone: under a regular file...
    with pytest.raises(LogError, match="writable log_dir") as err:
        LogWriter(blocker / "logs")
    assert str(blocker) in str(err.value)
    # ... and a log_dir that is itself a file.
    with pytest.raises(LogError, match="writable log_dir"):
        LogWriter(blocker)


def test_bad_settings_are_config_errors(log_dir):
    with pytest.raises(ConfigError):
        LogWriter(log_dir, roll_rows=0)
    with pytest.raises(ConfigError):
        LogWriter(log_dir, roll_interval=-1)


def test_failed_roll_keeps_rows_in_the_journal(log_dir, monkeypatch):
    w = LogWriter(log_dir, roll_interval=None)
    w.append(rec(1))

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_mod, "_write_atomic", disk_full)
    with pytest.raises(LogError, match="safe in the journal"):
        w.roll()
    assert read_table(log_dir).num_rows == 1  # still read from the sealed journal
    monkeypatch.undo()
    w.append(rec(2))
    assert len(w.roll()) == 2  # the failed batch and the new one
    w.close()
    assert read_table(log_dir).num_rows == 2
    assert not list((log_dir / "_journal").glob("*.jsonl"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_journal(log_dir):
    w = LogWriter(log_dir, roll_interval=None)
    w.append(rec(1))
    pid = os.fork()
    if pid == 0:  # child: log a few rows of its own, then leave without atexit
        code = 0
        try:
            assert w.journal_path is None
            for i in range(100, 105):
                w.append(rec(i))
            w.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    w.append(rec(2))
    w.close()
    ids = read_table(log_dir)["call_id"].to_pylist()
    assert sorted(ids) == sorted([f"call-{i:06d}" for i in (1, 2, 100, 101, 102, 103, 104)])


# -- pyarrow stays out of processes that only append ------------------------------------------


def test_appending_imports_neither_pyarrow_nor_pandas(log_dir):
    import subprocess
    import sys

    code = (
        "import sys, datetime\n"
        "import holysheep_lab.log\n"
        "from holysheep_lab.log import LogWriter, may_hold_rows\n"
        "from holysheep_lab.log.schema import CallRecord\n"
        f"w = LogWriter({str(log_dir)!r}, roll_interval=None)\n"
        "assert not may_hold_rows(w.log_dir)\n"
        "ts = datetime.datetime(2026, 3, 14, tzinfo=datetime.timezone.utc)\n"
        "w.append(CallRecord(call_id='c1', ts=ts, model='gpt-4.1', status='ok', cost_usd=0.5))\n"
        "w.append_many([CallRecord(call_id='c2', ts=ts, model='gpt-4.1', status='ok')])\n"
        "assert may_hold_rows(w.log_dir)\n"
        "dir(holysheep_lab.log)\n"
        "assert 'pyarrow' not in sys.modules, 'pyarrow imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
        "written = w.roll()\n"
        "assert len(written) == 1 and 'pyarrow' in sys.modules\n"
        "assert may_hold_rows(w.log_dir)\n"
        "w.close()\n"
        "assert 'pandas' not in sys.modules, 'pandas imported by the roll'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    assert sorted(read_table(log_dir)["call_id"].to_pylist()) == ["c1", "c2"]


def _kind(t) -> str:
    """The column kind an Arrow type stands for (the writer's kinds, seen from the Arrow side)."""
    import pyarrow as pa

    if pa.types.is_timestamp(t):
        return "ts"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    return "any"


def test_column_spec_agrees_with_the_arrow_schema():
    import pyarrow as pa

    from holysheep_lab.log import schema

    assert tuple(CALL_SCHEMA.names) == schema.COLUMN_NAMES
    assert schema.CALL_SCHEMA is CALL_SCHEMA is schema.call_schema()
    assert CALL_SCHEMA.field("ts").type == pa.timestamp("us", tz="UTC")
    for (name, kind, nullable), f in zip(schema.COLUMNS, CALL_SCHEMA, strict=True):
        assert (name, nullable) == (f.name, f.nullable)
        assert kind == _kind(f.type), name
    assert {"call_id", "ts", "model", "status"} == schema.REQUIRED_COLUMNS
    layout = writer_mod._layout()
    assert layout.kinds == tuple(_kind(f.type) for f in CALL_SCHEMA)
    assert layout.required == frozenset(i for i, f in enumerate(CALL_SCHEMA) if not f.nullable)


def test_lazy_names_of_the_log_package():
    import holysheep_lab.log as log
    from holysheep_lab.log import compact, read_log, reader, schema
    from holysheep_lab.log import read_table as rt

    assert set(log.__all__) <= set(dir(log))
    assert "CALL_SCHEMA" in dir(schema) and "CALL_SCHEMA" in schema.__all__
    assert log.read_table is rt is reader.read_table and log.read_log is read_log
    assert callable(compact) and log.compact is compact  # the function, not the submodule
    with pytest.raises(AttributeError):
        log.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        schema.no_such_name  # noqa: B018


def test_compact_stays_the_function_when_its_module_is_imported_first():
    import subprocess
    import sys

    code = ("import holysheep_lab.log.compact\n"
            "import holysheep_lab.log as log\n"
            "from holysheep_lab.log import compact\n"
            "assert callable(compact) and log.compact is compact, compact\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr


def test_may_hold_rows(log_dir):
    from holysheep_lab.log import may_hold_rows

    assert not may_hold_rows(log_dir / "missing")
    w = LogWriter(log_dir, roll_interval=None)
    assert not may_hold_rows(log_dir)  # only this writer's empty journal
    w.append(rec(1))
    assert may_hold_rows(log_dir)
    w.roll()
    assert may_hold_rows(log_dir)  # the Parquet part
    w.close()
