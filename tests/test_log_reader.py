"""read_table / read_log / compact on real folders: round trip, de-dup, evolution, bad files,
pruning, time bounds, DuckDB and polars reading the same folder, and a property test."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holysheep_lab.errors import ConfigError, LogError
from holysheep_lab.log import (
    CALL_SCHEMA,
    CallRecord,
    LogReadWarning,
    LogWriter,
    compact,
    read_log,
    read_table,
)
from holysheep_lab.log import reader as reader_mod
from holysheep_lab.log.reader import scan_days

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 14, 12, 0, 0, 123456, tzinfo=UTC)


def rec(i: int, ts: datetime | None = None, **kw) -> CallRecord:
    fields = {"model": "gpt-4.1", "status": "ok", "input_tokens": 10 + i, "output_tokens": 5,
              "cost_usd": 0.001 * i, **kw}
    return CallRecord(call_id=f"call-{i:06d}", ts=ts or T0 + timedelta(seconds=i), **fields)


def write(log_dir: Path, records, roll: bool = True) -> LogWriter:
    """Log `records`; with roll=False the writer stays open (rows in its journal, as live)."""
    w = LogWriter(log_dir, roll_interval=None)
    w.append_many(records)
    if roll:
        w.close()
    return w


def orphan_journal(log_dir: Path, ids: list[int]) -> None:
    """A journal left by a process that died before rolling (its lock died with it)."""
    code = (
        "import os, sys\n"
        "from datetime import datetime, timedelta, timezone\n"
        "from holysheep_lab.log import CallRecord, LogWriter\n"
        f"w = LogWriter({str(log_dir)!r}, roll_interval=None)\n"
        f"for i in {ids!r}:\n"
        "    w.append(CallRecord(call_id=f'call-{i:06d}', model='gpt-4.1', status='ok',\n"
        "                        ts=datetime(2026, 3, 14, 12, tzinfo=timezone.utc) + timedelta(seconds=i)))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def full_record() -> CallRecord:
    return CallRecord(
        call_id="full", ts=datetime(2026, 3, 14, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5))),
        model="claude-sonnet-4.5", status="unpriced", input_tokens=1234, output_tokens=567,
        cached_input_tokens=100, reasoning_tokens=50, cost_usd=None, estimated_cost_usd=0.125,
        latency_ms=812.25, attempts=3, http_status=200, error="retried: 429\nthen ok", project="nlp",
        price_version="builtin-2026.11", cost_nanos=None, relay_cost_usd=0.0123, ttft_ms=45.5,
        stream=True, partial=True, endpoint="chat.completions", input_bytes=4096, max_tokens=1024,
        conversation_id="c0ffee", prompt="héllo \"quoted\" 🐑", completion="ok\tdone",
        input_non_ascii_bytes=3, input_messages=2,
    )


def expected_row(r: CallRecord) -> dict:
    row = r.as_row()
    row["ts"] = row["ts"].astimezone(UTC)
    return {k: row[k] for k in CALL_SCHEMA.names}


# -- round trip, types ---------------------------------------------------------------------------


@pytest.mark.parametrize("roll", [True, False], ids=["parquet", "journal"])
def test_every_column_round_trips(log_dir, roll):
    minimal = CallRecord(call_id="min", ts=T0, model="m", status="blocked", cost_usd=None,
                         estimated_cost_usd=None, cost_nanos=None, endpoint=None)
    write(log_dir, [full_record(), minimal], roll=roll)
    rows = {r["call_id"]: r for r in read_table(log_dir).to_pylist()}
    assert rows["full"] == expected_row(full_record())
    assert rows["min"] == expected_row(minimal)
    assert rows["full"]["cost_usd"] is None  # unpriced stays null, never 0


def test_read_log_is_typed_and_sorted(log_dir):
    write(log_dir, [rec(3), rec(1, http_status=500), rec(2)])
    df = read_log(log_dir)
    assert list(df.columns) == CALL_SCHEMA.names
    assert df["call_id"].tolist() == ["call-000001", "call-000002", "call-000003"]
    assert str(df["ts"].dtype) == "datetime64[us, UTC]"
    for col in ("model", "status", "project", "price_version", "endpoint"):
        assert df[col].dtype == "category", col
    assert df["input_tokens"].dtype == "int64" and df["attempts"].dtype == "int64"
    assert str(df["http_status"].dtype) == "Int64"  # nulls present: nullable
    assert df["cost_usd"].dtype == "float64" and df["stream"].dtype == "bool"
    assert df["ts"].iloc[0] == T0 + timedelta(seconds=1)


def test_empty_log_gives_an_empty_typed_frame(log_dir):
    df = read_log(log_dir)
    assert len(df) == 0 and list(df.columns) == CALL_SCHEMA.names
    assert str(df["ts"].dtype) == "datetime64[us, UTC]" and df["model"].dtype == "category"
    assert df["input_tokens"].dtype == "int64"
    assert read_table(log_dir, columns=["ts"]).schema == pa.schema([CALL_SCHEMA.field("ts")])


def test_missing_folder_or_a_file_is_a_log_error(tmp_path):
    with pytest.raises(LogError, match="does not exist"):
        read_log(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(LogError, match="is a file"):
        read_table(tmp_path / "f")


def test_columns_selects_and_validates(log_dir):
    write(log_dir, [rec(1), rec(2)])
    t = read_table(log_dir, columns=["model", "cost_usd"])
    assert t.column_names == ["model", "cost_usd"]
    assert list(read_log(log_dir, columns=["status"]).columns) == ["status"]
    with pytest.raises(ConfigError, match="no_such"):
        read_table(log_dir, columns=["no_such"])


# -- de-duplication, several writers ------------------------------------------------------------


def test_duplicates_across_parquet_and_journals_are_read_once(log_dir):
    write(log_dir, [rec(1), rec(2)])
    write(log_dir, [rec(2), rec(3)])  # a second roll of the same call (as after a crash)
    write(log_dir, [rec(3), rec(4)], roll=False)
    ids = read_table(log_dir)["call_id"].to_pylist()
    assert ids == ["call-000001", "call-000002", "call-000003", "call-000004"]


# -- schema evolution and bad files -------------------------------------------------------------


def test_old_files_with_fewer_columns_read_with_nulls(log_dir):
    folder = log_dir / "date=2026-03-13"
    folder.mkdir()
    old = pa.table({
        "call_id": ["old-1", "old-2"],
        "ts": pa.array([datetime(2026, 3, 13, 1), datetime(2026, 3, 13, 2)], pa.timestamp("ms", tz="UTC")),
        "model": ["gpt-4.1", "gpt-4.1"], "status": ["ok", "error"],
        "input_tokens": pa.array([5, 6], pa.int32()), "cost_usd": [0.5, None],
    })
    pq.write_table(old, folder / "part-legacy.parquet")
    write(log_dir, [rec(1, input_bytes=10)])
    df = read_log(log_dir)
    assert df["call_id"].tolist() == ["old-1", "old-2", "call-000001"]
    assert df["input_tokens"].tolist() == [5, 6, 11] and df["input_tokens"].dtype == "int64"
    assert str(df["output_tokens"].dtype) == "Int64" and df["output_tokens"].isna().tolist() == [True, True, False]
    assert df["input_bytes"].isna().tolist() == [True, True, False]
    assert math.isnan(df["cost_usd"].iloc[1])


def test_corrupt_and_foreign_files_warn_by_name_and_the_rest_reads(log_dir):
    write(log_dir, [rec(1), rec(2)])
    folder = next(log_dir.glob("date=*"))
    corrupt = folder / "part-corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    truncated = folder / "part-truncated.parquet"
    truncated.write_bytes(next(folder.glob("part-*-000000.parquet")).read_bytes()[:-100])
    foreign_parquet = folder / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign_parquet)
    foreign_text = log_dir / "notes.txt"
    foreign_text.write_text("hello")
    with pytest.warns(LogReadWarning) as caught:
        t = read_table(log_dir)
    assert t["call_id"].to_pylist() == ["call-000001", "call-000002"]
    messages = "\n".join(str(w.message) for w in caught)
    for path in (corrupt, truncated, foreign_parquet, foreign_text):
        assert str(path) in messages


def test_truncated_last_journal_line_is_ignored_silently(log_dir):
    write(log_dir, [rec(1), rec(2)], roll=False)
    journal = next((log_dir / "_journal").glob("*.jsonl"))
    data = journal.read_bytes()
    journal.write_bytes(data[:-20])  # a process killed in the middle of writing record 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_table(log_dir)["call_id"].to_pylist() == ["call-000001"]


def test_a_bad_line_inside_a_journal_is_skipped_with_a_warning(log_dir):
    write(log_dir, [rec(1), rec(2), rec(3)], roll=False)
    journal = next((log_dir / "_journal").glob("*.jsonl"))
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2][:30]  # record 2 damaged in the middle of the file
    journal.write_bytes(b"\n".join(lines))
    with pytest.warns(LogReadWarning, match=journal.name):
        assert read_table(log_dir)["call_id"].to_pylist() == ["call-000001", "call-000003"]


# -- time bounds and pruning --------------------------------------------------------------------


def test_date_filter_never_opens_partitions_outside_the_range(log_dir):
    days = [datetime(2026, 3, d, 12, tzinfo=UTC) for d in range(1, 11)]
    write(log_dir, [rec(i, ts=d) for i, d in enumerate(days)])
    # Corrupt every partition except 4-5 March: reading that range must not even open them.
    for folder in log_dir.glob("date=*"):
        if folder.name not in ("date=2026-03-04", "date=2026-03-05"):
            for f in folder.glob("*.parquet"):
                f.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = read_table(log_dir, start=date(2026, 3, 4), end=date(2026, 3, 5))
    assert t["ts"].to_pylist() == days[3:5]
    with pytest.warns(LogReadWarning, match="date=2026-03-06"):
        read_table(log_dir, start=date(2026, 3, 4), end=date(2026, 3, 6))


def test_ts_filter_is_pushed_to_row_groups(log_dir):
    folder = log_dir / "date=2026-03-14"
    folder.mkdir()
    hours = [datetime(2026, 3, 14, h, tzinfo=UTC) for h in range(24)]
    table = pa.table({"call_id": [f"h{h}" for h in range(24)], "ts": pa.array(hours, pa.timestamp("us", tz="UTC")),
                      "model": ["m"] * 24, "status": ["ok"] * 24})
    path = folder / "part-hours.parquet"
    pq.write_table(table, path, row_group_size=4)
    lo, hi = datetime(2026, 3, 14, 9, tzinfo=UTC), datetime(2026, 3, 14, 11, tzinfo=UTC)
    with pq.ParquetFile(path) as pf:
        assert reader_mod._row_groups(pf, lo, hi) == [2]  # hours 8-11 only
    assert read_table(log_dir, start=lo, end=hi)["call_id"].to_pylist() == ["h9", "h10"]


def test_time_bounds_dates_datetimes_and_iso_strings(log_dir):
    ts = [datetime(2026, 3, 14, 0, tzinfo=UTC), datetime(2026, 3, 14, 23, 59, 59, 999999, tzinfo=UTC),
          datetime(2026, 3, 15, 0, tzinfo=UTC)]
    write(log_dir, [rec(i, ts=t) for i, t in enumerate(ts)])

    def ids(start=None, end=None):
        return read_table(log_dir, start, end)["call_id"].to_pylist()

    everything = ["call-000000", "call-000001", "call-000002"]
    assert ids(end=date(2026, 3, 14)) == everything[:2]  # a date as end: the whole day
    assert ids(end="2026-03-14") == everything[:2]
    assert ids(end=datetime(2026, 3, 15)) == everything[:2]  # a datetime as end: exclusive; naive = UTC
    assert ids(end="2026-03-15T00:00:00Z") == everything[:2]
    assert ids(start="2026-03-15") == everything[2:]
    assert ids(start=datetime(2026, 3, 14, 23, 59, 59, 999999)) == everything[1:]
    assert ids(start=datetime(2026, 3, 15, 1, 0, tzinfo=timezone(timedelta(hours=1)))) == everything[2:]
    assert ids(start="2026-03-16") == []
    with pytest.raises(ConfigError, match="ISO"):
        read_table(log_dir, start="yesterday")


# -- the same folder through DuckDB and polars --------------------------------------------------


def test_duckdb_and_polars_read_the_folder_unchanged(log_dir):
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")
    records = [rec(i, ts=T0 + timedelta(hours=7 * i), project="a" if i % 2 else None,
                   cost_usd=None if i % 5 == 0 else 0.01 * i) for i in range(40)]
    write(log_dir, records[:25])
    write(log_dir, records[25:])
    df = read_log(log_dir)
    assert len({p.parent.name for p in log_dir.glob("date=*/*.parquet")}) > 5
    glob = str(log_dir / "**" / "*.parquet")
    con = duckdb.connect()
    n, tokens, cost, days = con.execute(
        f"select count(*), sum(input_tokens), sum(cost_usd), count(distinct date) "
        f"from read_parquet('{glob}', hive_partitioning=true)").fetchone()
    assert (n, tokens) == (len(df), df["input_tokens"].sum())
    assert cost == pytest.approx(df["cost_usd"].sum())
    assert days == df["ts"].dt.date.nunique()
    typ = con.execute(
        f"select typeof(ts), typeof(date) from read_parquet('{glob}', hive_partitioning=true) limit 1").fetchone()
    assert typ == ("TIMESTAMP WITH TIME ZONE", "DATE")
    lazy = pl.scan_parquet(glob, hive_partitioning=True)
    out = lazy.select(pl.len(), pl.col("input_tokens").sum(), pl.col("cost_usd").sum(),
                      pl.col("date").n_unique()).collect().row(0)
    assert out[:2] == (len(df), df["input_tokens"].sum())
    assert out[2] == pytest.approx(df["cost_usd"].sum()) and out[3] == days
    assert lazy.collect_schema()["ts"] == pl.Datetime("us", "UTC")


# -- compaction ----------------------------------------------------------------------------------


def test_compact_merges_small_files_drops_duplicates_and_keeps_every_row(log_dir):
    for k in range(5):
        write(log_dir, [rec(i) for i in range(k * 10, k * 10 + 12)])  # overlaps: 8 duplicates
    before = read_table(log_dir)
    assert len(list(log_dir.glob("date=*/*.parquet"))) == 5
    summary = compact(log_dir)
    assert (summary.files_merged, summary.files_written, summary.duplicates_dropped) == (5, 1, 8)
    assert "merged 5 files" in str(summary)
    assert len(list(log_dir.glob("date=*/*.parquet"))) == 1
    assert read_table(log_dir).equals(before)
    again = compact(log_dir)  # idempotent
    assert again.files_merged == 0 and read_table(log_dir).equals(before)


def test_compact_rolls_orphan_journals_leaves_live_ones_and_quarantines_damaged_ones(log_dir):
    orphan_journal(log_dir, [1, 2])
    orphan = next((log_dir / "_journal").glob("*.jsonl"))
    damaged = orphan.with_name("other-1-abcd-000000.jsonl")
    lines = orphan.read_bytes().replace(b"call-000001", b"call-000009").split(b"\n")
    lines[2] = b"{broken"  # call-000002's line
    damaged.write_bytes(b"\n".join(lines))
    live = write(log_dir, [rec(5)], roll=False)  # a live writer in this process
    with pytest.warns(LogReadWarning, match="unreadable line"):
        summary = compact(log_dir)
    assert (summary.journals_rolled, summary.journals_live, summary.journals_quarantined) == (2, 1, 1)
    left = sorted(p.name for p in (log_dir / "_journal").iterdir() if not p.name.startswith("."))
    assert left == sorted([damaged.name + ".bad", live.journal_path.name])
    assert sorted(read_table(log_dir)["call_id"].to_pylist()) == [
        "call-000001", "call-000002", "call-000005", "call-000009"]
    live.close()
    assert compact(log_dir).journals_rolled == 0
    assert len(read_table(log_dir)) == 4


def test_compact_leaves_corrupt_and_newer_files_alone(log_dir):
    write(log_dir, [rec(1)])
    write(log_dir, [rec(2)])
    folder = next(log_dir.glob("date=*"))
    (folder / "part-bad.parquet").write_bytes(b"garbage")
    newer = pa.table({"call_id": ["n1"], "ts": pa.array([T0], pa.timestamp("us", tz="UTC")),
                      "model": ["m"], "status": ["ok"], "future_column": [1]})
    pq.write_table(newer, folder / "part-newer.parquet")
    with pytest.warns(LogReadWarning):
        summary = compact(log_dir)
    assert summary.files_merged == 2 and summary.files_skipped == 2
    assert (folder / "part-bad.parquet").exists() and (folder / "part-newer.parquet").exists()
    with pytest.warns(LogReadWarning, match="part-bad"):
        assert sorted(read_table(log_dir)["call_id"].to_pylist()) == ["call-000001", "call-000002", "n1"]


# -- no pandas on the write and read_table paths ---------------------------------------------------


def test_writing_reading_tables_and_compacting_never_import_pandas(tmp_path):
    code = f"""
import sys
from datetime import datetime, timezone
from holysheep_lab.log import CallRecord, LogWriter, compact, read_table
with LogWriter({str(tmp_path / 'logs')!r}) as w:
    for i in range(20):
        w.append(CallRecord(call_id=str(i), ts=datetime(2026, 1, 1 + i % 3, tzinfo=timezone.utc),
                            model='m', status='ok'))
    w.roll()
    w.append(CallRecord(call_id='x', ts=datetime(2026, 1, 1, tzinfo=timezone.utc), model='m', status='ok'))
assert read_table({str(tmp_path / 'logs')!r}, start='2026-01-02', end='2026-01-02').num_rows == 7
assert read_table({str(tmp_path / 'logs')!r}, columns=['ts', 'model'], dictionary_columns=['model']).num_rows == 21
compact({str(tmp_path / 'logs')!r})
print('pandas' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert out.stdout.strip() == "False"


# -- property: any records round-trip ------------------------------------------------------------

_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_opt = lambda s: st.none() | s  # noqa: E731
_text = st.text(max_size=20)
_floats = st.floats(allow_nan=True, allow_infinity=True)
_records = st.builds(
    CallRecord,
    call_id=st.uuids().map(str),
    ts=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30)),
                                               timezone(timedelta(hours=14))])),
    model=_text, status=st.sampled_from(["ok", "error", "blocked", "unpriced"]),
    input_tokens=_ints, output_tokens=_ints, cached_input_tokens=_ints, reasoning_tokens=_ints,
    cost_usd=_opt(_floats), estimated_cost_usd=_opt(_floats), latency_ms=_opt(_floats),
    attempts=_ints, http_status=_opt(_ints), error=_opt(_text), project=_opt(_text),
    price_version=_opt(_text), cost_nanos=_opt(_ints), stream=st.booleans(), partial=st.booleans(),
    prompt=_opt(st.text(max_size=200)), completion=_opt(_text),
)


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records, max_size=30, unique_by=lambda r: r.call_id), st.integers(0, 30), st.booleans())
def test_any_records_round_trip(records, split, compacted):
    with tempfile.TemporaryDirectory() as tmp:
        with LogWriter(tmp, roll_interval=None) as w:
            w.append_many(records[:split])
            w.roll()
            for r in records[split:]:  # the rest in the journal, read from there
                w.append(r)
            got = read_table(tmp).to_pylist()
            if compacted:
                w.roll()
                compact(tmp)
                got = read_table(tmp).to_pylist()
        want = [expected_row(r) for r in records]
        assert sorted(g["call_id"] for g in got) == sorted(r["call_id"] for r in want)
        assert [g["ts"] for g in got] == sorted(r["ts"] for r in want)
        by_id = {g["call_id"]: g for g in got}
        for row in want:
            have = by_id[row["call_id"]]
            assert all(_same(have[k], row[k]) for k in row), (have, row)


def test_journal_header_is_plain_json(log_dir):
    write(log_dir, [rec(1)], roll=False)
    header = json.loads(next((log_dir / "_journal").glob("*.jsonl")).read_bytes().split(b"\n")[0])
    assert set(header) >= {"holysheep_journal", "writer", "seq", "host", "pid", "columns"}


# -- the low-memory read path ---------------------------------------------------------------------


def _reference_frame(log_dir, **kw):
    """What read_log returned before it read dictionaries and freed columns as it went:
    read_table, one chunk, every categorical dictionary-encoded from its strings."""
    import pandas as pd

    table = read_table(log_dir, **kw).combine_chunks()
    out = {}
    for name in table.column_names:
        column = table[name]
        if name in reader_mod.CATEGORICAL_COLUMNS:
            series = column.dictionary_encode().to_pandas()
            if len(series.cat.categories) == 0:
                series = series.cat.set_categories(pd.Index([], dtype="str"))
        elif pa.types.is_integer(column.type) and column.null_count:
            series = column.to_pandas(types_mapper={column.type: pd.Int64Dtype()}.get)
        elif pa.types.is_boolean(column.type) and column.null_count:
            series = column.to_pandas(types_mapper={column.type: pd.BooleanDtype()}.get)
        else:
            series = column.to_pandas()
        out[name] = series
    return pd.DataFrame(out)


def test_overlapping_unsorted_parts_with_duplicates_read_sorted_once(log_dir):
    import pandas as pd

    # Parts whose ts ranges interleave, rows out of order inside a part and a journal, and
    # copies of rows in other parts, in the same part and in a journal.
    write(log_dir, [rec(5, model="b"), rec(1, model="a"), rec(9, project="p"), rec(3)])
    write(log_dir, [rec(4), rec(2, model="c"), rec(3), rec(8, status="error")])
    write(log_dir, [rec(7), rec(7), rec(6, project="q"), rec(2, model="c")])
    write(log_dir, [rec(10), rec(1, model="a"), rec(0)], roll=False)
    table = read_table(log_dir)
    assert table["call_id"].to_pylist() == [f"call-{i:06d}" for i in range(11)]
    got = read_log(log_dir)
    pd.testing.assert_frame_equal(got, _reference_frame(log_dir))
    assert list(got["model"].cat.categories) == ["gpt-4.1", "a", "c", "b"]  # first appearance
    week = read_log(log_dir, start=T0 + timedelta(seconds=3), end=T0 + timedelta(seconds=7))
    pd.testing.assert_frame_equal(week, _reference_frame(log_dir, start=T0 + timedelta(seconds=3),
                                                         end=T0 + timedelta(seconds=7)))
    assert "a" not in week["model"].cat.categories  # rows filtered out leave no category behind


def test_read_log_columns_are_the_frames_own_and_writable(log_dir):
    import numpy as np
    import pandas as pd

    # Several parts (concatenated), overlapping ones (taken in order), nulls in each kind.
    write(log_dir, [rec(1, cost_usd=None), rec(3, http_status=None), rec(5)])
    write(log_dir, [rec(2), rec(4, model="b"), rec(6)])
    df = read_log(log_dir)
    df.loc[0, "cost_usd"] = 7.5
    df.loc[1, "input_tokens"] = 99
    df.loc[2, "http_status"] = 404
    df.loc[3, "ts"] = pd.Timestamp("2030-01-01", tz="UTC")
    df.loc[4, "model"] = "b"
    assert df["cost_usd"].iloc[0] == 7.5 and df["input_tokens"].iloc[1] == 99
    assert df["http_status"].iloc[2] == 404 and df["ts"].iloc[3].year == 2030 and df["model"].iloc[4] == "b"
    again = read_log(log_dir)  # nothing written above reached the log or another read
    assert np.isnan(again["cost_usd"].iloc[0]) and again["input_tokens"].iloc[1] == 12
    assert again["ts"].iloc[3].year == 2026 and again["model"].iloc[4] == "gpt-4.1"
    pd.testing.assert_frame_equal(again, _reference_frame(log_dir))


def test_same_call_at_the_same_ts_keeps_the_first_copy(log_dir):
    write(log_dir, [rec(1, model="first"), rec(2)])
    write(log_dir, [rec(1, model="second"), rec(2)])
    write(log_dir, [rec(1, model="journal")], roll=False)
    table = read_table(log_dir)
    assert table["call_id"].to_pylist() == ["call-000001", "call-000002"]
    assert table["model"].to_pylist()[0] in ("first", "second")  # Parquet before journals


def test_sorted_parts_are_not_copied(log_dir):
    write(log_dir, [rec(1), rec(2)])
    write(log_dir, [rec(3), rec(4)])
    table = read_table(log_dir)
    assert table.column("ts").num_chunks >= 2  # concatenated as read, no sort or take
    assert table["call_id"].to_pylist() == [f"call-{i:06d}" for i in (1, 2, 3, 4)]


@pytest.mark.parametrize("later_first", [False, True])
def test_sorted_parts_listed_out_of_time_order_are_not_copied(log_dir, later_first):
    # File names follow the writer (host, pid, a random tag), not time: the later part may list first.
    write(log_dir, [rec(1), rec(2)])
    (early,) = log_dir.glob("date=*/*.parquet")
    write(log_dir, [rec(3), rec(4)])
    (late,) = [p for p in log_dir.glob("date=*/*.parquet") if p != early]
    early.rename(early.with_name("part-b.parquet"))
    late.rename(late.with_name("part-a.parquet" if later_first else "part-c.parquet"))
    table = read_table(log_dir)
    assert table.column("ts").num_chunks >= 2  # put in time order, not sorted row by row
    assert table["call_id"].to_pylist() == [f"call-{i:06d}" for i in (1, 2, 3, 4)]
    assert list(read_log(log_dir)["call_id"]) == [f"call-{i:06d}" for i in (1, 2, 3, 4)]


def test_roll_types_from_append_signatures_match_a_rescan(log_dir):
    # Mixed None patterns: the column types come from the signatures seen at append time.
    records = [rec(i, http_status=None if i % 2 else 200, project=None if i % 3 else "p",
                   latency_ms=None if i % 5 else 1.5) for i in range(30)]
    write(log_dir, records)
    rows = {r["call_id"]: r for r in read_table(log_dir).to_pylist()}
    assert [rows[f"call-{i:06d}"]["http_status"] for i in range(4)] == [200, None, 200, None]
    assert [rows[f"call-{i:06d}"]["project"] for i in range(4)] == ["p", None, None, "p"]
    assert rows["call-000001"]["latency_ms"] is None and rows["call-000000"]["latency_ms"] == 1.5


# -- column selections: Arrow dictionaries, and call_ids read only for possible copies ----------


def _overlapping_parts_and_copies(log_dir: Path) -> None:
    write(log_dir, [rec(5, model="b"), rec(1, model="a"), rec(9, project="p"), rec(3)])
    write(log_dir, [rec(4), rec(2, model="c"), rec(3), rec(8, status="error")])
    write(log_dir, [rec(7), rec(7), rec(6, project="q"), rec(2, model="c")])
    write(log_dir, [rec(10), rec(1, model="a"), rec(0)], roll=False)


def _distinct_calls_at_one_instant(log_dir: Path) -> None:
    # Calls that share a ts but not an id are all kept; copies (same id and ts) once.
    write(log_dir, [rec(i, ts=T0, model=f"m{i}") for i in range(4)] + [rec(9)])
    write(log_dir, [rec(2, ts=T0, model="m2"), rec(10, ts=T0 + timedelta(days=1))])
    write(log_dir, [rec(3, ts=T0, model="m3"), rec(11, ts=T0)], roll=False)


def _sorted_days(log_dir: Path) -> None:
    write(log_dir, [rec(i, ts=T0 + timedelta(hours=6 * i)) for i in range(12)])
    write(log_dir, [rec(11, ts=T0 + timedelta(hours=66)), rec(12, ts=T0 + timedelta(hours=66))])


_SCENARIOS = [_overlapping_parts_and_copies, _distinct_calls_at_one_instant, _sorted_days]


def _nulls_in_every_kind(log_dir: Path) -> None:
    # Nulls in ints, floats, bools and strings, spread over overlapping parts and a journal.
    write(log_dir, [rec(1, cost_usd=None), rec(3, http_status=None), rec(5, model="b"), rec(7, stream=None)])
    write(log_dir, [rec(2, error="boom"), rec(4, model="c", cost_usd=None), rec(6, http_status=None)])
    write(log_dir, [rec(0, status="error"), rec(8, project="p", error="late")], roll=False)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("scenario", [_overlapping_parts_and_copies, _distinct_calls_at_one_instant,
                                      _sorted_days, _nulls_in_every_kind])
def test_the_frame_converted_range_by_range_in_threads_is_the_same(log_dir, monkeypatch, scenario, wide):
    import pandas as pd

    from holysheep_lab.log import frame

    scenario(log_dir)
    # Ranges of two rows: several ranges, so the thread pool, gathers that cross parts, and
    # (wide) the path that copies each column whole before taking its rows, with categories'
    # first appearances found by hashing instead of one compare per category.
    monkeypatch.setattr(frame, "_RANGE_ROWS", 2)
    monkeypatch.setattr(frame, "_WIDE", 0 if wide else 4)
    monkeypatch.setattr(frame, "_FEW", 0 if wide else 64)
    got = read_log(log_dir)
    pd.testing.assert_frame_equal(got, _reference_frame(log_dir))
    got.loc[0, "cost_usd"] = 1.25  # writable, as a single-range read is
    assert got["cost_usd"].iloc[0] == 1.25
    bounded = read_log(log_dir, start=T0 + timedelta(seconds=2), end=T0 + timedelta(seconds=6))
    pd.testing.assert_frame_equal(bounded, _reference_frame(log_dir, start=T0 + timedelta(seconds=2),
                                                             end=T0 + timedelta(seconds=6)))
    chosen = read_log(log_dir, columns=["ts", "model", "cost_usd"])
    pd.testing.assert_frame_equal(chosen, _reference_frame(log_dir)[["ts", "model", "cost_usd"]])


@pytest.mark.parametrize("scenario", _SCENARIOS)
def test_a_selection_without_call_id_reads_the_rows_of_the_full_read(log_dir, scenario):
    scenario(log_dir)
    full = read_table(log_dir)
    assert len(set(full["call_id"].to_pylist())) == full.num_rows
    for columns in (["ts"], ["ts", "model", "input_tokens"], ["model", "cost_usd"]):
        assert read_table(log_dir, columns=columns).to_pylist() == full.select(columns).to_pylist(), columns
    bounded = read_table(log_dir, start=T0, end=T0 + timedelta(seconds=8))
    assert read_table(log_dir, start=T0, end=T0 + timedelta(seconds=8), columns=["ts", "model"]).to_pylist() \
        == bounded.select(["ts", "model"]).to_pylist()


def test_a_part_compacted_before_its_call_ids_are_looked_up(log_dir, monkeypatch):
    write(log_dir, [rec(1), rec(2)])
    write(log_dir, [rec(2), rec(3)])  # call 2 in two parts: its copies need their ids
    parts = sorted(log_dir.glob("date=*/*.parquet"))
    load = reader_mod._Ids.load
    calls = []

    def compact_first(self):
        calls.append(self.path)
        if self.path is not None and self.path.exists():
            compact(log_dir)  # merges the two parts: the file to look the ids up in is gone
        return load(self)

    monkeypatch.setattr(reader_mod._Ids, "load", compact_first)
    table = read_table(log_dir, columns=["ts", "input_tokens"])
    assert calls and not any(p.exists() for p in parts), "the race did not happen"
    assert table.to_pylist() == [{"ts": T0 + timedelta(seconds=i), "input_tokens": 10 + i} for i in (1, 2, 3)]


def test_dictionary_columns_come_as_arrow_dictionaries(log_dir):
    folder = log_dir / "date=2026-03-13"
    folder.mkdir()
    pq.write_table(pa.table({  # an old file without the project column
        "call_id": ["old-1"], "ts": pa.array([datetime(2026, 3, 13, 1)], pa.timestamp("us", tz="UTC")),
        "model": ["old-model"], "status": ["ok"]}), folder / "part-old.parquet")
    write(log_dir, [rec(1, project="p"), rec(2, model="other")])
    write(log_dir, [rec(3, project="q")], roll=False)
    columns = ["ts", "model", "project", "input_tokens"]
    table = read_table(log_dir, columns=columns, dictionary_columns=["model", "project", "input_tokens"])
    assert pa.types.is_dictionary(table.schema.field("model").type)
    assert pa.types.is_dictionary(table.schema.field("project").type)
    assert table.schema.field("input_tokens").type == pa.int64()  # not a string column: unaffected
    assert table.to_pylist() == read_table(log_dir, columns=columns).to_pylist()
    assert table["project"].to_pylist() == [None, "p", None, "q"]
    with pytest.raises(ConfigError, match="dictionary_columns"):
        read_table(log_dir, dictionary_columns=["no_such_column"])


# -- scan_days: read_table one UTC day at a time ------------------------------------------------


@pytest.mark.parametrize("scenario", _SCENARIOS)
def test_scan_days_yields_read_table_day_by_day(log_dir, scenario):
    scenario(log_dir)
    for columns in (None, ["ts", "model"], ["cost_usd", "ts"]):
        days = list(scan_days(log_dir, columns=columns, dictionary_columns=["model"]))
        whole = read_table(log_dir, columns=columns, dictionary_columns=["model"])
        assert pa.concat_tables(days).to_pylist() == whole.to_pylist(), columns
    days = [{ts.date() for ts in t["ts"].to_pylist()} for t in scan_days(log_dir, columns=["ts"])]
    assert all(len(day) == 1 for day in days)  # one UTC day per table, each day once, in order
    assert [d for (d,) in days] == sorted({ts.date() for ts in read_table(log_dir)["ts"].to_pylist()})
    bounded = dict(start=T0 + timedelta(seconds=2), end=T0 + timedelta(days=1, seconds=1))
    assert pa.concat_tables(list(scan_days(log_dir, columns=["ts", "model"], **bounded))).to_pylist() \
        == read_table(log_dir, columns=["ts", "model"], **bounded).to_pylist()


@pytest.mark.parametrize("when", ["before_its_files_are_read", "before_call_ids_are_looked_up"])
def test_scan_days_reads_a_day_again_when_its_files_are_compacted_under_it(log_dir, monkeypatch, when):
    write(log_dir, [rec(1), rec(2)])
    write(log_dir, [rec(2), rec(3)])  # the same day, call 2 twice: its copies need their ids
    write(log_dir, [rec(4, ts=T0 + timedelta(days=1))])
    want = read_table(log_dir, columns=["ts", "input_tokens"]).to_pylist()
    parts = sorted(log_dir.glob("date=2026-03-14/*.parquet"))

    def compact_first(original):
        def run(first, *args, **kwargs):
            path = first if isinstance(first, Path) else first.path
            if path in parts and path.exists():
                compact(log_dir)  # the scan listed these files; now they are merged into a new one
            return original(first, *args, **kwargs)
        return run

    if when == "before_its_files_are_read":
        monkeypatch.setattr(reader_mod, "_read_part", compact_first(reader_mod._read_part))
    else:
        monkeypatch.setattr(reader_mod._Ids, "load", compact_first(reader_mod._Ids.load))
    got = pa.concat_tables(list(scan_days(log_dir, columns=["ts", "input_tokens"]))).to_pylist()
    assert not any(p.exists() for p in parts), "the race did not happen"
    assert got == want


def test_scan_days_missing_folder_is_a_log_error(tmp_path):
    with pytest.raises(LogError, match="No call log"):
        scan_days(tmp_path / "missing")


def test_read_log_skips_bad_files_of_a_many_file_scan_and_reads_the_rest(log_dir):
    import pandas as pd

    # Several good parts (read in one scan), an old file with fewer columns (another scan), and
    # files bad in each way: one scan failing must not lose the good files read with it.
    write(log_dir, [rec(1), rec(2)])
    write(log_dir, [rec(3, model="b"), rec(4)])
    write(log_dir, [rec(5), rec(6, cost_usd=None)])
    folder = next(log_dir.glob("date=*"))
    good = sorted(folder.glob("part-*.parquet"))
    pq.write_table(pa.table({"call_id": ["old-1"], "ts": pa.array([T0 - timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
                             "model": ["gpt-4.1"]}), folder / "part-legacy.parquet")
    damaged = folder / "part-damaged.parquet"  # its footer intact, its data not
    data = bytearray(good[0].read_bytes())
    pages_end = len(data) - 8 - int.from_bytes(data[-8:-4], "little")  # "PAR1" + pages + footer + length + "PAR1"
    data[4:pages_end] = b"\xff" * (pages_end - 4)
    damaged.write_bytes(bytes(data))
    with pytest.raises((OSError, pa.ArrowException)):
        pq.read_table(damaged)
    corrupt = folder / "part-corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    foreign = folder / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    with pytest.warns(LogReadWarning) as caught:
        df = read_log(log_dir)
    assert df["call_id"].tolist() == ["old-1", *(f"call-{i:06d}" for i in range(1, 7))]
    messages = "\n".join(str(w.message) for w in caught)
    for path in (damaged, corrupt, foreign):
        assert str(path) in messages
    for path in good:
        assert str(path) not in messages
    with pytest.warns(LogReadWarning):
        pd.testing.assert_frame_equal(df, _reference_frame(log_dir))
