"""Bounds against a loopback relay that bills what it receives, counted by a real tokenizer.

Before: after ordinary English calls, 16 threads of digit-dense, base64, URL-encoded, rare-CJK
and emoji prompts reached 1.51x the cap, and a large response_format schema 1.43x; a file_id part
and a model without an output cap were not bounded at all.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import quicktok

import holysheep_lab as hs
from holysheep_lab.core.metering import MAX_INPUT_HEADER
from holysheep_lab.core.tokens import MIN_OBSERVATIONS, measure_messages
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from tests._support.billing_relay import BillingRelay
from tests._support.english import english_prompts

O200K = quicktok.get_encoding("o200k_base")  # gpt-4.1's tokenizer


def count_prompt(body: dict[str, Any]) -> int:
    """The relay's bill for a request's input: OpenAI's count of its messages, with the real
    tokenizer, plus the tokens of its tool definitions and response_format."""
    total = 3
    for m in body.get("messages") or []:
        content = m.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        total += 3 + len(O200K.encode(m.get("role", ""))) + len(O200K.encode(text))
    for key in ("tools", "response_format"):
        if body.get(key):
            total += len(O200K.encode(json.dumps(body[key])))
    return total


def _line(limit: float) -> int:
    return int(limit * 0.95 * 10**9)  # the default block line


def _calibrate(base_url: str, log_dir: Path) -> None:
    """A user's first, ordinary calls: they land in the log, which calibrates later clients."""
    with hs.Client(base_url=base_url, log_dir=log_dir) as first:
        for prompt in english_prompts(MIN_OBSERVATIONS + 5, seed=1):
            first.chat("gpt-4.1", prompt, max_tokens=16)


def _content(rng: random.Random) -> str:
    kind = rng.choice(["digits", "spaced", "base64", "url", "cjk", "emoji", "english"])
    if kind == "digits":
        return "".join(rng.choice("0123456789") for _ in range(2500))
    if kind == "spaced":
        return " ".join(str(rng.randint(0, 9)) for _ in range(1250))
    if kind == "base64":
        return base64.b64encode(rng.randbytes(1900)).decode()
    if kind == "url":
        return urllib.parse.quote(" ".join(english_prompts(3, seed=rng.randint(0, 999))))
    if kind == "cjk":
        return "".join(chr(rng.randint(0x20000, 0x2A6DF)) for _ in range(600))
    if kind == "emoji":
        return "".join(chr(rng.randint(0x1F300, 0x1F64F)) for _ in range(600))
    return " ".join(english_prompts(4, seed=rng.randint(0, 999)))


def test_sixteen_threads_of_mixed_content_stay_under_the_cap_after_calibrating_on_english(log_dir: Path) -> None:
    limit = 0.60
    with BillingRelay(count_prompt=count_prompt) as relay:
        _calibrate(relay.base_url, log_dir)
        client = hs.Client(base_url=relay.base_url, log_dir=log_dir, budget=hs.Budget(daily=limit, monthly=None))
        # The log calibrated this client: English prose is bounded well below its bytes...
        english = measure_messages([{"role": "user", "content": " ".join(english_prompts(4, seed=7))}])
        assert client.metering.estimator.bound("gpt-4.1", english) < 0.6 * english.safe_bound()
        refused: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        barrier = threading.Barrier(16)

        def spend(i: int) -> None:
            rng = random.Random(i)
            barrier.wait()
            for _ in range(60):
                try:
                    client.chat("gpt-4.1", _content(rng), max_tokens=16)
                except hs.BudgetExceededError:
                    with lock:
                        refused.append(i)
                    return
                except BaseException as exc:  # reported below: the test fails
                    with lock:
                        errors.append(exc)
                    return

        threads = [threading.Thread(target=spend, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client.close()
        billed = relay.billed_nanos()
    assert errors == []
    assert len(refused) == 16  # every thread ran into the block line...
    assert billed <= _line(limit)  # ...and what the relay billed stayed under it
    assert billed > _line(limit) * 0.5  # the budget was really spent


def test_a_large_response_format_schema_is_paid_for_before_it_is_sent(log_dir: Path) -> None:
    limit = 0.20
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string", "description": f"the value {i}"}
                                               for i in range(100)}}
    fmt = {"type": "json_schema", "json_schema": {"name": "big", "schema": schema}}
    with BillingRelay(count_prompt=count_prompt) as relay:
        client = hs.Client(base_url=relay.base_url, log_dir=log_dir, budget=hs.Budget(daily=limit, monthly=None))
        calls = 0
        with pytest.raises(hs.BudgetExceededError):
            for _ in range(200):
                client.chat("gpt-4.1", "Fill in the form.", max_tokens=16, response_format=fmt)
                calls += 1
        client.close()
        billed = relay.billed_nanos()
    assert calls > 0 and billed <= _line(limit)


def test_file_parts_need_an_explicit_bound_which_never_reaches_the_relay(log_dir: Path) -> None:
    file_part = [{"role": "user", "content": [{"type": "text", "text": "Summarise this file."},
                                              {"type": "file", "file": {"file_id": "file-abc123"}}]}]
    with BillingRelay(count_prompt=count_prompt, dedupe_header=MAX_INPUT_HEADER) as relay:
        client = hs.Client(base_url=relay.base_url, log_dir=log_dir, budget=hs.Budget(daily=1.0, monthly=None))
        with pytest.raises(hs.ConfigError, match="max_input_tokens") as info:
            client.chat("gpt-4.1", file_part, max_tokens=16)
        assert "file_id='file-abc123'" in str(info.value) and "nothing was sent" in str(info.value)
        assert relay.requests == 0
        estimate = client.estimate("gpt-4.1", file_part, max_tokens=16, max_input_tokens=50_000)
        assert estimate.input_tokens_bound >= 50_000
        result = client.chat("gpt-4.1", file_part, max_tokens=16, max_input_tokens=50_000)
        assert relay.requests == 1 and relay.keys == [None]  # our header was stripped
        assert result.record.estimated_cost_usd >= 50_000 * 8 / 1e6
        with pytest.raises(hs.ConfigError, match="positive whole number"):
            client.chat("gpt-4.1", file_part, max_tokens=16, max_input_tokens=0)
        client.close()


def test_a_model_without_an_output_cap_needs_max_tokens(log_dir: Path) -> None:
    prices = {"open-ended": hs.Price(input=1, output=1)}  # no max_output declared
    with BillingRelay(count_prompt=count_prompt) as relay:
        client = hs.Client(base_url=relay.base_url, log_dir=log_dir, prices=prices)
        with pytest.raises(hs.ConfigError, match=r"declares no output cap.*Set max_tokens="):
            client.chat("open-ended", "hello", max_tokens=None)
        assert relay.requests == 0
        assert client.chat("open-ended", "hello", max_tokens=50).record.status == "ok"
        # A model that declares its cap is bounded by it when the request sets none.
        plan = client.metering.preview(CHAT_COMPLETIONS, {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
        assert plan.output_bound == 32_768
        client.close()
