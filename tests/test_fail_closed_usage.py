"""Missing usage is never cheap: billed vs logged vs cap against a relay that bills its real usage.

An answer whose usage is missing, null or implausible is charged at its reservation, flagged
`usage_missing`, warned about, and still handed to the caller (it was paid for).
"""

from __future__ import annotations

import warnings
from decimal import Decimal

import httpx2
import openai
import pytest

import holysheep_lab as hs
from holysheep_lab.core.metering import UsageMissingWarning
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS, chat_usage
from holysheep_lab.errors import ResponseFormatError
from tests._support.billing_relay import BillingRelay
from tests._support.fail_closed import day_state, logged_nanos, restarted_spent, rows

ANSWER = " ".join(["word"] * 8)
BROKEN = ["no_usage", "null_completion", "missing_completion", "zero_usage", "zero_output"]


@pytest.fixture
def relay():
    with BillingRelay() as r:
        yield r


def bound(c: hs.Client, max_tokens: int, *, stream: bool = False) -> int:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return c.metering.preview(CHAT_COMPLETIONS, body).estimate_nanos


@pytest.mark.parametrize("behaviour", BROKEN)
def test_an_answer_without_usable_usage_is_returned_and_charged_at_its_bound(relay, log_dir, behaviour):
    relay.default = behaviour
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, budget=hs.Budget(daily=10, monthly=None)) as c:
        worst = bound(c, 100)
        with pytest.warns(UsageMissingWarning, match="usage_missing") as caught:
            r = c.chat("gpt-4.1", "hi", max_tokens=100)
        spent, reserved = day_state(c.metering)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert r.text == ANSWER and r.record.usage_missing is True
    (row,) = rows(log_dir)
    assert (row["status"], row["usage_missing"], row["cost_nanos"]) == ("ok", True, worst)
    assert "usage missing" in row["error"]
    assert 0 < relay.billed_nanos() <= spent == worst and reserved == 0
    assert restarted_spent(log_dir) == worst


def test_plausible_usage_is_not_flagged(relay, log_dir):
    with hs.Client(base_url=relay.base_url, log_dir=log_dir) as c, warnings.catch_warnings():
        warnings.simplefilter("error", UsageMissingWarning)
        r = c.chat("gpt-4.1", "hi", max_tokens=100)
    (row,) = rows(log_dir)
    assert row["usage_missing"] is False and row["error"] is None
    assert row["cost_nanos"] == relay.billed_nanos() == r.record.cost_nanos  # exact, not the bound


@pytest.mark.parametrize("behaviour", ["stream_no_usage", "stream_zero_usage"])
def test_a_stream_without_usable_usage_is_charged_at_its_bound(relay, log_dir, behaviour):
    relay.default = behaviour
    with hs.Client(base_url=relay.base_url, log_dir=log_dir) as c:
        worst = bound(c, 100)
        with pytest.warns(UsageMissingWarning):
            stream = c.chat("gpt-4.1", "hi", max_tokens=100, stream=True)
            text = "".join(stream)
        spent, _ = day_state(c.metering)
    assert text == ANSWER  # the whole answer reached the caller
    (row,) = rows(log_dir)
    assert (row["usage_missing"], row["partial"], row["cost_nanos"]) == (True, False, worst)
    assert relay.billed_nanos() <= spent == worst


def test_a_stream_with_its_usage_is_charged_exactly(relay, log_dir):
    relay.default = "stream"
    with hs.Client(base_url=relay.base_url, log_dir=log_dir) as c:
        text = "".join(c.chat("gpt-4.1", "hi", max_tokens=100, stream=True))
    (row,) = rows(log_dir)
    assert text == ANSWER and row["usage_missing"] is False and row["cost_nanos"] == relay.billed_nanos()


def test_a_cap_holds_when_the_relay_never_reports_usage(relay, log_dir):
    relay.default = "null_completion"
    with hs.Client(base_url=relay.base_url, log_dir=log_dir) as probe:
        worst = bound(probe, 400)
    cap = Decimal(worst * 5) / Decimal(10**9)
    budget = hs.Budget(daily=cap, monthly=None)
    answered = refused = 0
    with hs.Client(base_url=relay.base_url, log_dir=log_dir, budget=budget) as c, warnings.catch_warnings():
        warnings.simplefilter("ignore", UsageMissingWarning)
        for _ in range(10):
            try:
                c.chat("gpt-4.1", "hi", max_tokens=400)
                answered += 1
            except hs.BudgetExceededError:
                refused += 1
        spent, _ = day_state(c.metering)
    # Read as 0 output tokens (the old way), ten calls would have cost almost nothing and all passed.
    assert (answered, refused) == (4, 6) and relay.requests == 4
    assert relay.billed_nanos() <= spent == logged_nanos(log_dir) == 4 * worst <= cap * Decimal("0.95") * 10**9


def test_the_openai_sdk_gets_its_answer_and_the_row_is_flagged(relay, log_dir):
    relay.default = "null_completion"
    transport = hs.MeteredTransport(log_dir=log_dir)
    client = openai.OpenAI(api_key="sk-test", base_url=relay.base_url, http_client=httpx2.Client(transport=transport))
    with pytest.warns(UsageMissingWarning):
        out = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=30)
    client.close()
    transport.metering.close()
    assert out.choices[0].message.content == ANSWER
    (row,) = rows(log_dir)
    assert row["usage_missing"] is True and row["cost_nanos"] >= relay.billed_nanos() > 0


@pytest.mark.parametrize("usage", [{"prompt_tokens": 5}, {"prompt_tokens": 5, "completion_tokens": None}])
def test_chat_usage_refuses_a_missing_completion_count(usage):
    with pytest.raises(ResponseFormatError, match="completion_tokens is missing"):
        chat_usage(usage)
