"""No paid row is ever lost: calls in flight at exit, a disk that cannot take rows, a restart.

Against the billing relay: every request it billed must end as a row, and a restarted client's
budget must equal what it billed.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import holysheep_lab as hs
from holysheep_lab.core.metering import LogKeptWarning
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from holysheep_lab.errors import LogError
from holysheep_lab.log import LogWriter, read_table
from holysheep_lab.log.schema import CallRecord
from holysheep_lab.log.writer import Disk, LogWriteWarning
from tests._support.billing_relay import BillingRelay
from tests._support.fail_closed import day_state, logged_nanos, restarted_spent, rows

ROOT = Path(__file__).resolve().parent.parent


class FaultyDisk(Disk):
    """A disk whose writes fail with ENOSPC (or EROFS) while `full` is set; `free` is what statvfs says."""

    def __init__(self, code: int = errno.ENOSPC, free: int = 10**12) -> None:
        self.full = False
        self.code = code
        self.free = free
        self.refused = 0
        self.looks = 0

    def write(self, fd: int, data: bytes) -> int:
        if self.full:
            self.refused += 1
            raise OSError(self.code, "injected: " + ("No space left on device" if self.code == errno.ENOSPC
                                                     else "Read-only file system"))
        return super().write(fd, data)

    def free_bytes(self, path: Path) -> int:
        self.looks += 1
        return self.free


@pytest.fixture
def relay():
    with BillingRelay(hang=10.0) as r:
        yield r


def bound(c: hs.Client, max_tokens: int) -> int:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return c.metering.preview(CHAT_COMPLETIONS, body).estimate_nanos


def rec(i: int) -> CallRecord:
    from datetime import UTC, datetime

    return CallRecord(call_id=f"c{i}", ts=datetime(2026, 3, 14, 12, tzinfo=UTC), model="m", status="ok",
                      cost_nanos=1000 + i)


# -- streams open at exit -----------------------------------------------------------------------

CHILD = """
import sys
import holysheep_lab as hs

client = hs.Client(base_url=sys.argv[1], log_dir=sys.argv[2])
stream = client.chat("gpt-4.1", "hi", max_tokens=50, stream=True)
pieces = iter(stream)  # held to the end: nothing closes the stream before the interpreter exits
print(next(pieces), flush=True)
# The script ends with the stream open and the client never closed: a normal interpreter exit.
"""


def test_a_stream_open_at_interpreter_exit_is_logged_at_its_bound(relay, tmp_path):
    relay.default = "stream_hang"
    log_dir = tmp_path / "logs"
    out = subprocess.run([sys.executable, "-c", CHILD, relay.base_url, str(log_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "word"
    (row,) = rows(log_dir)
    assert (row["status"], row["partial"], row["stream"], row["usage_missing"]) == ("unknown", True, True, True)
    with hs.Client(base_url=relay.base_url, log_dir=tmp_path / "probe") as probe:
        worst = bound(probe, 50)
    assert row["cost_nanos"] == worst >= relay.billed_nanos() > 0 and relay.requests == 1
    assert restarted_spent(log_dir) == worst  # the restarted budget has it


def test_closing_the_client_settles_an_open_stream_once(relay, log_dir):
    relay.default = "stream_hang"
    c = hs.Client(base_url=relay.base_url, log_dir=log_dir)
    worst = bound(c, 50)
    stream = c.chat("gpt-4.1", "hi", max_tokens=50, stream=True)
    it = iter(stream)
    assert next(it) == "word"
    c.metering.close()  # settles the call in flight before the writer closes
    (row,) = rows(log_dir)
    assert (row["status"], row["cost_nanos"], row["partial"]) == ("unknown", worst, True)
    assert day_state(c.metering) == (worst, 0)
    stream.close()  # the stream's own end finds the call logged: no second row, same record
    assert stream.result is not None and stream.result.record.call_id == row["call_id"]
    assert len(rows(log_dir)) == 1 and day_state(c.metering) == (worst, 0)
    c.close()


# -- the writer and a disk that refuses rows ---------------------------------------------------


def test_a_refused_write_keeps_the_row_and_writes_it_when_the_disk_is_back(log_dir):
    disk = FaultyDisk()
    w = LogWriter(log_dir, disk=disk, roll_interval=None)
    assert w.append(rec(1)) is True
    disk.full = True
    assert w.append(rec(2)) is False and w.unwritten == 1 and "No space left" in str(w.last_error)
    assert w.append(rec(3)) is False and w.unwritten == 2
    assert [r["call_id"] for r in read_table(log_dir).to_pylist()] == ["c1"]  # not on disk yet
    disk.full = False
    assert w.append(rec(4)) is True and w.unwritten == 0 and w.last_error is None
    w.close()
    assert sorted(r["call_id"] for r in read_table(log_dir).to_pylist()) == ["c1", "c2", "c3", "c4"]


def test_a_roll_writes_kept_rows(log_dir):
    disk = FaultyDisk(errno.EROFS)
    w = LogWriter(log_dir, disk=disk, roll_interval=None)
    disk.full = True
    assert w.append(rec(1)) is False
    disk.full = False
    assert len(w.roll()) == 1 and w.unwritten == 0
    w.close()
    assert [r["call_id"] for r in read_table(log_dir).to_pylist()] == ["c1"]


def test_close_says_so_when_kept_rows_still_cannot_be_written(log_dir):
    disk = FaultyDisk()
    w = LogWriter(log_dir, disk=disk, roll_interval=None)
    disk.full = True
    w.append(rec(1))
    with pytest.warns(LogWriteWarning, match="1 call-log row"):
        w.close()


def test_check_room_refuses_a_low_disk_and_kept_rows_it_cannot_write(log_dir):
    disk = FaultyDisk(free=1000)
    w = LogWriter(log_dir, disk=disk, min_free_bytes=4096)
    with pytest.raises(LogError, match="1000 bytes free"):
        w.check_room()
    disk.free = 10**9
    w.check_room()
    disk.full = True
    w.append(rec(1))
    with pytest.raises(LogError, match="cannot take rows"):
        w.check_room()
    disk.full = False
    w.check_room()  # wrote the kept row
    assert w.unwritten == 0
    w.close()
    assert read_table(log_dir).num_rows == 1


def test_room_on_disk_is_counted_like_money(log_dir):
    disk = FaultyDisk(free=4096 + 50)
    w = LogWriter(log_dir, disk=disk, min_free_bytes=4096, roll_interval=None)
    w.check_room()
    w.check_room()
    assert disk.looks == 1  # 50 bytes of room known: no second statvfs
    w.append(rec(1))  # a row is longer than 50 bytes: the known room is spent
    disk.free = 1000
    with pytest.raises(LogError, match="1000 bytes free"):
        w.check_room()
    assert disk.looks == 2
    w.close()


def test_a_disk_without_room_refuses_the_call_before_sending(relay, log_dir):
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, budget=hs.Budget(daily=10, monthly=None)) as c:
        c.metering.writer.disk = FaultyDisk(free=1024)
        with pytest.raises(LogError, match="nothing was sent"):
            c.chat("gpt-4.1", "hi", max_tokens=20)
        assert day_state(c.metering) == (0, 0)
    assert relay.requests == 0 and rows(log_dir) == []


def test_an_answer_whose_row_the_disk_refuses_is_returned_and_its_spend_kept(relay, log_dir):
    disk = FaultyDisk(errno.EROFS)  # read-only: statvfs still shows room
    with hs.Client(base_url=relay.base_url, log_dir=log_dir) as c:
        c.metering.writer.disk = disk
        first = c.chat("gpt-4.1", "hi", max_tokens=20)
        disk.full = True
        with pytest.warns(LogKeptWarning, match="Read-only"):
            paid = c.chat("gpt-4.1", "hi", max_tokens=20)
        assert paid.text and paid.cost_usd and c.metering.writer.unwritten == 1
        assert day_state(c.metering)[0] == first.record.cost_nanos + paid.record.cost_nanos  # spend kept
        with pytest.raises(LogError, match="cannot take rows"):  # the disk is still refusing
            c.chat("gpt-4.1", "hi", max_tokens=20)
        assert relay.requests == 2  # refused before sending: not billed
        disk.full = False
        c.chat("gpt-4.1", "hi", max_tokens=20)  # writes the kept row first
        assert c.metering.writer.unwritten == 0
    logged = rows(log_dir)
    assert len(logged) == relay.requests == 3 and paid.record.call_id in {r["call_id"] for r in logged}
    assert logged_nanos(log_dir) == relay.billed_nanos() == restarted_spent(log_dir)


@pytest.mark.filterwarnings("ignore::holysheep_lab.core.metering.LogKeptWarning")
def test_sixteen_threads_on_a_disk_that_fills_lose_no_billed_row(log_dir):
    disk = FaultyDisk()
    answered, refused, other = [], [], []
    with BillingRelay(answer_delay=0.02) as relay, hs.Client(base_url=relay.base_url, log_dir=log_dir) as c:
        c.metering.writer.disk = disk
        jobs = iter(range(40))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if next(jobs, None) is None:
                        return
                try:
                    answered.append(c.chat("gpt-4.1", "hi", max_tokens=20))
                except LogError:
                    refused.append(1)
                except Exception as exc:  # collected, and asserted empty below
                    other.append(exc)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        while len(answered) < 8:
            time.sleep(0.005)
        disk.full = True  # the disk fills with calls in flight
        deadline = time.monotonic() + 10
        while c.metering.writer.unwritten == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.3)
        disk.full = False
        for t in threads:
            t.join()
        spent = day_state(c.metering)[0]
    assert not other and len(answered) + len(refused) == 40
    assert disk.refused > 0 and refused  # rows were refused, and so were calls after them
    assert len(answered) == relay.requests  # a refused call was never sent
    logged = rows(log_dir)
    assert len(logged) == relay.requests  # every billed request has its row
    assert spent == logged_nanos(log_dir) == relay.billed_nanos() == restarted_spent(log_dir)


def test_no_warning_on_a_healthy_disk(relay, log_dir):
    with hs.Client(base_url=relay.base_url, log_dir=log_dir) as c, warnings.catch_warnings():
        warnings.simplefilter("error")
        c.chat("gpt-4.1", "hi", max_tokens=20)
    assert len(rows(log_dir)) == 1


FORKING_CHILD = """
import os, sys
import holysheep_lab as hs
from holysheep_lab.log import read_table

client = hs.Client(base_url=sys.argv[1], log_dir=sys.argv[2])
stream = client.chat("gpt-4.1", "hi", max_tokens=50, stream=True)
pieces = iter(stream)
next(pieces)
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit of the child: its atexit hooks run, with the parent's call copied
os.waitpid(pid, 0)
print(read_table(sys.argv[2]).num_rows, flush=True)  # the child logged none of the parent's calls
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_does_not_log_its_parents_calls_in_flight(relay, tmp_path):
    relay.default = "stream_hang"
    log_dir = tmp_path / "logs"
    out = subprocess.run([sys.executable, "-c", FORKING_CHILD, relay.base_url, str(log_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
    (row,) = rows(log_dir)  # the parent's own exit logged it, once
    assert row["status"] == "unknown" and relay.requests == 1
