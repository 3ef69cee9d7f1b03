"""Read a call-log folder: Parquet partitions plus the un-rolled journals of every writer.

`read_table` returns an Arrow table with the call schema (or the requested columns),
de-duplicated on `call_id` and sorted by `ts`; `read_log` returns the same as a typed pandas
DataFrame. Only the `date=` partitions that can hold rows in [start, end) are listed, and row
groups whose `ts` statistics fall outside are not read. A corrupt or foreign file is skipped
with a `LogReadWarning` that names it; the rest still reads.

Time bounds: `start` and `end` accept a date, a datetime (naive means UTC) or an ISO string
(``"2026-11-28"`` is a date, ``"2026-11-28T12:00"`` a datetime). `start` is inclusive. `end` is
exclusive for a datetime and inclusive for a date: ``end=date(2026, 11, 28)`` includes the whole
of 28 November (UTC); ``end=datetime(2026, 11, 28)`` stops at its midnight.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigError, LogError
from .schema import CALL_SCHEMA
from .writer import JOURNAL_DIR, JOURNAL_FORMAT, JOURNAL_SUFFIX, rows_to_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CATEGORICAL_COLUMNS",
    "LogReadWarning",
    "conform",
    "dedupe",
    "existing_root",
    "parse_journal",
    "partition_date",
    "read_log",
    "read_table",
    "table_to_frame",
    "time_range",
]

#: Few distinct values: categoricals in pandas (a fraction of the memory, faster group-bys).
CATEGORICAL_COLUMNS = ("model", "status", "project", "price_version", "endpoint")

_UTC = timezone.utc
_DAY = timedelta(days=1)
_RELIST_ATTEMPTS = 5  # files vanish only when `compact` merges them; its output appears first


class LogReadWarning(UserWarning):
    """A file or journal line in the log folder was unreadable or foreign and was skipped."""


# -- pure helpers ------------------------------------------------------------------------------


def _bound(value: date | datetime | str, *, is_end: bool) -> datetime:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"{'end' if is_end else 'start'}={value!r} is not an ISO date or datetime; "
                "use e.g. '2026-11-28' or '2026-11-28T12:00:00Z'."
            ) from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    if isinstance(value, date):
        day = value + _DAY if is_end else value  # a date as `end` includes that whole day
        return datetime(day.year, day.month, day.day, tzinfo=_UTC)
    raise ConfigError(f"{'end' if is_end else 'start'} must be a date, datetime or ISO string, "
                      f"not {type(value).__name__}.")


def time_range(start: date | datetime | str | None,
               end: date | datetime | str | None) -> tuple[datetime | None, datetime | None]:
    """[start, end) as aware UTC datetimes (None: unbounded). See the module doc for dates."""
    lo = None if start is None else _bound(start, is_end=False)
    hi = None if end is None else _bound(end, is_end=True)
    return lo, hi


def partition_date(name: str) -> date | None:
    """The date of a ``date=YYYY-MM-DD`` folder name, or None if it is not one."""
    if not name.startswith("date="):
        return None
    try:
        return date.fromisoformat(name[5:])
    except ValueError:
        return None


def _day_overlaps(day: date, lo: datetime | None, hi: datetime | None) -> bool:
    begin = datetime(day.year, day.month, day.day, tzinfo=_UTC)
    return (lo is None or begin + _DAY > lo) and (hi is None or begin < hi)


def parse_journal(data: bytes) -> tuple[dict[str, Any] | None, list[list[Any]], list[str]]:
    """A journal's bytes -> (header, rows, problems); header None if there is no (valid) one.

    The header holds the writer, its seq and host, and the `columns` order of the rows.

    The last line is dropped unless it ends in a newline: a process killed mid-write leaves at
    most that one line unfinished, and it was never acknowledged. Other bad lines are skipped
    and reported in `problems`.
    """
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or an unfinished line (ignored silently)
    if not lines:
        return None, [], []  # the header is not even complete: a journal being created
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    columns = header.get("columns") if isinstance(header, dict) else None
    if (not isinstance(header, dict) or header.get("holysheep_journal") != JOURNAL_FORMAT
            or not isinstance(columns, list) or "call_id" not in columns or "ts" not in columns):
        return None, [], ["not a holysheep-lab journal (unrecognised first line); skipped"]
    width, ci, ti = len(columns), columns.index("call_id"), columns.index("ts")

    def ok(row: Any) -> bool:
        return (type(row) is list and len(row) == width and type(row[ci]) is str
                and type(row[ti]) is int)

    body = lines[1:]
    try:  # one parse for the whole body is several times faster than one per line
        rows = json.loads(b"[" + b",".join(body) + b"]")
        if all(map(ok, rows)):
            return header, rows, []
    except ValueError:
        pass
    rows, bad = [], []
    for number, line in enumerate(body, start=2):
        if not line:
            continue  # the newline a writer adds after a failed write
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if ok(row):
            rows.append(row)
        else:
            bad.append(number)
    problems = [f"{len(bad)} unreadable line(s) skipped (first: line {bad[0]})"] if bad else []
    return header, rows, problems


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: cast where needed, nulls where missing.

    Raises an Arrow error if a column cannot be cast (a foreign file).
    """
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            column = table[f.name]
            arrays.append(column if column.type == f.type else column.cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def dedupe(table: pa.Table) -> pa.Table:
    """Keep the first row of each `call_id` (a crash mid-roll can leave a row twice)."""
    import pyarrow.compute as pc

    n = table.num_rows
    if n < 2 or pc.count_distinct(table["call_id"]).as_py() == n:
        return table
    # Stable sort by id; a row is a first copy where its id differs from the one before it.
    # (Arrow's group_by would do, but it imports pandas; this path stays pandas-free.)
    order = pc.sort_indices(table, sort_keys=[("call_id", "ascending")])
    ids = table["call_id"].combine_chunks().take(order)
    head = pc.equal(order.slice(0, 1), order.slice(0, 1))  # [True]
    first = pa.concat_arrays([head, pc.not_equal(ids.slice(1), ids.slice(0, n - 1))])
    keep = pc.filter(order, first)
    return table.take(pc.take(keep, pc.sort_indices(keep)))  # in the original order


def _ts_scalar(moment: datetime, ts_type: pa.DataType) -> pa.Scalar:
    # Built from a buffer: `pa.scalar` would import pandas.
    import numpy as np

    units = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[ts_type.unit]
    micros = (moment - datetime(1970, 1, 1, tzinfo=_UTC)) // timedelta(microseconds=1)
    value = micros * units // 1_000_000
    buffer = pa.py_buffer(np.array([value], dtype=np.int64))
    return pa.Array.from_buffers(ts_type, 1, [None, buffer])[0]


def _ts_filter(table: pa.Table, lo: datetime | None, hi: datetime | None) -> pa.Table:
    import pyarrow.compute as pc

    if table.num_rows == 0 or (lo is None and hi is None):
        return table
    ts_type = table.schema.field("ts").type
    mask = None
    if lo is not None:
        mask = pc.greater_equal(table["ts"], _ts_scalar(lo, ts_type))
    if hi is not None:
        below = pc.less(table["ts"], _ts_scalar(hi, ts_type))
        mask = below if mask is None else pc.and_(mask, below)
    return table.filter(mask)


# -- file access -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    table: pa.Table | None = None
    problem: str | None = None
    vanished: bool = False


def _row_groups(pf: Any, lo: datetime | None, hi: datetime | None) -> list[int]:
    """Row groups whose ts statistics may hold rows in [lo, hi)."""
    meta = pf.metadata
    everything = list(range(meta.num_row_groups))
    ts_type = pf.schema_arrow.field("ts").type
    if (lo is None and hi is None) or not pa.types.is_timestamp(ts_type):
        return everything
    paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
    ts_col = paths.index("ts")
    # Raw int64 statistics in the column's unit (decoding them as datetimes imports pandas).
    low_bound = _ts_scalar(lo, ts_type).value if lo is not None else None
    high_bound = _ts_scalar(hi, ts_type).value if hi is not None else None
    keep = []
    for g in everything:
        stats = meta.row_group(g).column(ts_col).statistics
        if stats is not None and stats.has_min_max and stats.physical_type == "INT64" and (
                (low_bound is not None and stats.max_raw < low_bound)
                or (high_bound is not None and stats.min_raw >= high_bound)):
            continue
        keep.append(g)
    return keep


def _read_part(path: Path, schema: pa.Schema, lo: datetime | None, hi: datetime | None) -> _Part:
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            names = pf.schema_arrow.names
            if "call_id" not in names or "ts" not in names:
                return _Part(problem="not a call-log file (no call_id/ts columns)")
            groups = _row_groups(pf, lo, hi)
            if not groups:
                return _Part(table=pa.Table.from_batches([], schema=schema))
            table = pf.read_row_groups(groups, columns=[c for c in schema.names if c in names])
        return _Part(table=_ts_filter(conform(table, schema), lo, hi))
    except FileNotFoundError:
        return _Part(vanished=True)
    except (pa.ArrowException, OSError) as exc:  # corrupt, truncated or foreign: skip it
        return _Part(problem=f"unreadable ({type(exc).__name__}: {str(exc)[:200]})")


def _list_parts(root: Path, lo: datetime | None, hi: datetime | None) -> tuple[list[Path], list[str]]:
    """The part files of partitions that overlap [lo, hi), and warnings for foreign entries."""
    files: list[Path] = []
    problems: list[str] = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name.startswith((".", "_")):
            continue  # our journal folder, temp files, and the _SUCCESS-style files of others
        day = partition_date(name) if entry.is_dir() else None
        if day is None:
            problems.append(f"{entry}: not part of a holysheep-lab call log; ignored")
            continue
        if not _day_overlaps(day, lo, hi):
            continue  # pruned: never opened
        for file in sorted(entry.iterdir()):
            if file.name.startswith((".", "_")):
                continue
            if file.suffix == ".parquet":  # by name: `compact` may remove it as we look
                files.append(file)
            else:
                problems.append(f"{file}: not part of a holysheep-lab call log; ignored")
    return files, problems


def _read_journals(root: Path, lo: datetime | None, hi: datetime | None,
                   columns: list[str]) -> tuple[list[pa.Table], list[str]]:
    folder = root / JOURNAL_DIR
    if not folder.is_dir():
        return [], []
    tables, problems = [], []
    for path in sorted(folder.glob(f"*{JOURNAL_SUFFIX}")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # rolled meanwhile: its rows are in Parquet, listed after this
        except OSError as exc:
            problems.append(f"{path}: unreadable ({exc.strerror or exc}); skipped")
            continue
        header, rows, found = parse_journal(data)
        problems += [f"{path}: {p}" for p in found]
        if header is None or not rows:
            continue
        table, found = rows_to_table(header["columns"], rows)
        problems += [f"{path}: {p}" for p in found]
        tables.append(_ts_filter(table.select(columns), lo, hi))
    return tables, problems


def existing_root(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path, or LogError saying why it is not a call-log folder."""
    root = Path(path)
    if not root.exists():
        raise LogError(f"No call log at {root}: the folder does not exist. Check the path "
                       "(the client's log_dir=, $HOLYSHEEP_LOG_DIR, default ./holysheep_logs).")
    if not root.is_dir():
        raise LogError(f"{root} is a file, not a call-log folder; pass the folder that holds "
                       "the date=YYYY-MM-DD partitions.")
    return root


def _columns(columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return list(CALL_SCHEMA.names)
    if isinstance(columns, str):
        columns = [columns]
    unknown = [c for c in columns if c not in CALL_SCHEMA.names]
    if unknown:
        raise ConfigError(f"Unknown call-log column(s) {unknown}; known: {', '.join(CALL_SCHEMA.names)}.")
    return list(dict.fromkeys(columns))


def read_table(path: str | os.PathLike[str], start: date | datetime | str | None = None,
               end: date | datetime | str | None = None,
               columns: Sequence[str] | None = None) -> pa.Table:
    """All calls logged under `path` in [start, end), one row per call_id, sorted by ts.

    Merges the Parquet partitions and the un-rolled journals of every writer (other processes
    too). Columns missing in old files are null. Raises LogError if `path` is not a folder.
    """
    root = existing_root(path)
    lo, hi = time_range(start, end)
    wanted = _columns(columns)
    needed = list(dict.fromkeys(["call_id", "ts", *wanted]))
    schema = pa.schema([CALL_SCHEMA.field(c) for c in needed])
    # Journals first, then Parquet: a roll renames its Parquet file before it unlinks the
    # journal, so a row missed in one listing is always found in the next.
    tables, problems = _read_journals(root, lo, hi, needed)
    seen: set[Path] = set()
    parts: list[pa.Table] = []
    for _attempt in range(_RELIST_ATTEMPTS):
        files, foreign = _list_parts(root, lo, hi)
        files = [f for f in files if f not in seen]
        if not _attempt:
            problems += foreign
        if not files:
            break
        workers = min(8, os.cpu_count() or 1, len(files))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(lambda f: _read_part(f, schema, lo, hi), files))
        else:
            results = [_read_part(f, schema, lo, hi) for f in files]
        vanished = False
        for file, result in zip(files, results, strict=True):
            seen.add(file)
            if result.table is not None:
                parts.append(result.table)
            elif result.problem:
                problems.append(f"{file}: {result.problem}; skipped")
            vanished = vanished or result.vanished
        if not vanished:
            break
    for problem in problems:
        warnings.warn(problem, LogReadWarning, stacklevel=2)
    pieces = parts + tables  # Parquet first: dedupe keeps the first copy of a row
    table = pa.concat_tables(pieces) if pieces else pa.Table.from_batches([], schema=schema)
    table = dedupe(table).sort_by("ts")
    return table.select(wanted).combine_chunks()


# -- pandas ------------------------------------------------------------------------------------


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """A typed DataFrame: ts datetime64[us, UTC]; low-cardinality strings categorical; int
    columns int64 (nullable Int64 only when they hold nulls); bools bool (or boolean)."""
    import pandas as pd

    columns = {}
    for name in table.column_names:
        column = table[name]
        kind = column.type
        if name in CATEGORICAL_COLUMNS:
            series = column.dictionary_encode().to_pandas()
            if len(series.cat.categories) == 0:  # all null: give it the same category dtype
                series = series.cat.set_categories(pd.Index([], dtype="str"))
        elif pa.types.is_integer(kind) and column.null_count:
            series = column.to_pandas(types_mapper={kind: pd.Int64Dtype()}.get)
        elif pa.types.is_boolean(kind) and column.null_count:
            series = column.to_pandas(types_mapper={kind: pd.BooleanDtype()}.get)
        else:
            series = column.to_pandas()
        columns[name] = series
    return pd.DataFrame(columns)


def read_log(path: str | os.PathLike[str], start: date | datetime | str | None = None,
             end: date | datetime | str | None = None,
             columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The call log as a pandas DataFrame sorted by ts (see `read_table` and the module doc).

    An empty log gives an empty DataFrame with the same columns and dtypes.
    """
    return table_to_frame(read_table(path, start, end, columns))
