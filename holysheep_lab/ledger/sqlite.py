"""A ledger in one SQLite file, shared by several processes (kernels) on one machine.

Every write is one `BEGIN IMMEDIATE` transaction: SQLite's write lock makes check-and-reserve
atomic across processes; WAL mode (synchronous=NORMAL) lets readers run beside the writer and
commits without an fsync. In-flight reserved spend is the sum of a bucket's unexpired
reservation rows, so a killed process's reservations stop counting at their expiry with no
clean-up needed (rows are deleted later).

Speed: a commit costs a write per page it dirtied, so everything a call touches lives in one
b-tree keyed (bucket, id): a bucket's settled spend is its row with id '', each reservation in
flight a row per bucket plus a header row (bucket '') that makes its id unique. One reserve or
settle then dirties a page or two, not one per table and index.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache

from holysheep_lab.core.clock import BUCKET_GRACE_S
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import LedgerError, LedgerUnavailableError
from holysheep_lab.ledger.base import BucketState, Charge, Refusal, Seeder
from holysheep_lab.ledger.common import (
    SWEEP_EVERY,
    ClosingContext,
    check_id,
    check_path,
    check_ttl,
    merge_charges,
    seed_items,
)

__all__ = ["LEDGER_FILE", "SQLiteLedger"]

#: The SQLite ledger of a log folder (the default before `MappedLedger`; see `ledger.machine`).
LEDGER_FILE = ".ledger.sqlite"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ledger (
    bucket TEXT NOT NULL,      -- '' : a reservation's header row
    id TEXT NOT NULL,          -- '' : the bucket's settled spend; else a reservation in flight
    amount INTEGER NOT NULL,
    expires_at REAL NOT NULL,  -- the window's end (spend), or the reservation's expiry
    buckets TEXT,              -- a header's bucket names, one per line
    PRIMARY KEY (bucket, id)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID""",
)
# Files written by the first layout (tables buckets + reservations): their spend moves over.
_MIGRATE = (
    "INSERT INTO ledger (bucket, id, amount, expires_at) SELECT name, '', spent, expires_at FROM buckets "
    "WHERE true ON CONFLICT (bucket, id) DO UPDATE SET amount = MAX(amount, excluded.amount)",
    "DROP TABLE buckets",
    "DROP TABLE IF EXISTS reservations",
)

_INSERT = "INSERT INTO ledger (bucket, id, amount, expires_at) VALUES (?, ?, ?, ?)"
_HEADER = "INSERT INTO ledger (bucket, id, amount, expires_at, buckets) VALUES ('', ?, 0, ?, ?)"
_HEADER_BUCKETS = "SELECT buckets FROM ledger WHERE bucket = '' AND id = ?"
_DROP = "DELETE FROM ledger WHERE bucket = ? AND id = ?"
_LIVE_HEADER = "SELECT buckets FROM ledger WHERE bucket = '' AND id = ?1 AND expires_at > ?2"
_RENEW = "UPDATE ledger SET expires_at = ? WHERE bucket = ? AND id = ?"
_ADD_SPENT = (
    "INSERT INTO ledger (bucket, id, amount, expires_at) VALUES (?, '', ?, ?) "
    "ON CONFLICT (bucket, id) DO UPDATE SET amount = amount + excluded.amount, "
    "expires_at = MAX(expires_at, excluded.expires_at)"
)
_SEED = (
    "INSERT INTO ledger (bucket, id, amount, expires_at) VALUES (?, '', ?, ?) "
    "ON CONFLICT (bucket, id) DO UPDATE SET amount = MAX(amount, excluded.amount), "
    "expires_at = MAX(expires_at, excluded.expires_at)"
)


@cache
def _states_sql(n: int) -> str:
    """(name, spent, live reserved) of n buckets in one statement: ?1 is now, ?2.. the names.
    Both sums are range scans of the primary key."""
    names = ", ".join(f"(?{i + 2})" for i in range(n))
    return (
        f"WITH q(name) AS (VALUES {names}) SELECT name, "
        "(SELECT amount FROM ledger WHERE bucket = q.name AND id = ''), "
        "(SELECT SUM(amount) FROM ledger WHERE bucket = q.name AND id > '' AND expires_at > ?1) FROM q"
    )


class SQLiteLedger(ClosingContext):
    """Ledger in a SQLite file: atomic across the threads and processes that open the same path.

    One connection per process, guarded by a lock (threads of one process would only queue on
    SQLite's file lock anyway, and its busy handler sleeps; a Python lock hands over at once).
    `timeout` is how long a call waits for another process's transaction before raising
    `LedgerUnavailableError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        self._path = check_path("SQLiteLedger", path, "budget.db")
        self._clock = clock
        self._timeout = positive_seconds("SQLiteLedger timeout", timeout)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._next_sweep = 0.0
        self._closed = False
        with self._lock:
            conn = self._connection()
            try:
                with self._write(conn):
                    # executescript would commit our IMMEDIATE transaction first: one by one.
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    old = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'buckets'")
                    if old.fetchone():
                        for statement in _MIGRATE:
                            conn.execute(statement)
            except sqlite3.Error as exc:
                raise self._error(exc, "create tables") from None

    def __repr__(self) -> str:
        return f"SQLiteLedger({str(self._path)!r})"

    # -- connection and transactions (caller holds self._lock) --------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise LedgerError(f"This SQLiteLedger ({self._path}) is closed")
        # A forked child must not share its parent's connection (SQLite forbids it).
        if self._conn is None or self._pid != os.getpid():
            conn = self._open()
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        # Switching a new file to WAL needs a moment alone with it, and SQLite reports "locked"
        # at once (no busy wait) when another process opens it in the same instant (two kernels
        # starting together): retry within the timeout.
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                conn = sqlite3.connect(
                    self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
                )
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    # NORMAL in WAL survives a killed process; the log, not the ledger, is the truth.
                    conn.execute("PRAGMA synchronous=NORMAL")
                except BaseException:
                    conn.close()
                    raise
                return conn
            except sqlite3.OperationalError as exc:
                if not ("locked" in str(exc) or "busy" in str(exc)) or time.monotonic() > deadline:
                    raise self._error(exc, "open") from None
                time.sleep(0.01)
            except sqlite3.Error as exc:
                raise self._error(exc, "open") from None

    def _error(self, exc: sqlite3.Error, op: str) -> LedgerError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return LedgerUnavailableError(
                f"SQLite ledger {self._path} stayed locked by another process for over "
                f"{self._timeout:g} s during {op}; the call is refused. Raise timeout= or find the "
                "process holding the lock."
            )
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
            return LedgerUnavailableError(
                f"Cannot open the SQLite ledger {self._path} ({text}): check the folder exists "
                "and is writable."
            )
        return LedgerError(f"SQLite ledger {self._path} failed during {op}: {text}")

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so check-then-insert cannot interleave.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _txn(self, op: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                with self._write(conn):
                    yield conn
            except sqlite3.Error as exc:
                raise self._error(exc, op) from None

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY
        conn.execute("DELETE FROM ledger WHERE id > '' AND expires_at <= ?", (now,))
        conn.execute("DELETE FROM ledger WHERE id = '' AND expires_at < ?", (now - BUCKET_GRACE_S,))
        conn.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))

    # -- the Ledger protocol ------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return True  # every process that opens the file

    def use_seeder(self, seeder: Seeder) -> None:
        """Ignored: the file keeps its state (a deleted file is a new, empty ledger at open)."""

    def _states(self, conn: sqlite3.Connection, names: Sequence[str], now: float) -> dict[str, tuple[int, int]]:
        rows = conn.execute(_states_sql(len(names)), (now, *names)).fetchall()
        return {name: (spent or 0, reserved or 0) for name, spent, reserved in rows}

    def reserve(self, reservation_id: str, charges: Sequence[Charge], ttl: float) -> Refusal | None:
        check_id(reservation_id)
        merged = merge_charges(charges)
        ttl = check_ttl(ttl)
        # One IMMEDIATE transaction: the header row (a live id already in flight fails its
        # primary key), the states of the limited buckets, the bucket rows.
        with self._txn("reserve") as conn:
            now = self._clock()
            self._sweep(conn, now)
            until = now + ttl
            header = (reservation_id, until, "\n".join(c.bucket for c in merged))
            try:
                conn.execute(_HEADER, header)
            except sqlite3.IntegrityError:
                # The id is taken: by an expired reservation (drop it and go on) or a live one.
                conn.execute("DELETE FROM ledger WHERE id = ? AND expires_at <= ?", (reservation_id, now))
                if conn.execute("SELECT 1 FROM ledger WHERE bucket = '' AND id = ?", (reservation_id,)).fetchone():
                    raise LedgerError(f"Reservation {reservation_id!r} is already in flight") from None
                conn.execute(_HEADER, header)
            limited = [c for c in merged if c.limit is not None]
            if limited:
                states = self._states(conn, [c.bucket for c in limited], now)
                for c in limited:
                    spent, reserved = states[c.bucket]
                    assert c.limit is not None
                    if spent + reserved + c.amount > c.limit:
                        conn.execute(_DROP, ("", reservation_id))
                        return Refusal(c.bucket, spent, reserved, c.limit, c.amount)
            conn.executemany(_INSERT, [(c.bucket, reservation_id, c.amount, until) for c in merged])
            return None

    def renew(self, reservation_id: str, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        with self._txn("renew") as conn:
            now = self._clock()
            row = conn.execute(_LIVE_HEADER, (reservation_id, now)).fetchone()
            if row is None:
                return False  # settled, released, or lapsed: a lapsed hold is not revived
            until = now + ttl
            conn.executemany(_RENEW, [(until, b, reservation_id) for b in ("", *row[0].split("\n"))])
            return True

    def _drop(self, conn: sqlite3.Connection, reservation_id: str) -> None:
        """Delete a reservation's rows: its header names its buckets (primary-key deletes)."""
        row = conn.execute(_HEADER_BUCKETS, (reservation_id,)).fetchone()
        if row is not None:  # (DELETE ... RETURNING is several times slower than this SELECT)
            conn.executemany(_DROP, [("", reservation_id), *((b, reservation_id) for b in row[0].split("\n"))])

    def settle(
        self, reservation_id: str | None, charges: Sequence[Charge]
    ) -> Mapping[str, BucketState]:
        merged = merge_charges(charges)
        with self._txn("settle") as conn:
            now = self._clock()
            if reservation_id is not None:
                self._drop(conn, reservation_id)
            conn.executemany(_ADD_SPENT, [(c.bucket, c.amount, c.expires_at) for c in merged])
            states = self._states(conn, [c.bucket for c in merged], now)
            return {c.bucket: BucketState(*states[c.bucket]) for c in merged}

    def release(self, reservation_id: str) -> None:
        with self._txn("release") as conn:
            self._drop(conn, reservation_id)

    def snapshot(self, buckets: Sequence[str]) -> dict[str, BucketState]:
        with self._lock:
            conn = self._connection()
            now = self._clock()
            try:
                # One read transaction: every bucket seen at the same instant.
                conn.execute("BEGIN")
                try:
                    states = self._states(conn, list(dict.fromkeys(buckets)), now) if buckets else {}
                    return {b: BucketState(*states[b]) for b in buckets}
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error(exc, "snapshot") from None

    def seed(self, spent: Mapping[str, int], expires_at: Mapping[str, float]) -> None:
        items = seed_items(spent, expires_at)
        with self._txn("seed") as conn:
            conn.executemany(_SEED, items)

    def claim(self, key: str, expires_at: float) -> bool:
        with self._txn("claim") as conn:
            now = self._clock()
            row = conn.execute("SELECT expires_at FROM claims WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO claims (key, expires_at) VALUES (?, ?)",
                (key, float(expires_at)),
            )
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        # Only close our own process's connection; a fork's copy belongs to the parent.
        if conn is not None and self._pid == os.getpid():
            conn.close()
