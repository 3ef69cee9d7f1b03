"""hs.Client end to end against the real simulator over loopback."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import httpx2
import pytest

import holysheep_lab as hs
from holysheep_lab.core.metering import UsageMissingWarning
from holysheep_lab.core.pricing import PriceTable
from holysheep_lab.log import read_log, read_table

SECRET = "sk-test-SECRETSECRET-1234567890"


@pytest.fixture
def sim():
    with hs.Simulator() as s:
        yield s


@pytest.fixture
def client(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, retry=hs.Retry(backoff=0.01, max_backoff=0.05)) as c:
        yield c


def rows(log_dir):
    return read_table(log_dir).to_pylist()


def test_chat_prices_and_logs_every_core_column(client, log_dir):
    r = client.chat("gpt-4.1", "Hello there", max_tokens=50)
    assert isinstance(r, hs.ChatResult) and r.text
    assert 1 <= r.usage.output_tokens <= 50
    expected = PriceTable.default()["gpt-4.1"].cost_nanos(r.usage)
    assert r.cost_usd == pytest.approx(expected / 1e9, abs=0) and r.cost_usd > 0
    client.close()
    df = read_log(log_dir)
    assert len(df) == 1
    row = df.iloc[0]
    for col in ("call_id", "ts", "model", "status", "input_tokens", "output_tokens", "cached_input_tokens",
                "reasoning_tokens", "cost_usd", "estimated_cost_usd", "latency_ms", "attempts", "http_status",
                "error", "project", "price_version", "schema_version"):
        assert col in df.columns
    assert row.status == "ok" and row.attempts == 1 and row.http_status == 200
    assert row.cost_nanos == expected and row.price_version == PriceTable.default().version
    assert row.estimated_cost_usd >= row.cost_usd
    assert row.input_tokens == r.usage.input_tokens and row.call_id == r.call_id
    assert row.prompt is None or row.prompt != row.prompt  # content is not logged unless asked


def test_cached_and_reasoning_tokens_are_charged_once(log_dir):
    with hs.Simulator(cached_ratio=0.5, reasoning_ratio=0.5) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        r = c.chat("gpt-4o", "x " * 400, max_tokens=100)
    assert r.usage.cached_input_tokens > 0
    p = PriceTable.default()["gpt-4o"]
    uncached = r.usage.input_tokens - r.usage.cached_input_tokens
    exact = (uncached * p.input + r.usage.cached_input_tokens * p.cached_input + r.usage.output_tokens * p.output) / Decimal(10**6)
    assert Decimal(str(r.cost_usd)) == exact.quantize(Decimal("1e-9"))


def test_api_key_never_leaks(log_dir, capsys):
    with hs.Simulator(api_key=SECRET) as sim:
        with hs.Client(SECRET, base_url=sim.base_url, log_dir=log_dir) as c:
            c.chat("gpt-4.1", "hi", max_tokens=5)
            assert SECRET not in repr(c)
        with hs.Client("sk-wrong-key-abcdefghijkl", base_url=sim.base_url, log_dir=log_dir) as bad:
            with pytest.raises(hs.APIError) as info:
                bad.chat("gpt-4.1", "hi", max_tokens=5)
            assert info.value.status_code == 401 and "HOLYSHEEP_API_KEY" in str(info.value)
            assert "sk-wrong-key-abcdefghijkl" not in str(info.value)
    blob = b"".join(p.read_bytes() for p in log_dir.rglob("*") if p.is_file())
    assert SECRET.encode() not in blob and b"sk-wrong-key" not in blob
    assert SECRET not in capsys.readouterr().out


def test_missing_key_for_the_real_relay_is_a_clear_error(log_dir):
    with pytest.raises(hs.ConfigError, match="HOLYSHEEP_API_KEY"):
        hs.Client(log_dir=log_dir)


def test_unknown_model_is_refused_before_sending(client, sim, log_dir):
    with pytest.raises(hs.UnknownModelError, match="llama-99"):
        client.chat("llama-99", "hi")
    assert sim.requests == 0
    (row,) = rows(log_dir)
    assert row["status"] == "error" and row["attempts"] == 0 and "unknown model" in row["error"]


def test_unpriced_opt_in_is_logged_as_unpriced_not_free(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, allow_unpriced=True) as c:
        r = c.chat("llama-99", "hi", max_tokens=5)
    assert r.cost_usd is None
    (row,) = rows(log_dir)
    assert row["status"] == "unpriced" and row["cost_usd"] is None and row["output_tokens"] >= 1


def test_budget_refuses_before_sending_and_logs_blocked(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=0.001, monthly=None)) as c:
        with pytest.raises(hs.BudgetExceededError) as info:
            c.chat("claude-sonnet-4.5", "hello " * 100, max_tokens=1000)
    err = info.value
    assert err.scope == "global" and err.window == "daily" and err.limit == Decimal("0.00095")
    assert "resets at" in str(err) and err.resets_at is not None
    assert sim.requests == 0
    (row,) = rows(log_dir)
    assert row["status"] == "blocked" and row["attempts"] == 0 and row["estimated_cost_usd"] > 0.00095


def test_retries_on_503_count_attempts(sim, client, log_dir):
    sim.configure(fault="unavailable", fail_first=2)
    r = client.chat("gpt-4.1", "hi", max_tokens=5)
    assert r.record.attempts == 3 and sim.requests == 3
    assert rows(log_dir)[0]["attempts"] == 3


def test_429_retry_after_is_honoured(sim, client):
    sim.configure(fault="rate_limit", fail_first=1, retry_after=0.3)
    t0 = time.perf_counter()
    r = client.chat("gpt-4.1", "hi", max_tokens=5)
    assert time.perf_counter() - t0 >= 0.3 and r.record.attempts == 2


def test_exhausted_retries_raise_and_release(sim, log_dir):
    sim.configure(fault="server_error")
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=10),
                   retry=hs.Retry(max_attempts=2, backoff=0.01)) as c:
        with pytest.raises(hs.ServerError, match="HTTP 500"):
            c.chat("gpt-4.1", "hi", max_tokens=5)
        (line,) = [ln for ln in c.budget_status() if ln["window"] == "daily"]
        assert line["reserved_usd"] == 0 and line["spent_usd"] == 0
    (row,) = rows(log_dir)
    assert row["status"] == "error" and row["http_status"] == 500 and row["attempts"] == 2 and row["cost_usd"] == 0


@pytest.mark.parametrize("fault, match", [("malformed", "malformed JSON"), ("html", "HTML page")])
def test_bad_answers_raise_named_errors_and_are_logged(sim, client, log_dir, fault, match):
    sim.configure(fault=fault)
    with pytest.raises(hs.ResponseFormatError, match=match):
        client.chat("gpt-4.1", "hi", max_tokens=5)
    (row,) = rows(log_dir)
    assert (row["status"] == "error" and match.split()[0].lower() in row["error"].lower()) or row["error"]
    if fault != "html":  # an answered 200 whose cost is unknown is charged the worst case, never $0
        assert row["cost_usd"] == row["estimated_cost_usd"] > 0


@pytest.mark.parametrize("fault, match", [("no_usage", "no 'usage'"), ("negative_usage", "non-negative")])
def test_answers_without_usable_usage_are_returned_at_the_worst_case(sim, client, log_dir, fault, match):
    sim.configure(fault=fault)
    with pytest.warns(UsageMissingWarning, match="usage_missing"):
        r = client.chat("gpt-4.1", "hi", max_tokens=5)
    assert r.text  # paid for, so handed back
    (row,) = rows(log_dir)
    assert row["status"] == "ok" and row["usage_missing"] is True and match in row["error"]
    assert row["cost_usd"] == row["estimated_cost_usd"] == r.cost_usd > 0


def test_timeout_keeps_each_sent_attempt_charged(sim, log_dir):
    # A timed-out attempt reached the relay and may be billed: charged at its bound, not released.
    sim.configure(fault="timeout", hang=5)
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, timeout=0.3, budget=hs.Budget(daily=10),
                   retry=hs.Retry(max_attempts=2, backoff=0.01)) as c:
        worst = c.estimate("gpt-4.1", "hi", max_tokens=5).cost_usd
        with pytest.raises(hs.APITimeoutError):
            c.chat("gpt-4.1", "hi", max_tokens=5)
        assert all(ln["reserved_usd"] == 0 for ln in c.budget_status())
        (day,) = [ln for ln in c.budget_status() if ln["window"] == "daily"]
    attempt, final = sorted(rows(log_dir), key=lambda r: len(r["call_id"]), reverse=True)
    assert final["status"] == "unknown" and final["attempts"] == 2 and "APITimeoutError" in final["error"]
    assert attempt["status"] == "unknown" and attempt["call_id"] == final["call_id"] + ".1"
    assert final["cost_usd"] == attempt["cost_usd"] == pytest.approx(worst)
    assert day["spent_usd"] == pytest.approx(2 * worst)


def test_unreachable_relay_is_a_connection_error(log_dir):
    with hs.Client(base_url="http://127.0.0.1:9/v1", log_dir=log_dir, retry=hs.Retry.none()) as c:
        with pytest.raises(hs.APIConnectionError, match="Could not reach"):
            c.chat("gpt-4.1", "hi")
    assert rows(log_dir)[0]["status"] == "error"


def test_streaming_yields_text_and_settles_from_usage_chunk(client, sim, log_dir):
    stream = client.chat("gpt-4.1", "tell me a story", max_tokens=40, stream=True)
    parts = list(stream)
    assert len(parts) > 1 and "".join(parts) == stream.result.text
    sent = sim.last_requests[-1]
    assert sent["stream_options"] == {"include_usage": True}
    r = stream.result
    assert r.cost_usd == PriceTable.default()["gpt-4.1"].cost_nanos(r.usage) / 1e9 and r.usage.output_tokens >= 1
    row = rows(log_dir)[0]
    assert row["stream"] is True and row["partial"] is False and row["ttft_ms"] > 0 and row["status"] == "ok"


def test_cut_stream_settles_on_what_arrived(client, sim, log_dir):
    sim.configure(fault="cut_stream")
    stream = client.chat("gpt-4.1", "tell me a story", max_tokens=200, stream=True)
    with pytest.raises(httpx2.RemoteProtocolError):
        list(stream)
    row = rows(log_dir)[0]
    assert row["partial"] is True and row["cost_usd"] > 0 and row["status"] == "error"
    assert row["cost_usd"] <= row["estimated_cost_usd"]


def test_abandoned_stream_is_settled_and_marked(client, sim, log_dir):
    sim.configure(stream_delay=0.02)  # so the rest has not arrived when the caller stops reading
    stream = client.chat("gpt-4.1", "tell me a story", max_tokens=200, stream=True)
    for _ in stream:
        break
    row = rows(log_dir)[0]
    assert row["partial"] is True and row["cost_usd"] > 0


async def test_achat_and_sync_calls_inside_a_running_loop(client):
    r = await client.achat("deepseek-v3.2", "hello", max_tokens=10)
    assert r.cost_usd > 0
    r2 = client.chat("deepseek-v3.2", "hello", max_tokens=10)  # sync call while a loop runs
    assert r2.text
    results = client.chat_many(["a", "b", "c"], model="gpt-4.1", max_tokens=5, progress=False)
    assert [isinstance(x, hs.ChatResult) for x in results] == [True] * 3
    await client.aclose()  # closes this loop's connections while the loop still runs


def test_chat_many_keeps_order_and_returns_refusals(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=0.05, monthly=None)) as c:
        prompts = [f"prompt {i} " + "word " * 50 for i in range(40)]
        results = c.chat_many(prompts, model="claude-sonnet-4.5", max_tokens=300, concurrency=4, progress=False)
    assert len(results) == 40
    ok = [r for r in results if isinstance(r, hs.ChatResult)]
    refused = [r for r in results if isinstance(r, hs.BudgetExceededError)]
    assert ok and refused and len(ok) + len(refused) == 40
    assert sum(r.cost_usd for r in ok) <= 0.05 * 0.95
    assert sim.completed == len(ok)
    logged = rows(log_dir)
    assert sum(1 for r in logged if r["status"] == "blocked") == len(refused)


def test_restart_keeps_todays_spend(sim, log_dir):
    budget = hs.Budget(daily=0.02, monthly=None)
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget) as c:
        while True:
            try:
                c.chat("claude-sonnet-4.5", "word " * 100, max_tokens=100)
            except hs.BudgetExceededError:
                break
        spent_before = [ln for ln in c.budget_status() if ln["window"] == "daily"][0]["spent_usd"]
    before = sim.requests
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget) as c2:
        spent = [ln for ln in c2.budget_status() if ln["window"] == "daily"][0]["spent_usd"]
        with pytest.raises(hs.BudgetExceededError):
            c2.chat("claude-sonnet-4.5", "word " * 100, max_tokens=100)
    assert sim.requests == before >= 2
    assert spent == pytest.approx(spent_before, abs=1e-12) and spent > 0


def test_estimate_does_not_send(client, sim):
    est = client.estimate("gpt-4.1", "hello " * 10, max_tokens=100)
    assert est.output_tokens_bound == 100 and est.input_tokens_bound >= 60 and est.cost_usd > 0
    assert sim.requests == 0


def test_usage_report_has_the_seed_keys(client):
    for model in ("gpt-4.1", "deepseek-v3.2"):
        client.chat(model, "hi", max_tokens=5)
    rep = client.usage_report(days=7)
    for key in ("period_days", "total_requests", "total_cost_usd", "total_input_tokens", "total_output_tokens",
                "avg_latency_ms", "model_breakdown", "daily_budget_remaining", "monthly_budget_remaining"):
        assert key in rep
    assert rep["total_requests"] == 2 and set(rep["model_breakdown"]) == {"gpt-4.1", "deepseek-v3.2"}
    assert "<table>" in rep._repr_html_()


def test_project_is_recorded_and_scoped(sim, log_dir):
    budget = hs.Budget(daily=100, projects={"nlp": hs.Budget(daily=0.0001, monthly=None)})
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget, project="default-proj") as c:
        c.chat("gpt-4.1", "hi", max_tokens=5)
        with pytest.raises(hs.BudgetExceededError) as info:
            c.chat("gpt-4.1", "hi", max_tokens=50, project="nlp")
        assert info.value.scope == "project:nlp"
    assert [r["project"] for r in rows(log_dir)] == ["default-proj", "nlp"]
    assert "x-holysheep-project" not in {k.lower() for k in (sim.last_requests[-1] or {})}


def test_a_client_on_a_fresh_log_starts_without_pyarrow(tmp_path):
    # A notebook's first cell: nothing to relearn from an empty log, so no pyarrow import
    # (about half a second); a log with rows is read at start (see the restart tests).
    import subprocess
    import sys

    code = ("import sys, holysheep_lab as hs\n"
            f"c = hs.Client(base_url='http://127.0.0.1:9/v1', api_key='k', log_dir={str(tmp_path / 'log')!r})\n"
            "assert 'pyarrow' not in sys.modules, 'pyarrow imported'\n"
            "c.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_a_call_is_priced_at_the_price_in_effect_when_it_starts(sim, tmp_path):
    from datetime import UTC, datetime

    from holysheep_lab.core.metering import Metering

    table = hs.PriceTable({"m": [hs.Price("1", "1"), hs.Price("100", "100", effective_from="2026-03-01")]})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    costs = []
    for moment in (datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)):
        metering = Metering(prices=table, log_dir=tmp_path / moment.strftime("%d"), clock=lambda m=moment: m)
        with httpx2.Client(transport=hs.MeteredTransport(metering=metering), base_url=sim.base_url) as c:
            c.post("/chat/completions", json=body).raise_for_status()
        (row,) = read_table(tmp_path / moment.strftime("%d")).to_pylist()
        costs.append(row["cost_nanos"])
        metering.close()
    assert costs[1] == 100 * costs[0] > 0


@pytest.mark.parametrize("offset", [timedelta(minutes=7), timedelta(hours=5, minutes=45), timedelta(minutes=-7),
                                    timedelta(hours=-3, minutes=-30), timedelta(minutes=7, seconds=30)])
def test_restart_buckets_spend_by_local_day_for_any_offset(log_dir, offset):
    # Local midnight of a fixed UTC+00:07 zone is 23:53 UTC: rows a few minutes apart, in one
    # UTC quarter hour, belong to different local days.
    from holysheep_lab.core.budget import Window, window_key
    from holysheep_lab.core.metering import Metering
    from holysheep_lab.ledger.base import bucket_name
    from holysheep_lab.log import CallRecord, LogWriter

    zone = timezone(offset)
    midnight = datetime(2026, 12, 2, tzinfo=zone).astimezone(UTC)  # December 2nd begins, local time
    before, after = midnight - timedelta(minutes=3), midnight + timedelta(minutes=2)
    with LogWriter(log_dir) as w:  # out of order, as rows from several processes' journals are
        for i, (ts, nanos) in enumerate([(after, 7_000), (before, 100_000), (after, 3_000), (before, 20_000)]):
            w.append(CallRecord(call_id=f"c{i}", ts=ts, model="gpt-4.1", status="ok", cost_nanos=nanos,
                                cost_usd=nanos / 1e9, input_tokens=1, output_tokens=1))
    now = after + timedelta(minutes=1)
    metering = Metering(log_dir=log_dir, budget=hs.Budget(daily=1, monthly=10, tz=zone), clock=lambda: now)
    try:
        def spent(window: Window, ts: datetime) -> int:
            bucket = bucket_name("global", window_key(window, ts, zone))
            return metering.ledger.snapshot([bucket])[bucket].spent

        assert spent(Window.DAY, after) == 10_000 and spent(Window.DAY, before) == 120_000
        assert spent(Window.MONTH, after) == 130_000
        status = {ln["window"]: ln["spent_usd"] for ln in metering_lines(metering)}
        assert status == {"daily": pytest.approx(10e-6), "monthly": pytest.approx(130e-6)}
    finally:
        metering.close()


def metering_lines(metering):
    from holysheep_lab.reports.budget import ledger_status

    return ledger_status(metering)
