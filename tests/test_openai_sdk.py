"""The official openai SDK (3.x, on httpx2) through the metered transports, against the simulator.

The promise: a notebook that keeps its `openai.OpenAI(...)` code and only passes
`http_client=httpx2.Client(transport=hs.MeteredTransport(...))` gets exactly the rows, costs and
refusals `hs.Client` would have produced for the same requests; everything else passes through.

What a refused call looks like under the SDK: `create()` raises `hs.BudgetExceededError` itself
(no wrapping, no SDK retry, one 'blocked' row). The transport makes our errors instances of
`openai.OpenAIError` too, which every openai release passes through untouched: 3.15+ would pass
any non-transport error, but 3.0-3.14 (like openai < 3) retry every other exception and wrap it in
their APIConnectionError. The same holds for our APIConnectionError and APITimeoutError, raised
after the transport's own retries. HTTP errors: the transport retries
429/5xx itself and marks the answer it gives up on `x-should-retry: false`, which the SDK obeys,
so `max_retries` does not multiply the attempts (one row, `attempts` = the transport's).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx2
import pytest

import holysheep_lab as hs
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from holysheep_lab.log import read_table
from holysheep_lab.transports.metered import outcome_of

openai = pytest.importorskip("openai")  # a dev dependency (uv.lock): present under `make test`

# The columns that must agree between hs.Client and the SDK for the same requests.
SAME = ("model", "status", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
        "cost_nanos", "cost_usd", "estimated_cost_usd", "stream", "partial", "attempts", "http_status",
        "max_tokens", "price_version")

# A sequence whose worst cases cross the budget midway; small calls keep fitting after that.
REQUESTS = [
    ("gpt-4.1", "Summarise the quarterly results in three bullet points.", 200),
    ("claude-sonnet-4.5", "Write a haiku about budgets " * 3, 300),
    ("gpt-4.1", "word " * 120, 250),
    ("deepseek-v3.2", "Translate 'hello' into French.", 50),
    ("gpt-4.1", "Explain the difference between cost and price.", 400),
    ("claude-sonnet-4.5", "List five prime numbers.", 20),
    ("gpt-4.1", "Another long question " * 40, 600),
    ("gemini-2.5-flash", "Say hi.", 5),
]
BUDGET = dict(daily=0.02, monthly=None, block_at=0.95, tz="UTC")


def unwrapped_refusal(exc: BaseException) -> bool:
    """Ours, as raised by the transport: not wrapped, and an OpenAIError (never retried by any 3.x)."""
    return (isinstance(exc, hs.BudgetExceededError) and isinstance(exc, openai.OpenAIError)
            and type(exc).__name__ == "BudgetExceededError" and exc.__cause__ is None)


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def rows(log_dir) -> list[dict]:
    return read_table(log_dir).to_pylist() if log_dir.exists() else []


def same(rs: list[dict]) -> list[tuple]:
    return [tuple(r[k] for k in SAME) for r in rs]


def fast_retry(**kw) -> hs.Retry:
    return hs.Retry(backoff=0.01, max_backoff=0.02, **kw)


@pytest.fixture
def sim():
    with hs.Simulator() as s:
        yield s


def sdk(sim, log_dir, **options) -> tuple[openai.OpenAI, hs.MeteredTransport]:
    transport = hs.MeteredTransport(log_dir=log_dir, **options)
    return openai.OpenAI(base_url=sim.base_url, api_key="x", http_client=httpx2.Client(transport=transport)), transport


def async_sdk(sim, log_dir, **options) -> tuple[openai.AsyncOpenAI, hs.AsyncMeteredTransport]:
    transport = hs.AsyncMeteredTransport(log_dir=log_dir, **options)
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", http_client=httpx2.AsyncClient(transport=transport))
    return client, transport


def reference_rows(sim, log_dir, *, stream: bool = False, **stream_params) -> list[dict]:
    """hs.Client's rows for REQUESTS (the ground truth the SDK must match)."""
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(**BUDGET)) as c:
        for model, prompt, max_tokens in REQUESTS:
            try:
                if stream:
                    with c.chat(model, prompt, max_tokens=max_tokens, stream=True, **stream_params) as s:
                        for _ in s:
                            pass
                else:
                    c.chat(model, prompt, max_tokens=max_tokens)
            except hs.BudgetExceededError:
                pass
    return rows(log_dir)


# -- sync --------------------------------------------------------------------------------------


def test_sync_sdk_rows_costs_and_refusals_match_hs_client(sim, tmp_path):
    expected = reference_rows(sim, tmp_path / "ref")
    statuses = [r["status"] for r in expected]
    assert "ok" in statuses and "blocked" in statuses  # the sequence exercises both outcomes

    client, transport = sdk(sim, tmp_path / "sdk", budget=hs.Budget(**BUDGET))
    sent_before = sim.requests
    refusals = 0
    for model, prompt, max_tokens in REQUESTS:
        before_sent, before_rows = sim.requests, len(rows(tmp_path / "sdk"))
        try:
            out = client.chat.completions.create(model=model, messages=messages(prompt), max_tokens=max_tokens,
                                                 temperature=0.7)
        except hs.BudgetExceededError as exc:
            # Raised as itself, not wrapped in openai.APIConnectionError, not retried.
            assert unwrapped_refusal(exc)
            assert exc.window == "daily" and exc.scope == "global"
            assert sim.requests == before_sent  # nothing reached the relay
            assert [r["status"] for r in rows(tmp_path / "sdk")[before_rows:]] == ["blocked"]
            refusals += 1
            continue
        assert out.choices[0].message.content and out.usage is not None
        row = rows(tmp_path / "sdk")[-1]
        assert (row["input_tokens"], row["output_tokens"]) == (out.usage.prompt_tokens, out.usage.completion_tokens)
    got = rows(tmp_path / "sdk")
    assert same(got) == same(expected)
    assert refusals == statuses.count("blocked")
    assert sim.requests - sent_before == statuses.count("ok")
    spent = sum(Decimal(r["cost_nanos"]) for r in got) / 10**9
    assert 0 < spent <= Decimal(str(BUDGET["daily"])) * Decimal("0.95")
    client.close()
    assert transport.metering.closed  # closing the SDK closes the transport, which rolls its log


def test_other_endpoints_pass_through_untouched_and_unlogged(sim, tmp_path):
    client, _ = sdk(sim, tmp_path / "sdk", budget=hs.Budget(**BUDGET))
    ids = [m.id for m in client.models.list()]
    bare = httpx2.get(f"{sim.base_url}/models").json()
    assert ids == [m["id"] for m in bare["data"]] and "gpt-4.1" in ids
    raw = client.models.with_raw_response.list()
    assert outcome_of(raw.http_response) is None  # not metered
    assert "x-should-retry" not in raw.http_response.headers
    assert rows(tmp_path / "sdk") == [] and sim.requests == 0  # sim.requests counts chat calls only
    client.close()


# -- async -------------------------------------------------------------------------------------


async def test_async_sdk_rows_costs_and_refusals_match_hs_client(sim, tmp_path):
    expected = await asyncio.to_thread(reference_rows, sim, tmp_path / "ref")
    client, _ = async_sdk(sim, tmp_path / "sdk", budget=hs.Budget(**BUDGET))
    refused = 0
    for model, prompt, max_tokens in REQUESTS:
        try:
            await client.chat.completions.create(model=model, messages=messages(prompt), max_tokens=max_tokens,
                                                 temperature=0.7)
        except hs.BudgetExceededError as exc:
            assert unwrapped_refusal(exc)
            refused += 1
    await client.close()
    assert same(rows(tmp_path / "sdk")) == same(expected)
    assert refused == [r["status"] for r in expected].count("blocked") > 0


async def test_async_sdk_concurrent_burst_never_overshoots(sim, tmp_path):
    limit = Decimal("0.05")
    client, _ = async_sdk(sim, tmp_path / "sdk", budget=hs.Budget(daily=limit, monthly=None, block_at=0.95))

    async def one(i: int):
        return await client.chat.completions.create(model="claude-sonnet-4.5", messages=messages(f"q{i} " * (i % 30 + 1)),
                                                    max_tokens=150)

    results = await asyncio.gather(*(one(i) for i in range(120)), return_exceptions=True)
    await client.close()
    ok = [r for r in results if isinstance(r, openai.types.chat.ChatCompletion)]
    refused = [r for r in results if isinstance(r, hs.BudgetExceededError)]
    assert len(ok) + len(refused) == 120 and ok and refused, {type(r).__name__ for r in results}
    table = rows(tmp_path / "sdk")
    assert [r["status"] for r in table].count("blocked") == len(refused)  # one row per refusal: no SDK retries
    answered = [r for r in table if r["status"] == "ok"]
    assert len(answered) == len(ok) == sim.completed == sim.requests
    assert sum(Decimal(r["cost_nanos"]) for r in answered) <= limit * Decimal("0.95") * 10**9


# -- streaming ---------------------------------------------------------------------------------


def test_stream_without_stream_options_hides_usage_but_logs_it(sim, tmp_path):
    expected = reference_rows(sim, tmp_path / "ref", stream=True)
    client, _ = sdk(sim, tmp_path / "sdk", budget=hs.Budget(**BUDGET))
    for model, prompt, max_tokens in REQUESTS:
        try:
            stream = client.chat.completions.create(model=model, messages=messages(prompt), max_tokens=max_tokens,
                                                    temperature=0.7, stream=True)
        except hs.BudgetExceededError:
            continue
        chunks = list(stream)
        assert chunks and all(c.choices for c in chunks)  # the injected usage chunk is stripped
        assert all(c.usage is None for c in chunks)
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        row = rows(tmp_path / "sdk")[-1]
        assert row["status"] == "ok" and row["stream"] and not row["partial"]
        assert row["output_tokens"] > 0 and row["cost_nanos"] > 0 and row["ttft_ms"] is not None
        assert text  # what the caller read is the completion
    got = rows(tmp_path / "sdk")
    assert same(got) == same(expected)
    assert "blocked" in [r["status"] for r in got]
    # The relay was asked for the usage chunk although the caller did not ask for it.
    streamed = [b for b in sim.last_requests if b.get("stream")]
    assert streamed and all(b["stream_options"] == {"include_usage": True} for b in streamed)


def test_stream_with_include_usage_shows_the_usage_chunk(sim, tmp_path):
    expected = reference_rows(sim, tmp_path / "ref", stream=True, stream_options={"include_usage": True})
    client, _ = sdk(sim, tmp_path / "sdk", budget=hs.Budget(**BUDGET))
    for model, prompt, max_tokens in REQUESTS:
        try:
            stream = client.chat.completions.create(model=model, messages=messages(prompt), max_tokens=max_tokens,
                                                    temperature=0.7, stream=True,
                                                    stream_options={"include_usage": True})
        except hs.BudgetExceededError:
            continue
        chunks = list(stream)
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None  # the caller asked: it sees it
        row = rows(tmp_path / "sdk")[-1]
        assert (row["input_tokens"], row["output_tokens"]) == (last.usage.prompt_tokens, last.usage.completion_tokens)
    assert same(rows(tmp_path / "sdk")) == same(expected)


async def test_async_stream_settles_from_the_usage_chunk(sim, tmp_path):
    client, _ = async_sdk(sim, tmp_path / "sdk")
    stream = await client.chat.completions.create(model="gpt-4.1", messages=messages("Tell me a story."),
                                                  max_tokens=120, stream=True)
    chunks = [c async for c in stream]
    await client.close()
    assert chunks and all(c.choices and c.usage is None for c in chunks)
    (row,) = rows(tmp_path / "sdk")
    with hs.Client(base_url=sim.base_url, log_dir=tmp_path / "ref") as ref:
        r = ref.chat("gpt-4.1", "Tell me a story.", max_tokens=120)
    assert (row["status"], row["partial"], row["stream"]) == ("ok", False, True)
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (r.usage.input_tokens, r.usage.output_tokens, r.cost_usd)


def test_cut_stream_settles_on_what_arrived(sim, tmp_path):
    client, transport = sdk(sim, tmp_path / "sdk", budget=hs.Budget(daily=1.0, monthly=None))
    stream = client.chat.completions.create(model="gpt-4.1", messages=messages("Tell me a long story."),
                                            max_tokens=400, stream=True, extra_headers={"X-Sim-Fault": "cut_stream"})
    received = []
    with pytest.raises(openai.APIConnectionError) as info:  # the SDK wraps the broken read
        for chunk in stream:
            received.append(chunk)
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert received and all(c.choices for c in received)
    (row,) = rows(tmp_path / "sdk")
    assert row["partial"] and row["status"] == "error" and "streaming" in row["error"]
    # No usage event came: what the relay billed is unknown, so the row is charged at the bound.
    assert row["usage_missing"] and row["output_tokens"] == 400
    assert row["cost_nanos"] == transport.metering.preview(CHAT_COMPLETIONS, {
        "model": "gpt-4.1", "messages": messages("Tell me a long story."), "max_tokens": 400}).estimate_nanos
    # The reservation is settled, not left in flight: the whole budget minus the cost is free.
    (state,) = [s for k, s in transport.metering.ledger.snapshot(list(transport.metering.guard.buckets().values())).items()
                if "day" in k]
    assert (state.spent, state.reserved) == (row["cost_nanos"], 0)
    client.close()


def test_abandoned_stream_is_settled_partial(tmp_path):
    with hs.Simulator(stream_delay=0.02) as sim:  # chunk by chunk: the stream is still in flight
        client, _ = sdk(sim, tmp_path / "sdk")
        with client.chat.completions.create(model="gpt-4.1", messages=messages("word " * 50), max_tokens=300,
                                            stream=True) as stream:
            it = iter(stream)
            got = [next(it) for _ in range(3)]  # the role chunk, then two content chunks
        assert all(c.choices for c in got) and got[2].choices[0].delta.content
        (row,) = rows(tmp_path / "sdk")
        full = hs.Client(base_url=sim.base_url, log_dir=tmp_path / "ref").chat("gpt-4.1", "word " * 50, max_tokens=300)
        client.close()
    assert row["partial"] and row["stream"] and row["input_tokens"] > 0 and row["usage_missing"]
    # Abandoned before its usage event: charged at its bound, never at a guess from the text.
    assert row["output_tokens"] == 300 > full.usage.output_tokens
    assert row["cost_usd"] == row["estimated_cost_usd"] and row["cost_nanos"] > full.record.cost_nanos


# -- retries: the SDK's and ours ---------------------------------------------------------------


@pytest.mark.parametrize("fault, error", [("server_error", "InternalServerError"), ("rate_limit", "RateLimitError")])
def test_sdk_retries_do_not_multiply_transport_retries(tmp_path, fault, error):
    with hs.Simulator(fault=fault, retry_after=0.01) as sim:
        client, _ = sdk(sim, tmp_path / "sdk", retry=fast_retry(max_attempts=3))
        assert client.max_retries == 2  # the SDK's default is left on
        t0 = time.perf_counter()
        with pytest.raises(getattr(openai, error)) as info:
            client.chat.completions.create(model="gpt-4.1", messages=messages("hi"), max_tokens=20)
        elapsed = time.perf_counter() - t0
        assert info.value.response.headers["x-should-retry"] == "false"
        assert sim.requests == 3  # the transport's 3 attempts, not 3 x (1 + max_retries) = 9
        (row,) = rows(tmp_path / "sdk")
        assert (row["status"], row["attempts"], row["cost_nanos"]) == ("error", 3, 0)
        assert elapsed < 2.0  # no SDK back-off (0.5 s, 1 s) on top
        client.close()


def test_connection_errors_surface_once_without_sdk_retries(tmp_path):
    with hs.Simulator(fault="disconnect") as sim:
        client, _ = sdk(sim, tmp_path / "sdk", retry=fast_retry(max_attempts=2))
        with pytest.raises(hs.APIConnectionError):  # ours, after our 2 attempts; the SDK does not retry it
            client.chat.completions.create(model="gpt-4.1", messages=messages("hi"), max_tokens=20)
        assert sim.requests == 2
        # Dropped after sending, twice: both attempts may be billed, both charged at the bound.
        final, attempt = sorted(rows(tmp_path / "sdk"), key=lambda r: len(r["call_id"]))
        assert (final["status"], final["attempts"], attempt["status"]) == ("unknown", 2, "unknown")
        client.close()


def test_refusal_is_not_retried_and_costs_no_sdk_backoff(sim, tmp_path):
    client, _ = sdk(sim, tmp_path / "sdk", budget=hs.Budget(daily=0.0001, monthly=None))
    client.chat.completions.create  # noqa: B018 - import the resource before timing
    for _ in range(3):
        with pytest.raises(hs.BudgetExceededError) as info:
            client.chat.completions.create(model="gpt-4.1", messages=messages("hi"), max_tokens=500)
        # An OpenAIError too: the one exception every openai 3.x (and 2.x) retry loop lets through
        # unretried and unwrapped, including 3.0-3.14, which retry anything else.
        assert unwrapped_refusal(info.value)
    # one row per create(): an SDK retry would have refused (and logged) the call again
    assert [r["status"] for r in rows(tmp_path / "sdk")] == ["blocked"] * 3
    assert sim.requests == 0
    client.close()


async def test_async_refusal_is_the_sdks_own_error_and_not_retried(sim, tmp_path):
    client, _ = async_sdk(sim, tmp_path / "sdk", budget=hs.Budget(daily=0.0001, monthly=None))
    t0 = time.perf_counter()
    with pytest.raises(openai.OpenAIError) as info:  # `except openai.OpenAIError` catches it as well
        await client.with_options(max_retries=5).chat.completions.create(
            model="gpt-4.1", messages=messages("hi"), max_tokens=500)
    await client.close()
    assert unwrapped_refusal(info.value) and info.value.window == "daily"
    assert time.perf_counter() - t0 < 0.4  # no SDK back-off (0.5 s and up per retry)
    assert [r["status"] for r in rows(tmp_path / "sdk")] == ["blocked"]
    assert sim.requests == 0


def test_our_connection_errors_are_the_sdks_own_too(tmp_path):
    with hs.Simulator(fault="disconnect") as sim:
        client, _ = sdk(sim, tmp_path / "sdk", retry=fast_retry(max_attempts=1))
        with pytest.raises(hs.APIConnectionError) as info:
            client.chat.completions.create(model="gpt-4.1", messages=messages("hi"), max_tokens=20)
        client.close()
    assert isinstance(info.value, openai.OpenAIError) and not isinstance(info.value, openai.APIConnectionError)
    assert sim.requests == 1  # neither we nor the SDK retried
