"""A ledger in one fixed-layout file mapped into memory, shared by the processes of one machine.

Every operation takes the process's lock and an exclusive `flock` on the file, updates a few
records in place through the mapping and lets go: no transaction, no page writes, no statement
to run (about 4x the reserve+settle pairs/s of SQLite, bench/bench_ledger.py). Layout
(little-endian), all at fixed offsets:

    header   magic, version, capacities, where the regions start, the earliest reservation
             expiry, the next sweep, and a redo journal
    buckets  (key, spent, reserved, window end) per bucket; reserved is the sum of its live
             reservations' amounts, kept up to date by every reserve/settle/release/expiry
    slots    (key, expiry, pid, up to MAX_BUCKETS (bucket index, amount)) per reservation, an
             open-addressing table (linear probing, backward-shift deletion) at most half full
    claims   (key, expiry) per alert claim

Keys are 16-byte BLAKE2b digests of the names (a call id, 32 hex digits, is its own key).
Crash safety: every change is first written as absolute byte patches to the header's journal,
marked valid with one aligned 4-byte store, applied, then cleared; whoever takes the lock next
replays a journal left valid by a process killed mid-update (replaying absolute bytes is
idempotent). Growth writes the larger regions past the end of the file and switches the header
to them in one journaled patch, so a mapping of the old size stays valid for the header and is
redone when a process sees the new layout.

Speed: a guarded call is one reserve and one settle, so those two take a short way: bucket
offsets remembered per name (checked by the key read with the bucket's state), the journal
packed in one struct call, and settle trusting what this process reserved once the slot's
record is found unchanged, byte for byte. Anything unusual (a new bucket, growth, a record
changed by another process) takes the general way, which reads everything from the file.

Reservations expire at their deadline (renewed while their call lives), never earlier: a killed
process's last call may have been billed, so its hold stays until its deadline.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; `machine_ledger` picks SQLite there
    fcntl = None  # type: ignore[assignment]

from holysheep_lab.core.clock import BUCKET_GRACE_S
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import ConfigError, LedgerError, LedgerUnavailableError
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

__all__ = ["AVAILABLE", "MAPPED_FILE", "MAX_BUCKETS", "MappedLedger"]

#: False where the file lock it needs (`fcntl.flock`) does not exist (Windows).
AVAILABLE = fcntl is not None

#: The machine-wide ledger file of a log folder (see `machine_ledger`).
MAPPED_FILE = ".ledger.mmap"
#: Buckets one reservation may touch (a call touches a few windows of a few scopes).
MAX_BUCKETS = 16

_MAGIC = b"HSLEDGR\x01"
_VERSION = 1
# magic, version, buckets per slot, bucket/slot/claim capacity, journal length, data offset,
# earliest reservation expiry, next sweep, live slots, (spare)
_HEAD = struct.Struct("<8sIIIIIIQddII")
_HOT = struct.Struct("<IQddI")  # journal length .. live slots, read by every operation
_CAPS_AT, _HOT_AT, _DATA_AT, _EXPIRY_AT, _SWEEP_AT, _LIVE_AT = 16, 28, 32, 40, 48, 56
_JOURNAL_LEN_AT = _HOT_AT
_JOURNAL_AT = 64
_DATA_START = 16384  # header + journal; regions start here (or further, after growth)
_JOURNAL_MAX = _DATA_START - _JOURNAL_AT
_MAX_MOVES = 40  # slot moves of one deletion in one journal entry (with 16 bucket patches)
_PATCH = struct.Struct("<QI")
_BUCKET = struct.Struct("<16sqqd")  # key, spent, reserved, window end
_BSTATE = struct.Struct("<qqd")  # a bucket without its key
_RESERVED = struct.Struct("<qd")  # a bucket's reserved and window end
_SLOT = struct.Struct("<16sdII")  # key, expiry, bucket count, pid
_ENTRY = struct.Struct("<Iq")  # bucket index, amount
_SLOT_SIZE = _SLOT.size + MAX_BUCKETS * _ENTRY.size
_CLAIM = struct.Struct("<16sd")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_JOURNAL_LEN = struct.Struct("<I")  # the store that makes a journal valid (4 aligned bytes) or clears it
_KEY_HALVES = struct.Struct("<QQ")
_BUCKET_SIZE = _BUCKET.size
# The journals of the two updates every guarded call makes, packed in one call each (a list of
# patches joined into bytes costs several times more). Both are ordinary journals, (offset,
# length, bytes) per patch, replayed like any other; n is the reservation's bucket count.
#   reserve: n x (reserved, window end) of a bucket, the slot record, the live count
#   settle:  n x (spent, reserved, window end) of a bucket, then the slot records moved into the
#            hole (if any), the last hole's key zeroed, the live count
_RESERVE_JOURNAL = [struct.Struct("<" + "QIqd" * n + "QI16sdII" + "Iq" * n + "QII") for n in range(MAX_BUCKETS + 1)]
_SETTLE_JOURNAL = [struct.Struct("<" + "QIqqd" * n) for n in range(MAX_BUCKETS + 1)]
_SETTLE_TAIL = struct.Struct("<QI16sQII")
_LOCK_NOW = fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl is not None else 0
_UNLOCK = fcntl.LOCK_UN if fcntl is not None else 0
_HELD_MAX = 4096  # reservations remembered in-process between reserve and settle
_ZERO_KEY = bytes(16)
_INITIAL = 64  # records of each kind in a new file
_MAX_NANOS = 2**63 - 1
_INF = math.inf

# Forks seen by this process: a child must open the file itself (flock is per open file).
_forks = [0]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))

Patches = list[tuple[int, bytes]]
# A reservation this process made: its key, slot, the slot's record, [bucket index, amount, ...]
_Held = tuple[bytes, int, bytes, list[int]]


def _key(kind: bytes, name: str) -> bytes:
    key = hashlib.blake2b(name.encode(), digest_size=16, person=kind).digest()
    return key if key != _ZERO_KEY else b"\x01" + key[1:]


def _reservation_key(reservation_id: str) -> bytes:
    """A call id (32 hex digits, see core.ids) is its own 16-byte key; other ids are hashed."""
    if len(reservation_id) == 32:
        try:
            key = bytes.fromhex(reservation_id)
        except ValueError:
            pass
        else:
            if key != _ZERO_KEY:
                return key
    return _key(b"reservation", reservation_id)


def _home(key: bytes, cap: int) -> int:
    """The first slot to probe: Fibonacci hashing of the whole key (cap is a power of two), so
    ids that differ in any part (a call id's time, a counter) spread over the table. (Only the
    low 64 bits of the product are kept, so the XOR of the key's halves is all that counts.)"""
    low: int
    high: int
    low, high = _KEY_HALVES.unpack(key)
    return (((low ^ high) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> (65 - cap.bit_length())


def _find(m: mmap.mmap, key: bytes, start: int, size: int, count: int) -> int:
    """Index of the record (of `count` records of `size` bytes at `start`) whose key is `key`."""
    end = start + size * count
    pos = m.find(key, start, end)
    while pos >= 0:
        if (pos - start) % size == 0:
            return (pos - start) // size
        pos = m.find(key, pos + 1, end)
    return -1


class MappedLedger(ClosingContext):
    """Ledger in a memory-mapped file: atomic across the threads and processes that open the
    same path on one machine (a local disk; not a network share, where `flock` may not lock).

    Reservations sit in an open-addressing table (linear probing, backward-shift deletion),
    kept at most half full, so finding one costs the same however many are in flight.
    `timeout` is how long a call waits for another process holding the file's lock before
    raising `LedgerUnavailableError`. A file that is not such a ledger (or is damaged) raises
    `LedgerError` naming it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        self._path = check_path("MappedLedger", path, "budget.ledger")
        if not AVAILABLE:
            raise ConfigError("MappedLedger needs fcntl.flock (Linux, macOS); use hs.SQLiteLedger on this system.")
        self._clock = clock
        self._timeout = positive_seconds("MappedLedger timeout", timeout)
        self._lock = threading.Lock()
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._data_off = self._bbase = self._bcap = self._sbase = self._scap = self._cbase = self._ccap = 0
        self._forks = -1
        self._closed = False
        self._bucket_keys: dict[str, bytes] = {}
        # (key, index, offset) per bucket name: a hint, checked against the key in the file at use
        self._bucket_index: dict[str, tuple[bytes, int, int]] = {}
        # What this process's reservations wrote, by id. Settle checks the record is still there,
        # byte for byte, and then need not read it back; anything else (moved, renewed elsewhere,
        # expired) reads the file.
        self._held: dict[str, _Held] = {}
        self._pid = os.getpid()
        with self._lock:
            try:
                self._open()
            except BaseException:
                self._closed = True
                if self._map is not None:
                    self._map.close()
                if self._fd >= 0:
                    os.close(self._fd)
                raise

    def __repr__(self) -> str:
        return f"MappedLedger({str(self._path)!r})"

    # -- the file (caller holds self._lock) ---------------------------------------------------

    def _damaged(self, why: str) -> LedgerError:
        return LedgerError(
            f"{self._path} is not a holysheep-lab ledger file, or is damaged ({why}). Move it away: "
            "a new ledger relearns this month's spend from the call log when a client starts."
        )

    def _unavailable(self, op: str, exc: OSError) -> LedgerUnavailableError:
        return LedgerUnavailableError(
            f"Cannot {op} the ledger file {self._path} ({exc.strerror or exc}); the call is refused. "
            "Free disk space, or keep the log folder on a local disk."
        )

    def _open(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise LedgerUnavailableError(
                f"Cannot open the ledger file {self._path} ({exc.strerror}): check the folder exists and is writable."
            ) from None
        self._forks, self._pid = _forks[0], os.getpid()
        self._flock()
        try:
            if os.fstat(self._fd).st_size == 0:
                self._create()
            self._remap()
            if _U32.unpack_from(self._map_now, _JOURNAL_LEN_AT)[0]:
                self._replay(self._map_now)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _create(self) -> None:
        head = bytearray(_DATA_START)
        _HEAD.pack_into(head, 0, b"\0" * 8, _VERSION, MAX_BUCKETS, _INITIAL, _INITIAL, _INITIAL, 0,
                        _DATA_START, _INF, 0.0, 0, 0)
        try:
            os.ftruncate(self._fd, _DATA_START + _INITIAL * (_BUCKET.size + _SLOT_SIZE + _CLAIM.size))
            os.pwrite(self._fd, bytes(head), 0)
            os.pwrite(self._fd, _MAGIC, 0)  # last: a file with its magic is complete
        except OSError as exc:
            raise self._unavailable("create", exc) from None

    def _remap(self) -> None:
        size = os.fstat(self._fd).st_size
        if size < _DATA_START:
            raise self._damaged(f"{size} bytes, shorter than its header")
        if self._map is not None:
            self._map.close()
            self._map = None
        try:
            m = mmap.mmap(self._fd, size)
        except OSError as exc:  # a file system that cannot map files
            raise self._unavailable("map", exc) from None
        magic, version, per_slot, bcap, scap, ccap, _journal, data_off, *_rest = _HEAD.unpack_from(m, 0)
        if magic != _MAGIC:
            m.close()
            raise self._damaged("no ledger header")
        if version != _VERSION or per_slot != MAX_BUCKETS:
            m.close()
            raise self._damaged(f"layout version {version}; this version of holysheep-lab reads {_VERSION}")
        end = data_off + bcap * _BUCKET.size + scap * _SLOT_SIZE + ccap * _CLAIM.size
        if not (bcap and scap and ccap) or scap & (scap - 1) or data_off < _DATA_START or end > size:
            m.close()
            raise self._damaged("its regions do not fit the file")
        self._map = m
        self._data_off, self._bcap, self._scap, self._ccap = data_off, bcap, scap, ccap
        self._bbase = data_off
        self._sbase = data_off + bcap * _BUCKET.size
        self._cbase = self._sbase + scap * _SLOT_SIZE
        self._bucket_index.clear()

    def _flock(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as exc:
            raise LedgerUnavailableError(f"Cannot lock the ledger file {self._path} ({exc.strerror}).") from None
        deadline = time.monotonic() + self._timeout
        pause = 0.0002
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LedgerUnavailableError(
                        f"The ledger file {self._path} stayed locked by another process for over "
                        f"{self._timeout:g} s; the call is refused. Raise timeout= or find the process "
                        "holding it."
                    ) from None
                pause = min(pause * 2, 0.005)

    @property
    def _map_now(self) -> mmap.mmap:
        assert self._map is not None
        return self._map

    def _enter(self) -> tuple[mmap.mmap, float, float, int]:
        """Take the locks (thread, then file) and bring the mapping up to date. Pair with _leave.
        Returns the mapping and the header's earliest reservation expiry, next sweep and live
        slot count, read with the check."""
        self._lock.acquire()
        try:
            if self._closed:
                raise LedgerError(f"This MappedLedger ({self._path}) is closed")
            if self._forks != _forks[0]:
                self._open()
            try:
                fcntl.flock(self._fd, _LOCK_NOW)
            except OSError:
                self._flock()  # held by another process: wait for it (or name the error)
        except BaseException:
            self._lock.release()
            raise
        try:
            m = self._map
            assert m is not None
            journal, data_off, earliest, sweep_due, live = _HOT.unpack_from(m, _HOT_AT)
            if journal or data_off != self._data_off:
                if journal:
                    self._replay(m)  # a process was killed mid-update: finish it
                else:
                    self._remap()  # another process grew the file
                m = self._map_now
                _journal, _data, earliest, sweep_due, live = _HOT.unpack_from(m, _HOT_AT)
            return m, earliest, sweep_due, live
        except BaseException:
            self._leave()
            raise

    def _leave(self) -> None:
        try:
            fcntl.flock(self._fd, _UNLOCK)
        finally:
            self._lock.release()

    def _commit(self, m: mmap.mmap, patches: Patches) -> None:
        """Write patches all or nothing (as far as a killed process can tell): journal, mark, apply."""
        if not patches:
            return
        parts: list[bytes] = []
        for off, data in patches:
            parts += (_PATCH.pack(off, len(data)), data)
        journal = b"".join(parts)
        size = len(journal)
        if size > _JOURNAL_MAX:  # never: one operation touches a few records
            raise LedgerError(f"ledger update of {size} bytes is larger than the journal")
        m[_JOURNAL_AT:_JOURNAL_AT + size] = journal
        _JOURNAL_LEN.pack_into(m, _JOURNAL_LEN_AT, size)
        for off, data in patches:
            m[off:off + len(data)] = data
        _JOURNAL_LEN.pack_into(m, _JOURNAL_LEN_AT, 0)

    def _replay(self, m: mmap.mmap) -> None:
        length = _U32.unpack_from(m, _JOURNAL_LEN_AT)[0]
        if length > _JOURNAL_MAX:
            raise self._damaged("its journal is longer than its header")
        pos, end = _JOURNAL_AT, _JOURNAL_AT + length
        while pos < end:
            off, size = _PATCH.unpack_from(m, pos)
            pos += _PATCH.size
            if off + size > len(m):
                raise self._damaged("its journal writes past the end of the file")
            m[off:off + size] = m[pos:pos + size]
            pos += size
        _JOURNAL_LEN.pack_into(m, _JOURNAL_LEN_AT, 0)
        self._remap()  # the journal may have switched the layout

    # -- buckets (caller holds the locks) -----------------------------------------------------

    def _bucket_at(self, m: mmap.mmap, name: str) -> tuple[bytes, int]:
        """(key, index) of the bucket named `name`; index -1 if it has no record."""
        hit = self._bucket_index.get(name)
        if hit is not None:
            key, i, off = hit
            if m[off:off + 16] == key:
                return key, i
        else:
            key = self._bucket_keys.get(name) or self._bucket_key(name)
        i = _find(m, key, self._bbase, _BUCKET.size, self._bcap)
        if i >= 0:
            self._remember(name, key, i)
        return key, i

    def _bucket_key(self, name: str) -> bytes:
        if len(self._bucket_keys) > 4096:
            self._bucket_keys.clear()
        key = self._bucket_keys[name] = _key(b"bucket", name)
        return key

    def _remember(self, name: str, key: bytes, i: int) -> None:
        if len(self._bucket_index) > 4096:
            self._bucket_index.clear()
        self._bucket_index[name] = (key, i, self._bbase + i * _BUCKET_SIZE)

    def _state(self, m: mmap.mmap, i: int) -> list[float]:
        """[spent, reserved, window end] of bucket i (zeros for -1)."""
        if i < 0:
            return [0, 0, 0.0]
        return list(_BSTATE.unpack_from(m, self._bbase + i * _BUCKET.size + 16))

    def _place(self, m: mmap.mmap, names: Sequence[str]) -> tuple[mmap.mmap, list[int], set[int]]:
        """The bucket index of every name, choosing free records for absent ones (growing the
        file if none is free). Returns the mapping (new after growth), indexes, new indexes."""
        found = [self._bucket_at(m, n) for n in names]
        fresh: set[int] = set()
        if all(i >= 0 for _, i in found):
            return m, [i for _, i in found], fresh
        need = sum(1 for _, i in found if i < 0)
        free = self._free_buckets(m, need)
        while len(free) < need:
            m = self._grow(m, buckets=True)
            free = self._free_buckets(m, need)
        out = []
        taken = iter(free)
        chosen: dict[bytes, int] = {}
        for key, at in found:
            i = at if at >= 0 else chosen.get(key, -1)
            if i < 0:
                i = chosen[key] = next(taken)
                fresh.add(i)
            out.append(i)
        return m, out, fresh

    def _free_buckets(self, m: mmap.mmap, count: int) -> list[int]:
        free = []
        base, size = self._bbase, _BUCKET.size
        for i in range(self._bcap):
            off = base + i * size
            if m[off:off + 16] == _ZERO_KEY:
                free.append(i)
                if len(free) == count:
                    break
        return free

    def _bucket_patches(self, names: Sequence[str], indexes: Sequence[int], fresh: set[int],
                        states: dict[int, list[float]]) -> Patches:
        patches: Patches = []
        done: set[int] = set()
        for name, i in zip(names, indexes, strict=True):
            done.add(i)
            rec = states[i]
            off = self._bbase + i * _BUCKET.size
            if rec[0] > _MAX_NANOS or rec[1] > _MAX_NANOS:
                raise LedgerError(f"bucket {name!r} would hold more than {_MAX_NANOS} nanos")
            if i in fresh:
                key = self._bucket_keys.get(name) or self._bucket_key(name)
                patches.append((off, _BUCKET.pack(key, *rec)))
                self._remember(name, key, i)
            else:
                patches.append((off + 16, _BSTATE.pack(*rec)))
        for i, rec in states.items():  # buckets of a dropped reservation, not named here
            if i not in done:
                patches.append((self._bbase + i * _BUCKET.size + 16, _BSTATE.pack(*rec)))
        return patches

    # -- reservations: an open-addressing table (caller holds the locks) ----------------------

    def _probe(self, m: mmap.mmap, key: bytes) -> tuple[int, bool]:
        """(index, True) of the slot holding `key`, or (index of the first empty slot, False)."""
        cap, base = self._scap, self._sbase
        i = _home(key, cap)
        for _ in range(cap):
            off = base + i * _SLOT_SIZE
            held = m[off:off + 16]
            if held == key:
                return i, True
            if held == _ZERO_KEY:
                return i, False
            i = i + 1 if i + 1 < cap else 0
        return -1, False  # full: never, the table is kept at most half full

    def _delete(self, m: mmap.mmap, i: int, states: dict[int, list[float]]) -> Patches:
        """Patches that free slot i (backward-shift deletion keeps every probe chain whole) and
        take its amounts off its buckets' reserved (in `states`, patched by the caller). A chain
        too long for one journal entry doubles the table first (the caller then reads offsets
        and the mapping anew)."""
        off = self._sbase + i * _SLOT_SIZE
        n = min(_SLOT.unpack_from(m, off)[2], MAX_BUCKETS)
        for j in range(n):
            b, amount = _ENTRY.unpack_from(m, off + _SLOT.size + j * _ENTRY.size)
            if amount and b < self._bcap:
                rec = states.get(b)
                if rec is None:
                    rec = states[b] = self._state(m, b)
                rec[1] = max(0, rec[1] - amount)
        for grown in range(4):
            moves = self._shifts(m, i)
            if len(moves) <= _MAX_MOVES:
                break
            if grown == 3:  # a table 8x as large still clusters: keys are not spread
                raise LedgerError(f"the reservation table of {self._path} keeps clustering; move the file away")
            key = m[off:off + 16]
            m = self._grow(m, slots=True)
            i = self._probe(m, key)[0]
            off = self._sbase + i * _SLOT_SIZE
        base = self._sbase
        patches: Patches = [(base + dst * _SLOT_SIZE, m[base + src * _SLOT_SIZE:base + (src + 1) * _SLOT_SIZE])
                            for dst, src in moves]
        patches.append((base + (moves[-1][1] if moves else i) * _SLOT_SIZE, _ZERO_KEY))
        live = _U32.unpack_from(m, _LIVE_AT)[0]
        patches.append((_LIVE_AT, _U32.pack(max(0, live - 1))))
        return patches

    def _shifts(self, m: mmap.mmap, i: int) -> list[tuple[int, int]]:
        """(to, from) slot moves that close the hole a deletion at i leaves in its probe chain."""
        cap, base = self._scap, self._sbase
        moves: list[tuple[int, int]] = []
        hole, j = i, i
        while True:
            j = j + 1 if j + 1 < cap else 0
            off = base + j * _SLOT_SIZE
            key = m[off:off + 16]
            if key == _ZERO_KEY or j == i:
                return moves
            home = _home(key, cap)
            # The record at j may move into the hole unless its home lies cyclically in (hole, j].
            if (hole < j and hole < home <= j) or (hole > j and (home > hole or home <= j)):
                continue
            moves.append((hole, j))
            hole = j
            if len(moves) > _MAX_MOVES:
                return moves

    def _grow(self, m: mmap.mmap, buckets: bool = False, slots: bool = False, claims: bool = False) -> mmap.mmap:
        """Double the named regions: the new layout is written past the file's end (slots
        rehashed), then the header switches to it in one journaled patch."""
        bcap = self._bcap * (2 if buckets else 1)
        scap = self._scap * (2 if slots else 1)
        ccap = self._ccap * (2 if claims else 1)
        data_off = -(-len(m) // mmap.PAGESIZE) * mmap.PAGESIZE
        table = bytearray(scap * _SLOT_SIZE)
        for i in range(self._scap):
            off = self._sbase + i * _SLOT_SIZE
            key = m[off:off + 16]
            if key == _ZERO_KEY:
                continue
            j = _home(key, scap)
            while table[j * _SLOT_SIZE:j * _SLOT_SIZE + 16] != _ZERO_KEY:
                j = j + 1 if j + 1 < scap else 0
            table[j * _SLOT_SIZE:(j + 1) * _SLOT_SIZE] = m[off:off + _SLOT_SIZE]
        region = b"".join((
            m[self._bbase:self._bbase + self._bcap * _BUCKET.size], bytes((bcap - self._bcap) * _BUCKET.size),
            bytes(table),
            m[self._cbase:self._cbase + self._ccap * _CLAIM.size], bytes((ccap - self._ccap) * _CLAIM.size),
        ))
        try:
            os.ftruncate(self._fd, data_off + len(region))
            os.pwrite(self._fd, region, data_off)
        except OSError as exc:  # a full disk: nothing switched, the old layout stays in use
            raise self._unavailable("grow", exc) from None
        self._commit(m, [(_CAPS_AT, struct.pack("<III", bcap, scap, ccap)), (_DATA_AT, struct.pack("<Q", data_off))])
        self._remap()
        return self._map_now

    def _expire(self, m: mmap.mmap, now: float) -> mmap.mmap:
        """Drop reservations past their expiry (only when the earliest one is due), and now and
        then buckets a day past their window and lapsed claims."""
        _journal, _data, earliest_due, sweep_due, _live = _HOT.unpack_from(m, _HOT_AT)
        if now >= earliest_due:
            lapsed = []
            earliest = _INF
            for i in range(self._scap):
                off = self._sbase + i * _SLOT_SIZE
                key, expires, _n, _pid = _SLOT.unpack_from(m, off)
                if key == _ZERO_KEY:
                    continue
                if expires <= now:
                    lapsed.append(key)
                else:
                    earliest = min(earliest, expires)
            for key in lapsed:
                i, found = self._probe(m, key)
                if found:
                    states: dict[int, list[float]] = {}
                    patches = self._delete(m, i, states)
                    m = self._map_now  # a long chain may have grown the table
                    patches += [(self._bbase + b * _BUCKET.size + 16, _BSTATE.pack(*rec)) for b, rec in states.items()]
                    self._commit(m, patches)
            self._commit(m, [(_EXPIRY_AT, _F64.pack(earliest))])
        if now >= sweep_due:
            cutoff = now - BUCKET_GRACE_S
            for i in range(self._bcap):
                off = self._bbase + i * _BUCKET.size
                key, _spent, reserved, expires = _BUCKET.unpack_from(m, off)
                if key != _ZERO_KEY and expires < cutoff and not reserved:
                    self._commit(m, [(off, bytes(_BUCKET.size))])
            for i in range(self._ccap):
                off = self._cbase + i * _CLAIM.size
                key, expires = _CLAIM.unpack_from(m, off)
                if key != _ZERO_KEY and expires <= now:
                    self._commit(m, [(off, bytes(_CLAIM.size))])
            self._commit(m, [(_SWEEP_AT, _F64.pack(now + SWEEP_EVERY))])
        return m

    # -- the Ledger protocol ------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return True  # every process that maps the file

    def use_seeder(self, seeder: Seeder) -> None:
        """Ignored: the file keeps its state (a deleted file is a new, empty ledger at open)."""

    def reserve(self, reservation_id: str, charges: Sequence[Charge], ttl: float) -> Refusal | None:
        if type(reservation_id) is not str or not reservation_id:
            check_id(reservation_id)  # raises
        merged = merge_charges(charges)
        ttl = check_ttl(ttl)
        n = len(merged)
        if n > MAX_BUCKETS:
            raise ConfigError(f"A reservation may touch at most {MAX_BUCKETS} buckets, not {n}.")
        rkey = _reservation_key(reservation_id)
        m, earliest, sweep_due, live = self._enter()
        try:
            now = self._clock()
            if now >= earliest or now >= sweep_due:
                m = self._expire(m, now)
                _journal, _data, earliest, sweep_due, live = _HOT.unpack_from(m, _HOT_AT)
            slot, found = self._probe(m, rkey)
            if found:
                raise LedgerError(f"Reservation {reservation_id!r} is already in flight")
            until = now + ttl
            if (live + 1) * 2 > self._scap:
                return self._reserve_placing(m, rkey, merged, until)  # the table grows first
            # One pass: check each limit and make the journal's patch of each bucket, (offset,
            # length, reserved, window end), and the slot's (bucket index, amount) entries.
            patches: list[Any] = []
            entries: list[int] = []
            known = self._bucket_index
            for c in merged:
                hit = known.get(c.bucket)
                if hit is None:
                    return self._reserve_placing(m, rkey, merged, until)  # a bucket not seen yet
                key, i, off = hit
                held, spent, reserved, end = _BUCKET.unpack_from(m, off)
                if held != key:
                    return self._reserve_placing(m, rkey, merged, until)  # moved: search for it
                amount = c.amount
                if c.limit is not None and spent + reserved + amount > c.limit:
                    return Refusal(c.bucket, spent, reserved, c.limit, amount)
                total = reserved + amount
                if total > _MAX_NANOS:
                    raise LedgerError(f"bucket {c.bucket!r} would hold more than {_MAX_NANOS} nanos")
                patches += (off + 24, 16, total, end if end >= c.expires_at else c.expires_at)
                entries += (i, amount)
            if until < earliest:
                # Alone, ahead of the journal: one aligned 8-byte store, and a hint left too
                # early by an update that dies only costs one scan that finds nothing due.
                _F64.pack_into(m, _EXPIRY_AT, until)
            size = _SLOT.size + n * _ENTRY.size
            soff = self._sbase + slot * _SLOT_SIZE
            journal = _RESERVE_JOURNAL[n]
            journal.pack_into(m, _JOURNAL_AT, *patches, soff, size, rkey, until, n, self._pid, *entries,
                              _LIVE_AT, 4, live + 1)
            _JOURNAL_LEN.pack_into(m, _JOURNAL_LEN_AT, journal.size)  # from here a kill is redone
            for k in range(0, 4 * n, 4):
                _RESERVED.pack_into(m, patches[k], patches[k + 2], patches[k + 3])
            at = _JOURNAL_AT + 28 * n + 12  # the slot record, as packed into the journal
            record = m[at:at + size]
            m[soff:soff + size] = record
            _U32.pack_into(m, _LIVE_AT, live + 1)
            _JOURNAL_LEN.pack_into(m, _JOURNAL_LEN_AT, 0)
            held_now = self._held
            if len(held_now) >= _HELD_MAX:  # reservations settled elsewhere or never: forget them
                held_now.clear()
            held_now[reservation_id] = (rkey, slot, record, entries)
            return None
        finally:
            self._leave()

    def _reserve_placing(self, m: mmap.mmap, rkey: bytes, merged: Sequence[Charge], until: float) -> Refusal | None:
        """Reserve the general way: find every bucket (searching the file), check the limits,
        then add the reservation, making bucket records or growing the file as needed."""
        for c in merged:
            i = self._bucket_at(m, c.bucket)[1]
            spent, reserved, _end = self._state(m, i)
            if c.limit is not None and spent + reserved + c.amount > c.limit:
                return Refusal(c.bucket, int(spent), int(reserved), c.limit, c.amount)
        self._add(m, rkey, merged, until)
        return None

    def _add(self, m: mmap.mmap, rkey: bytes, merged: Sequence[Charge], until: float) -> None:
        """Add an accepted reservation, growing the file or making bucket records as needed."""
        live = _U32.unpack_from(m, _LIVE_AT)[0]
        if (live + 1) * 2 > self._scap:
            m = self._grow(m, slots=True)
        slot, _found = self._probe(m, rkey)
        names = [c.bucket for c in merged]
        m, indexes, fresh = self._place(m, names)  # bucket growth keeps slot positions
        record = bytearray(_SLOT.size + len(merged) * _ENTRY.size)
        _SLOT.pack_into(record, 0, rkey, until, len(merged), self._pid)
        states: dict[int, list[float]] = {}
        for j, (c, i) in enumerate(zip(merged, indexes, strict=True)):
            rec = states.get(i)
            if rec is None:
                rec = states[i] = [0, 0, 0.0] if i in fresh else self._state(m, i)
            rec[1] += c.amount
            rec[2] = max(rec[2], c.expires_at)
            _ENTRY.pack_into(record, _SLOT.size + j * _ENTRY.size, i, c.amount)
        patches = self._bucket_patches(names, indexes, fresh, states)
        patches.append((self._sbase + slot * _SLOT_SIZE, bytes(record)))
        patches.append((_LIVE_AT, _U32.pack(live + 1)))
        if until < _F64.unpack_from(m, _EXPIRY_AT)[0]:
            patches.append((_EXPIRY_AT, _F64.pack(until)))
        self._commit(m, patches)

    def renew(self, reservation_id: str, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        rkey = _reservation_key(reservation_id)
        self._held.pop(reservation_id, None)  # its record changes: settle reads it from the file
        m = self._enter()[0]
        try:
            now = self._clock()
            m = self._expire(m, now)
            slot, found = self._probe(m, rkey)
            if not found:
                return False  # settled, released, or lapsed: a lapsed hold is not revived
            until = now + ttl
            patches = [(self._sbase + slot * _SLOT_SIZE + 16, _F64.pack(until))]
            if until < _F64.unpack_from(m, _EXPIRY_AT)[0]:
                patches.append((_EXPIRY_AT, _F64.pack(until)))
            self._commit(m, patches)
            return True
        finally:
            self._leave()

    def settle(self, reservation_id: str | None, charges: Sequence[Charge]) -> Mapping[str, BucketState]:
        merged = merge_charges(charges)
        held = rkey = None
        if reservation_id is not None:
            held = self._held.pop(reservation_id, None)
            rkey = held[0] if held is not None else _reservation_key(reservation_id)
        m, earliest, sweep_due, live = self._enter()
        try:
            now = self._clock()
            if now >= earliest or now >= sweep_due:
                m = self._expire(m, now)
                live = _U32.unpack_from(m, _LIVE_AT)[0]
            if held is not None:
                done = self._settle_held(m, held, merged, live)
                if done is not None:
                    return done
            return self._settle(m, rkey, merged)
        finally:
            self._leave()

    def _settle_held(self, m: mmap.mmap, held: _Held, merged: Sequence[Charge], live: int) -> dict[str, BucketState] | None:
        """Settle a reservation this process made, if its record is still where and what it
        wrote and the charges name its buckets in its order (what the guard does); None
        (nothing written) otherwise, for the general way."""
        rkey, slot, record, entries = held
        size = len(record)
        soff = self._sbase + slot * _SLOT_SIZE
        if m[soff:soff + size] != record:  # moved by another deletion or growth, or gone
            slot, found = self._probe(m, rkey)
            soff = self._sbase + slot * _SLOT_SIZE
            if not found or m[soff:soff + size] != record:
                return None
        n = len(merged)
        if len(entries) != 2 * n:
            return None  # other buckets than it reserved
        after = soff + _SLOT_SIZE if slot + 1 < self._scap else self._sbase
        moves = self._shifts(m, slot) if m[after:after + 16] != _ZERO_KEY else ()
        if len(moves) > _MAX_MOVES:
            return None  # the table grows first: the general way
        # The journal's patch of each bucket: (offset, length, spent, reserved, window end).
        patches: list[Any] = []
        known = self._bucket_index
        k = 0
        for c in merged:
            hit = known.get(c.bucket)
            if hit is None:
                return None
            key, i, off = hit
            bucket, spent, reserved, end = _BUCKET.unpack_from(m, off)
            if bucket != key or i != entries[k]:
                return None
            total = spent + c.amount
            if total > _MAX_NANOS:
                raise LedgerError(f"bucket {c.bucket!r} would hold more than {_MAX_NANOS} nanos")
            left = reserved - entries[k + 1]
            patches += (off + 16, 24, total, left if left > 0 else 0, end if end >= c.expires_at else c.expires_at)
            k += 2
        live = live - 1 if live else 0
        journal = _SETTLE_JOURNAL[n]
        journal.pack_into(m, _JOURNAL_AT, *patches)
        pos = _JOURNAL_AT + journal.size
        base = self._sbase
        for dst, src in moves:  # backward-shift deletion: each record into the hole before it
            at = base + src * _SLOT_SIZE
            _PATCH.pack_into(m, pos, base + dst * _SLOT_SIZE, _SLOT_SIZE)
            m[pos + 12:pos + 12 + _SLOT_SIZE] = m[at:at + _SLOT_SIZE]
            pos += 12 + _SLOT_SIZE
        hole = base + moves[-1][1] * _SLOT_SIZE if moves else soff
        _SETTLE_TAIL.pack_into(m, pos, hole, 16, _ZERO_KEY, _LIVE_AT, 4, live)
        _JOURNAL_LEN.pack_into(m, _JOURNAL_LEN_AT, pos + _SETTLE_TAIL.size - _JOURNAL_AT)  # a kill from here is redone
        out = {}
        for k, c in enumerate(merged):
            at = 5 * k
            _BSTATE.pack_into(m, patches[at], patches[at + 2], patches[at + 3], patches[at + 4])
            out[c.bucket] = BucketState(patches[at + 2], patches[at + 3])
        for dst, src in moves:  # in order: each source is read before it is overwritten
            at = base + dst * _SLOT_SIZE
            m[at:at + _SLOT_SIZE] = m[base + src * _SLOT_SIZE:base + (src + 1) * _SLOT_SIZE]
        m[hole:hole + 16] = _ZERO_KEY
        _U32.pack_into(m, _LIVE_AT, live)
        _JOURNAL_LEN.pack_into(m, _JOURNAL_LEN_AT, 0)
        return out

    def _settle(self, m: mmap.mmap, rkey: bytes | None, merged: Sequence[Charge]) -> dict[str, BucketState]:
        """Settle the general way: find the buckets (making records), read the slot's entries."""
        names = [c.bucket for c in merged]
        indexes = [self._bucket_at(m, n)[1] for n in names]
        fresh: set[int] = set()
        if -1 in indexes:
            m, indexes, fresh = self._place(m, names)  # may grow the file: before reading slots
        bbase = self._bbase
        states: dict[int, list[float]] = {
            i: [0, 0, 0.0] if i in fresh else list(_BSTATE.unpack_from(m, bbase + i * _BUCKET.size + 16))
            for i in indexes
        }
        patches: Patches = []
        if rkey is not None:
            slot, found = self._probe(m, rkey)
            if found:
                patches = self._delete(m, slot, states)
                m, bbase = self._map_now, self._bbase  # a long chain may have grown the table
        for c, i in zip(merged, indexes, strict=True):
            rec = states[i]
            rec[0] += c.amount
            rec[2] = max(rec[2], c.expires_at)
        if fresh:
            patches += self._bucket_patches(names, indexes, fresh, states)
        else:
            for i, rec in states.items():
                if rec[0] > _MAX_NANOS:
                    raise LedgerError(f"a bucket would hold more than {_MAX_NANOS} nanos")
                patches.append((bbase + i * _BUCKET.size + 16, _BSTATE.pack(*rec)))
        self._commit(m, patches)
        return {c.bucket: BucketState(int(states[i][0]), int(states[i][1])) for c, i in zip(merged, indexes, strict=True)}

    def release(self, reservation_id: str) -> None:
        rkey = _reservation_key(reservation_id)
        self._held.pop(reservation_id, None)
        m = self._enter()[0]
        try:
            slot, found = self._probe(m, rkey)
            if found:
                states: dict[int, list[float]] = {}
                patches = self._delete(m, slot, states)
                patches += self._bucket_patches((), (), set(), states)
                self._commit(self._map_now, patches)
        finally:
            self._leave()

    def snapshot(self, buckets: Sequence[str]) -> dict[str, BucketState]:
        m = self._enter()[0]
        try:
            m = self._expire(m, self._clock())
            out = {}
            for b in buckets:
                spent, reserved, _end = self._state(m, self._bucket_at(m, b)[1])
                out[b] = BucketState(int(spent), int(reserved))
            return out
        finally:
            self._leave()

    def seed(self, spent: Mapping[str, int], expires_at: Mapping[str, float]) -> None:
        items = seed_items(spent, expires_at)
        if not items:
            return
        for name, value, _exp in items:
            if value > _MAX_NANOS:
                raise LedgerError(f"seed: {value} nanos for {name!r} is more than a ledger bucket holds")
        m = self._enter()[0]
        try:
            names = [name for name, _, _ in items]
            m, indexes, fresh = self._place(m, names)
            states: dict[int, list[float]] = {}
            for (_name, value, exp), i in zip(items, indexes, strict=True):
                rec = states.get(i)
                if rec is None:
                    rec = states[i] = [0, 0, 0.0] if i in fresh else self._state(m, i)
                rec[0] = max(rec[0], value)
                rec[2] = max(rec[2], exp)
            self._commit(m, self._bucket_patches(names, indexes, fresh, states))
        finally:
            self._leave()

    def claim(self, key: str, expires_at: float) -> bool:
        ckey = _key(b"claim", key)
        m = self._enter()[0]
        try:
            now = self._clock()
            i = _find(m, ckey, self._cbase, _CLAIM.size, self._ccap)
            if i >= 0:
                if _CLAIM.unpack_from(m, self._cbase + i * _CLAIM.size)[1] > now:
                    return False
            else:
                i = self._free_claim(m, now)
                while i < 0:
                    m = self._grow(m, claims=True)
                    i = self._free_claim(m, now)
            self._commit(m, [(self._cbase + i * _CLAIM.size, _CLAIM.pack(ckey, float(expires_at)))])
            return True
        finally:
            self._leave()

    def _free_claim(self, m: mmap.mmap, now: float) -> int:
        for i in range(self._ccap):
            key, expires = _CLAIM.unpack_from(m, self._cbase + i * _CLAIM.size)
            if key == _ZERO_KEY or expires <= now:
                return i
        return -1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            m, self._map = self._map, None
            fd, self._fd = self._fd, -1
        if m is not None:
            m.close()
        if fd >= 0:  # a fork's inherited descriptor is a copy: closing it leaves the parent's
            os.close(fd)
