"""Unknown outcomes are spent, not released: billed vs logged vs cap against a relay that bills.

An attempt that reached the relay and got no answer (connection dropped after the request was
read, read timeout, a 2xx whose body broke off) stays charged at its worst case and is logged
`unknown`; each resend has its own reservation. Only a failed connect (nothing sent) is released.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx2
import openai
import pytest

import holysheep_lab as hs
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from tests._support.billing_relay import BillingRelay
from tests._support.fail_closed import day_state, logged_nanos, restarted_spent, rows
from tests.conftest import free_port

FAST = hs.Retry(max_attempts=3, backoff=0.01, max_backoff=0.02)
PRICE = hs.PriceTable.default()["gpt-4.1"]


@pytest.fixture
def relay():
    with BillingRelay(hang=3.0) as r:
        yield r


def bound(c: hs.Client, max_tokens: int) -> int:
    """The worst case (nanos) the client reserves for the tests' one-message call."""
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return c.metering.preview(CHAT_COMPLETIONS, body).estimate_nanos


def test_every_timed_out_attempt_stays_charged_and_logged(relay, log_dir):
    relay.default = "hang"
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, timeout=0.3, retry=FAST,
                   budget=hs.Budget(daily=10, monthly=None)) as c:
        worst = bound(c, 50)
        with pytest.raises(hs.APITimeoutError):
            c.chat("gpt-4.1", "hi", max_tokens=50)
        spent, reserved = day_state(c.metering)
    assert relay.requests == 3  # three attempts, each billed by the relay at its worst case
    logged = rows(log_dir)
    assert [r["status"] for r in logged] == ["unknown"] * 3
    assert all(r["cost_nanos"] == worst and r["usage_missing"] for r in logged)
    # One row is the call's own; the resent attempts have rows of their own, named after it.
    final = [r for r in logged if "." not in r["call_id"]]
    assert len(final) == 1 and final[0]["attempts"] == 3 and "APITimeoutError" in final[0]["error"]
    assert sorted(r["call_id"] for r in logged if r is not final[0]) == [
        f"{final[0]['call_id']}.1", f"{final[0]['call_id']}.2"]
    assert relay.billed_nanos() <= logged_nanos(log_dir) == spent == 3 * worst and reserved == 0
    assert restarted_spent(log_dir) == spent  # the log is the truth after a restart


def test_dropped_after_send_then_answered_charges_the_drops(relay, log_dir):
    relay.script(["drop", "drop", "ok"])
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, retry=FAST) as c:
        worst = bound(c, 40)
        r = c.chat("gpt-4.1", "hi", max_tokens=40)
        spent, reserved = day_state(c.metering)
    assert r.text == " ".join(["word"] * 8) and r.record.attempts == 3 and r.record.status == "ok"
    assert relay.requests == 3
    by_status = sorted(row["status"] for row in rows(log_dir))
    assert by_status == ["ok", "unknown", "unknown"]
    assert r.cost_usd is not None and r.record.cost_nanos == relay.bills[-1].nanos()  # the answer at its usage
    assert spent == 2 * worst + r.record.cost_nanos == logged_nanos(log_dir) >= relay.billed_nanos()
    assert reserved == 0


def test_a_connect_failure_sent_nothing_and_is_released(log_dir):
    with hs.Client(base_url=f"http://127.0.0.1:{free_port()}/v1", log_dir=log_dir, retry=FAST,
                   budget=hs.Budget(daily=10, monthly=None)) as c:
        with pytest.raises(hs.APIConnectionError, match="Could not reach"):
            c.chat("gpt-4.1", "hi", max_tokens=50)
        assert day_state(c.metering) == (0, 0)
    (row,) = rows(log_dir)
    assert (row["status"], row["cost_nanos"], row["attempts"], row["usage_missing"]) == ("error", 0, 3, False)


def test_a_relay_error_answer_is_still_released(relay, log_dir):
    # The relay answered (an HTTP error): the outcome is known, nothing billed, nothing charged.
    relay.script(["reject"])
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, retry=FAST) as c:
        with pytest.raises(hs.APIError, match="HTTP 400"):
            c.chat("gpt-4.1", "hi", max_tokens=50)
        assert day_state(c.metering) == (0, 0)
    (row,) = rows(log_dir)
    assert (row["status"], row["cost_nanos"], relay.requests, relay.billed_nanos()) == ("error", 0, 1, 0)


def test_a_resend_the_budget_cannot_take_is_refused_and_the_sent_attempt_stays(relay, log_dir):
    relay.default = "hang"
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, timeout=0.3, retry=FAST) as probe:
        worst = bound(probe, 2000)
    cap = Decimal(worst * 3 // 2) / Decimal(10**9) / Decimal("0.95")  # room for one attempt, not two
    budget = hs.Budget(daily=cap, monthly=None)
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, timeout=0.3, retry=FAST, budget=budget) as c:
        with pytest.raises(hs.BudgetExceededError) as info:
            c.chat("gpt-4.1", "hi", max_tokens=2000)
        spent, reserved = day_state(c.metering)
    assert isinstance(info.value.__cause__, httpx2.TimeoutException)
    assert relay.requests == 1  # the resend was never sent
    (row,) = rows(log_dir)
    assert (row["status"], row["cost_nanos"], row["attempts"]) == ("unknown", worst, 1)
    assert "BudgetExceededError" in row["error"] and "ReadTimeout" in row["error"]
    assert relay.billed_nanos() <= spent == worst <= budget.daily * Decimal("0.95") * 10**9 and reserved == 0


def test_a_body_that_breaks_off_after_a_200_is_charged(relay, log_dir):
    relay.script(["drop_mid_body"])
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, retry=hs.Retry.none()) as c:
        worst = bound(c, 30)
        with pytest.raises(httpx2.TransportError):
            c.chat("gpt-4.1", "hi", max_tokens=30)
        spent, _ = day_state(c.metering)
    (row,) = rows(log_dir)
    assert (row["status"], row["http_status"], row["cost_nanos"]) == ("unknown", 200, worst)
    assert relay.billed_nanos() <= spent == worst


@pytest.mark.parametrize("fault", ["hang", "drop"])
def test_a_cap_holds_over_what_the_relay_billed(relay, log_dir, fault):
    """Calls whose answers never come, until the budget refuses: the relay's bill stays under the cap."""
    relay.default = fault
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, timeout=0.2, retry=FAST) as probe:
        worst = bound(probe, 500)
    cap = Decimal(worst * 7) / Decimal(10**9)  # room for a few attempts at the block line (0.95)
    budget = hs.Budget(daily=cap, monthly=None)
    refused = 0
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, timeout=0.2, retry=FAST, budget=budget) as c:
        for _ in range(6):
            try:
                c.chat("gpt-4.1", "hi", max_tokens=500)
            except hs.BudgetExceededError:
                refused += 1
            except (hs.APITimeoutError, hs.APIConnectionError):
                pass
        spent, reserved = day_state(c.metering)
    billed = relay.billed_nanos()
    assert refused >= 1 and relay.requests == 6  # 6 attempts fit under 0.95 x 7 worst cases
    assert 0 < billed <= spent == logged_nanos(log_dir) <= cap * Decimal("0.95") * 10**9 and reserved == 0
    # The old behaviour (release) would have logged $0 for all of it and kept on sending.
    assert sum(1 for r in rows(log_dir) if r["status"] == "unknown") == relay.requests


async def test_async_calls_charge_unknown_attempts_too(relay, log_dir):
    relay.default = "hang"
    async with hs.Client(base_url=relay.base_url, log_dir=log_dir, timeout=0.3,
                         retry=hs.Retry(max_attempts=2, backoff=0.01)) as c:
        worst = bound(c, 50)
        with pytest.raises(hs.APITimeoutError):
            await c.achat("gpt-4.1", "hi", max_tokens=50)
        spent, reserved = day_state(c.metering)
    assert relay.requests == 2 and [r["status"] for r in rows(log_dir)] == ["unknown", "unknown"]
    assert relay.billed_nanos() <= spent == 2 * worst and reserved == 0


async def test_cancelled_while_waiting_for_the_answer_is_charged(relay, log_dir):
    relay.default = "hang"
    async with hs.Client(base_url=relay.base_url, log_dir=log_dir, timeout=5) as c:
        worst = bound(c, 50)
        task = asyncio.ensure_future(c.achat("gpt-4.1", "hi", max_tokens=50))
        while relay.requests == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        spent, reserved = day_state(c.metering)
    (row,) = rows(log_dir)
    assert (row["status"], row["cost_nanos"]) == ("unknown", worst) and spent == worst and reserved == 0


def test_the_openai_sdk_path_charges_dropped_attempts(relay, log_dir):
    relay.script(["drop", "ok"])
    transport = hs.MeteredTransport(log_dir=log_dir, retry=FAST)
    client = openai.OpenAI(api_key="sk-test", base_url=relay.base_url, max_retries=0,
                           http_client=httpx2.Client(transport=transport))
    out = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    client.close()
    transport.metering.close()
    assert out.choices[0].message.content and relay.requests == 2
    assert sorted(r["status"] for r in rows(log_dir)) == ["ok", "unknown"]
    assert logged_nanos(log_dir) == day_state(transport.metering)[0] >= relay.billed_nanos()


# -- tighter with an idempotent relay ------------------------------------------------------------


def test_with_an_idempotency_key_the_resends_share_one_reservation(log_dir):
    with BillingRelay(dedupe_header="Idempotency-Key") as relay:
        relay.script(["drop", "drop", "ok"])
        transport = hs.MeteredTransport(log_dir=log_dir, retry=FAST, idempotency_header="Idempotency-Key")
        with httpx2.Client(transport=transport, base_url=relay.base_url) as http:
            r = http.post("/chat/completions", json={"model": "gpt-4.1", "max_tokens": 40,
                                                     "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        (row,) = rows(log_dir)  # no per-attempt rows: the relay billed the key once
        assert (row["status"], row["attempts"], row["usage_missing"]) == ("ok", 3, False)
        assert len(set(relay.keys)) == 1 and relay.keys[0] == row["call_id"] and relay.requests == 3
        assert row["cost_nanos"] == relay.billed_nanos() == day_state(transport.metering)[0]
        transport.metering.close()


def test_with_an_idempotency_key_a_call_never_answered_costs_one_bound(log_dir):
    with BillingRelay(dedupe_header="Idempotency-Key", hang=3.0) as relay:
        relay.default = "hang"
        transport = hs.MeteredTransport(log_dir=log_dir, retry=FAST, idempotency_header="Idempotency-Key")
        with httpx2.Client(transport=transport, base_url=relay.base_url, timeout=0.3) as http, \
                pytest.raises(hs.APITimeoutError):
            http.post("/chat/completions", headers={"Idempotency-Key": "mine-1"},
                      json={"model": "gpt-4.1", "max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]})
        (row,) = rows(log_dir)
        worst = transport.metering.preview(CHAT_COMPLETIONS, {
            "model": "gpt-4.1", "max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]}).estimate_nanos
        assert relay.keys == ["mine-1"] * 3  # the caller's own key, kept on every attempt
        assert (row["status"], row["cost_nanos"]) == ("unknown", worst)
        assert relay.billed_nanos() <= worst == day_state(transport.metering)[0]
        transport.metering.close()


def test_an_idempotency_header_must_be_a_name(log_dir):
    with pytest.raises(hs.ConfigError, match="idempotency_header"):
        hs.MeteredTransport(log_dir=log_dir, idempotency_header=" ")
