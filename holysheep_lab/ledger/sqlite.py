"""A ledger in one SQLite file, shared by several processes (kernels) on one machine.

Every write is one `BEGIN IMMEDIATE` transaction: SQLite's write lock makes check-and-reserve
atomic across processes; WAL mode lets readers run beside the writer. In-flight reserved
spend is the sum of a bucket's unexpired reservation rows, so a killed process's
reservations stop counting at their expiry with no clean-up needed (rows are deleted later).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from holysheep_lab.core.clock import BUCKET_GRACE_S
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import ConfigError, LedgerError, LedgerUnavailableError
from holysheep_lab.ledger.base import BucketState, Charge, Refusal, Seeder
from holysheep_lab.ledger.common import (
    SWEEP_EVERY,
    ClosingContext,
    check_id,
    check_ttl,
    merge_charges,
    seed_items,
)

__all__ = ["SQLiteLedger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    spent INTEGER NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT NOT NULL,
    bucket TEXT NOT NULL,
    amount INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (id, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservations_live ON reservations (bucket, expires_at, amount);
CREATE INDEX IF NOT EXISTS reservations_expiry ON reservations (expires_at);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Spent and live reserved of one bucket in one statement (the covering index serves the sum).
_STATE = (
    "SELECT (SELECT spent FROM buckets WHERE name = ?1), "
    "(SELECT SUM(amount) FROM reservations WHERE bucket = ?1 AND expires_at > ?2)"
)
_ADD_SPENT = (
    "INSERT INTO buckets (name, spent, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET spent = spent + excluded.spent, "
    "expires_at = MAX(expires_at, excluded.expires_at)"
)
_SEED = (
    "INSERT INTO buckets (name, spent, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET spent = MAX(spent, excluded.spent), "
    "expires_at = MAX(expires_at, excluded.expires_at)"
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
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigError(f"SQLiteLedger path must be a file path such as 'budget.db', not {path!r}.")
        self._path = Path(path)
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
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
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
            try:
                conn = sqlite3.connect(
                    self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL survives a killed process; the log, not the ledger, is the truth.
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise self._error(exc, "open") from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

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
        conn.execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM buckets WHERE expires_at < ?", (now - BUCKET_GRACE_S,))
        conn.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))

    @staticmethod
    def _state(conn: sqlite3.Connection, bucket: str, now: float) -> tuple[int, int]:
        spent, reserved = conn.execute(_STATE, (bucket, now)).fetchone()
        return spent or 0, reserved or 0

    # -- the Ledger protocol ------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return True  # every process that opens the file

    def use_seeder(self, seeder: Seeder) -> None:
        """Ignored: the file keeps its state (a deleted file is a new, empty ledger at open)."""

    def reserve(self, reservation_id: str, charges: Sequence[Charge], ttl: float) -> Refusal | None:
        check_id(reservation_id)
        merged = merge_charges(charges)
        ttl = check_ttl(ttl)
        with self._txn("reserve") as conn:
            now = self._clock()
            self._sweep(conn, now)
            # An expired reservation's id may be reused; a live one may not.
            rid = reservation_id
            conn.execute("DELETE FROM reservations WHERE id = ? AND expires_at <= ?", (rid, now))
            if conn.execute("SELECT 1 FROM reservations WHERE id = ? LIMIT 1", (rid,)).fetchone():
                raise LedgerError(f"Reservation {reservation_id!r} is already in flight")
            for c in merged:
                if c.limit is None:
                    continue
                spent, reserved = self._state(conn, c.bucket, now)
                if spent + reserved + c.amount > c.limit:
                    return Refusal(c.bucket, spent, reserved, c.limit, c.amount)
            conn.executemany(
                "INSERT INTO reservations (id, bucket, amount, expires_at) VALUES (?, ?, ?, ?)",
                [(reservation_id, c.bucket, c.amount, now + ttl) for c in merged],
            )
            return None

    def settle(
        self, reservation_id: str | None, charges: Sequence[Charge]
    ) -> Mapping[str, BucketState]:
        merged = merge_charges(charges)
        with self._txn("settle") as conn:
            now = self._clock()
            if reservation_id is not None:
                conn.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
            conn.executemany(_ADD_SPENT, [(c.bucket, c.amount, c.expires_at) for c in merged])
            return {c.bucket: BucketState(*self._state(conn, c.bucket, now)) for c in merged}

    def release(self, reservation_id: str) -> None:
        with self._txn("release") as conn:
            conn.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))

    def snapshot(self, buckets: Sequence[str]) -> dict[str, BucketState]:
        with self._lock:
            conn = self._connection()
            now = self._clock()
            try:
                # One read transaction: every bucket seen at the same instant.
                conn.execute("BEGIN")
                try:
                    return {b: BucketState(*self._state(conn, b, now)) for b in buckets}
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
