"""One Ledger contract, run against every implementation: memory, mapped file, SQLite file, real Redis.

Then what only shared ledgers must survive: several processes racing for one small budget,
and (Redis) the server killed and restarted mid-run.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support.redis_server import RedisServer, require_redis_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holysheep_lab.errors import ConfigError, LedgerError, LedgerUnavailableError, MissingExtraError
from holysheep_lab.ledger import (
    BucketState,
    Charge,
    Ledger,
    MappedLedger,
    MemoryLedger,
    RedisLedger,
    Refusal,
    SQLiteLedger,
    bucket_name,
)

WORKER = Path(__file__).parent / "_support" / "ledger_worker.py"
A = bucket_name("global", "day:2026-11-28")
B = bucket_name("global", "month:2026-11")
C = bucket_name("project:nlp", "day:2026-11-28")


class FakeClock:
    """Epoch seconds that move only when told (starts at the real time, so Redis keys'
    EXPIREAT, derived from window ends, lie in the future)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer() as server:
        yield server


Factory = Callable[[], Ledger]


@pytest.fixture(params=["memory", "mapped", "sqlite", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(kind: str, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Build ledgers of `kind` that share one state (one file / one prefix) and one clock."""
    made: list[Ledger] = []
    shared_memory: list[MemoryLedger] = []
    path = tmp_path / f"ledger-{uuid.uuid4().hex}.sqlite"
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    server = request.getfixturevalue("redis_server") if kind == "redis" else None

    def factory() -> Ledger:
        ledger: Ledger
        if kind == "memory":
            # A memory ledger is one process's state: "another instance" is the same object.
            if not shared_memory:
                shared_memory.append(MemoryLedger(clock=clock))
            ledger = shared_memory[0]
        elif kind == "sqlite":
            ledger = SQLiteLedger(path, clock=clock)
        elif kind == "mapped":
            ledger = MappedLedger(path.with_suffix(".mmap"), clock=clock)
        else:
            assert server is not None
            ledger = RedisLedger(server.url, prefix=prefix, clock=clock)
        made.append(ledger)
        return ledger

    yield factory
    for ledger in made:
        ledger.close()


@pytest.fixture
def ledger(make: Factory) -> Ledger:
    return make()


def far(clock: FakeClock) -> float:
    return clock.now + 86_400


def spend(ledger: Ledger, bucket: str, amount: int, clock: FakeClock) -> None:
    ledger.settle(None, [Charge(bucket, amount, None, far(clock))])


# -- reserve ----------------------------------------------------------------------------------


def test_is_a_ledger_with_cheap_repr(ledger: Ledger) -> None:
    assert isinstance(ledger, Ledger)
    assert type(ledger).__name__ in repr(ledger)


def test_reserve_is_all_or_nothing_across_buckets(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    spend(ledger, B, 40, clock)
    refusal = ledger.reserve("r1", [Charge(A, 20, 100, exp), Charge(B, 20, 50, exp), Charge(C, 5, None, exp)], 60)
    assert refusal == Refusal(bucket=B, spent=40, reserved=0, limit=50, amount=20)
    # Nothing was reserved anywhere, not even in the buckets checked before the refusal.
    assert ledger.snapshot([A, B, C]) == {A: BucketState(0, 0), B: BucketState(40, 0), C: BucketState(0, 0)}

    assert ledger.reserve("r2", [Charge(A, 20, 100, exp), Charge(B, 10, 50, exp), Charge(C, 5, None, exp)], 60) is None
    assert ledger.snapshot([A, B, C]) == {A: BucketState(0, 20), B: BucketState(40, 10), C: BucketState(0, 5)}


def test_refusal_names_the_first_bucket_that_would_pass(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    spend(ledger, A, 70, clock)
    spend(ledger, B, 10, clock)
    assert ledger.reserve("held", [Charge(A, 20, None, exp), Charge(B, 30, None, exp)], 60) is None
    # A: 70 + 20 + 15 > 100 and B: 10 + 30 + 15 > 50 both pass; the first in charge order is named.
    assert ledger.reserve("x", [Charge(A, 15, 100, exp), Charge(B, 15, 50, exp)], 60) == Refusal(A, 70, 20, 100, 15)
    assert ledger.reserve("y", [Charge(B, 15, 50, exp), Charge(A, 15, 100, exp)], 60) == Refusal(B, 10, 30, 50, 15)


def test_exact_boundary_is_allowed_one_nano_more_is_refused(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    spend(ledger, A, 600, clock)
    assert ledger.reserve("r1", [Charge(A, 300, 1000, exp)], 60) is None
    assert ledger.reserve("r2", [Charge(A, 100, 1000, exp)], 60) is None  # 600 + 300 + 100 == 1000
    assert ledger.reserve("r3", [Charge(A, 1, 1000, exp)], 60) == Refusal(A, 600, 400, 1000, 1)
    assert ledger.reserve("r4", [Charge(A, 0, 1000, exp)], 60) is None  # zero fits even when full


def test_limit_none_counts_but_never_refuses(ledger: Ledger, clock: FakeClock) -> None:
    huge = 10**15  # a million dollars in nanos
    assert ledger.reserve("r1", [Charge(A, huge, None, far(clock))], 60) is None
    assert ledger.reserve("r2", [Charge(A, huge, None, far(clock))], 60) is None
    assert ledger.snapshot([A])[A] == BucketState(0, 2 * huge)


def test_same_bucket_twice_in_one_reservation_adds_up(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    assert ledger.reserve("r1", [Charge(A, 60, 100, exp), Charge(A, 50, 100, exp)], 60) == Refusal(A, 0, 0, 100, 110)
    assert ledger.reserve("r2", [Charge(A, 60, 100, exp), Charge(A, 40, 100, exp)], 60) is None
    assert ledger.snapshot([A])[A] == BucketState(0, 100)


def test_bad_input_is_a_config_error(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    with pytest.raises(ConfigError, match="int of nano-dollars"):
        ledger.reserve("r", [Charge(A, 1.5, 100, exp)], 60)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=">= 0"):
        ledger.reserve("r", [Charge(A, -1, 100, exp)], 60)
    with pytest.raises(ConfigError, match="ttl"):
        ledger.reserve("r", [Charge(A, 1, 100, exp)], 0)
    with pytest.raises(ConfigError, match="different limits"):
        ledger.reserve("r", [Charge(A, 1, 100, exp), Charge(A, 1, 200, exp)], 60)
    assert ledger.snapshot([A])[A] == BucketState()


def test_a_live_reservation_id_cannot_be_reused(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    assert ledger.reserve("r1", [Charge(A, 10, 100, exp)], 60) is None
    with pytest.raises(LedgerError, match="already in flight"):
        ledger.reserve("r1", [Charge(A, 10, 100, exp)], 60)
    ledger.release("r1")
    assert ledger.reserve("r1", [Charge(A, 10, 100, exp)], 60) is None
    assert ledger.snapshot([A])[A] == BucketState(0, 10)


# -- settle, release, expiry ------------------------------------------------------------------


def test_settle_moves_reserved_to_spent_at_the_actual_cost(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    assert ledger.reserve("r1", [Charge(A, 100, 1000, exp), Charge(B, 100, 5000, exp)], 60) is None
    assert ledger.reserve("r2", [Charge(A, 50, 1000, exp)], 60) is None
    after = ledger.settle("r1", [Charge(A, 70, 1000, exp), Charge(B, 70, 5000, exp)])
    assert dict(after) == {A: BucketState(70, 50), B: BucketState(70, 0)}
    assert ledger.snapshot([A, B]) == dict(after)
    # Settling without a reservation records unguarded spend; limits are not checked.
    assert dict(ledger.settle(None, [Charge(A, 5000, 1000, exp)])) == {A: BucketState(5070, 50)}


def test_settling_an_expired_reservation_still_records_spend(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    assert ledger.reserve("r1", [Charge(A, 100, 1000, exp)], 5) is None
    clock.advance(10)
    assert ledger.snapshot([A])[A] == BucketState(0, 0)
    assert dict(ledger.settle("r1", [Charge(A, 80, 1000, exp)])) == {A: BucketState(80, 0)}
    # Expired but not yet purged (no call touched the bucket since) must not go negative either.
    assert ledger.reserve("r2", [Charge(A, 100, 1000, exp)], 5) is None
    clock.advance(10)
    assert dict(ledger.settle("r2", [Charge(A, 20, 1000, exp)])) == {A: BucketState(100, 0)}


def test_release_drops_the_reservation_without_spending(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    assert ledger.reserve("r1", [Charge(A, 100, 100, exp), Charge(B, 100, None, exp)], 60) is None
    assert ledger.reserve("r2", [Charge(A, 1, 100, exp)], 60) is not None
    ledger.release("r1")
    ledger.release("r1")  # twice is harmless
    ledger.release("never-reserved")
    assert ledger.snapshot([A, B]) == {A: BucketState(0, 0), B: BucketState(0, 0)}
    assert ledger.reserve("r3", [Charge(A, 100, 100, exp)], 60) is None


def test_reservations_of_a_dead_process_expire(make: Factory, clock: FakeClock) -> None:
    dead, alive = make(), make()
    exp = far(clock)
    assert dead.reserve("orphan", [Charge(A, 90, 100, exp)], 30) is None
    assert alive.reserve("r1", [Charge(A, 20, 100, exp)], 30) == Refusal(A, 0, 90, 100, 20)
    clock.advance(29)
    assert alive.snapshot([A])[A] == BucketState(0, 90)
    clock.advance(2)
    assert alive.snapshot([A])[A] == BucketState(0, 0)
    assert alive.reserve("r1", [Charge(A, 100, 100, exp)], 30) is None
    # The orphan's id can be reused once it expired.
    alive.release("r1")
    assert alive.reserve("orphan", [Charge(A, 50, 100, exp)], 30) is None
    assert alive.snapshot([A])[A] == BucketState(0, 50)


def test_renew_keeps_a_live_reservation_past_its_first_ttl(make: Factory, clock: FakeClock) -> None:
    owner, other = make(), make()
    exp = far(clock)
    assert owner.reserve("long", [Charge(A, 60, 100, exp), Charge(B, 60, None, exp)], 30) is None
    for _ in range(10):  # a call alive for 250 s, renewing every 25 s
        clock.advance(25)
        assert owner.renew("long", 30) is True
        assert other.snapshot([A, B]) == {A: BucketState(0, 60), B: BucketState(0, 60)}
        assert other.reserve("x", [Charge(A, 50, 100, exp)], 30) == Refusal(A, 0, 60, 100, 50)
    # Its process stops renewing (killed): the hold lapses one ttl after the last renewal.
    clock.advance(29)
    assert other.snapshot([A])[A] == BucketState(0, 60)
    clock.advance(2)
    assert other.snapshot([A, B]) == {A: BucketState(0, 0), B: BucketState(0, 0)}
    assert other.reserve("x", [Charge(A, 100, 100, exp)], 30) is None


def test_renew_never_revives_and_says_so(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    assert ledger.renew("never-reserved", 30) is False
    assert ledger.reserve("lapsed", [Charge(A, 10, 100, exp)], 10) is None
    clock.advance(11)
    assert ledger.renew("lapsed", 60) is False
    assert ledger.snapshot([A])[A] == BucketState(0, 0)
    assert ledger.reserve("lapsed", [Charge(A, 10, 100, exp)], 10) is None  # the id is free again
    assert ledger.reserve("settled", [Charge(A, 20, 100, exp)], 60) is None
    ledger.settle("settled", [Charge(A, 5, 100, exp)])
    assert ledger.renew("settled", 60) is False
    ledger.release("lapsed")
    assert ledger.renew("lapsed", 60) is False
    assert ledger.snapshot([A])[A] == BucketState(5, 0)
    with pytest.raises(ConfigError, match="ttl"):
        ledger.renew("x", 0)


def test_renew_can_shorten_and_settles_cleanly(ledger: Ledger, clock: FakeClock) -> None:
    exp = far(clock)
    assert ledger.reserve("r", [Charge(A, 40, 100, exp)], 600) is None
    assert ledger.reserve("s", [Charge(A, 30, 100, exp)], 600) is None
    assert ledger.renew("r", 5) is True  # e.g. bounded by a deadline that is near
    clock.advance(6)
    assert ledger.snapshot([A])[A] == BucketState(0, 30)
    assert ledger.renew("s", 600) is True
    assert dict(ledger.settle("s", [Charge(A, 25, 100, exp)])) == {A: BucketState(25, 0)}
    clock.advance(601)
    assert ledger.snapshot([A])[A] == BucketState(25, 0)


# -- snapshot, seed, claim --------------------------------------------------------------------


def test_snapshot_of_absent_buckets_is_zero(ledger: Ledger) -> None:
    assert ledger.snapshot(["nobody|day:2000-01-01", A]) == {
        "nobody|day:2000-01-01": BucketState(0, 0),
        A: BucketState(0, 0),
    }
    assert ledger.snapshot([]) == {}


def test_seed_raises_spent_but_never_lowers_it(make: Factory, clock: FakeClock) -> None:
    one, two = make(), make()
    exp = far(clock)
    one.seed({A: 500, B: 70}, {A: exp, B: exp})
    two.seed({A: 300}, {A: exp})  # a second process seeding from an older view of the log
    assert one.snapshot([A, B]) == {A: BucketState(500, 0), B: BucketState(70, 0)}
    spend(two, A, 100, clock)
    one.seed({A: 550}, {A: exp})  # the log has not seen the last 100 yet: keep 600
    assert one.snapshot([A])[A] == BucketState(600, 0)
    one.seed({A: 1000}, {A: exp})
    assert two.snapshot([A])[A] == BucketState(1000, 0)
    with pytest.raises(ConfigError, match="expires_at"):
        one.seed({C: 1}, {})


def test_claim_is_granted_exactly_once_per_key_until_it_expires(make: Factory, clock: FakeClock) -> None:
    one, two = make(), make()
    until = clock.now + 100
    assert one.claim("alert|global|day:2026-11-28|WARNING", until) is True
    assert one.claim("alert|global|day:2026-11-28|WARNING", until) is False
    assert two.claim("alert|global|day:2026-11-28|WARNING", until) is False
    assert two.claim("alert|global|day:2026-11-28|CRITICAL", until) is True
    clock.advance(101)
    assert two.claim("alert|global|day:2026-11-28|WARNING", clock.now + 100) is True
    assert one.claim("alert|global|day:2026-11-28|WARNING", clock.now + 100) is False


def test_claim_races_have_one_winner(make: Factory, clock: FakeClock) -> None:
    ledgers = [make() for _ in range(4)]
    wins: list[bool] = []
    barrier = threading.Barrier(16)

    def race(i: int) -> None:
        barrier.wait()
        wins.append(ledgers[i % 4].claim("once", clock.now + 60))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 15 + [True]


def test_closed_ledger_refuses_use(make: Factory, clock: FakeClock) -> None:
    with make() as ledger:  # type: ignore[attr-defined]
        assert ledger.reserve("r", [Charge(A, 1, 10, far(clock))], 60) is None
    with pytest.raises(LedgerError, match="closed"):
        ledger.snapshot([A])


# -- what the Metering core and the meter widget rely on --------------------------------------


def test_shared_says_whether_another_instance_sees_the_state(make: Factory, kind: str, clock: FakeClock) -> None:
    one = make()
    spend(one, A, 7, clock)
    # Another instance: the same file or Redis prefix; for memory, a second process's ledger.
    other = make() if kind != "memory" else MemoryLedger(clock=clock)
    assert one.shared is (kind != "memory")
    assert other.snapshot([A])[A] == (BucketState(7, 0) if one.shared else BucketState())
    if kind == "memory":
        other.close()


def test_use_seeder_relearns_before_deciding_only_where_state_can_be_lost(
    ledger: Ledger, kind: str, clock: FakeClock
) -> None:
    calls: list[int] = []

    def seeder() -> tuple[dict[str, int], dict[str, float]]:
        calls.append(1)
        return {A: 90}, {A: far(clock)}

    ledger.use_seeder(seeder)
    refusal = ledger.reserve("r1", [Charge(A, 20, 100, far(clock))], 60)
    assert ledger.reserve("r2", [Charge(B, 1, 100, far(clock))], 60) is None
    spend(ledger, A, 1, clock)
    if kind == "redis":
        # A fresh prefix was never seeded: the spend is relearned once, before the first
        # decision, and counts in it.
        assert calls == [1]
        assert refusal == Refusal(A, 90, 0, 100, 20)
        assert ledger.snapshot([A])[A] == BucketState(91, 0)
    else:
        # Memory and a file (mapped, SQLite) never lose state under a running process: never called.
        assert calls == []
        assert refusal is None
        assert ledger.snapshot([A])[A] == BucketState(1, 20)


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_reserves_never_exceed_the_limit(make: Factory, clock: FakeClock) -> None:
    limit, exp = 1_000, far(clock)
    ledgers = [make() for _ in range(4)]  # threads share instances, as a client's calls do
    accepted: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def run(i: int) -> None:
        rng = random.Random(i)
        barrier.wait()
        for j in range(200):
            amount = rng.randint(1, 9)
            if ledgers[i % 4].reserve(f"t{i}-{j}", [Charge(A, amount, limit, exp)], 60) is None:
                with lock:
                    accepted.append(amount)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = ledgers[0].snapshot([A])[A]
    assert state == BucketState(0, sum(accepted))
    assert limit - 9 < sum(accepted) <= limit  # full, never over: demand was ~8x the limit


# A small reference model of the contract, to check every implementation op by op.
_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.integers(0, 7),
            st.lists(st.tuples(st.sampled_from([A, B]), st.integers(0, 60)), min_size=1, max_size=2),
            st.integers(1, 30),
        ),
        st.tuples(st.just("settle"), st.integers(0, 7), st.integers(0, 60)),
        st.tuples(st.just("release"), st.integers(0, 7)),
        st.tuples(st.just("renew"), st.integers(0, 7), st.integers(1, 30)),
        st.tuples(st.just("advance"), st.integers(1, 20)),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_matches_a_reference_model(kind: str, request: pytest.FixtureRequest, tmp_path: Path, ops: list[Any]) -> None:
    clock = FakeClock()
    if kind == "memory":
        ledger: Ledger = MemoryLedger(clock=clock)
    elif kind == "sqlite":
        ledger = SQLiteLedger(tmp_path / f"{uuid.uuid4().hex}.sqlite", clock=clock)
    elif kind == "mapped":
        ledger = MappedLedger(tmp_path / f"{uuid.uuid4().hex}.mmap", clock=clock)
    else:
        url = request.getfixturevalue("redis_server").url
        ledger = RedisLedger(url, prefix=f"m{uuid.uuid4().hex[:8]}:", clock=clock)
    limits = {A: 100, B: 150}
    exp = far(clock)
    spent = {A: 0, B: 0}
    live: dict[str, tuple[float, dict[str, int]]] = {}
    with ledger:  # type: ignore[attr-defined]
        for op in ops:
            for rid in [r for r, (until, _) in live.items() if until <= clock.now]:
                del live[rid]
            reserved = {b: sum(a.get(b, 0) for _, a in live.values()) for b in spent}
            if op[0] == "reserve":
                _, n, pairs, ttl = op
                rid = f"r{n}"
                amounts: dict[str, int] = {}
                for b, x in pairs:
                    amounts[b] = amounts.get(b, 0) + x
                if rid in live:
                    with pytest.raises(LedgerError):
                        ledger.reserve(rid, [Charge(b, x, limits[b], exp) for b, x in pairs], ttl)
                    continue
                want = next(
                    (
                        Refusal(b, spent[b], reserved[b], limits[b], x)
                        for b, x in amounts.items()
                        if spent[b] + reserved[b] + x > limits[b]
                    ),
                    None,
                )
                assert ledger.reserve(rid, [Charge(b, x, limits[b], exp) for b, x in pairs], ttl) == want
                if want is None:
                    live[rid] = (clock.now + ttl, amounts)
            elif op[0] == "settle":
                _, n, actual = op
                held = live.pop(f"r{n}", None)
                spent[A] += actual
                after = ledger.settle(f"r{n}", [Charge(A, actual, limits[A], exp)])
                reserved_a = sum(a.get(A, 0) for _, a in live.values())
                assert dict(after) == {A: BucketState(spent[A], reserved_a)}, held
            elif op[0] == "release":
                live.pop(f"r{op[1]}", None)
                ledger.release(f"r{op[1]}")
            elif op[0] == "renew":
                _, n, ttl = op
                held = live.get(f"r{n}")
                assert ledger.renew(f"r{n}", ttl) is (held is not None)
                if held is not None:
                    live[f"r{n}"] = (clock.now + ttl, held[1])
            else:
                clock.advance(op[1])
        for rid in [r for r, (until, _) in live.items() if until <= clock.now]:
            del live[rid]
        reserved = {b: sum(a.get(b, 0) for _, a in live.values()) for b in spent}
        assert ledger.snapshot([A, B]) == {b: BucketState(spent[b], reserved[b]) for b in (A, B)}


# -- several processes ------------------------------------------------------------------------


@pytest.mark.parametrize("shared", ["mapped", "sqlite", "redis"])
def test_processes_racing_for_one_budget_never_overshoot(
    shared: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """4 processes x 100 threads reserve-then-settle against one small limit."""
    limit, procs, threads, loops = 20_000, 4, 100, 3
    bucket = bucket_name("global", f"day:{uuid.uuid4().hex[:6]}")
    prefix = f"p{uuid.uuid4().hex[:8]}:"
    if shared == "sqlite":
        target = str(tmp_path / "shared.sqlite")
        SQLiteLedger(target).close()  # create the file once, before the race
        reader: Ledger = SQLiteLedger(target)
    elif shared == "mapped":
        target = str(tmp_path / "shared.mmap")  # created by whichever worker comes first
    else:
        target = request.getfixturevalue("redis_server").url
        reader = RedisLedger(target, prefix=prefix)
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), shared, target, prefix, bucket, str(limit), str(threads), str(loops), str(i)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(procs)
    ]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready", w.stderr.read() if w.stderr else ""
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        results = []
        for w in workers:
            out, err = w.communicate(timeout=60)
            assert w.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    if shared == "mapped":
        reader = MappedLedger(target)
    state = reader.snapshot([bucket])[bucket]
    reader.close()
    assert sum(r["errors"] for r in results) == 0
    assert state.reserved == 0
    assert state.spent == sum(r["settled"] for r in results)
    assert state.spent <= limit
    assert sum(r["refused"] for r in results) > 0  # the budget was really contended
    assert state.spent > limit - 150 * 2  # ...and filled (settles free up to half their reservation)


# -- Redis specifics --------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer() as server:
        yield server


def test_redis_uses_server_time_and_expiring_keys(redis_server: RedisServer) -> None:
    import redis

    prefix = f"k{uuid.uuid4().hex[:8]}:"
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    window_end = time.time() + 3600
    with RedisLedger(redis_server.url, prefix=prefix) as ledger:
        assert ledger.reserve("r1", [Charge(A, 100, 100, window_end)], 0.3) is None
        assert ledger.reserve("r2", [Charge(A, 1, 100, window_end)], 0.3) is not None
        # Buckets live a day past their window; the reservation's own hash only a little past it.
        assert 3600 + 86_400 - 5 < raw.ttl(f"{prefix}b:{A}") <= 3600 + 86_400 + 1
        assert 3600 + 86_400 - 5 < raw.ttl(f"{prefix}z:{A}") <= 3600 + 86_400 + 1
        assert 0 < raw.pttl(f"{prefix}r:r1") <= 60_300
        time.sleep(0.35)
        assert ledger.reserve("r2", [Charge(A, 100, 100, window_end)], 0.3) is None
        ledger.settle("r2", [Charge(A, 40, 100, window_end)])
        assert raw.exists(f"{prefix}r:r2") == 0
        assert ledger.snapshot([A])[A] == BucketState(40, 0)
        assert ledger.claim("c", time.time() + 0.3) is True
        assert ledger.claim("c", time.time() + 0.3) is False
        time.sleep(0.35)
        assert ledger.claim("c", time.time() + 0.3) is True
    raw.close()


def test_redis_that_forgot_its_state_relearns_it_from_the_seeder(redis_server: RedisServer) -> None:
    import redis

    prefix = f"s{uuid.uuid4().hex[:8]}:"
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    window_end = time.time() + 3600
    log_spend = {A: 0}
    calls: list[int] = []

    def seeder() -> tuple[dict[str, int], dict[str, float]]:
        calls.append(1)
        return dict(log_spend), {A: window_end}

    with RedisLedger(redis_server.url, prefix=prefix) as ledger, RedisLedger(redis_server.url, prefix=prefix) as peer:
        ledger.use_seeder(seeder)
        assert ledger.reserve("r1", [Charge(A, 40, 100, window_end)], 60) is None
        ledger.settle("r1", [Charge(A, 40, 100, window_end)])
        log_spend[A] = 40  # what the call log now holds
        assert calls == [1]
        raw.delete(*raw.keys(f"{prefix}*"))  # the server restarted empty, without persistence
        assert peer.snapshot([A])[A] == BucketState()  # forgotten...
        # ...but nothing is approved against the empty state: the spend is relearned first.
        assert ledger.reserve("r2", [Charge(A, 70, 100, window_end)], 60) == Refusal(A, 40, 0, 100, 70)
        assert calls == [1, 1]
        assert peer.snapshot([A])[A] == BucketState(40, 0)
    raw.close()


def test_redis_password_never_shows() -> None:
    require_redis_server()
    secret = "hunter2-very-secret"
    with RedisServer(args=("--requirepass", secret)) as server:
        good = RedisLedger(f"redis://:{secret}@127.0.0.1:{server.port}/3")
        assert repr(good) == f"RedisLedger('127.0.0.1:{server.port}/3', prefix='hs:')"
        assert good.snapshot([A]) == {A: BucketState()}
        good.close()
        bad = RedisLedger(f"redis://:wrong-{secret}@127.0.0.1:{server.port}/0", fail_open=True)
        with pytest.raises(LedgerError) as info:  # a bad password never fails open
            bad.reserve("r", [Charge(A, 1, 10, time.time() + 60)], 60)
        assert not isinstance(info.value, LedgerUnavailableError)
        assert secret not in str(info.value) and "credentials" in str(info.value)
        bad.close()
    down = RedisLedger(f"redis://user:{secret}@127.0.0.1:1/0?password={secret}")
    with pytest.raises(LedgerUnavailableError) as info2:
        down.reserve("r", [Charge(A, 1, 10, time.time() + 60)], 60)
    assert secret not in str(info2.value) and "127.0.0.1:1/0" in str(info2.value)
    assert secret not in repr(down)


def test_redis_extra_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, holysheep_lab.ledger as l; l.RedisLedger; assert 'redis' not in sys.modules, 'eager'"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "redis", None)  # as if not installed
    with pytest.raises(MissingExtraError, match="pip install redis"):
        RedisLedger()


def test_redis_outage_fails_closed_or_open_and_recovers(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    window_end = time.time() + 3600
    closed = RedisLedger(own_redis.url, prefix="o:", socket_timeout=0.5)
    opened = RedisLedger(own_redis.url, prefix="o:", fail_open=True, socket_timeout=0.5)
    charge = [Charge(A, 10, 1_000, window_end)]
    # The hammer spends in a bucket of its own, so however fast it runs it cannot fill A.
    hammer_charge = [Charge(B, 10, 10**12, window_end)]
    stop = threading.Event()
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def hammer(i: int) -> None:
        # Calls keep coming while the server dies: each either works or fails closed, cleanly.
        j = 0
        while not stop.is_set():
            j += 1
            rid = f"h{i}-{j}"
            try:
                if closed.reserve(rid, hammer_charge, 30) is None:
                    closed.settle(rid, [Charge(B, 1, 10**12, window_end)])
                outcome = "ok"
            except LedgerUnavailableError:
                outcome = "unavailable"
            with lock:
                seen[outcome] = seen.get(outcome, 0) + 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    own_redis.kill()
    time.sleep(0.3)
    with pytest.raises(LedgerUnavailableError, match="fail closed"):
        closed.reserve("during", charge, 30)
    with caplog.at_level(logging.INFO, logger="holysheep_lab"):
        assert opened.reserve("o1", charge, 30) is None  # allowed, unbudgeted
        assert opened.reserve("o2", charge, 30) is None
        assert opened.settle("o1", charge) == {}
        opened.release("o2")
        with pytest.raises(LedgerUnavailableError):
            opened.snapshot([A])  # no safe default for a read
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        own_redis.start()  # same port, empty (no persistence), no scripts loaded
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert opened.reserve("o3", charge, 30) is None
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert seen.get("unavailable", 0) > 0 and seen.get("ok", 0) > 0
    # Back to normal: the scripts are reloaded (NOSCRIPT) and the budget is enforced again.
    # The restarted server lost its data; a guard re-seeds from the log (seed never lowers).
    closed.seed({A: 990}, {A: window_end})
    assert closed.reserve("after", charge, 30) == Refusal(A, 990, 10, 1_000, 10)
    opened.release("o3")
    assert closed.reserve("after", charge, 30) is None
    closed.close()
    opened.close()


# -- memory and SQLite specifics --------------------------------------------------------------


def test_memory_drops_buckets_and_claims_a_day_after_their_window() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock=clock)
    ledger.settle(None, [Charge(A, 5, None, clock.now + 10)])
    ledger.claim("k", clock.now + 10)
    assert ledger.reserve("r", [Charge(B, 5, None, clock.now + 10)], 30) is None
    clock.advance(3600)
    assert repr(ledger) == "MemoryLedger(buckets=2, in_flight=1)"  # purged lazily...
    assert ledger.snapshot([B]) == {B: BucketState()}  # ...by the next call
    assert repr(ledger) == "MemoryLedger(buckets=2, in_flight=0)"
    clock.advance(86_400)
    assert ledger.snapshot([A]) == {A: BucketState()}  # any call may sweep
    assert repr(ledger) == "MemoryLedger(buckets=0, in_flight=0)"
    assert ledger._claims == {}


def test_sqlite_drops_dead_rows_and_fails_closed_when_locked(tmp_path: Path) -> None:
    import sqlite3

    clock = FakeClock()
    path = tmp_path / "l.sqlite"
    ledger = SQLiteLedger(path, clock=clock, timeout=0.2)
    ledger.settle(None, [Charge(A, 5, None, clock.now + 10)])
    ledger.claim("k", clock.now + 10)
    assert ledger.reserve("r", [Charge(B, 5, None, clock.now + 10)], 30) is None
    clock.advance(86_400 + 100)
    assert ledger.reserve("r2", [Charge(C, 1, None, clock.now + 10)], 30) is None
    raw = sqlite3.connect(path, isolation_level=None)
    assert raw.execute("SELECT bucket FROM ledger WHERE id = ''").fetchall() == []  # spend rows: gone
    assert raw.execute("SELECT bucket, id FROM ledger WHERE id > '' ORDER BY bucket").fetchall() == [("", "r2"), (C, "r2")]
    assert raw.execute("SELECT key FROM claims").fetchall() == []
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.execute("BEGIN IMMEDIATE")  # another process holds the write lock too long
    with pytest.raises(LedgerUnavailableError, match="locked"):
        ledger.reserve("r3", [Charge(C, 1, 10, clock.now + 10)], 30)
    raw.execute("ROLLBACK")
    assert ledger.reserve("r3", [Charge(C, 1, 10, clock.now + 10)], 30) is None
    raw.close()
    ledger.close()
    assert repr(ledger) == f"SQLiteLedger({str(path)!r})"


def test_sqlite_file_of_the_first_layout_keeps_its_spend(tmp_path: Path) -> None:
    import sqlite3

    clock = FakeClock()
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE buckets (name TEXT PRIMARY KEY, spent INTEGER NOT NULL DEFAULT 0, "
                "expires_at REAL NOT NULL) WITHOUT ROWID")
    raw.execute("CREATE TABLE reservations (id TEXT NOT NULL, bucket TEXT NOT NULL, amount INTEGER NOT NULL, "
                "expires_at REAL NOT NULL, PRIMARY KEY (id, bucket)) WITHOUT ROWID")
    raw.execute("INSERT INTO buckets VALUES (?, 700, ?)", (A, far(clock)))
    raw.close()
    with SQLiteLedger(path, clock=clock) as ledger:
        assert ledger.snapshot([A])[A] == BucketState(700, 0)
        assert ledger.reserve("r", [Charge(A, 301, 1000, far(clock))], 60) == Refusal(A, 700, 0, 1000, 301)
    with SQLiteLedger(path, clock=clock) as again:  # migrated once; opening again changes nothing
        assert again.snapshot([A])[A] == BucketState(700, 0)
