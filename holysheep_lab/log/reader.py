"""Read call logs: Parquet partitions plus the un-rolled journals of every writer.

A path is a folder, a glob or a list of them; every call log at or below it is found
(`find_logs`: a folder with ``date=`` partitions or a ``_journal`` folder, at any depth) and
read: one log per person or machine in a team folder merges into one table, with a `source`
column naming each row's log. `read_table` returns an Arrow table with the call schema (or the
requested columns), de-duplicated on `call_id` and sorted by `ts`; `read_log` returns the same
as a typed pandas DataFrame. Only the `date=` partitions that can hold rows in [start, end) are
listed, and row groups whose `ts` statistics fall outside are not read. A corrupt or foreign
file, and a file that belongs to no log, is skipped with a `LogReadWarning` that names it; the
rest still reads.

For pandas, the files that share a schema are decoded in one pyarrow.dataset scan (the memory
pool chosen; a file the scan cannot read is read, or skipped, on its own); the rows that sort
and de-duplicate them are found once, and `frame.frame_from_table` converts the table column by
column, range by range of rows in threads, freeing each Arrow column once converted.

Time bounds: `start` and `end` accept a date, a datetime (naive means UTC) or an ISO string
(``"2026-11-28"`` is a date, ``"2026-11-28T12:00"`` a datetime). `start` is inclusive. `end` is
exclusive for a datetime and inclusive for a date: ``end=date(2026, 11, 28)`` includes the whole
of 28 November (UTC); ``end=datetime(2026, 11, 28)`` stops at its midnight.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from holysheep_lab.core.clock import to_micros
from holysheep_lab.errors import ConfigError, LogError
from holysheep_lab.log.frame import frame_from_table, take_indices
from holysheep_lab.log.memory import memory_pool
from holysheep_lab.log.schema import CALL_SCHEMA
from holysheep_lab.log.writer import JOURNAL_DIR, JOURNAL_FORMAT, JOURNAL_SUFFIX, rows_to_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CATEGORICAL_COLUMNS",
    "SOURCE_COLUMN",
    "LogPaths",
    "LogReadWarning",
    "LogSource",
    "conform",
    "dedupe",
    "existing_root",
    "find_logs",
    "parse_journal",
    "partition_date",
    "read_log",
    "read_table",
    "scan_days",
    "table_to_frame",
    "time_range",
]

#: Few distinct values: categoricals in pandas (a fraction of the memory, faster group-bys).
CATEGORICAL_COLUMNS = ("model", "status", "project", "price_version", "endpoint")

_UTC = UTC
_DAY = timedelta(days=1)
_EPOCH_DAY = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
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


def conform(table: pa.Table, schema: pa.Schema, *, fill: bool = True) -> pa.Table:
    """`table` with exactly `schema`'s columns: cast where needed, nulls where missing (or,
    with ``fill=False``, the missing ones left out).

    Raises an Arrow error if a column cannot be cast (a foreign file).
    """
    arrays = []
    have = {name: i for i, name in enumerate(table.column_names)}  # (a property: built per call)
    if not fill:
        schema = pa.schema([f for f in schema if f.name in have])
    if table.schema.equals(schema):
        return table
    for f in schema:
        if f.name in have:
            column = table.column(have[f.name])
            if column.type != f.type:
                if pa.types.is_dictionary(f.type):  # read as plain values: encode them here
                    if pa.types.is_dictionary(column.type):
                        column = column.cast(column.type.value_type)
                    column = column.cast(f.type.value_type).dictionary_encode()
                    if column.type != f.type:
                        column = column.cast(f.type)
                else:
                    column = column.cast(f.type)
            arrays.append(column)
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
    value = to_micros(moment) * units // 1_000_000
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
    groups: list[int] = field(default_factory=list)  # the row groups read


class _IdsVanished(Exception):
    """A part file read without its call_ids was compacted away before they were needed."""


#: What `_Ids` re-reads to find a part's call_ids.
_ID_SCHEMA = pa.schema([CALL_SCHEMA.field("call_id"), CALL_SCHEMA.field("ts")])


@dataclass(frozen=True, slots=True)
class _Ids:
    """Where the call_ids of a piece read without them are: kept (a journal's), or in its part
    file, re-read only if the piece holds rows that may be copies (usually never)."""

    column: pa.ChunkedArray | None = None
    path: Path | None = None
    groups: tuple[int, ...] = ()
    lo: datetime | None = None
    hi: datetime | None = None

    def load(self) -> pa.ChunkedArray:
        """The piece's call_ids, row for row (before any sort of the piece)."""
        import pyarrow.parquet as pq

        if self.column is not None:
            return self.column
        if self.path is None:
            raise LogError("A piece of the log has neither call_ids nor a file to read them from.")
        try:
            with pq.ParquetFile(self.path) as pf:
                table = pf.read_row_groups(list(self.groups), columns=list(_ID_SCHEMA.names))
        except FileNotFoundError:
            raise _IdsVanished(str(self.path)) from None
        return _ts_filter(conform(table, _ID_SCHEMA), self.lo, self.hi)["call_id"]


def _row_groups(pf: Any, lo: datetime | None, hi: datetime | None) -> list[int]:
    """Row groups of a ParquetFile whose ts statistics may hold rows in [lo, hi)."""
    return _groups(pf.metadata, pf.schema_arrow.field("ts").type, lo, hi)


def _groups(meta: Any, ts_type: pa.DataType, lo: datetime | None, hi: datetime | None) -> list[int]:
    """Row groups (of a file's metadata) whose ts statistics may hold rows in [lo, hi)."""
    everything = list(range(meta.num_row_groups))
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


@cache
def _file_format(as_dict: tuple[str, ...]) -> Any:
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    options = ds.ParquetReadOptions(dictionary_columns=list(as_dict))
    return ds.ParquetFileFormat(read_options=options), pafs.LocalFileSystem()


def _open_part(path: Path, as_dict: tuple[str, ...]) -> Any:
    """A part file to read `as_dict` columns from as dictionaries (those it has: naming one it
    lacks, as an old file may, fails)."""
    import pyarrow.parquet as pq

    if not as_dict:
        return pq.ParquetFile(path)
    try:
        return pq.ParquetFile(path, read_dictionary=as_dict)
    except KeyError:
        with pq.ParquetFile(path) as pf:
            names, metadata = pf.schema_arrow.names, pf.metadata
        return pq.ParquetFile(path, metadata=metadata, read_dictionary=[c for c in as_dict if c in names] or None)


def _read_part(path: Path, schema: pa.Schema, lo: datetime | None, hi: datetime | None,
               for_pandas: bool = False) -> _Part:
    """One part file's rows in [lo, hi) with `schema`. `for_pandas` reads through
    pyarrow.dataset, which lets the reader choose the memory pool but imports pandas."""

    # Columns wanted as dictionaries are decoded as such (never materialised as strings).
    as_dict = tuple(f.name for f in schema if pa.types.is_dictionary(f.type))
    try:
        if for_pandas:
            return _read_fragment(path, schema, lo, hi, as_dict)
        with _open_part(path, as_dict) as pf:  # the footer: columns, statistics
            names = pf.schema_arrow.names
            if "call_id" not in names or "ts" not in names:
                return _Part(problem="not a call-log file (no call_id/ts columns)")
            groups = _row_groups(pf, lo, hi)
            if groups:
                table = pf.read_row_groups(groups, columns=[c for c in schema.names if c in names])
        if not groups:
            return _Part(table=pa.Table.from_batches([], schema=schema))
        return _Part(table=_ts_filter(conform(table, schema), lo, hi), groups=groups)
    except FileNotFoundError:
        return _Part(vanished=True)
    except (pa.ArrowException, OSError) as exc:  # corrupt, truncated or foreign: skip it
        return _Part(problem=f"unreadable ({type(exc).__name__}: {str(exc)[:200]})")


def _read_fragment(path: Path, schema: pa.Schema, lo: datetime | None, hi: datetime | None,
                   as_dict: tuple[str, ...]) -> _Part:
    """`_read_part` through pyarrow.dataset (its footer read once). Columns the file lacks stay
    out: `_unify` adds nulls only for columns some other piece has, and a column no file has
    is made in pandas at once (no Arrow nulls)."""
    file_format, filesystem = _file_format(as_dict)
    whole = file_format.make_fragment(str(path), filesystem=filesystem)
    physical = whole.physical_schema
    names = physical.names
    if "call_id" not in names or "ts" not in names:
        return _Part(problem="not a call-log file (no call_id/ts columns)")
    meta = whole.metadata
    groups = _groups(meta, physical.field("ts").type, lo, hi)
    if not groups:
        return _Part(table=pa.Table.from_batches([], schema=schema))
    fragment = whole if len(groups) == meta.num_row_groups else whole.subset(row_group_ids=groups)
    table = fragment.to_table(columns=[c for c in schema.names if c in names], batch_size=1 << 22,
                              memory_pool=memory_pool())
    return _Part(table=_ts_filter(conform(table, schema, fill=False), lo, hi), groups=groups)


#: The column `read_table`/`read_log` add, when they read several logs, to name each row's log.
SOURCE_COLUMN = "source"
_SOURCE_TYPE = pa.dictionary(pa.int32(), pa.string())
_CATEGORICAL = frozenset((*CATEGORICAL_COLUMNS, SOURCE_COLUMN))
_GLOB_CHARS = frozenset("*?[")
_MAX_NAMED = 50  # unrelated files named one warning each; past that, one warning counts the rest

#: What `read_table`, `read_log` and `scan_days` accept as `path`.
LogPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass(frozen=True, slots=True)
class LogSource:
    """One call log found below the paths given: its folder, and its name in the `source`
    column (its folder relative to the path given, or to the paths' common folder)."""

    root: Path
    name: str


@dataclass(frozen=True, slots=True)
class _Found:
    logs: list[LogSource]
    problems: list[str]
    several: bool  # a list or a glob was given, or more than one log was found: add `source`


def _given(path: LogPaths) -> tuple[list[Path], list[str], bool]:
    """The folders `path` names (a folder, a glob, or a list of them), the problems of what a
    glob matched that is not a folder, and whether several were asked for."""
    import glob

    if isinstance(path, (str, os.PathLike)):
        items: list[str | os.PathLike[str]] = [path]
        several = False
    elif isinstance(path, Sequence) and path:
        items, several = list(path), True
    else:
        raise ConfigError(f"path must be a folder, a glob or a non-empty list of them, not {path!r}.")
    folders: list[Path] = []
    problems: list[str] = []
    for item in items:
        text = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
        if not isinstance(text, str):
            raise ConfigError(f"path must be a folder, a glob or a non-empty list of them, not {item!r}.")
        if isinstance(item, str) and not Path(text).exists() and _GLOB_CHARS & set(text):
            several = True
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise LogError(f"No call log at {text}: the pattern matches nothing.")
            for match in map(Path, matches):
                if match.is_dir() and partition_date(match.name) is not None:
                    problems.append(f"{match}: one day of a log; ignored (pass its log folder, "
                                    f"{match.parent}, with start= and end= to choose days)")
                elif match.is_dir():
                    folders.append(match)
                elif match.suffix == ".parquet" and partition_date(match.parent.name) is not None:
                    folders.append(match.parent.parent)  # a part file: its whole log
                else:
                    problems.append(f"{match}: not part of a holysheep-lab call log; ignored")
        else:
            folders.append(existing_root(text))
    return list(dict.fromkeys(folders)), problems, several


def _walk(folder: Path, problems: list[str], seen: set[tuple[int, int]]) -> Iterator[Path]:
    """Every folder at or below `folder` that holds a call log (`date=` partitions or a
    journal folder), in name order; files that belong to no log go to `problems`."""
    try:
        info = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append(f"{folder}: unreadable ({exc.strerror or exc}); skipped")
        return
    if (info.st_dev, info.st_ino) in seen:
        return  # a symlink back up the tree
    seen.add((info.st_dev, info.st_ino))
    is_log = False
    below: list[Path] = []
    for entry in entries:
        name = entry.name
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if name == JOURNAL_DIR and is_dir:
            is_log = True
        elif name.startswith((".", "_")):
            continue  # temp files, quarantine, and the _SUCCESS-style files of other tools
        elif is_dir and partition_date(name) is not None:
            is_log = True
        elif is_dir:
            below.append(Path(entry.path))
        else:
            problems.append(f"{entry.path}: not part of a holysheep-lab call log; ignored")
    if is_log:
        yield folder
    for sub in below:
        yield from _walk(sub, problems, seen)


def _discover(path: LogPaths) -> _Found:
    """The logs below `path` and the problems met finding them."""
    folders, problems, several = _given(path)
    roots: list[Path] = []
    walked: list[str] = []
    seen: set[tuple[int, int]] = set()
    for folder in folders:
        roots.extend(_walk(folder, walked, seen))
    roots = list(dict.fromkeys(roots))
    if len(walked) > _MAX_NAMED:
        walked = [*walked[:_MAX_NAMED], f"{len(walked) - _MAX_NAMED} more files below "
                  f"{', '.join(map(str, folders))} are not part of a call log; ignored"]
    if not folders:  # a glob that matched only files of no log
        return _Found([], problems + walked, several)
    if len(folders) == 1:
        base = Path(os.path.abspath(folders[0]))
    else:
        base = Path(os.path.commonpath([os.path.abspath(f) for f in folders]))
    logs = []
    for root in roots:
        relative = Path(os.path.abspath(root)).relative_to(base).as_posix()
        logs.append(LogSource(root, base.name if relative == "." else relative))
    return _Found(logs, problems + walked, several or len(logs) > 1)


def find_logs(path: LogPaths) -> list[LogSource]:
    """The call logs at or below `path` (a folder, a glob, or a list of them), in path order.

    A log is a folder holding ``date=YYYY-MM-DD`` partitions or a ``_journal`` folder, at any
    depth (a team folder with one log per person or machine, a log in ``data/calls``). Files
    that belong to no log are named in a `LogReadWarning`; hidden and ``_``-prefixed entries
    are ignored. Raises LogError if a path does not exist or is a file, or a glob matches nothing.
    """
    found = _discover(path)
    for problem in found.problems:
        warnings.warn(problem, LogReadWarning, stacklevel=2)
    return found.logs


def _partitions(root: Path, lo: datetime | None, hi: datetime | None) -> list[Path]:
    """The `date=` partitions of one log that overlap [lo, hi), in date order."""
    out = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        day = partition_date(entry.name)
        if day is not None and _day_overlaps(day, lo, hi) and entry.is_dir():
            out.append(Path(entry.path))
    return out


def _list_parts(root: Path, lo: datetime | None, hi: datetime | None) -> tuple[list[Path], list[str]]:
    """The part files of one log's partitions that overlap [lo, hi) (at any depth inside a
    partition, as other tools nest `key=value` folders), and warnings for foreign files."""
    files: list[Path] = []
    problems: list[str] = []
    for partition in _partitions(root, lo, hi):
        for folder, dirs, names in os.walk(partition):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            for name in sorted(names):
                if name.startswith((".", "_")):
                    continue
                file = Path(folder, name)
                if name.endswith(".parquet"):  # by name: `compact` may remove it as we look
                    files.append(file)
                else:
                    problems.append(f"{file}: not part of a holysheep-lab call log; ignored")
    return files, problems


def _read_journals(root: Path, lo: datetime | None, hi: datetime | None,
                   schema: pa.Schema) -> tuple[list[pa.Table], list[_Ids], list[str]]:
    """The journals' rows in [lo, hi) with `schema`, and their call_ids (kept aside when
    `schema` has none: a journal is small, and its ids cannot be re-read once it is rolled)."""
    folder = root / JOURNAL_DIR
    if not folder.is_dir():
        return [], [], []
    with_ids = schema if "call_id" in schema.names else pa.schema([CALL_SCHEMA.field("call_id"), *schema])
    tables, ids, problems = [], [], []
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
        rows = _ts_filter(conform(table.select(with_ids.names), with_ids), lo, hi)
        tables.append(rows if with_ids is schema else rows.select(schema.names))
        ids.append(_Ids(column=rows["call_id"]))
    return tables, ids, problems


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
    unknown = [c for c in columns if c not in CALL_SCHEMA.names and c != SOURCE_COLUMN]
    if unknown:
        raise ConfigError(f"Unknown call-log column(s) {unknown}; known: {', '.join(CALL_SCHEMA.names)}.")
    return list(dict.fromkeys(columns))


def _ts_values(column: pa.ChunkedArray | pa.Array) -> Any:
    """A non-null timestamp column as one int64 numpy array (zero-copy for one chunk)."""
    import numpy as np

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    # From the data buffer (`to_numpy` would import pandas); ts is never null.
    parts = [np.frombuffer(c.buffers()[1], dtype=np.int64, count=c.offset + len(c))[c.offset:]
             for c in chunks if len(c)]
    if not parts:
        return np.empty(0, dtype=np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _take_columns(holder: list[pa.Table], selection: Any) -> pa.Table:
    """`holder[0]` with only the rows `selection` (indices or a boolean mask) picks, built one
    column at a time so that at most one column exists twice (the input table is consumed)."""
    import pyarrow.compute as pc

    table = holder.pop()
    schema = table.schema
    columns = list(table.columns)
    del table
    indices = take_indices(selection)
    del selection
    for i, column in enumerate(columns):
        columns[i] = None  # drop our reference first
        columns[i] = pc.take(column, indices, memory_pool=memory_pool())
        del column
    return pa.Table.from_arrays(columns, schema=schema)


def _sorted_and_unique(pieces: list[pa.Table], schema: pa.Schema, ids: list[_Ids] | None = None) -> pa.Table:
    """The pieces as one table sorted by ts, one row per (call_id, ts): see `_ordered`. Copies
    nothing when the pieces are already in order and hold no copies (each part file sorted,
    the days apart); else one take per column."""
    table, selection = _ordered(pieces, schema, ids)
    return table if selection is None else _take_columns([table], selection)


def _ordered(pieces: list[pa.Table], schema: pa.Schema,
             ids: list[_Ids] | None = None) -> tuple[pa.Table, Any]:
    """The pieces concatenated (no copy), and the rows of it, in order, that make the table
    sorted by ts with one row per (call_id, ts): the same rows and order as concatenating the
    pieces, keeping each row's first copy and stable-sorting by ts. The selection is None when
    it is every row as it stands (the usual case for a log written by holysheep-lab). The list
    is emptied.

    Pieces without a call_id column come with `ids` (one per piece): the ids of the few rows
    that share a ts with another are loaded from there."""
    import numpy as np

    order = _disjoint_order(pieces)
    if order is not None:  # sorted pieces listed out of order (file names do not follow time)
        pieces[:] = [pieces[i] for i in order]
        ids = [ids[i] for i in order] if ids is not None else None
    sizes = [p.num_rows for p in pieces]
    table = pa.concat_tables(pieces) if pieces else pa.Table.from_batches([], schema=schema)
    pieces.clear()
    selection: Any = None
    same = _repeats_in_order(table["ts"])  # no sort: the repeats (rows whose ts equals the next row's)
    stamps_of: Any = None
    if same is None:  # a stable sort keeps copies (equal ts) in list order; runs of sorted pieces make it cheap
        ts = _ts_values(table["ts"])
        selection = np.argsort(ts, kind="stable")
        ts = ts[selection]
        same = np.flatnonzero(ts[1:] == ts[:-1])
        stamps_of = ts
    if not len(same):
        return table, selection
    # Copies of a row (a crash mid-roll, a read racing a roll or a compaction, a record appended
    # twice) share call_id and ts, so they sit in the same run of equal ts values, in their
    # original order: only rows of such runs are candidates, usually none.
    candidates = np.union1d(same, same + 1)
    rows = candidates if selection is None else selection[candidates]  # rows of `table`
    stamps = (_ts_values(_take_rows(table["ts"], candidates)) if stamps_of is None
              else stamps_of[candidates]).tolist()
    found = _call_ids(table, rows, sizes, ids)
    seen: set[tuple[int, str]] = set()
    drop = []
    for at, key in enumerate(zip(stamps, found, strict=True)):
        if key in seen:
            drop.append(at)
        else:
            seen.add(key)
    if not drop:
        return table, selection
    keep = np.ones(table.num_rows, dtype=bool)
    keep[candidates[drop]] = False
    return table, (np.flatnonzero(keep) if selection is None else selection[keep])


def _repeats_in_order(column: pa.ChunkedArray) -> Any:
    """The rows whose ts equals the next row's, if the column is in order (else None): one pass
    per chunk, while it is in cache, for both."""
    import numpy as np

    same_parts, offset, previous = [], 0, None
    for chunk in column.chunks:
        if not len(chunk):
            continue
        ts = _ts_values(chunk)
        later, earlier = ts[1:], ts[:-1]
        first = int(ts[0])
        if (previous is not None and first < previous) or not bool((later >= earlier).all()):
            return None
        same_parts.append(np.flatnonzero(later == earlier) + offset)
        if first == previous:
            same_parts.append(np.array([offset - 1], dtype=np.int64))
        previous, offset = int(ts[-1]), offset + len(chunk)
    return np.concatenate(same_parts) if same_parts else np.empty(0, np.int64)


def _disjoint_order(pieces: list[pa.Table]) -> list[int] | None:
    """The order of `pieces` by time when each is sorted by ts and, so ordered, none overlaps
    the next (no ts in common either, so no row can have copies in two of them and the order
    cannot change which copy is first); None when they are in order already or overlap."""
    spans: list[tuple[int, int, int]] = []  # (first ts, last ts, index) of the pieces with rows
    empty: list[int] = []
    boundaries_ok = True
    previous: int | None = None
    for i, piece in enumerate(pieces):
        chunks = [c for c in piece["ts"].chunks if len(c)]
        if not chunks:
            empty.append(i)
            continue
        first, last = _first(chunks[0]), _last(chunks[-1])
        boundaries_ok = boundaries_ok and (previous is None or previous <= first)
        previous = last
        spans.append((first, last, i))
    if boundaries_ok or len(spans) < 2:
        return None
    spans.sort()
    if any(a[1] >= b[0] for a, b in pairwise(spans)):
        return None
    if not all(_is_sorted(c) and _first(c) >= f and _last(c) <= la
               for f, la, i in spans for c in pieces[i]["ts"].chunks if len(c)):
        return None
    return [i for _, _, i in spans] + empty


def _is_sorted(chunk: pa.Array) -> bool:
    ts = _ts_values(chunk)
    return bool((ts[1:] >= ts[:-1]).all())


def _first(chunk: pa.Array) -> int:
    return int(_ts_values(chunk.slice(0, 1))[0])


def _last(chunk: pa.Array) -> int:
    return int(_ts_values(chunk.slice(len(chunk) - 1, 1))[0])


def _call_ids(table: pa.Table, rows: Any, sizes: list[int], ids: list[_Ids] | None) -> list[Any]:
    """The call_ids of these rows of the concatenated pieces (from the table, or loaded piece by
    piece from `ids`)."""
    import numpy as np

    order = np.argsort(rows, kind="stable")
    ascending = rows[order]
    out: list[Any] = [None] * len(rows)
    if ids is None:
        values = _plain(_take_rows(table["call_id"], ascending))
    else:
        starts = np.cumsum([0, *sizes])
        piece = np.searchsorted(starts, ascending, side="right") - 1
        values = []
        for k in np.unique(piece).tolist():
            values += _plain(ids[k].load().take(take_indices(ascending[piece == k] - starts[k])))
    for slot, value in zip(order.tolist(), values, strict=True):
        out[slot] = value
    return out


def _take_rows(column: pa.ChunkedArray, rows: Any) -> pa.ChunkedArray:
    """`column.take(rows)` for ascending `rows`, chunk by chunk: a take on the chunked array
    itself first concatenates every chunk, a copy of the column for a handful of rows."""
    import numpy as np

    starts = np.cumsum([0, *(len(c) for c in column.chunks)])
    which = np.searchsorted(starts, rows, side="right") - 1
    picked = [column.chunk(k).take(take_indices(rows[which == k] - starts[k])) for k in np.unique(which).tolist()]
    return pa.chunked_array(picked, type=column.type)


def _plain(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's values as Python objects (dictionary columns decoded)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values: list[Any] = column.to_pylist()
    return values


def _strings(values: Sequence[str]) -> pa.Array:
    """A string array built from its buffers (`pa.array` would import pandas)."""
    import numpy as np

    encoded = [v.encode() for v in values]
    offsets = np.cumsum([0, *map(len, encoded)]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


@dataclass(frozen=True, slots=True)
class _Sources:
    """The logs one read covers, and whether its rows get a `source` column."""

    logs: list[LogSource]
    labelled: bool

    @property
    def names(self) -> pa.Array:
        return _strings([log.name for log in self.logs])

    def label(self, table: pa.Table, code: int, names: pa.Array) -> pa.Table:
        """`table` with its log's name as the `source` column (a dictionary: no string per row)."""
        import numpy as np

        if not self.labelled:
            return table
        codes = pa.Array.from_buffers(pa.int32(), table.num_rows,
                                      [None, pa.py_buffer(np.full(table.num_rows, code, np.int32))])
        return table.append_column(pa.field(SOURCE_COLUMN, _SOURCE_TYPE), pa.DictionaryArray.from_arrays(codes, names))

    def schema(self, schema: pa.Schema) -> pa.Schema:
        return schema.append(pa.field(SOURCE_COLUMN, _SOURCE_TYPE)) if self.labelled else schema


def _read_files(files: list[Path], schema: pa.Schema, lo: datetime | None, hi: datetime | None,
                for_pandas: bool) -> list[_Part]:
    workers = min(8, os.cpu_count() or 1, len(files))
    if for_pandas and len(files) > 1:
        return _scan_files(files, schema, lo, hi, workers)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda f: _read_part(f, schema, lo, hi, for_pandas), files))
    return [_read_part(f, schema, lo, hi, for_pandas) for f in files]


@dataclass(frozen=True, slots=True)
class _Footer:
    """A part file's fragment (its row groups in range chosen), as `_scan_files` reads it."""

    fragment: Any
    physical: pa.Schema
    groups: list[int]


def _footer(path: Path, as_dict: tuple[str, ...], lo: datetime | None, hi: datetime | None) -> _Footer | None:
    """The fragment of `path` to scan, or None when `_read_fragment` must judge the file itself
    (unreadable, vanished, not a call-log file, or nothing in range)."""
    file_format, filesystem = _file_format(as_dict)
    try:
        whole = file_format.make_fragment(str(path), filesystem=filesystem)
        physical = whole.physical_schema
        if "call_id" not in physical.names or "ts" not in physical.names:
            return None
        meta = whole.metadata
        groups = _groups(meta, physical.field("ts").type, lo, hi)
    except (pa.ArrowException, OSError):
        return None
    if not groups:
        return None
    fragment = whole if len(groups) == meta.num_row_groups else whole.subset(row_group_ids=groups)
    return _Footer(fragment, physical, groups)


def _scan_files(files: list[Path], schema: pa.Schema, lo: datetime | None, hi: datetime | None,
                workers: int) -> list[_Part]:
    """`_read_part(..., for_pandas=True)` of each file, the files that share a physical schema
    decoded in one dataset scan (one scan keeps both cores busy across files; a scan per file
    pays its start-up and waits for its last column). The footers are read in threads; a file
    whose footer fails, and every file of a scan that fails (a file corrupt past its footer, or
    gone), is read on its own, which names the problem as a lone read does."""
    import pyarrow.dataset as ds

    as_dict = tuple(f.name for f in schema if pa.types.is_dictionary(f.type))
    file_format, filesystem = _file_format(as_dict)
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        footers = list(pool.map(lambda f: _footer(f, as_dict, lo, hi), files))
    parts: list[_Part | None] = [None] * len(files)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, footer in enumerate(footers):
        if footer is not None:  # by fields (hashing a schema hashes its metadata, pandas' JSON and all)
            groups.setdefault(tuple(footer.physical), []).append(i)
    for members in groups.values():
        physical = footers[members[0]].physical  # type: ignore[union-attr]
        columns = [c for c in schema.names if c in physical.names]
        dataset = ds.FileSystemDataset([footers[i].fragment for i in members],  # type: ignore[union-attr]
                                       schema=physical, format=file_format, filesystem=filesystem)
        batches: dict[str, list[pa.RecordBatch]] = {}
        try:
            for tagged in dataset.scanner(columns=columns, batch_size=1 << 22,
                                          memory_pool=memory_pool()).scan_batches():
                batches.setdefault(tagged.fragment.path, []).append(tagged.record_batch)
        except (pa.ArrowException, OSError):
            continue  # each file of it is read on its own below
        read_schema = physical if not batches else next(iter(batches.values()))[0].schema
        for i in members:
            footer = footers[i]
            assert footer is not None
            table = pa.Table.from_batches(batches.pop(str(files[i]), []), schema=read_schema)
            parts[i] = _Part(table=_ts_filter(conform(table, schema, fill=False), lo, hi), groups=footer.groups)
    return [part if part is not None else _read_part(file, schema, lo, hi, for_pandas=True)
            for file, part in zip(files, parts, strict=True)]


def _merge(sources: _Sources, lo: datetime | None, hi: datetime | None, schema: pa.Schema,
           for_pandas: bool) -> tuple[pa.Table, Any, list[str]]:
    """Every row in [lo, hi) of every log with `schema` (and `source`), as the pieces read and
    the selection that de-duplicates and sorts them (see `_ordered`), and the problems met."""
    lazy_ids = "call_id" not in schema.names
    names = sources.names
    # Journals first, then Parquet: a roll renames its Parquet file before it unlinks the
    # journal, so a row missed in one listing is always found in the next.
    tables: list[pa.Table] = []
    journal_ids: list[_Ids] = []
    problems: list[str] = []
    for code, log in enumerate(sources.logs):
        found, found_ids, found_problems = _read_journals(log.root, lo, hi, schema)
        tables += [sources.label(t, code, names) for t in found]
        journal_ids += found_ids
        problems += found_problems
    parts: list[pa.Table] = []
    part_ids: list[_Ids] = []
    for code, log in enumerate(sources.logs):
        seen: set[Path] = set()
        for _attempt in range(_RELIST_ATTEMPTS):
            files, foreign = _list_parts(log.root, lo, hi)
            files = [f for f in files if f not in seen]
            if not _attempt:
                problems += foreign
            if not files:
                break
            results = _read_files(files, schema, lo, hi, for_pandas)
            vanished = False
            for file, result in zip(files, results, strict=True):
                seen.add(file)
                if result.table is not None:
                    parts.append(sources.label(result.table, code, names))
                    part_ids.append(_Ids(path=file, groups=tuple(result.groups), lo=lo, hi=hi))
                elif result.problem:
                    problems.append(f"{file}: {result.problem}; skipped")
                vanished = vanished or result.vanished
            del results
            if not vanished:
                break
    pieces = parts + tables  # Parquet first: the first copy of a row is kept
    del parts, tables
    target = sources.schema(schema)
    if for_pandas:
        target = _unify(pieces, target)
    table, selection = _ordered(pieces, target, part_ids + journal_ids if lazy_ids else None)
    return table, selection, problems


def _unify(pieces: list[pa.Table], schema: pa.Schema) -> pa.Schema:
    """`schema` less the columns no piece has; pieces lacking some of the rest get them as
    nulls (in place). Returns the schema kept."""
    present = {name for piece in pieces if piece.num_rows for name in piece.column_names}
    present |= {"call_id", "ts", SOURCE_COLUMN}  # kept even when nothing is in range
    kept = pa.schema([f for f in schema if f.name in present]) if pieces else schema
    for i, piece in enumerate(pieces):
        if piece.schema != kept:
            pieces[i] = conform(piece, kept)
    return kept


def _schemas(columns: Sequence[str] | None, dictionaries: Collection[str]) -> tuple[list[str], pa.Schema, pa.Schema]:
    """(the columns wanted, the schema to read them without call_id, the same with call_id).

    Without call_id among the columns, its (string) column is not read: copies are found by ts,
    and only their ids are looked up (`_Ids`). `source` is no file's column: it is in the
    columns wanted, not in the schemas."""
    wanted = _columns(columns)
    unknown = [c for c in dictionaries if c not in CALL_SCHEMA.names]
    if unknown:
        raise ConfigError(f"Unknown call-log column(s) {unknown} in dictionary_columns; "
                          f"known: {', '.join(CALL_SCHEMA.names)}.")

    def schema_of(names: Sequence[str]) -> pa.Schema:
        fields = [CALL_SCHEMA.field(c) for c in dict.fromkeys(names) if c != SOURCE_COLUMN]
        return pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type))
                          if f.name in dictionaries and pa.types.is_string(f.type) else f for f in fields])

    return wanted, schema_of(["ts", *wanted]), schema_of(["call_id", "ts", *wanted])


def _sources(path: LogPaths, columns: Sequence[str] | None, wanted: list[str], *,
             below: bool = True) -> tuple[_Sources, list[str], list[str]]:
    """The logs below `path`, the columns wanted (`source` added when the read covers several
    logs and no columns were named), and the problems met finding the logs. With `below`
    False, `path` is one folder read as one log (its own partitions and journals only)."""
    found = _discover(path) if below else _one_log(path)
    labelled = SOURCE_COLUMN in wanted or (columns is None and found.several)
    if labelled and SOURCE_COLUMN not in wanted:
        wanted = [*wanted, SOURCE_COLUMN]
    return _Sources(found.logs, labelled), wanted, found.problems


def _one_log(path: LogPaths) -> _Found:
    if not isinstance(path, str | os.PathLike):
        raise LogError(f"below=False reads one log folder, not a {type(path).__name__}; pass one path.")
    folder = existing_root(path)
    return _Found([LogSource(folder, folder.name)], [], False)


def _read(path: LogPaths, start: date | datetime | str | None,
          end: date | datetime | str | None, columns: Sequence[str] | None, *,
          dictionaries: Collection[str], for_pandas: bool, below: bool = True) -> tuple[pa.Table, Any]:
    """The rows read and the selection that sorts and de-duplicates them (see `_ordered`)."""
    lo, hi = time_range(start, end)
    wanted, lean, with_ids = _schemas(columns, dictionaries)
    sources, wanted, problems = _sources(path, columns, wanted, below=below)
    try:
        table, selection, found = _merge(sources, lo, hi, lean, for_pandas)
    except _IdsVanished:  # compacted meanwhile: read again, the ids with the rest
        table, selection, found = _merge(sources, lo, hi, with_ids, for_pandas)
    for problem in problems + found:
        warnings.warn(problem, LogReadWarning, stacklevel=3)
    if table.column_names != wanted:
        table = table.select([c for c in wanted if c in table.column_names])  # for pandas: those some file has
    return table, selection


def _day_number(day: date) -> int:
    return (day - _EPOCH_DAY).days


def _journal_days(tables: list[pa.Table], ids: list[_Ids]) -> dict[int, list[tuple[pa.Table, _Ids]]]:
    """The journals' rows split by UTC day of ts, each piece with its call_ids."""
    import numpy as np

    out: dict[int, list[tuple[pa.Table, _Ids]]] = {}
    for table, table_ids in zip(tables, ids, strict=True):
        days = _ts_values(table["ts"]) // _US_PER_DAY
        column = table_ids.load()
        for day in np.unique(days).tolist():
            rows = take_indices(days == day)
            out.setdefault(day, []).append((table.take(rows), _Ids(column=column.take(rows))))
    return out


def scan_days(path: LogPaths, start: date | datetime | str | None = None,
              end: date | datetime | str | None = None, columns: Sequence[str] | None = None, *,
              dictionary_columns: Sequence[str] = ()) -> Iterator[pa.Table]:
    """The calls of `read_table` (same arguments), one table per UTC day, in day order.

    For scans that need not hold the whole log at once (sums, counts): while one day is used,
    the next days' files are read in the background, and memory holds a few days. The same
    logs, files, journals, pruning, warnings and de-duplication as `read_table` (copies of a
    call share its ts, so its day, and are dropped within the day), and each table is sorted by
    ts: for a log written by holysheep-lab, the tables concatenated are `read_table`'s.
    Raises LogError if `path` is not a folder (or a glob matches nothing).
    """
    lo, hi = time_range(start, end)
    wanted, lean, with_ids = _schemas(columns, frozenset(dictionary_columns))
    sources, wanted, problems = _sources(path, columns, wanted)
    return _scan(sources, lo, hi, wanted, lean, with_ids, problems)


def _scan(sources: _Sources, lo: datetime | None, hi: datetime | None, wanted: list[str], lean: pa.Schema,
          with_ids: pa.Schema, problems: list[str]) -> Iterator[pa.Table]:
    from collections import deque
    from concurrent.futures import Future

    names = sources.names
    # Journals first, then Parquet (see `_merge`).
    tables: list[pa.Table] = []
    ids: list[_Ids] = []
    for code, log in enumerate(sources.logs):
        found, found_ids, found_problems = _read_journals(log.root, lo, hi, lean)
        tables += [sources.label(t, code, names) for t in found]
        ids += found_ids
        problems = problems + found_problems
    journal = _journal_days(tables, ids)
    del tables, ids
    by_day: dict[int, list[tuple[Path, int]]] = {}
    for code, log in enumerate(sources.logs):
        files, foreign = _list_parts(log.root, lo, hi)
        problems = problems + foreign
        for file in files:
            folder_day = next((d for d in map(partition_date, file.relative_to(log.root).parts) if d), None)
            if folder_day is not None:
                by_day.setdefault(_day_number(folder_day), []).append((file, code))
    for problem in problems:
        warnings.warn(problem, LogReadWarning, stacklevel=3)
    queue = iter([f for d in sorted(by_day) for f in by_day[d]])
    workers = min(8, os.cpu_count() or 1)
    schema = sources.schema(lean)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[Path, int, Future[_Part]]] = deque()

        def fill() -> None:  # a few files ahead of the day in use, so memory stays at a few days
            while len(pending) < 4 * workers and (item := next(queue, None)) is not None:
                pending.append((item[0], item[1], pool.submit(_read_part, item[0], lean, lo, hi)))

        fill()
        for day in sorted(set(by_day) | set(journal)):
            pieces: list[pa.Table] = []
            piece_sources: list[_Ids] = []
            vanished = False
            for _ in by_day.get(day, ()):
                file, code, future = pending.popleft()
                fill()
                result = future.result()
                if result.table is not None:
                    pieces.append(sources.label(result.table, code, names))
                    piece_sources.append(_Ids(path=file, groups=tuple(result.groups), lo=lo, hi=hi))
                elif result.problem:
                    warnings.warn(f"{file}: {result.problem}; skipped", LogReadWarning, stacklevel=3)
                vanished = vanished or result.vanished
            if vanished:  # compacted as we read: the merged file is in the same partition
                yield _day_again(sources, day, lo, hi, wanted, with_ids)
                continue
            for piece, piece_ids in journal.pop(day, ()):
                pieces.append(piece)
                piece_sources.append(piece_ids)
            try:
                table = _sorted_and_unique(pieces, schema, piece_sources)
            except _IdsVanished:
                table = _day_again(sources, day, lo, hi, wanted, with_ids)
            yield table if table.column_names == wanted else table.select(wanted)


def _day_again(sources: _Sources, day: int, lo: datetime | None, hi: datetime | None, wanted: list[str],
               schema: pa.Schema) -> pa.Table:
    """One UTC day read as `read_table` reads (journals, listing, ids and all), for a day whose
    files changed under the scan."""
    begin = datetime(1970, 1, 1, tzinfo=_UTC) + day * _DAY
    table, selection, problems = _merge(sources, max(begin, lo) if lo else begin,
                                        min(begin + _DAY, hi) if hi else begin + _DAY, schema, for_pandas=False)
    for problem in problems:
        warnings.warn(problem, LogReadWarning, stacklevel=4)
    table = table.select(wanted)
    return table if selection is None else _take_columns([table], selection)


def read_table(path: LogPaths, start: date | datetime | str | None = None,
               end: date | datetime | str | None = None,
               columns: Sequence[str] | None = None, *,
               dictionary_columns: Sequence[str] = (), below: bool = True) -> pa.Table:
    """All calls logged at or below `path` in [start, end), one row per call_id, sorted by ts.

    `path` is a folder, a glob (``"team/*/calls"``) or a list of them; every call log below it
    is read (`find_logs`: ``date=`` partitions and journals, at any depth). Reading more than
    one log (or a list or a glob) adds a last column `source`, the name of each row's log (its
    folder relative to the path given), unless `columns` are named (name ``"source"`` among
    them to have it). A call found in several logs is read once (its first copy).

    Merges the Parquet partitions and the un-rolled journals of every writer (other processes
    too). Columns missing in old files are null. Raises LogError if `path` is not a folder.
    The table may be chunked (one chunk per file or so); `combine_chunks()` if you need one.
    String columns named in `dictionary_columns` come as Arrow dictionaries, decoded as such
    from Parquet (no string per row: fast to read and to group by); others are unaffected.
    With `below` False, `path` is one folder read as one log, without the logs in its
    subfolders (a client's own log: its budget is its own log's spend).
    """
    table, selection = _read(path, start, end, columns, dictionaries=frozenset(dictionary_columns),
                             for_pandas=False, below=below)
    return table if selection is None else _take_columns([table], selection)


# -- pandas ------------------------------------------------------------------------------------


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """A typed DataFrame: ts datetime64[us, UTC]; low-cardinality strings categorical; int
    columns int64 (nullable Int64 only when they hold nulls); bools bool (or boolean)."""
    return frame_from_table([table], categorical=_CATEGORICAL)


def read_log(path: LogPaths, start: date | datetime | str | None = None,
             end: date | datetime | str | None = None,
             columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The call logs at or below `path` (a folder, a glob or a list of them) as a pandas
    DataFrame sorted by ts: every log found, merged, with a categorical `source` column when
    there are several (see `read_table` and the module doc).

    An empty log gives an empty DataFrame with the same columns and dtypes. Low-cardinality
    columns are read from Parquet as dictionaries, and the Arrow table is freed column by column
    as it is converted.
    """
    wanted = _columns(columns)
    table, selection = _read(path, start, end, columns, dictionaries=CATEGORICAL_COLUMNS, for_pandas=True)
    if SOURCE_COLUMN in table.column_names and SOURCE_COLUMN not in wanted:
        wanted.append(SOURCE_COLUMN)
    fields = [pa.field(SOURCE_COLUMN, _SOURCE_TYPE) if c == SOURCE_COLUMN else CALL_SCHEMA.field(c) for c in wanted]
    holder = [table]
    del table  # `frame_from_table` frees the Arrow columns as it converts them: no reference may stay here
    return frame_from_table(holder, fields, selection, categorical=_CATEGORICAL)
