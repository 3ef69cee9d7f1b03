"""Reservations live as long as their call: renewed while it is alive, reclaimed when its
process is dead or its own deadline passed.

A fixed reservation TTL (~420 s) let long streams outlive their reservation (1.26x the cap).
The metering now holds a reservation for one attempt's timeouts (plus a slack) and renews it as
a stream is read and between retries. A fake clock drives the guard and the ledger; the relays
are real loopback servers.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import holysheep_lab as hs
from holysheep_lab.core.guard import TTL_SLACK, attempt_ttl
from holysheep_lab.ledger import BucketState, Ledger
from holysheep_lab.ledger.mapped import MAPPED_FILE, MappedLedger
from tests._support.billing_relay import BillingRelay

OLD_TTL = 420.0  # what the fixed TTL was (Retry().max_total + 300)


class FakeClock:
    """Epoch seconds for the ledger and the same instant as a datetime for the metering."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    made: Ledger = hs.MemoryLedger(clock=clock) if request.param == "memory" else hs.SQLiteLedger(
        tmp_path / "renewal.sqlite", clock=clock)
    yield made
    made.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _client(base_url: str, log_dir: Path, ledger: Ledger, clock: FakeClock, **kw: Any) -> hs.Client:
    return hs.Client(base_url=base_url, log_dir=log_dir, ledger=ledger, clock=clock.dt,
                     budget=hs.Budget(daily=1.0, monthly=None), **kw)


def _day(client: hs.Client) -> str:
    return client.metering.guard.buckets()[("global", "daily")]


def test_the_hold_is_the_attempts_own_timeouts() -> None:
    assert attempt_ttl({"connect": 10, "read": 120, "write": 120, "pool": 120}, 999) == 370 + TTL_SLACK
    # The openai SDK's default (600 s, connect 5): longer than the old fixed TTL, as it must be.
    assert attempt_ttl({"connect": 5, "read": 600, "write": 600, "pool": 600}, 999) > 600 > OLD_TTL
    assert attempt_ttl(None, 999) == 999  # a transport that does not say: the guard's default
    assert attempt_ttl({"connect": 5, "read": None, "write": 5, "pool": 5}, 1) > 3_600  # no read timeout


def test_a_stream_read_past_the_old_ttl_keeps_its_reservation(log_dir: Path, ledger: Ledger, clock: FakeClock) -> None:
    # Pieces a real 50 ms apart (so each arrives in its own read), a fake 45 s apart.
    with BillingRelay(default="stream", answer_tokens=30, chunk_delay=0.05) as relay:
        client = _client(relay.base_url, log_dir, ledger, clock)
        day = _day(client)
        stream = client.chat("gpt-4.1", "think for a long while", max_tokens=500, stream=True)
        held = ledger.snapshot([day])[day].reserved
        assert held > 0
        pieces = 0
        for _ in stream:
            pieces += 1
            clock.advance(45)  # a slow reasoning stream
            assert ledger.snapshot([day])[day].reserved == held, f"lapsed after {pieces * 45} s"
        assert pieces == 30 and pieces * 45 > 3 * OLD_TTL
        record = stream.result.record
        assert ledger.snapshot([day])[day] == BucketState(record.cost_nanos, 0)
        client.close()


def test_an_idle_stream_lapses_at_its_deadline_and_is_held_again_when_read(
    log_dir: Path, ledger: Ledger, clock: FakeClock
) -> None:
    with BillingRelay(default="stream", answer_tokens=6, chunk_delay=0.01) as relay:
        client = _client(relay.base_url, log_dir, ledger, clock, timeout=10)
        ttl = attempt_ttl({"connect": 10, "read": 10, "write": 10, "pool": 10}, 0)
        day = _day(client)
        stream = client.chat("gpt-4.1", "hello", max_tokens=100, stream=True)
        pieces = iter(stream)
        next(pieces)
        held = ledger.snapshot([day])[day].reserved
        clock.advance(ttl - 1)  # nobody reads: no progress, no renewal
        assert ledger.snapshot([day])[day].reserved == held
        clock.advance(2)  # past the deadline of its last read
        assert ledger.snapshot([day])[day].reserved == 0
        next(pieces)  # read again: it is alive and may still be billed, so it is held again
        assert ledger.snapshot([day])[day].reserved == held
        rest = list(pieces)
        assert len(rest) == 4
        assert ledger.snapshot([day])[day] == BucketState(stream.result.record.cost_nanos, 0)
        client.close()


def test_a_hung_call_holds_until_its_own_deadline_then_lapses(log_dir: Path, ledger: Ledger, clock: FakeClock) -> None:
    with BillingRelay(default="hang", hang=3.0) as relay:
        client = _client(relay.base_url, log_dir, ledger, clock, timeout=1.5, retry=hs.Retry.none())
        ttl = attempt_ttl({"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5}, 0)
        day = _day(client)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.chat("gpt-4.1", "hello", max_tokens=100)
            except hs.HolySheepError as exc:
                errors.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        deadline = time.monotonic() + 5
        while relay.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        held = ledger.snapshot([day])[day].reserved
        assert held > 0
        clock.advance(ttl - 1)
        assert ledger.snapshot([day])[day].reserved == held
        clock.advance(2)  # its timeouts have all run out: the deadline passed
        assert ledger.snapshot([day])[day].reserved == 0
        worker.join(10)
        assert len(errors) == 1 and isinstance(errors[0], hs.APITimeoutError)
        # Sent and unanswered: charged at its bound all the same (see test_fail_closed_outcomes).
        assert ledger.snapshot([day])[day] == BucketState(held, 0)
        client.close()


class _FlakyRelay:
    """A loopback relay that answers 503 to the first `failures` requests and advances the fake
    clock a minute per request; it records whether the call's reservation was live on arrival."""

    def __init__(self, clock: FakeClock, ledger: Ledger, failures: int) -> None:
        self.live_on_arrival: list[bool] = []
        self.day = ""
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                relay.live_on_arrival.append(ledger.snapshot([relay.day])[relay.day].reserved > 0)
                clock.advance(60)
                if len(relay.live_on_arrival) <= failures:
                    body = b'{"error": {"message": "busy"}}'
                    self.send_response(503)
                else:
                    body = (b'{"id": "x", "object": "chat.completion", "model": "gpt-4.1", "choices": [{"index": 0, '
                            b'"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}], '
                            b'"usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}')
                    self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_retries_renew_the_reservation_before_each_attempt(log_dir: Path, ledger: Ledger, clock: FakeClock) -> None:
    relay = _FlakyRelay(clock, ledger, failures=3)
    try:
        # A hold of 100 s, and each attempt takes a minute: without renewal the 3rd would be
        # sent with no reservation behind it.
        client = _client(relay.base_url, log_dir, ledger, clock, timeout=10,
                         retry=hs.Retry(max_attempts=5, backoff=0.01, max_backoff=0.02))
        relay.day = _day(client)
        result = client.chat("gpt-4.1", "hello", max_tokens=50)
        assert result.text == "ok" and result.record.attempts == 4
        assert relay.live_on_arrival == [True, True, True, True]
        assert ledger.snapshot([relay.day])[relay.day] == BucketState(result.record.cost_nanos, 0)
        client.close()
    finally:
        relay.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    import holysheep_lab as hs
    base_url, log_dir = sys.argv[1:3]
    client = hs.Client(base_url=base_url, log_dir=log_dir, timeout=5, budget=hs.Budget(daily=1.0, monthly=None))
    stream = client.chat("gpt-4.1", "hello", max_tokens=400, stream=True)
    pieces = iter(stream)
    next(pieces)
    print("open", flush=True)
    time.sleep(120)
    """
)


def test_the_stream_of_a_killed_process_lapses_one_hold_after_its_last_renewal(log_dir: Path) -> None:
    ttl = attempt_ttl({"connect": 5, "read": 5, "write": 5, "pool": 5}, 0)
    with BillingRelay(default="stream_hang", answer_tokens=40, hang=60) as relay:
        child = subprocess.Popen([sys.executable, "-c", CHILD, relay.base_url, str(log_dir)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            assert line == "open", child.stderr.read() if child.stderr else ""
            child.kill()  # SIGKILL: no exit hook, no settle, no more renewals
            child.wait(10)
            clock = FakeClock()
            clock.now = time.time()
            view = MappedLedger(log_dir / MAPPED_FILE, clock=clock)
            day = hs.Client(base_url=relay.base_url, log_dir=log_dir / "other",
                            ledger=hs.MemoryLedger()).metering.guard.buckets()[("global", "daily")]
            held = view.snapshot([day])[day].reserved
            assert held > 0  # the dead process's call still holds its worst case...
            clock.advance(ttl - 10)
            assert view.snapshot([day])[day].reserved == held
            clock.advance(15)  # ...until one hold after its last renewal: reclaimed
            assert view.snapshot([day])[day].reserved == 0
            view.close()
        finally:
            if child.poll() is None:
                child.kill()
