"""chat_many(as_frame=True), unknown-model hints and short tracebacks."""

from __future__ import annotations

import math
import traceback

import pandas as pd
import pytest

import holysheep_lab as hs
from holysheep_lab.client.batch import BATCH_COLUMNS
from holysheep_lab.client.frames import ReadableFrame


def test_as_frame_is_one_row_per_prompt_in_order(log_dir):
    prompts = [f"Summarise ticket {i}." for i in range(12)] + [[{"role": "system", "content": "terse"},
                                                               {"role": "user", "content": "last one"}]]
    with hs.Simulator(latency=0.01) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir, log_content=True,
                                                       budget=hs.Budget(daily=0.004, tz="UTC")) as c:
        df = c.chat_many(prompts, model="gpt-4.1", max_tokens=64, concurrency=3, progress=False, as_frame=True)
        spent = c.budget_status().line("daily")["spent_usd"]
        listed = c.chat_many(prompts[:2], model="gpt-4.1", max_tokens=8, progress=False)
    assert isinstance(df, ReadableFrame) and list(df.columns) == list(BATCH_COLUMNS)
    assert len(df) == len(prompts)
    assert df["prompt"].tolist() == [*prompts[:12], "last one"]
    ok, refused = df[df["error"].isna()], df[df["error"].notna()]
    assert len(ok) and len(refused)  # the small budget stops part of the batch
    assert ok["text"].map(len).gt(0).all() and (ok["model"] == "gpt-4.1").all()
    assert (ok["input_tokens"] > 0).all() and (ok["output_tokens"] > 0).all() and (ok["latency_ms"] > 0).all()
    assert refused["error"].str.startswith("BudgetExceededError: Refused before sending").all()
    assert (refused["cost_usd"] == 0).all() and refused["text"].isna().all()
    # Exact floats underneath; the sum matches the answers' costs and the ledger.
    assert df["cost_usd"].dtype == "float64"
    assert df["cost_usd"].sum() == pytest.approx(spent)
    assert df["cost_usd"].sum() == pytest.approx(sum(float(x) for x in ok["cost_usd"]))
    assert isinstance(listed, list) and all(isinstance(r, hs.ChatResult) for r in listed)


def test_frame_display_is_readable_and_values_stay_exact():
    df = ReadableFrame(pd.DataFrame({"model": ["a", "b"], "cost_usd": [587.579385, 0.0033363999999999998],
                                     "share": [0.561406, 0.438594], "latency_ms": [1234.5, math.nan],
                                     "input_tokens": [12345, 7]}))
    text = repr(df)
    assert "$587.58" in text and "$0.003336" in text and "56.1%" in text and "1,234 ms" in text
    assert "12,345" in text and "0.561406" not in text and "587.579385" not in text
    html = df._repr_html_()
    assert "$587.58" in html and "tex2jax_ignore" in html and "mathjax_ignore" in html
    assert df["cost_usd"].iloc[0] == 587.579385  # the value is untouched
    assert isinstance(df[df["cost_usd"] > 1], ReadableFrame)  # operations keep the display
    assert isinstance(df.head(1), ReadableFrame)


def test_unknown_model_says_did_you_mean(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        with pytest.raises(hs.UnknownModelError, match=r"Did you mean 'gpt-4\.1'\?") as info:
            c.chat("gpt-4.l", "hi")
        assert info.value.suggestions[0] == "gpt-4.1"
        with pytest.raises(hs.UnknownModelError, match=r"Did you mean 'gpt-4\.1'\?"):
            c.estimate("GPT-4.1x", "hi")
        with pytest.raises(hs.UnknownModelError) as far:
            c.chat("zzzz-qqqq-0000", "hi")
        assert "Did you mean" not in str(far.value) and far.value.suggestions == []
        assert sim.requests == 0


def _frames(exc: BaseException) -> list[str]:
    return [f.filename for f in traceback.extract_tb(exc.__traceback__)]


def test_tracebacks_end_at_the_client(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                          budget=hs.Budget(daily=0.0001, tz="UTC")) as c:
        for call in (lambda: c.chat("gpt-4.l", "hi"), lambda: c.chat("gpt-4.1", "hi", max_tokens=4000)):
            with pytest.raises(hs.HolySheepError) as info:
                call()
            files = _frames(info.value)
            assert not any("httpx2" in f or "transports" in f or "metering" in f for f in files), files
            assert files[-1].endswith("client.py") and len(files) <= 3, files
        refused = c.chat_many(["a", "b"], model="gpt-4.1", max_tokens=4000, progress=False)
        assert all(isinstance(r, hs.BudgetExceededError) and r.__traceback__ is None for r in refused)


async def test_async_errors_are_short_too(log_dir):
    with hs.Simulator() as sim:
        async with hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
            with pytest.raises(hs.UnknownModelError) as info:
                await c.achat("gpt-4.l", "hi")
            assert not any("httpx2" in f for f in _frames(info.value))
            df = await c.achat_many(["x", "y"], model="gpt-4.l", as_frame=True)
            assert df["error"].str.contains("Did you mean 'gpt-4.1'").all() and (df["cost_usd"] == 0).all()
