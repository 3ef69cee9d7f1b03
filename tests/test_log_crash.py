"""Crash safety with real processes: SIGKILL mid-stream and mid-roll, several processes logging
into one folder, compaction next to live writers, readers running during all of it.

A child process prints each call_id only after `append` returned: every printed id must be in
the log afterwards, however the child died.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from holysheep_lab.log import LogReadWarning, compact, read_table

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import os, signal, sys
from datetime import datetime, timedelta, timezone
from holysheep_lab.log import CallRecord, LogWriter

log_dir, mode, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
count = int(sys.argv[4]) if len(sys.argv) > 4 else 10**9

# Deterministic crash points inside a roll: the process kills itself at that exact step.
if mode.startswith("die-"):
    point = mode[4:]
    real_replace, real_fsync = os.replace, os.fsync
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    def fsync(fd):
        if point == "before-fsync":
            die()
        real_fsync(fd)
    def replace(src, dst):
        if str(dst).endswith(".parquet") and point == "before-rename":
            die()
        real_replace(src, dst)
        if str(dst).endswith(".parquet") and point == "after-rename":
            die()
    os.fsync, os.replace = fsync, replace

roll_rows = {"plain": 100_000, "live": 100_000, "count": 97}.get(mode, 20)
w = LogWriter(log_dir, roll_rows=roll_rows, roll_interval=None)
t0 = datetime(2026, 3, 14, 23, 59, 50, tzinfo=timezone.utc)  # rows straddle two UTC dates
for i in range(count):
    cid = f"{prefix}-{i}"
    w.append(CallRecord(call_id=cid, ts=t0 + timedelta(milliseconds=37 * i), model="m",
                        status="ok", input_tokens=i))
    print(cid, flush=True)
    if mode == "rolling" and i % 7 == 6:
        w.roll()  # rolls all the time, so a kill often lands inside one
    if mode == "live" and i == 49:
        print("ready", flush=True)
        sys.stdin.readline()  # hold the writer (and its journal lock) open until told
if mode in ("count", "live"):
    w.close()
    print("closed", flush=True)
'''


@pytest.fixture
def child_script(tmp_path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


class Child:
    """A logging child process; collects the ids it acknowledged, in a reader thread."""

    def __init__(self, script: Path, log_dir: Path, mode: str, prefix: str, count: int | None = None):
        args = [sys.executable, str(script), str(log_dir), mode, prefix]
        if count is not None:
            args.append(str(count))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        self.acked: list[str] = []
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                break  # a print cut by the kill: that id was not acknowledged in full
            text = line.strip()
            self.lines.append(text)
            if text not in ("ready", "closed"):
                self.acked.append(text)

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None or self._reader.is_alive() or predicate(), "child ended early"
            assert time.monotonic() < deadline, "child too slow"
            time.sleep(0.005)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code


def ids_in(log_dir: Path) -> list[str]:
    return read_table(log_dir, columns=["call_id"])["call_id"].to_pylist()


def assert_all_once(log_dir: Path, acked: list[str]) -> None:
    ids = ids_in(log_dir)
    assert len(ids) == len(set(ids)), "a row was read twice"
    missing = set(acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {sorted(missing)[:3]}"


def parquet_row_count(log_dir: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in log_dir.glob("date=*/*.parquet"))


def test_sigkill_mid_stream_loses_no_acknowledged_call(log_dir, child_script):
    child = Child(child_script, log_dir, "plain", "p")
    child.wait_for(lambda: len(child.acked) >= 3000)
    child.kill()
    assert child.proc.returncode == -signal.SIGKILL
    assert len(child.acked) >= 3000
    assert_all_once(log_dir, child.acked)
    # The dead writer's journal is unlocked now: compact rolls it, and nothing changes for readers.
    summary = compact(log_dir)
    assert summary.journals_rolled == 1 and not list((log_dir / "_journal").glob("*.jsonl"))
    assert_all_once(log_dir, child.acked)
    assert parquet_row_count(log_dir) == len(ids_in(log_dir))


def test_sigkill_at_random_moments_while_rolling_constantly(log_dir, child_script):
    rng = random.Random(20261128)
    acked: list[str] = []
    for k in range(3):
        child = Child(child_script, log_dir, "rolling", f"r{k}")
        target = rng.randrange(40, 250)
        child.wait_for(lambda child=child, target=target: len(child.acked) >= target)
        time.sleep(rng.random() * 0.02)
        child.kill()
        acked += child.acked
        assert_all_once(log_dir, acked)
    compact(log_dir)
    assert_all_once(log_dir, acked)
    assert parquet_row_count(log_dir) == len(ids_in(log_dir))  # no duplicate left in Parquet


@pytest.mark.parametrize("point", ["before-fsync", "before-rename", "after-rename"])
def test_sigkill_at_each_step_of_a_roll(log_dir, child_script, point):
    child = Child(child_script, log_dir, f"die-{point}", point)
    assert child.finish() == -signal.SIGKILL  # it killed itself inside its first roll
    assert len(child.acked) >= 20
    journal_left = list((log_dir / "_journal").glob("*.jsonl"))
    assert journal_left, "the journal must outlive an unfinished roll"
    if point == "after-rename":  # the rows are now in Parquet and the journal: read once
        assert parquet_row_count(log_dir) > 0
    assert_all_once(log_dir, child.acked)
    compact(log_dir)
    assert not list((log_dir / "_journal").glob("*.jsonl"))
    assert_all_once(log_dir, child.acked)
    assert parquet_row_count(log_dir) == len(ids_in(log_dir))


def test_four_processes_log_into_one_folder(log_dir, child_script):
    children = [Child(child_script, log_dir, "count", f"w{k}", count=400) for k in range(4)]
    for child in children:
        assert child.finish() == 0 and child.lines[-1] == "closed"
    acked = [cid for child in children for cid in child.acked]
    assert len(acked) == 1600
    ids = ids_in(log_dir)
    assert sorted(ids) == sorted(acked)  # exactly all rows, each once
    assert parquet_row_count(log_dir) == 1600  # clean closes: everything rolled, nothing twice
    assert not list((log_dir / "_journal").glob("*.jsonl"))


def test_compact_next_to_a_live_writer_in_another_process(log_dir, child_script):
    dead = Child(child_script, log_dir, "plain", "dead")
    dead.wait_for(lambda: len(dead.acked) >= 30)
    dead.kill()
    live = Child(child_script, log_dir, "live", "live", count=60)
    live.wait_for(lambda: "ready" in live.lines)
    live_journal = [p for p in (log_dir / "_journal").glob("*.jsonl") if f"-{live.proc.pid}-" in p.name]
    assert len(live_journal) == 1
    summary = compact(log_dir)
    assert (summary.journals_rolled, summary.journals_live) == (1, 1)
    assert live_journal[0].exists()  # a live writer's journal is never touched
    assert_all_once(log_dir, dead.acked + live.acked)
    assert live.proc.stdin is not None
    live.proc.stdin.write("go\n")
    live.proc.stdin.flush()
    assert live.finish() == 0 and live.lines[-1] == "closed"
    assert len(live.acked) == 60
    compact(log_dir)
    assert not list((log_dir / "_journal").glob("*.jsonl"))
    assert_all_once(log_dir, dead.acked + live.acked)
    # The dead child may have logged one more call than it lived to print.
    assert len(dead.acked) + 60 <= len(ids_in(log_dir)) <= len(dead.acked) + 61


def test_readers_and_compaction_during_rolls_never_miss_a_row(log_dir, child_script):
    child = Child(child_script, log_dir, "rolling", "busy")
    child.wait_for(lambda: len(child.acked) >= 50)
    stop = threading.Event()
    errors: list[BaseException] = []

    def compactor() -> None:
        try:
            while not stop.is_set():
                compact(log_dir)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=compactor)
    thread.start()
    try:
        deadline = time.monotonic() + 2
        reads = 0
        while time.monotonic() < deadline:
            before = list(child.acked)  # acknowledged before this read began
            with warnings.catch_warnings():
                warnings.simplefilter("error", LogReadWarning)  # a file vanishing is no warning
                ids = set(ids_in(log_dir))
            missing = set(before) - ids
            assert not missing, f"read missed {len(missing)} acknowledged rows"
            reads += 1
        assert reads >= 3
    finally:
        stop.set()
        thread.join()
        child.kill()
    assert not errors, errors
    compact(log_dir)
    assert_all_once(log_dir, child.acked)
    assert parquet_row_count(log_dir) == len(ids_in(log_dir))


def test_a_kill_leaves_no_warning_for_readers(log_dir, child_script):
    child = Child(child_script, log_dir, "rolling", "quiet")
    child.wait_for(lambda: len(child.acked) >= 100)
    child.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LogReadWarning)  # a cut last line is not a problem
        assert_all_once(log_dir, child.acked)
