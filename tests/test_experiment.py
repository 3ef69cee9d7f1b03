"""Experiments against the real simulator: `client.experiment(name, budget=...)` caps the calls
made inside it (sync, async, chat_many, threads through `exp.bind`, the openai SDK on the same
Metering) before sending, with zero overshoot under concurrency; tags their rows; tallies them."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import httpx2
import pytest

import holysheep_lab as hs
from holysheep_lab.core.guard import Guard
from holysheep_lab.core.scopes import CallScope, context_for, enter, hold, leave, release, settle
from holysheep_lab.ledger.memory import MemoryLedger
from holysheep_lab.log import read_table

PROMPT = "Summarise ticket {i} in one line."


@pytest.fixture
def sim():
    with hs.Simulator(latency=0.01) as s:
        yield s


@pytest.fixture
def client(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        yield c


def rows(log_dir):
    return read_table(log_dir).to_pylist()


def test_calls_inside_are_tagged_and_tallied(client, log_dir):
    client.chat("gpt-4.1", "before", max_tokens=20)
    with client.experiment("rag-v2") as exp:
        results = [client.chat("gpt-4.1", PROMPT.format(i=i), max_tokens=40) for i in range(3)]
        assert exp.active and exp.calls == 3
    client.chat("gpt-4.1", "after", max_tokens=20)
    client.close()
    by_prompt = {r["call_id"]: r for r in rows(log_dir)}
    tagged = [r for r in by_prompt.values() if r["experiment"] == "rag-v2"]
    assert sorted(r["call_id"] for r in tagged) == sorted(r.call_id for r in results)
    assert len(by_prompt) == 5 and sum(r["experiment"] is None for r in by_prompt.values()) == 2
    # exp's numbers are the log's: exact nanos, tokens.
    assert round(exp.cost_usd * 1e9) == sum(r["cost_nanos"] for r in tagged)
    s = exp.summary()
    assert (s.calls, s.refused, s.errors, s.budget_usd) == (3, 0, 0, None)
    assert s.input_tokens == sum(r["input_tokens"] for r in tagged)
    assert s.models["gpt-4.1"].calls == 3 and s.ended_at is not None and not exp.active
    assert "experiment 'rag-v2': 3 calls" in str(s) and "&#36;" in s._repr_html_()
    assert "3 calls" in repr(exp) and "done" in repr(exp)
    df = hs.read_log(log_dir)
    by = df.hs.by("experiment").set_index("experiment")
    assert by.loc["rag-v2", "calls"] == 3 and by.loc["(none)", "calls"] == 2


def test_budget_refuses_before_sending(sim, client, log_dir):
    with client.experiment("tight", budget=0.003) as exp:
        answered, refused = 0, []
        for i in range(20):
            try:
                client.chat("gpt-4.1", PROMPT.format(i=i), max_tokens=100)
                answered += 1
            except hs.BudgetExceededError as exc:
                refused.append(exc)
    assert answered >= 1 and refused
    exc = refused[0]
    assert exc.scope == "experiment:tight" and exc.window == "experiment" and exc.resets_at is None
    assert exc.limit == Decimal("0.003") and "experiment budget of experiment:tight" in str(exc)
    assert sim.completed == answered  # the refused ones never reached the relay
    assert exp.cost_usd <= 0.003 and exp.refused == len(refused) and exp.in_flight_usd == 0
    client.close()
    blocked = [r for r in rows(log_dir) if r["status"] == "blocked"]
    assert len(blocked) == len(refused) and all(r["experiment"] == "tight" for r in blocked)


def test_zero_overshoot_under_threads_asyncio_and_chat_many(sim, client, log_dir):
    cap = 0.02
    refused = []
    lock = threading.Lock()

    def sync_worker(n: int) -> None:
        for i in range(n):
            try:
                client.chat("gpt-4.1", PROMPT.format(i=i), max_tokens=100)
            except hs.BudgetExceededError as exc:
                with lock:
                    refused.append(exc)

    batch: list = []

    def many() -> None:
        batch.extend(client.chat_many([PROMPT.format(i=i) for i in range(40)], "gpt-4.1", max_tokens=100,
                                      concurrency=8, progress=False))

    async def burst() -> list:
        return await asyncio.gather(*(client.achat("gpt-4.1", PROMPT.format(i=i), max_tokens=100) for i in range(40)),
                                    return_exceptions=True)

    with client.experiment("race", budget=cap) as exp:
        threads = [threading.Thread(target=exp.bind(sync_worker), args=(25,)) for _ in range(3)]
        threads.append(threading.Thread(target=exp.bind(many)))
        for t in threads:
            t.start()
        gathered = asyncio.run(burst())
        for t in threads:
            t.join()
        raced = exp.calls + exp.refused
        # Calls in flight held their worst case, so refusals came early; one at a time now, the
        # rest of the budget is spent until a worst case no longer fits.
        for i in range(100):
            try:
                client.chat("gpt-4.1", PROMPT.format(i=i), max_tokens=100)
            except hs.BudgetExceededError as exc:
                last = exc
                break
    client.close()
    log = [r for r in rows(log_dir) if r["experiment"] == "race"]
    assert raced == 3 * 25 + 40 + 40  # every call, from every path, joined the experiment
    assert len(log) == exp.calls + exp.refused
    spent = sum(r["cost_nanos"] or 0 for r in log)
    assert spent <= cap * 1e9  # zero overshoot: the log is the truth
    assert spent == round(exp.cost_usd * 1e9)
    ok = [r for r in log if r["status"] == "ok"]
    blocked = [r for r in log if r["status"] == "blocked"]
    assert sim.completed == len(ok) and len(ok) + len(blocked) == len(log)
    refusals = refused + [r for r in [*batch, *gathered] if isinstance(r, hs.BudgetExceededError)]
    assert {id(r) for r in refused} and any(isinstance(r, hs.BudgetExceededError) for r in batch)
    assert any(isinstance(r, hs.BudgetExceededError) for r in gathered)
    # Every refusal was due: what was spent and held plus its worst case would have passed the cap.
    for exc in [*refusals, last]:
        assert exc.scope == "experiment:race" and exc.spent + exc.reserved + exc.estimate > exc.limit
    # And the cap is what bound at the end, nothing looser: less than one worst case is left.
    assert cap * 1e9 - spent < last.estimate * 1_000_000_000
    assert exp.summary().refused == len(blocked) and exp.in_flight_usd == 0


def test_async_with_and_tasks_created_inside(client, log_dir):
    async def run() -> hs.Experiment:
        async with client.experiment("async-run", budget=1.0) as exp:
            await asyncio.gather(*(client.achat("gpt-4.1", PROMPT.format(i=i), max_tokens=30) for i in range(5)))
        await client.achat("gpt-4.1", "outside", max_tokens=10)
        return exp

    exp = asyncio.run(run())
    client.close()
    tags = [r["experiment"] for r in rows(log_dir)]
    assert tags.count("async-run") == 5 == exp.calls and tags.count(None) == 1


def test_chat_many_on_the_private_loop_sees_the_experiment(client, log_dir):
    with client.experiment("batch", budget=0.004) as exp:
        results = client.chat_many([PROMPT.format(i=i) for i in range(30)], "gpt-4.1", max_tokens=100, progress=False)
    refused = [r for r in results if isinstance(r, hs.BudgetExceededError)]
    assert refused and all(r.scope == "experiment:batch" for r in refused)
    client.close()
    log = rows(log_dir)
    assert all(r["experiment"] == "batch" for r in log) and len(log) == 30
    assert sum(r["cost_nanos"] or 0 for r in log) <= 4_000_000 and exp.calls + exp.refused == 30


def test_the_sdk_on_the_same_metering_is_capped_and_tagged(sim, client, log_dir):
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=sim.base_url, api_key="x",
                        http_client=httpx2.Client(transport=hs.MeteredTransport(metering=client.metering)))
    with client.experiment("sdk", budget=0.003) as exp:
        refused = 0
        for i in range(10):
            try:
                sdk.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": PROMPT.format(i=i)}],
                                            max_tokens=100)
            except hs.BudgetExceededError:
                refused += 1
    sdk.close()
    client.close()
    log = rows(log_dir)
    assert refused and all(r["experiment"] == "sdk" for r in log)
    assert sum(r["cost_nanos"] or 0 for r in log) <= 3_000_000 and exp.refused == refused


def test_other_clients_threads_and_nesting(sim, client, log_dir, tmp_path):
    other_dir = tmp_path / "other"
    with hs.Client(base_url=sim.base_url, log_dir=other_dir) as other, client.experiment("outer", budget=1.0) as outer:
        other.chat("gpt-4.1", "another client", max_tokens=10)  # not this client's experiment
        plain = threading.Thread(target=client.chat, args=("gpt-4.1", "a thread without bind"), kwargs={"max_tokens": 10})
        plain.start()
        plain.join()
        worst = client.estimate("gpt-4.1", "nested", max_tokens=10).cost_usd
        with client.experiment("inner", budget=worst * 1.5) as inner:  # room for that call only
            client.chat("gpt-4.1", "nested", max_tokens=10)
            with pytest.raises(hs.BudgetExceededError) as caught:
                client.chat("gpt-4.1", "nested again", max_tokens=100)
        client.chat("gpt-4.1", "outer only", max_tokens=10)
    assert caught.value.scope == "experiment:inner"
    assert read_table(other_dir).column("experiment").to_pylist() == [None]
    client.close()
    tags = sorted(str(r["experiment"]) for r in rows(log_dir))
    assert tags == ["None", "inner", "inner", "outer"]  # the thread; nested ok + refused; outer
    assert inner.calls == 1 and inner.refused == 1 and outer.calls == 2 and outer.refused == 1
    assert outer.cost_usd > inner.cost_usd > 0


def test_a_ledger_refusal_gives_the_experiment_hold_back(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=0.002, monthly=None)) as c:
        with c.experiment("x", budget=1.0) as exp:
            with pytest.raises(hs.BudgetExceededError) as caught:
                for i in range(20):
                    c.chat("gpt-4.1", PROMPT.format(i=i), max_tokens=100)
        assert caught.value.scope == "global"
        assert exp.in_flight_usd == 0 and exp.refused == 1 and exp.remaining_usd == pytest.approx(1.0 - exp.cost_usd)


def test_checks_and_misuse(client):
    for bad in ("", "  ", "x" * 201, "a\nb", 3):
        with pytest.raises(hs.ConfigError):
            client.experiment(bad)  # type: ignore[arg-type]
    for budget in (0, -1, "lots", float("nan"), True):
        with pytest.raises(hs.ConfigError):
            client.experiment("x", budget=budget)  # type: ignore[arg-type]
    exp = client.experiment("once", budget="0.50")
    assert exp.budget_usd == 0.5 and "not started" in repr(exp)
    with pytest.raises(hs.HolySheepError, match="not open"):
        exp.bind(lambda: None)()
    with exp:
        with pytest.raises(hs.HolySheepError, match="already run"):
            exp.__enter__()
    with pytest.raises(hs.HolySheepError, match="already run"):
        exp.__enter__()
    assert hs.Experiment is type(exp)


def test_unknown_model_rows_are_tagged_but_cost_nothing(client, log_dir):
    with client.experiment("typo") as exp, pytest.raises(hs.UnknownModelError):
        client.chat("gpt-4.11", "hi")
    client.close()
    (row,) = rows(log_dir)
    assert row["experiment"] == "typo" and row["status"] == "error"
    assert exp.summary().errors == 1
    assert exp.cost_usd == 0


# --------------------------------------------------------------------------- the guard and scopes


def test_guard_holds_in_scopes_all_or_nothing():
    guard = Guard(None, MemoryLedger())
    a = CallScope("experiment", "a", limit_nanos=1000)
    b = CallScope("experiment", "b", limit_nanos=500)
    res = guard.reserve("r1", 400, scopes=[a, b])
    assert (a.reserved_nanos, b.reserved_nanos) == (400, 400)
    with pytest.raises(hs.BudgetExceededError) as caught:
        guard.reserve("r2", 200, scopes=[a, b])  # b: 400 + 200 > 500
    assert caught.value.scope == "experiment:b" and a.reserved_nanos == 400  # a not held either
    guard.settle(res, 300)
    assert (a.spent_nanos, a.reserved_nanos, b.spent_nanos) == (300, 0, 300)
    r3 = guard.reserve("r3", 200, scopes=[a, b])
    guard.release(r3)
    assert (a.reserved_nanos, b.reserved_nanos) == (0, 0) and (a.spent_nanos, b.spent_nanos) == (300, 300)


def test_scope_arithmetic_is_exact_at_the_limit():
    s = CallScope("cell", "1", limit_nanos=1000)
    assert hold([s], "a", 600) is None and hold([s], "b", 400) is None  # exactly at the limit
    refusal = hold([s], "c", 1)
    assert refusal is not None and (refusal.spent, refusal.reserved, refusal.limit) == (0, 1000, 1000)
    settle([s], "a", 100)
    release([s], "b")
    assert (s.spent_nanos, s.reserved_nanos) == (100, 0)


def test_context_for_takes_only_the_owners_experiments():
    mine, theirs = object(), object()
    scope = CallScope("experiment", "e", owner=mine)
    assert context_for(mine).scopes == ()
    token = enter(scope)
    try:
        assert context_for(mine).scopes == (scope,) and context_for(mine).experiment == "e"
        assert context_for(theirs).scopes == () and context_for(theirs).experiment is None
    finally:
        leave(token)
    assert context_for(mine).scopes == ()


def test_open_experiments_are_listed_for_meters_while_they_run(client):
    from holysheep_lab.core.scopes import open_scopes

    assert open_scopes(client.metering) == []
    with client.experiment("live", budget=0.5) as exp:
        seen = []

        def meter_thread() -> None:  # a meter refreshes on its own thread, outside the context
            seen.extend(s.snapshot() for s in open_scopes(client.metering))

        first = client.chat("gpt-4.1", "hi", max_tokens=10)
        t = threading.Thread(target=meter_thread)
        t.start()
        t.join()
        worker = threading.Thread(target=exp.bind(client.chat), args=("gpt-4.1", "bound"))
        worker.start()
        worker.join()
        assert open_scopes(client.metering) == [exp.scope]  # the bound thread left, the block has not
        assert open_scopes(object()) == []  # another client's meter does not list it
    assert [s.name for s in seen] == ["live"] and seen[0].calls == 1 and seen[0].limit_nanos == 500_000_000
    assert seen[0].spent_nanos == round(first.cost_usd * 1e9) > 0
    assert open_scopes(client.metering) == []
