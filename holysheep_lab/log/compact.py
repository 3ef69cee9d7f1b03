"""Compaction: roll the journals of writers that are gone, and merge small Parquet files.

Safe while other processes (here or on other machines) keep logging into the folder:

- a journal is rolled only if nobody holds its lock (a live writer keeps an flock on its
  journal until the rows are in Parquet; the lock dies with its process). For a journal written
  on another host, where a network file system may not share locks, it must also be untouched
  for `stale_after` seconds;
- every file is written to a temp name, fsynced and renamed before anything it replaces is
  removed, so a crash (or a reader running meanwhile) sees the rows once or twice, never zero
  times; readers de-duplicate on `call_id`, and merging drops the duplicates for good;
- corrupt or foreign files are left where they are (with a warning), and a file with columns
  this version does not know is never rewritten, so no value is dropped.
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from holysheep_lab.log.reader import LogReadWarning, conform, dedupe, existing_root, parse_journal, partition_date
from holysheep_lab.log.schema import CALL_SCHEMA
from holysheep_lab.log.writer import (
    JOURNAL_DIR,
    JOURNAL_SUFFIX,
    fsync_dir,
    host_tag,
    part_name,
    rows_to_table,
    try_lock,
    write_parts,
)

__all__ = ["CompactSummary", "compact"]

_TEMP_MAX_AGE = 3600.0  # a roll takes seconds; a temp file this old belongs to a dead process
_ROW_GROUP = 131_072  # row groups small enough that a ts filter skips most of a merged day


@dataclass(slots=True)
class CompactSummary:
    """What one `compact` run did."""

    journals_rolled: int = 0
    rows_rolled: int = 0
    journals_live: int = 0  # left alone: a live writer holds them
    journals_quarantined: int = 0  # had unreadable lines: renamed to *.bad after rolling the rest
    partitions_merged: int = 0
    files_merged: int = 0
    files_written: int = 0
    rows_written: int = 0
    duplicates_dropped: int = 0
    files_skipped: int = 0  # corrupt, foreign or newer-schema files left untouched
    temp_files_removed: int = 0

    def __str__(self) -> str:
        return (
            f"journals: {self.journals_rolled} rolled ({self.rows_rolled} rows), "
            f"{self.journals_live} live left alone, {self.journals_quarantined} quarantined; "
            f"merged {self.files_merged} files in {self.partitions_merged} partitions into "
            f"{self.files_written} ({self.rows_written} rows, {self.duplicates_dropped} duplicates "
            f"dropped); {self.files_skipped} files skipped; {self.temp_files_removed} temp files removed"
        )


def _lock_blocking(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _roll_journal(root: Path, path: Path, summary: CompactSummary, stale_after: float) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # its writer rolled it meanwhile
    try:
        if not try_lock(fd):
            summary.journals_live += 1
            return
        info = os.fstat(fd)
        try:
            if os.stat(path).st_ino != info.st_ino:
                return
        except FileNotFoundError:
            return  # unlinked by its writer between our open and our lock: already rolled
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
        header, rows, problems = parse_journal(data)
        if header is not None and header.get("host") != host_tag() and (
                time.time() - info.st_mtime < stale_after):
            summary.journals_live += 1  # another machine's: its lock may not reach us
            return
        if header is None and problems:  # not our format at all: keep it for a human
            warnings.warn(f"{path}: {problems[0]}", LogReadWarning, stacklevel=3)
            summary.files_skipped += 1
            return
        if header is not None and rows:
            table, lost = rows_to_table(header["columns"], rows)
            problems += lost
            write_parts(root, table, part_name(path))  # the name its writer would have used
            summary.rows_rolled += len(rows)
        if problems:
            for problem in problems:
                warnings.warn(f"{path}: {problem}", LogReadWarning, stacklevel=3)
            os.replace(path, path.with_name(path.name + ".bad"))
            summary.journals_quarantined += 1
        else:
            path.unlink(missing_ok=True)
        fsync_dir(path.parent)
        summary.journals_rolled += 1
    finally:
        os.close(fd)


def _read_whole(path: Path) -> tuple[pa.Table | None, str | None]:
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            names = pf.schema_arrow.names
            if "call_id" not in names or "ts" not in names:
                return None, "not a call-log file (no call_id/ts columns)"
            unknown = [n for n in names if n not in CALL_SCHEMA.names]
            if unknown:
                return None, f"has columns this version does not know ({', '.join(unknown)}); not rewritten"
            return conform(pf.read(), CALL_SCHEMA), None
    except FileNotFoundError:
        return None, None  # merged by a concurrent compact
    except (pa.ArrowException, OSError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {str(exc)[:200]})"


def _merge_partition(root: Path, folder: Path, summary: CompactSummary, min_files: int,
                     row_group_size: int) -> None:
    files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith((".", "_")))
    if len(files) < min_files:
        return
    tables: list[pa.Table] = []
    sources: list[Path] = []
    for file in files:
        table, problem = _read_whole(file)
        if table is not None:
            tables.append(table)
            sources.append(file)
        elif problem:
            warnings.warn(f"{file}: {problem}; left as it is", LogReadWarning, stacklevel=3)
            summary.files_skipped += 1
    if len(sources) < 2:
        return
    merged = pa.concat_tables(tables)
    unique = dedupe(merged).sort_by("ts")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    written = write_parts(root, unique, f"part-compact-{stamp}-{secrets.token_hex(4)}.parquet",
                          row_group_size=row_group_size)
    for file in sources:  # only now: the merged file is durable under its final name
        file.unlink(missing_ok=True)
    fsync_dir(folder)
    summary.partitions_merged += 1
    summary.files_merged += len(sources)
    summary.files_written += len(written)
    summary.rows_written += unique.num_rows
    summary.duplicates_dropped += merged.num_rows - unique.num_rows


def _remove_stale_temps(folder: Path, summary: CompactSummary, now: float) -> None:
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > _TEMP_MAX_AGE:
                tmp.unlink()
                summary.temp_files_removed += 1
        except FileNotFoundError:
            continue


def compact(path: str | os.PathLike[str], *, stale_after: float = 3600.0, min_files: int = 2,
            row_group_size: int = _ROW_GROUP) -> CompactSummary:
    """Roll finished writers' journals into Parquet and merge each date's part files into one.

    `stale_after`: seconds a journal written on another host must be untouched before it is
    taken for dead. `min_files`: merge a partition once it has at least this many files.
    Raises LogError if `path` is not a folder; files are written as the writer writes them.
    """
    root = existing_root(path)
    summary = CompactSummary()
    journals = root / JOURNAL_DIR
    journals.mkdir(exist_ok=True)
    now = time.time()
    lock_fd = os.open(journals / ".compact.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_blocking(lock_fd)  # one compaction at a time; writers never take this lock
        for journal in sorted(journals.glob(f"*{JOURNAL_SUFFIX}")):
            _roll_journal(root, journal, summary, stale_after)
        _remove_stale_temps(journals, summary, now)
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and partition_date(folder.name) is not None:
                _remove_stale_temps(folder, summary, now)
                _merge_partition(root, folder, summary, min_files, row_group_size)
    finally:
        os.close(lock_fd)  # releases the lock
    return summary
