"""The call-log writer: an append-only journal per writer, rolled into immutable Parquet.

Layout of a log folder::

    LOG_DIR/
      _journal/<host>-<pid>-<rand>-<seq>.jsonl     one live journal per writer (flock-ed)
      date=2026-11-28/part-<writer>-<seq>.parquet  immutable, zstd, hive-partitioned by UTC date

Journal format (JSON lines, stdlib `json`): the first line is a header object
``{"holysheep_journal": 1, "writer": ..., "seq": ..., "host": ..., "pid": ..., "columns": [...]}``;
every further line is one JSON array of values in the header's column order, with `ts` as
integer microseconds since the Unix epoch (exact), null for None. One `os.write` per record (no
fsync), so a SIGKILL loses nothing that `append` returned True for; a killed process can leave only
a last line without its newline, which readers ignore.

A full or read-only disk never drops a row: a record whose write fails is kept in memory
(`append` returns False) and written before the next append, at the next roll or at close, once
the disk takes it again. `check_room` lets a caller refuse work before it is paid for when the
disk cannot take its row (kept rows still failing, or less than `min_free_bytes` free).

Rolling seals the current journal (appends go on into a fresh one), writes its rows as one
Parquet file per UTC date to a hidden temp name, fsyncs, renames atomically, fsyncs the folder,
and only then unlinks the journal. A crash at any point leaves the rows in the journal, in
Parquet, or in both; readers de-duplicate on `call_id`. Part names are deterministic
(writer + seq), so rolling the same journal again (by `compact`) overwrites, never multiplies.
"""

from __future__ import annotations

import atexit
import enum
import json
import numbers
import operator
import os
import re
import secrets
import shutil
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holysheep_lab.errors import ConfigError, LogError
from holysheep_lab.log.schema import (
    COLUMN_KINDS,
    COLUMN_NAMES,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
    CallRecord,
    call_schema,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "Disk",
    "JOURNAL_DIR",
    "JOURNAL_FORMAT",
    "JOURNAL_SUFFIX",
    "LogWriteWarning",
    "LogWriter",
    "MIN_FREE_BYTES",
    "ROOM_RECHECK_S",
    "build_array",
    "columns_to_table",
    "fsync_dir",
    "host_tag",
    "journal_header",
    "may_hold_rows",
    "micros_to_datetime",
    "normalise_values",
    "part_name",
    "rows_to_table",
    "safe_name",
    "to_micros",
    "try_lock",
    "write_parts",
]

JOURNAL_DIR = "_journal"
JOURNAL_SUFFIX = ".jsonl"
JOURNAL_FORMAT = 1

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_US = timedelta(microseconds=1)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Compact separators keep lines short; allow_nan keeps NaN/inf floats as they were.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_MAX_SIGNATURES = 512
#: `check_room` asks the disk again after this many seconds (or once the bytes it said were
#: free are written): one statvfs a second at most, not one per call.
ROOM_RECHECK_S = 1.0
#: A writer refuses new work (`check_room`) when its folder's disk has less than this free:
#: room for thousands of rows and a roll into Parquet.
MIN_FREE_BYTES = 4 * 1024 * 1024


class LogWriteWarning(UserWarning):
    """A value could not be stored in its column (set to null) or a background roll failed."""


# -- pure helpers ------------------------------------------------------------------------------


def to_micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch, exactly; a naive datetime is taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=_UTC)
    return (ts - _EPOCH) // _US


def micros_to_datetime(us: int) -> datetime:
    """The UTC datetime of `us` microseconds since the epoch (inverse of `to_micros`)."""
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each schema column comes from and what Python type it must hold."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]  # int | float | bool | str | ts | any
    required: frozenset[int]  # indexes of non-nullable columns
    ts_index: int
    getter: Callable[[CallRecord], tuple[Any, ...]]


@cache
def _layout() -> _Layout:
    # From the plain column spec, not the Arrow schema: appending never imports pyarrow.
    names = COLUMN_NAMES
    return _Layout(
        names=names,
        kinds=COLUMN_KINDS,
        required=frozenset(i for i, name in enumerate(names) if name in REQUIRED_COLUMNS),
        ts_index=names.index("ts"),
        getter=operator.attrgetter(*names),
    )


def normalise_values(values: Sequence[Any], kinds: Sequence[str], names: Sequence[str],
                     required: frozenset[int] = frozenset()) -> tuple[list[Any], bool]:
    """Coerce one record's values to the JSON types of their columns (ts -> int micros).

    Returns the values and whether anything had to change. Raises TypeError naming the column
    for a value that has no faithful representation (rather than logging a wrong number).
    """
    out = list(values)
    changed = False
    for i, (v, kind) in enumerate(zip(values, kinds, strict=True)):
        if v is None:
            if i in required:
                raise TypeError(f"call log column {names[i]!r} must not be None")
            continue
        t = type(v)
        if kind == "int":
            if t is int:
                new: Any = v
            elif (isinstance(v, float) and v.is_integer()) or isinstance(v, numbers.Integral):
                new = int(v)
            else:
                raise TypeError(f"call log column {names[i]!r} needs an int, got {t.__name__} {v!r}")
            if not _INT64_MIN <= new <= _INT64_MAX:
                raise TypeError(f"call log column {names[i]!r}: {new} does not fit in int64")
        elif kind == "float":
            if t is float or t is int:
                new = v
            elif isinstance(v, numbers.Real | Decimal) and not isinstance(v, bool):
                new = float(v)
            else:
                raise TypeError(f"call log column {names[i]!r} needs a float, got {t.__name__} {v!r}")
        elif kind == "bool":
            if t is bool:
                new = v
            elif getattr(getattr(v, "dtype", None), "kind", None) == "b":  # numpy bool scalar
                new = bool(v)
            else:
                raise TypeError(f"call log column {names[i]!r} needs a bool, got {t.__name__} {v!r}")
        elif kind == "str":
            if t is str:
                new = v
            elif isinstance(v, enum.Enum) and isinstance(v.value, str):
                new = v.value
            elif isinstance(v, str):
                new = str.__str__(v)
            else:
                raise TypeError(f"call log column {names[i]!r} needs a str, got {t.__name__} {v!r}")
        elif kind == "ts":
            if t is int:
                new = v
            elif isinstance(v, datetime):
                new = to_micros(v)
            else:
                raise TypeError(f"call log column {names[i]!r} needs a datetime, got {t.__name__}")
        else:
            new = v
        if new is not v:
            out[i] = new
            changed = True
    return out, changed


def journal_header(writer: str, seq: int, host: str, pid: int, columns: Sequence[str]) -> bytes:
    """The first line of a journal: who wrote it and in which column order."""
    head = {"holysheep_journal": JOURNAL_FORMAT, "writer": writer, "seq": seq, "host": host,
            "pid": pid, "schema_version": SCHEMA_VERSION, "ts": "us", "columns": list(columns)}
    return (json.dumps(head, separators=(",", ":")) + "\n").encode()


def _encode_line(values: list[Any]) -> tuple[bytes, list[Any]]:
    """The journal line of a row, and the row as a reader will see it."""
    text = _ENCODER.encode(values) + "\n"
    try:
        return text.encode("utf-8"), values
    except UnicodeEncodeError:
        # A lone surrogate (it can arrive inside JSON from a relay) has no UTF-8 form and Parquet
        # could not store it: keep the row, with that character replaced, here and on disk.
        line = text.encode("utf-8", "replace")
        return line, json.loads(line)


def _coerce_one(v: Any, kind: str) -> Any:
    """A value for a column whose bulk conversion failed, or None if it cannot be stored."""
    if v is None:
        return None
    if kind == "int" and isinstance(v, int | float) and float(v).is_integer():
        return int(v) if _INT64_MIN <= int(v) <= _INT64_MAX else None
    if kind == "float" and isinstance(v, int | float):
        return float(v)
    if kind == "bool" and isinstance(v, bool):
        return v
    if kind == "str" and isinstance(v, str):
        return v.encode("utf-8", "replace").decode("utf-8")
    if kind == "ts" and isinstance(v, int) and _INT64_MIN <= v <= _INT64_MAX:
        return v
    return None


_BUILD_ERRORS = (TypeError, ValueError, OverflowError, UnicodeEncodeError)
_NONE_TYPE = type(None)
_ALLOWED: dict[str, set[type]] = {"int": {int}, "ts": {int}, "float": {float, int}, "bool": {bool},
                                  "str": {str}}
_FILL: dict[str, Any] = {"int": 0, "ts": 0, "float": 0.0, "bool": False}
_NUMPY_TYPES = {"int": "int64", "ts": "int64", "float": "float64", "bool": "bool"}


def build_array(values: Sequence[Any], kind: str, type_: pa.DataType,
                types: Iterable[type] | None = None) -> pa.Array:
    """An Arrow array of Python values, built from numpy buffers with C-level loops.

    Why not `pa.array`: it imports pandas (a second or more) the first time it runs, and this
    runs in every process that logs. Raises TypeError for a value of the wrong Python type
    (numpy would silently truncate 1.5 to 1), OverflowError for ints past int64. `types`, if
    given, must be the set of the values' Python types (it saves a pass over them).
    """
    import numpy as np
    import pyarrow as pa

    n = len(values)
    types = set(map(type, values)) if types is None else set(types)
    has_nulls = _NONE_TYPE in types
    types.discard(_NONE_TYPE)
    if not types:
        return pa.nulls(n, type_)
    if not types <= _ALLOWED.get(kind, types):
        raise TypeError(f"{', '.join(sorted(t.__name__ for t in types))} in a {kind} column")
    validity = None
    nulls = 0
    if has_nulls:
        present = np.fromiter(map(operator.is_not, values, repeat(None)), dtype=bool, count=n)
        nulls = n - int(present.sum())
        validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    if kind == "str":
        encoded = list(map(str.encode, values)) if not has_nulls else [
            b"" if v is None else v.encode() for v in values]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=offsets[1:])
        big = offsets[-1] > 2**31 - 1  # large_string only past 2 GiB of text in one column
        raw = pa.Array.from_buffers(pa.large_string() if big else pa.string(), n,
                                    [validity, pa.py_buffer(offsets if big else offsets.astype(np.int32)),
                                     pa.py_buffer(b"".join(encoded))], null_count=nulls)
        return raw if raw.type == type_ else raw.cast(type_)
    dtype = _NUMPY_TYPES.get(kind)
    if dtype is None:
        return pa.array(values, type=type_)  # a column type without a fast path here
    filled = values if not has_nulls else [_FILL[kind] if v is None else v for v in values]
    data = np.array(filled, dtype=dtype)
    buffer = pa.py_buffer(np.packbits(data, bitorder="little") if kind == "bool" else data)
    return pa.Array.from_buffers(type_, n, [validity, buffer], null_count=nulls)


def rows_to_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[pa.Table, list[str]]:
    """Journal rows (in `columns` order, ts as int micros) -> a `CALL_SCHEMA` table.

    Columns missing from `columns` are null; unknown ones are dropped. Returns the table and a
    list of problems (values that could not be stored and became null), for the caller to warn.
    """
    n = len(rows)
    return columns_to_table(columns, list(zip(*rows, strict=True)) if n else [], n)


def columns_to_table(columns: Sequence[str], values: Sequence[Sequence[Any]], n: int,
                     signatures: Iterable[tuple[type, ...]] | None = None) -> tuple[pa.Table, list[str]]:
    """Like `rows_to_table`, from one sequence of `n` values per name in `columns`.

    `signatures`, if given, holds the tuple of value types of every row (so no value's type has
    to be looked at again).
    """
    known = None if signatures is None else list(signatures)
    import pyarrow as pa

    position = {name: i for i, name in enumerate(columns)}
    transposed = values
    schema = call_schema()
    arrays: list[pa.Array] = []
    problems: list[str] = []
    for f, kind in zip(schema, COLUMN_KINDS, strict=True):
        i = position.get(f.name)
        if i is None:
            arrays.append(pa.nulls(n, f.type))
            continue
        values = transposed[i] if n else ()
        try:
            types = None if known is None else {sig[i] for sig in known}
            arrays.append(build_array(values, kind, f.type, types))
        except (*_BUILD_ERRORS, pa.ArrowException):
            fixed = [_coerce_one(v, kind) for v in values]
            lost = sum(1 for v, w in zip(values, fixed, strict=True) if v is not None and w != v)
            problems.append(f"column {f.name!r}: {lost} value(s) did not fit the column type "
                            "and were stored as null (or with unencodable characters replaced)")
            arrays.append(build_array(fixed, kind, f.type))
    return pa.Table.from_arrays(arrays, schema=schema), problems


def safe_name(text: str, limit: int = 40) -> str:
    """`text` usable in a file name on any system (and in a hive partition path)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:limit] or "x"


def host_tag() -> str:
    """This machine's name as it appears in writer and file names."""
    return safe_name(socket.gethostname())


def part_name(journal: Path) -> str:
    """The Parquet file name for a journal's rows: the same whoever rolls it (writer or compact),
    so rolling one journal twice overwrites instead of duplicating."""
    return f"part-{safe_name(journal.stem, 120)}.parquet"


# -- file-system helpers -----------------------------------------------------------------------


def may_hold_rows(root: str | os.PathLike[str]) -> bool:
    """False only if the log folder `root` surely holds no call: no Parquet partition (nor any
    other visible entry) and no journal with a line past its header. Cheap and pyarrow-free, so
    a start-up can skip `read_table` (and its pyarrow import) on a fresh log, whose only content
    is the empty journal the new writer just opened."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return False
    except OSError:
        return True  # let the reader say what is wrong
    for entry in entries:
        if entry.name == JOURNAL_DIR:
            continue
        if not entry.name.startswith("."):
            return True
    try:
        journals = [e.path for e in os.scandir(os.path.join(root, JOURNAL_DIR))
                    if e.name.endswith(JOURNAL_SUFFIX) and not e.name.startswith(".")]
    except FileNotFoundError:
        return False
    except OSError:
        return True
    for path in journals:
        try:
            with open(path, "rb") as f:
                head = f.read(65536)
                end = head.find(b"\n")
                if end < 0 or len(head) > end + 1 or f.read(1):
                    return True  # a row (or a header too long to tell): read it
        except OSError:
            return True  # e.g. rolled meanwhile: its rows are now in Parquet
    return False


def try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on an open file; False if another holds it.

    flock locks die with their process, which is what lets `compact` tell a live writer's
    journal from a dead one's. Without fcntl (Windows) there is no lock and this says True.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(table: pa.Table, final: Path, row_group_size: int | None) -> None:
    import pyarrow.parquet as pq

    # A hidden temp name that ends in .tmp: no reader or `**/*.parquet` glob ever sees it.
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parts(root: Path, table: pa.Table, name: str, *, row_group_size: int | None = None) -> list[Path]:
    """Write `table` as one Parquet file `root/date=D/name` per UTC date D of its rows.

    Each file is written to a temp name, fsynced and renamed; the folders are fsynced after.
    Raises OSError (or an Arrow error) on failure, having left no partial file behind.
    """
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return []
    days = pc.floor_temporal(table["ts"], unit="day")
    unique = pc.unique(days)
    written: list[Path] = []
    for day in unique:
        d: date = micros_to_datetime(day.cast("int64").as_py()).date()
        part = table if len(unique) == 1 else table.filter(pc.equal(days, day))
        folder = root / f"date={d.isoformat()}"
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            fsync_dir(root)
        path = folder / name
        _write_atomic(part, path, row_group_size)
        fsync_dir(folder)
        written.append(path)
    return written


# -- the writer --------------------------------------------------------------------------------


class Disk:
    """The writer's calls that a full or read-only disk makes fail; tests pass one that fails."""

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def free_bytes(self, path: Path) -> int:
        return shutil.disk_usage(path).free


_OS_DISK = Disk()


@dataclass(slots=True)
class _Journal:
    path: Path
    fd: int
    seq: int
    columns: list[list[Any]] = field(default_factory=list)  # the rows, one list per column
    count: int = 0  # rows appended
    signatures: set[int | None] = field(default_factory=set)  # of its rows; None: unknown


_APPEND = list.append

_LIVE: weakref.WeakSet[LogWriter] = weakref.WeakSet()
_HOOKS = threading.Lock()
_hooks_installed = False


def _install_process_hooks() -> None:
    """Once per process: roll every open writer at exit; forget inherited journals after fork."""
    global _hooks_installed  # noqa: PLW0603  (one flag per process, set under _HOOKS)
    with _HOOKS:
        if _hooks_installed:
            return
        atexit.register(_close_all_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
        _hooks_installed = True


def _close_all_at_exit() -> None:
    # Each writer first runs its before-close hooks (a Metering settles its open calls there),
    # so no row of a call still in flight at exit is lost.
    for writer in list(_LIVE):
        try:
            writer.close()
        except LogError as exc:  # the rows stay in the journal; `compact` rolls them later
            warnings.warn(str(exc), LogWriteWarning, stacklevel=1)


def _after_fork_in_child() -> None:
    for writer in list(_LIVE):
        writer._forget_after_fork()


class LogWriter:
    """Appends call records durably to this writer's journal and rolls them into Parquet.

    `append` is thread-safe and cheap (one encode and one `os.write`, no fsync): when it
    returns, the row survives a SIGKILL of the process. Journals roll into Parquet in a
    background thread when `roll_rows` rows are waiting or `roll_interval` seconds have passed,
    and at `close()` (also at interpreter exit).
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, roll_rows: int = 5000,
                 roll_interval: float | None = 60.0,
                 clock: Callable[[], float] | None = None,
                 min_free_bytes: int = MIN_FREE_BYTES, disk: Disk | None = None) -> None:
        if isinstance(roll_rows, bool) or not isinstance(roll_rows, int) or roll_rows < 1:
            raise ConfigError(f"roll_rows must be a whole number >= 1, not {roll_rows!r}.")
        if roll_interval is not None and not roll_interval > 0:
            raise ConfigError(f"roll_interval must be > 0 seconds or None, not {roll_interval!r}.")
        if isinstance(min_free_bytes, bool) or not isinstance(min_free_bytes, int) or min_free_bytes < 0:
            raise ConfigError(f"min_free_bytes must be a whole number >= 0, not {min_free_bytes!r}.")
        self.log_dir = Path(log_dir)
        self.min_free_bytes = min_free_bytes
        self.disk = disk or _OS_DISK
        self.roll_rows = roll_rows
        self.roll_interval = roll_interval
        self._clock = clock or time.monotonic
        self._layout = _layout()
        self._host = host_tag()
        self._closed = False
        self._before_close: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._reset_state()
        try:
            (self.log_dir / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(
                f"Cannot create the call-log folder {self.log_dir} ({exc.strerror or exc}). "
                "Pass a writable log_dir= (or set HOLYSHEEP_LOG_DIR)."
            ) from exc
        with self._lock:
            self._open_next()  # proves now, not at the first call, that the folder is writable
        _install_process_hooks()
        _LIVE.add(self)

    def _reset_state(self) -> None:
        self.name = f"{self._host}-{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()  # guards the journal switch and each write
        self._roll_lock = threading.Lock()  # one roll at a time
        self._journal: _Journal | None = None
        self._pending: list[_Journal] = []  # sealed journals not yet in Parquet
        self._seq = 0
        self._torn = False  # the last write failed part-way: start the next on a new line
        # Rows whose write failed (full or read-only disk), oldest first: written before the
        # next row, at a roll or at close, once the disk takes them again.
        self._unwritten: list[tuple[bytes, list[Any], int | None]] = []
        self.last_error: LogError | None = None  # why the last write failed (None: it did not)
        self._room = 0  # bytes the disk was seen to take beyond min_free_bytes, minus those written since
        self._room_seen = float("-inf")  # monotonic time of that look
        self._signatures: dict[tuple[type, ...], int] = {}  # checked type signatures -> index
        self._signature_list: list[tuple[type, ...]] = []
        self._last_roll = self._clock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<LogWriter {self.name} in {str(self.log_dir)!r} ({state})>"

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def journal_path(self) -> Path | None:
        """The journal rows are appended to now (None once closed)."""
        journal = self._journal
        return journal.path if journal else None

    # -- hot path ----------------------------------------------------------------------------

    def _encode(self, record: CallRecord) -> tuple[bytes, list[Any], int | None]:
        """The journal line, the row, and the index of its (checked) type signature in
        `_signature_list`, or None where the types must be looked at again at roll time."""
        layout = self._layout
        values = list(layout.getter(record))
        ts = values[layout.ts_index]
        try:
            values[layout.ts_index] = (ts - _EPOCH) // _US
        except TypeError:  # naive or not a datetime: the slow path decides
            pass
        signature = tuple(map(type, values))
        known = self._signatures.get(signature)
        if known is None:
            values, changed = normalise_values(values, layout.kinds, layout.names, layout.required)
            if not changed and len(self._signatures) < _MAX_SIGNATURES:
                known = self._signatures[signature] = len(self._signature_list)
                self._signature_list.append(signature)
        line, row = _encode_line(values)
        return line, row, known if row is values else None

    def append(self, record: CallRecord) -> bool:
        """Write one record to the journal: True when it is durable against a process kill.

        False: the disk refused it (full, read-only); the row is kept in memory and written
        before the next row, at the next roll or at close, and `last_error` says why.
        Raises LogError only if the writer is closed.
        """
        line, row, signature = self._encode(record)
        with self._lock:
            if self._closed:
                raise LogError(f"{self!r} is closed; create a new LogWriter to log more calls.")
            if self._unwritten:
                self._unwritten.append((line, row, signature))
                written = self._write_unwritten()
            else:
                try:
                    journal = self._journal or self._open_next()
                    self._write(journal, line)
                except LogError as exc:
                    self._unwritten.append((line, row, signature))
                    self.last_error = exc
                    return False
                any(map(_APPEND, journal.columns, row))  # kept column-wise: a roll needs no flip
                journal.signatures.add(signature)
                journal.count += 1
                written = True
            waiting = self._journal.count if self._journal else 0
        self._maybe_wake(waiting)
        return written

    def append_many(self, records: Iterable[CallRecord]) -> bool:
        """Write several records with one write; like `append`, False if they were kept in memory."""
        encoded = [self._encode(r) for r in records]
        if not encoded:
            return True
        with self._lock:
            if self._closed:
                raise LogError(f"{self!r} is closed; create a new LogWriter to log more calls.")
            self._unwritten += encoded
            written = self._write_unwritten()
            waiting = self._journal.count if self._journal else 0
        self._maybe_wake(waiting)
        return written

    def _write_unwritten(self) -> bool:
        """Write the kept rows in one write; False (kept, `last_error` set) if the disk refuses.
        Caller holds `self._lock`."""
        kept = self._unwritten
        try:
            journal = self._journal or self._open_next()
            self._write(journal, b"".join(line for line, _, _ in kept))
        except LogError as exc:
            self.last_error = exc
            return False
        for _, row, signature in kept:
            any(map(_APPEND, journal.columns, row))
            journal.signatures.add(signature)
        journal.count += len(kept)
        self._unwritten = []
        self.last_error = None
        return True

    @property
    def unwritten(self) -> int:
        """How many rows are kept in memory because the disk refused them."""
        return len(self._unwritten)

    def check_room(self) -> None:
        """Raise LogError unless the log can take a row now: call it before paying for one.

        Kept rows are retried first (the disk may be back); then the folder's disk must have
        `min_free_bytes` free, counted like money: a look at the disk (statvfs) is good for the
        bytes it showed beyond that margin, or for `ROOM_RECHECK_S` seconds.
        """
        with self._lock:
            if self._closed:
                raise LogError(f"{self!r} is closed; create a new LogWriter to log more calls.")
            if self._unwritten and not self._write_unwritten():
                raise LogError(
                    f"The call log in {self.log_dir} cannot take rows ({self.last_error}); "
                    f"{len(self._unwritten)} row(s) wait in memory. Nothing was sent."
                )
        now = time.monotonic()
        if self.min_free_bytes and (self._room <= 0 or now - self._room_seen >= ROOM_RECHECK_S):
            try:
                free = self.disk.free_bytes(self.log_dir)
            except OSError as exc:
                raise LogError(f"Cannot tell the free space of the call log's disk {self.log_dir} "
                               f"({exc.strerror or exc}); nothing was sent.") from exc
            self._room, self._room_seen = free - self.min_free_bytes, now
            if free < self.min_free_bytes:
                raise LogError(
                    f"The call log's disk ({self.log_dir}) has {free} bytes free, under the "
                    f"{self.min_free_bytes} it keeps for rows; nothing was sent. Free disk space or "
                    "use another log_dir."
                )

    def before_close(self, fn: Callable[[], None]) -> None:
        """Run the bound method `fn` first at close (and so at interpreter exit), while rows can
        still be written. Held weakly: it does not keep its object alive."""
        self._before_close.append(weakref.WeakMethod(fn))

    def _maybe_wake(self, waiting: int) -> None:
        if waiting >= self.roll_rows or (
            self.roll_interval is not None and self._clock() - self._last_roll >= self.roll_interval
        ):
            self._wake.set()

    def _write(self, journal: _Journal, data: bytes) -> None:
        if self._torn:
            data = b"\n" + data
        write = self.disk.write
        try:
            done = write(journal.fd, data)
            while done < len(data):  # short writes happen on a nearly full disk
                done += write(journal.fd, data[done:])
        except OSError as exc:
            self._torn = True
            self._room = 0  # look at the disk again before the next call
            raise LogError(
                f"Could not append to the call-log journal {journal.path} ({exc.strerror or exc}); "
                "the row is kept in memory until the disk takes it. Free disk space or use another log_dir."
            ) from exc
        self._torn = False
        self._room -= len(data)

    # -- journals ----------------------------------------------------------------------------

    def _open_next(self) -> _Journal:
        """Create, lock and publish a fresh journal. Caller holds `self._lock`."""
        if self._closed:
            raise LogError(f"{self!r} is closed; create a new LogWriter to log more calls.")
        seq = self._seq
        self._seq += 1
        folder = self.log_dir / JOURNAL_DIR
        final = folder / f"{self.name}-{seq:06d}{JOURNAL_SUFFIX}"
        # Created under a hidden name and renamed once locked, so `compact` can never take a
        # brand-new journal for a dead writer's.
        tmp = folder / f".{final.name}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            raise LogError(
                f"Cannot write the call log in {self.log_dir} ({exc.strerror or exc}). "
                "Pass a writable log_dir= (or set HOLYSHEEP_LOG_DIR)."
            ) from exc
        try:
            try_lock(fd)
            self.disk.write(fd, journal_header(self.name, seq, self._host, os.getpid(), self._layout.names))
            os.replace(tmp, final)
        except OSError as exc:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise LogError(
                f"Cannot write the call log in {self.log_dir} ({exc.strerror or exc}). "
                "Pass a writable log_dir= (or set HOLYSHEEP_LOG_DIR)."
            ) from exc
        self._journal = _Journal(final, fd, seq, [[] for _ in self._layout.names])
        self._torn = False
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"holysheep-log-roll-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self._journal

    def _seal(self, *, open_next: bool) -> None:
        """Move the current journal (if it has rows) to the pending list. Holds `self._lock`."""
        with self._lock:
            journal = self._journal
            if journal is None:
                return
            if journal.count:
                self._pending.append(journal)
                self._journal = None
                if open_next:
                    self._open_next()
            elif not open_next:
                self._journal = None
                self._discard(journal)

    def _discard(self, journal: _Journal) -> None:
        """Remove an empty journal: unlink first, then drop the lock (so nobody re-rolls it)."""
        try:
            journal.path.unlink(missing_ok=True)
        finally:
            os.close(journal.fd)

    def _flush(self, journal: _Journal) -> list[Path]:
        known = journal.signatures
        signatures = None if None in known else [self._signature_list[i] for i in known if i is not None]
        table, problems = columns_to_table(self._layout.names, journal.columns, journal.count,
                                           signatures)
        for problem in problems:
            warnings.warn(f"call log {journal.path.name}: {problem}", LogWriteWarning, stacklevel=3)
        try:
            written = write_parts(self.log_dir, table, part_name(journal.path))
            journal.path.unlink(missing_ok=True)
            fsync_dir(journal.path.parent)
        except OSError as exc:
            raise LogError(
                f"Could not roll the call-log journal {journal.path} into Parquet "
                f"({exc.strerror or exc}). Its rows are safe in the journal and are still read; "
                "free disk space, then call roll() or run `holysheep-lab compact`."
            ) from exc
        os.close(journal.fd)
        return written

    def roll(self) -> list[Path]:
        """Roll the journal's rows into Parquet now; returns the files written."""
        with self._roll_lock:
            if not self._closed:
                with self._lock:
                    if self._unwritten:
                        self._write_unwritten()  # the disk may be back; if not they stay kept
                self._seal(open_next=True)
            return self._flush_pending()

    def _flush_pending(self) -> list[Path]:
        written: list[Path] = []
        while self._pending:
            journal = self._pending[0]
            written += self._flush(journal)  # on LogError the journal stays pending, rows safe
            self._pending.pop(0)
        self._last_roll = self._clock()
        return written

    def close(self) -> None:
        """Run the before-close hooks, roll what is left and release the journal. Idempotent.

        Rows the disk still refuses are reported in a LogWriteWarning (they cannot be kept
        past the writer)."""
        if self._closed:
            return
        hooks, self._before_close = self._before_close, []
        for ref in hooks:
            fn = ref()
            if fn is not None:
                try:
                    fn()
                except Exception as exc:  # a hook must not keep the rows already here from Parquet
                    warnings.warn(f"call log close hook failed: {type(exc).__name__}: {exc}",
                                  LogWriteWarning, stacklevel=2)
        with self._lock:
            if self._unwritten and not self._write_unwritten():
                warnings.warn(
                    f"{len(self._unwritten)} call-log row(s) could not be written to {self.log_dir} "
                    f"and are lost: {self.last_error}", LogWriteWarning, stacklevel=2)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._roll_lock:
            self._closed = True
            self._seal(open_next=False)
            self._flush_pending()
        _LIVE.discard(self)

    # -- background rolling ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.roll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            journal = self._journal
            waiting = journal.count if journal else 0
            due = self.roll_interval is not None and (
                self._clock() - self._last_roll >= self.roll_interval)
            if not waiting and not self._pending:
                self._last_roll = self._clock()
                continue
            if waiting >= self.roll_rows or due or self._pending:
                try:
                    self.roll()
                except LogError as exc:  # rows are safe in the journal; retried on the next roll
                    warnings.warn(str(exc), LogWriteWarning, stacklevel=1)
                    self._stop.wait(1.0)

    def _forget_after_fork(self) -> None:
        """In a forked child: leave the parent's journals (and locks) to the parent."""
        fds = [j.fd for j in self._pending]
        if self._journal is not None:
            fds.append(self._journal.fd)
        for fd in fds:
            try:
                os.close(fd)  # closing our copy keeps the parent's flock: it is shared
            except OSError:
                pass
        closed = self._closed
        self._reset_state()
        self._closed = closed
