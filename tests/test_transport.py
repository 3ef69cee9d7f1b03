"""The metered transport as a unit (httpx2.MockTransport) and its wiring of alerts and limits."""

from __future__ import annotations

import json
import time

import httpx2
import pytest

import holysheep_lab as hs
from holysheep_lab.core.metering import CostDriftWarning
from holysheep_lab.log import read_table
from holysheep_lab.transports.metered import outcome_of

COMPLETION = {
    "id": "c1", "object": "chat.completion", "model": "gpt-4.1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}


def mock(handler):
    return httpx2.MockTransport(handler)


def test_non_chat_requests_pass_through_unmetered(log_dir):
    seen = []

    def handler(request):
        seen.append(request.url.path)
        return httpx2.Response(200, json={"data": []})

    t = hs.MeteredTransport(mock(handler), log_dir=log_dir)
    with httpx2.Client(transport=t, base_url="http://relay/v1") as c:
        r = c.get("/models")
    assert r.json() == {"data": []} and seen == ["/v1/models"] and outcome_of(r) is None
    assert not list(log_dir.rglob("*.parquet")) and read_table(log_dir).num_rows == 0


def test_chat_through_transport_is_priced_and_logged(log_dir):
    t = hs.MeteredTransport(mock(lambda req: httpx2.Response(200, json=COMPLETION)), log_dir=log_dir, project="p1")
    with httpx2.Client(transport=t, base_url="http://relay/v1") as c:
        r = c.post("/chat/completions", json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]})
    rec = outcome_of(r).record
    assert r.json()["choices"][0]["message"]["content"] == "hi"
    assert rec.cost_nanos == (10 + 5) * 8 * 1000 and rec.project == "p1" and rec.status == "ok"
    (row,) = read_table(log_dir).to_pylist()
    assert row["call_id"] == rec.call_id and row["max_tokens"] is None
    # no max_tokens: the worst case uses the model's output cap
    assert row["estimated_cost_usd"] >= 32_768 * 8 / 1e6


def test_refusal_raises_before_the_inner_transport_is_called(log_dir):
    calls = []
    t = hs.MeteredTransport(mock(lambda req: calls.append(1) or httpx2.Response(200, json=COMPLETION)),
                            log_dir=log_dir, budget=hs.Budget(daily=0.0001, monthly=None))
    with httpx2.Client(transport=t, base_url="http://relay/v1") as c, pytest.raises(hs.BudgetExceededError):
        c.post("/chat/completions", json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100})
    assert calls == []


def test_non_json_request_body_is_refused_clearly(log_dir):
    t = hs.MeteredTransport(mock(lambda req: httpx2.Response(200, json=COMPLETION)), log_dir=log_dir)
    with httpx2.Client(transport=t, base_url="http://relay/v1") as c, pytest.raises(hs.ConfigError, match="not JSON"):
        c.post("/chat/completions", content=b"{oops")


def test_relay_cost_is_recorded_beside_ours(log_dir):
    body = {**COMPLETION, "usage": {**COMPLETION["usage"], "cost": 0.5}}
    t = hs.MeteredTransport(mock(lambda req: httpx2.Response(200, json=body)), log_dir=log_dir)
    with httpx2.Client(transport=t, base_url="http://relay/v1") as c, pytest.warns(CostDriftWarning, match="relay"):
        r = c.post("/chat/completions", json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]})
    rec = outcome_of(r).record
    assert rec.relay_cost_usd == 0.5 and rec.cost_usd == pytest.approx(120e-6)


def test_metering_and_keywords_are_exclusive(log_dir):
    t = hs.MeteredTransport(log_dir=log_dir)
    with pytest.raises(TypeError, match="either metering="):
        hs.MeteredTransport(metering=t.metering, budget=hs.Budget())
    t.close()


def test_alert_levels_fire_once_each_through_the_client(log_dir):
    fired = []
    alerts = hs.AlertManager(channels=[hs.CallbackChannel(lambda a: fired.append((a.level.name, a.window)))], cooldown=0)
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir, alerts=alerts,
                                          budget=hs.Budget(daily=0.05, monthly=None, alert_at=0.99, block_at=1.0)) as c:
        for _ in range(200):
            try:
                c.chat("gpt-4.1", "word " * 40, max_tokens=50)
            except hs.BudgetExceededError:
                break
        alerts.flush(5)
    names = [n for n, w in fired if w == "daily"]
    assert names == ["INFO", "WARNING", "CRITICAL", "EMERGENCY"][: len(names)] and len(names) >= 3
    assert len(names) == len(set(names))


def test_a_down_channel_does_not_break_or_slow_calls(log_dir):
    alerts = hs.AlertManager(channels=[hs.WebhookChannel("http://127.0.0.1:9/hook", style="slack")], cooldown=0)
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir, alerts=alerts,
                                          budget=hs.Budget(daily=0.002, monthly=None, block_at=1.0, alert_at=1.0)) as c:
        t0 = time.perf_counter()
        ok = 0
        for _ in range(50):
            try:
                c.chat("gpt-4.1", "hi", max_tokens=20)
                ok += 1
            except hs.BudgetExceededError:
                break
        elapsed = time.perf_counter() - t0
        alerts.flush(10)
    assert ok >= 2 and elapsed < 5
    assert alerts.deliveries and all(not d.ok for d in alerts.deliveries)


def test_rate_limit_books_worst_case_tokens_of_real_calls(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                          rate_limit=hs.RateLimit(rpm=100, tpm=3100)) as c:
        for _ in range(3):
            c.chat("gpt-4.1", "hi", max_tokens=1000)  # each books ~1,020 worst-case tokens
        # the window is now full: one more such call would have to wait about a minute
        assert 50 < c.metering.limiter.acquire(1020) <= 60
        with pytest.raises(hs.RateLimitError, match="tpm"):
            c.chat("gpt-4.1", "hi", max_tokens=5000)
        assert sim.requests == 3
    rows = read_table(log_dir).to_pylist()
    assert rows[-1]["status"] == "error" and "tpm" in rows[-1]["error"]


def test_server_rate_limit_headers_pause_the_client(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                          retry=hs.Retry(max_attempts=3, backoff=0.01)) as c:
        sim.configure(fault="rate_limit", fail_first=2, retry_after=0.2)
        t0 = time.perf_counter()
        r = c.chat("gpt-4.1", "hi", max_tokens=5)
        assert r.record.attempts == 3 and time.perf_counter() - t0 >= 0.4


def test_public_names_are_pinned():
    assert hs.__all__ == sorted(hs.__all__)
    for name in hs.__all__:
        if "Httpx" not in name:  # the legacy adapters need httpx, which openai 3.x no longer brings
            assert getattr(hs, name) is not None
    assert {"Client", "Budget", "MeteredTransport", "AsyncMeteredTransport", "read_log", "report",
            "Simulator", "AlertManager", "BudgetExceededError", "UnknownModelError"} <= set(hs.__all__)
    assert json.dumps(sorted(hs.__all__))


def test_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, holysheep_lab; print(sorted(m for m in ('pandas','pyarrow','altair','ipywidgets','httpx2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
