"""The mapped-file ledger beyond the shared contract (tests/test_ledger_contract.py): a killed
process (mid-update, or holding a reservation), growth, a foreign or damaged file, a held lock,
and which ledger a log folder gets by default."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from holysheep_lab.errors import LedgerError, LedgerUnavailableError
from holysheep_lab.ledger import BucketState, Charge, MappedLedger, SQLiteLedger, bucket_name
from holysheep_lab.ledger.machine import machine_ledger
from holysheep_lab.ledger.mapped import MAPPED_FILE
from holysheep_lab.ledger.sqlite import LEDGER_FILE

A = bucket_name("global", "day:2026-12-02")
B = bucket_name("global", "month:2026-12")


class FakeClock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def _far() -> float:
    return time.time() + 86_400


def _child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=60)


# Run in a child: the update after `arm()` applies its journal's first patch once the journal is
# marked valid, then the process is SIGKILLed; whichever way the ledger writes an update (the
# general patch list or the packed journals of reserve and settle), the rest must be redone.
_KILL_MID_UPDATE = """
import os, signal, sys, time
from holysheep_lab.ledger import Charge, MappedLedger
from holysheep_lab.ledger import mapped

class KillAfterFirstPatch:
    armed = False

    def __init__(self, real):
        self.real, self.size = real, real.size

    def unpack_from(self, *args):
        return self.real.unpack_from(*args)

    def pack_into(self, m, at, length):
        self.real.pack_into(m, at, length)
        if length and self.armed:
            off, size = mapped._PATCH.unpack_from(m, mapped._JOURNAL_AT)
            start = mapped._JOURNAL_AT + mapped._PATCH.size
            m[off:off + size] = m[start:start + size]
            os.kill(os.getpid(), signal.SIGKILL)

hook = mapped._JOURNAL_LEN = KillAfterFirstPatch(mapped._JOURNAL_LEN)
A, B, step = sys.argv[2], sys.argv[3], sys.argv[4]
if step == "settle reserved, moving another":
    mapped._home = lambda key, cap: 0  # one probe chain: deleting the first moves the second
ledger = MappedLedger(sys.argv[1])
far = time.time() + 86400
def arm():
    hook.armed = True
if step == "settle unreserved":
    arm()
    ledger.settle(None, [Charge(A, 5, None, far), Charge(B, 5, None, far)])
elif step == "reserve":
    arm()
    ledger.reserve("r", [Charge(A, 7, 1000, far), Charge(B, 7, None, far)], 600)
elif step == "settle reserved":
    ledger.reserve("r", [Charge(A, 7, 1000, far), Charge(B, 7, None, far)], 600)
    arm()
    ledger.settle("r", [Charge(A, 5, 1000, far), Charge(B, 5, None, far)])
elif step == "settle reserved, moving another":
    ledger.reserve("first", [Charge(A, 3, 1000, far), Charge(B, 3, None, far)], 600)
    ledger.reserve("r", [Charge(A, 7, 1000, far), Charge(B, 7, None, far)], 600)
    arm()
    ledger.settle("first", [Charge(A, 5, 1000, far), Charge(B, 5, None, far)])
elif step == "release":
    ledger.reserve("r", [Charge(A, 7, 1000, far), Charge(B, 7, None, far)], 600)
    arm()
    ledger.release("r")
"""


@pytest.mark.parametrize(("step", "after", "held"), [
    ("settle unreserved", BucketState(105, 0), False),
    ("reserve", BucketState(100, 7), True),
    ("settle reserved", BucketState(105, 0), False),
    ("settle reserved, moving another", BucketState(105, 7), True),
    ("release", BucketState(100, 0), False),
])
def test_a_process_killed_mid_update_leaves_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, after: BucketState, held: bool
) -> None:
    from holysheep_lab.ledger import mapped

    if "moving" in step:  # as the child probes
        monkeypatch.setattr(mapped, "_home", lambda key, cap: 0)
    path = tmp_path / "l.mmap"
    with MappedLedger(path) as ledger:
        ledger.settle(None, [Charge(A, 100, None, _far()), Charge(B, 100, None, _far())])
    out = _child(_KILL_MID_UPDATE, str(path), A, B, step)
    assert out.returncode == -signal.SIGKILL, out.stderr
    with MappedLedger(path) as ledger:
        assert ledger.snapshot([A, B]) == {A: after, B: after}
        assert ledger.renew("r", 600) is held  # the reservation's record went along, or its deletion did
        ledger.release("r")
        assert ledger.snapshot([A, B]) == {A: BucketState(after.spent, 0), B: BucketState(after.spent, 0)}


def test_processes_killed_at_random_leave_it_whole(tmp_path: Path) -> None:
    """Black box: children reserving and settling as fast as they can, SIGKILLed at random
    moments; every pair touches both buckets alike, so they must stay alike."""
    import random

    path = tmp_path / "l.mmap"
    MappedLedger(path).close()
    code = """
        import sys, time, uuid
        from holysheep_lab.ledger import Charge, MappedLedger
        ledger = MappedLedger(sys.argv[1])
        far = time.time() + 86400
        print("ready", flush=True)
        while True:
            rid = uuid.uuid4().hex
            ledger.reserve(rid, [Charge(sys.argv[2], 2000, None, far), Charge(sys.argv[3], 2000, None, far)], 600)
            ledger.settle(rid, [Charge(sys.argv[2], 1000, None, far), Charge(sys.argv[3], 1000, None, far)])
        """
    rng = random.Random(11)
    for kills in range(1, 5):
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(path), A, B],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        with MappedLedger(path) as ledger:
            a, b = ledger.snapshot([A, B]).values()
            # A killed child's last reservation may stay held (until its deadline): whole ones only.
            assert a == b and a.spent > 0 and a.reserved % 2000 == 0 and a.reserved <= 2000 * kills, (a, b)


def test_a_killed_holder_keeps_its_hold_until_its_deadline_then_it_is_reclaimed(tmp_path: Path) -> None:
    path = tmp_path / "l.mmap"
    out = _child(
        """
        import os, signal, sys, time
        from holysheep_lab.ledger import Charge, MappedLedger
        ledger = MappedLedger(sys.argv[1])
        assert ledger.reserve("held", [Charge(sys.argv[2], 900, 1000, time.time() + 86400)], 60) is None
        os.kill(os.getpid(), signal.SIGKILL)  # no settle, no release, no exit hook
        """,
        str(path), A,
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    clock = FakeClock()
    with MappedLedger(path, clock=clock, timeout=1) as ledger:  # its file lock died with it
        assert ledger.snapshot([A])[A] == BucketState(0, 900)
        assert ledger.reserve("mine", [Charge(A, 200, 1000, _far())], 60) is not None  # still held
        clock.now += 61
        assert ledger.snapshot([A])[A] == BucketState(0, 0)
        assert ledger.reserve("mine", [Charge(A, 200, 1000, _far())], 60) is None


def test_it_grows_past_its_first_size_and_other_processes_follow(tmp_path: Path) -> None:
    path = tmp_path / "l.mmap"
    early, grower = MappedLedger(path), MappedLedger(path)
    size = path.stat().st_size
    far = _far()
    ids = [f"r{i}" for i in range(300)]  # more reservations and buckets than a new file holds
    for n, rid in enumerate(ids):
        assert grower.reserve(rid, [Charge(A, 1, None, far), Charge(f"b{n}|day:x", 2, None, far)], 600) is None
    assert path.stat().st_size > size
    assert early.snapshot([A, "b7|day:x"]) == {A: BucketState(0, 300), "b7|day:x": BucketState(0, 2)}
    for rid in ids[::2]:
        early.settle(rid, [Charge(A, 1, None, far)])
    for rid in ids[1::2]:
        grower.release(rid)
    assert grower.snapshot([A, "b7|day:x"]) == {A: BucketState(150, 0), "b7|day:x": BucketState(0, 0)}
    for rid in ids[:5]:
        assert early.renew(rid, 60) is False  # every one is gone, however far it was probed
    early.close()
    grower.close()


@pytest.mark.parametrize("content", [b"", b"not a ledger\n" * 3000, b"SQLite format 3\x00" + bytes(40000)])
def test_a_foreign_or_damaged_file_is_a_named_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "l.mmap"
    if content:
        path.write_bytes(content)
        with pytest.raises(LedgerError, match=r"l\.mmap is not a holysheep-lab ledger file"):
            MappedLedger(path)
        assert path.read_bytes() == content  # left as it was
    else:
        with MappedLedger(path) as ledger:
            ledger.settle(None, [Charge(A, 7, None, _far())])
        raw = path.read_bytes()
        path.write_bytes(raw[:8000])  # cut short
        with pytest.raises(LedgerError, match="damaged"):
            MappedLedger(path)


def test_a_lock_held_elsewhere_refuses_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "l.mmap"
    ledger = MappedLedger(path, timeout=0.3)
    fd = os.open(path, os.O_RDWR)  # another open file: as another process would hold it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(LedgerUnavailableError, match="stayed locked"):
            ledger.reserve("r", [Charge(A, 1, 10, _far())], 60)
        assert 0.25 < time.monotonic() - started < 5
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert ledger.reserve("r", [Charge(A, 1, 10, _far())], 60) is None
    finally:
        os.close(fd)
        ledger.close()


def test_a_forked_child_takes_its_own_lock(tmp_path: Path) -> None:
    ledger = MappedLedger(tmp_path / "l.mmap")
    far = _far()
    ledger.reserve("parent", [Charge(A, 10, 100, far)], 60)
    pid = os.fork()
    if pid == 0:  # the child: the inherited descriptor's lock would be shared with the parent
        try:
            ok = ledger.reserve("child", [Charge(A, 90, 100, far)], 60) is None
            ok = ok and ledger.reserve("more", [Charge(A, 1, 100, far)], 60) is not None
            ledger.settle("child", [Charge(A, 50, 100, far)])
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.snapshot([A])[A] == BucketState(50, 10)
    ledger.close()


def test_a_log_folder_gets_a_mapped_file_unless_it_has_a_sqlite_ledger(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with machine_ledger(fresh) as ledger:  # type: ignore[attr-defined]
        assert isinstance(ledger, MappedLedger)
    assert (fresh / MAPPED_FILE).is_file() and not (fresh / LEDGER_FILE).exists()

    old = tmp_path / "old"
    old.mkdir()
    with SQLiteLedger(old / LEDGER_FILE) as before:  # the default of earlier versions
        before.settle(None, [Charge(A, 42, None, _far())])
    with machine_ledger(old) as ledger:  # type: ignore[attr-defined]
        assert isinstance(ledger, SQLiteLedger)
        assert ledger.snapshot([A])[A] == BucketState(42, 0)
    assert not (old / MAPPED_FILE).exists()

    MappedLedger(old / MAPPED_FILE).close()  # two ledgers in one folder would split its budget
    with pytest.raises(LedgerError, match="two budget ledgers"):
        machine_ledger(old)


def test_reservations_stay_findable_through_random_churn(tmp_path: Path) -> None:
    """The reservation table is open-addressed: deleting must never cut a probe chain."""
    import random

    rng = random.Random(7)
    ledger = MappedLedger(tmp_path / "l.mmap")
    far = _far()
    live: dict[str, int] = {}
    for step in range(1500):
        rid = f"{rng.randrange(120):032x}" if rng.random() < 0.5 else f"id-{rng.randrange(120)}"
        if rid in live and rng.random() < 0.5:
            if rng.random() < 0.5:
                ledger.release(rid)
            else:
                ledger.settle(rid, [Charge(A, 0, None, far)])
            del live[rid]
        elif rid not in live:
            amount = rng.randrange(1, 50)
            assert ledger.reserve(rid, [Charge(A, amount, None, far)], 600) is None
            live[rid] = amount
        if step % 100 == 0:
            assert all(ledger.renew(r, 600) for r in live), step
            assert ledger.snapshot([A])[A].reserved == sum(live.values())
    assert ledger.snapshot([A])[A].reserved == sum(live.values())
    ledger.close()


def test_a_deletion_too_long_for_one_journal_entry_grows_the_table_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from holysheep_lab.ledger import mapped

    spread = mapped._home
    # Every key starts probing at slot 0 while the table is small: one long probe chain.
    monkeypatch.setattr(mapped, "_home", lambda key, cap: 0 if cap <= 128 else spread(key, cap))
    ledger = MappedLedger(tmp_path / "l.mmap")
    far = _far()
    ids = [f"chain-{n}" for n in range(60)]
    for rid in ids:
        assert ledger.reserve(rid, [Charge(A, 1, None, far)], 600) is None
    assert ledger._scap == 128
    ledger.settle(ids[0], [Charge(A, 1, None, far)])  # 59 records behind it in its chain
    assert ledger._scap > 128
    assert ledger.snapshot([A])[A] == BucketState(1, 59)
    assert all(ledger.renew(rid, 600) for rid in ids[1:])
    for rid in ids[1:]:
        ledger.release(rid)
    assert ledger.snapshot([A])[A] == BucketState(1, 0)
    ledger.close()
