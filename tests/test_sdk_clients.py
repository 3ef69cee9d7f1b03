"""The clients people use, installed as packages, through the metered transports against the
simulator: the openai SDK (Responses sync/stream/async, Embeddings, legacy Completions, images),
the anthropic SDK (create and stream), langchain-openai (chat, Responses, embeddings) and
pydantic-ai (its `openai:` Responses model). Each shows its logged cost and a refusal over budget.

How a refusal reaches each: openai 3.x (and langchain and pydantic-ai on top of it) lets our
exception through untouched, so the call raises `hs.BudgetExceededError` itself. The anthropic
SDK wraps any exception of its transport in `anthropic.APIConnectionError` (the refusal is its
`__cause__`) and retries it, so its refusal test sets `max_retries=0`.
"""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

import holysheep_lab as hs
from holysheep_lab.core.pricing import Usage
from holysheep_lab.log import read_table

PRICES = {
    "text-embedding-3-small": hs.Price("0.02", "0"),
    "gpt-3.5-turbo-instruct": hs.Price("1.50", "2.00", max_output=4096),
}
TABLE = hs.PriceTable.default().extend(PRICES)
TINY = dict(daily=0.0001, monthly=None, tz="UTC")  # any call's worst case passes it
PROMPT = "Summarise: revenue 31,415 ↑ 9.2 % 😀; 𠮷野家 opened 3 stores."


@pytest.fixture
def sim():
    with hs.Simulator(cached_ratio=0.5, cache_write_ratio=0.2, reasoning_ratio=0.25) as s:
        yield s


def rows(log_dir) -> list[dict]:
    return read_table(log_dir).to_pylist()


def cost(model: str, usage: Usage) -> int:
    return TABLE.price(model).cost_nanos(usage)


def openai_client(sim, log_dir, **options) -> openai.OpenAI:
    transport = hs.MeteredTransport(log_dir=log_dir, prices=PRICES, **options)
    return openai.OpenAI(base_url=sim.base_url, api_key="x", http_client=httpx2.Client(transport=transport))


def anthropic_client(sim, log_dir, **options) -> anthropic.Anthropic:
    transport = hs.MeteredTransport(log_dir=log_dir, prices=PRICES, **options)
    return anthropic.Anthropic(base_url=sim.url, api_key="x", http_client=httpx2.Client(transport=transport))


def cache_writes(details) -> int:
    """`cache_write_tokens`, as the SDK reads it (None when the relay reports none)."""
    return details.cache_write_tokens or 0


def responses_usage(u) -> Usage:
    return Usage(u.input_tokens, u.output_tokens, u.input_tokens_details.cached_tokens,
                 u.output_tokens_details.reasoning_tokens, cache_write_tokens=cache_writes(u.input_tokens_details))


def check_row(row: dict, endpoint: str, model: str, usage: Usage, *, stream: bool = False) -> None:
    assert (row["status"], row["endpoint"], row["model"], row["stream"], row["partial"]) == (
        "ok", endpoint, model, stream, False)
    assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"], row["reasoning_tokens"],
            row["cache_write_tokens"]) == (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                                           usage.reasoning_tokens, usage.cache_write_tokens)
    assert row["cost_nanos"] == cost(model, usage) > 0


# -- openai: Responses ---------------------------------------------------------------------------


def test_openai_responses_create_and_both_streams_are_metered(sim, log_dir):
    with openai_client(sim, log_dir) as client:
        done = client.responses.create(model="gpt-4.1", input=PROMPT, instructions="Be brief.", max_output_tokens=200)
        raw_events = list(client.responses.create(model="gpt-4.1", input=PROMPT, instructions="Be brief.",
                                                  max_output_tokens=200, stream=True))
        with client.responses.stream(model="gpt-4.1", input=[{"role": "user", "content": PROMPT}],
                                     max_output_tokens=120) as stream:
            streamed_text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            final = stream.get_final_response()
    assert done.output_text and streamed_text == final.output_text
    assert raw_events[-1].type in ("response.completed", "response.incomplete")
    plain, raw_row, helper_row = rows(log_dir)
    check_row(plain, "responses", "gpt-4.1", responses_usage(done.usage))
    check_row(raw_row, "responses", "gpt-4.1", responses_usage(raw_events[-1].response.usage), stream=True)
    check_row(helper_row, "responses", "gpt-4.1", responses_usage(final.usage), stream=True)
    assert plain["cached_input_tokens"] > 0 and plain["reasoning_tokens"] > 0
    assert raw_row["cost_nanos"] == plain["cost_nanos"]  # same request, same bill, streamed or not


async def test_openai_async_responses_are_metered(sim, log_dir):
    transport = hs.AsyncMeteredTransport(log_dir=log_dir)
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="x",
                                  http_client=httpx2.AsyncClient(transport=transport)) as client:
        done = await client.responses.create(model="gpt-4.1", input=PROMPT, max_output_tokens=80)
        events = [e async for e in await client.responses.create(model="gpt-4.1", input=PROMPT,
                                                                 max_output_tokens=80, stream=True)]
    plain, streamed = rows(log_dir)
    check_row(plain, "responses", "gpt-4.1", responses_usage(done.usage))
    check_row(streamed, "responses", "gpt-4.1", responses_usage(events[-1].response.usage), stream=True)


# -- openai: Embeddings and legacy Completions ---------------------------------------------------


def test_openai_embeddings_are_metered_with_token_arrays_counted_exactly(sim, log_dir):
    with openai_client(sim, log_dir) as client:
        texts = client.embeddings.create(model="text-embedding-3-small", input=[PROMPT, "second"])  # base64 wire
        arrays = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
        wide = client.embeddings.create(model="text-embedding-3-small", input="x", dimensions=32)
    assert [len(d.embedding) for d in texts.data] == [8, 8] and len(wide.data[0].embedding) == 32
    first, second, third = rows(log_dir)
    check_row(first, "embeddings", "text-embedding-3-small", Usage(texts.usage.prompt_tokens, 0))
    check_row(second, "embeddings", "text-embedding-3-small", Usage(5, 0))
    assert arrays.usage.prompt_tokens == 5 and third["input_tokens"] == 1
    assert first["max_tokens"] is None and first["estimated_cost_usd"] >= first["cost_usd"]


def test_openai_legacy_completions_are_metered(sim, log_dir):
    with openai_client(sim, log_dir) as client:
        done = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, max_tokens=40, n=2)
        chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, max_tokens=40,
                                                stream=True))
    assert len(done.choices) == 2 and all(c.usage is None for c in chunks)  # our usage chunk stays hidden
    plain, streamed = rows(log_dir)
    u = done.usage
    check_row(plain, "completions", "gpt-3.5-turbo-instruct",
              Usage(u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens,
                    u.completion_tokens_details.reasoning_tokens,
                    cache_write_tokens=cache_writes(u.prompt_tokens_details)))
    assert streamed["stream"] and streamed["status"] == "ok" and streamed["cost_nanos"] > 0
    assert "".join(c.choices[0].text for c in chunks if c.choices) == done.choices[0].text


def test_openai_refusals_come_before_sending_on_every_endpoint(sim, log_dir):
    calls = {
        "responses": lambda c: c.responses.create(model="gpt-4.1", input=PROMPT),
        "responses-stream": lambda c: c.responses.create(model="gpt-4.1", input=PROMPT, stream=True),
        "embeddings": lambda c: c.embeddings.create(model="text-embedding-3-small", input=["word " * 2000]),
        "completions": lambda c: c.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT,
                                                      max_tokens=2000),
    }
    with openai_client(sim, log_dir, budget=hs.Budget(**TINY)) as client:
        for name, call in calls.items():
            with pytest.raises(hs.BudgetExceededError) as info:
                call(client)
            # Not wrapped, not retried: our error passes the SDK as (a subclass of) itself.
            assert isinstance(info.value, hs.BudgetExceededError) and isinstance(info.value, openai.OpenAIError), name
    assert sim.requests == 0
    assert [(r["status"], r["endpoint"]) for r in rows(log_dir)] == [
        ("blocked", "responses"), ("blocked", "responses"), ("blocked", "embeddings"), ("blocked", "completions")]


def test_openai_images_are_refused_unless_let_through(sim, log_dir):
    with openai_client(sim, log_dir) as client, pytest.raises(hs.UnmeteredEndpointError, match="images/generations"):
        client.images.generate(model="dall-e-3", prompt="a cat")
    assert rows(log_dir) == []
    with openai_client(sim, log_dir, passthrough=["/images/generations"]) as client, pytest.raises(
            openai.NotFoundError):
        client.images.generate(model="dall-e-3", prompt="a cat")  # sent: the simulator has no images
    assert [(r["status"], r["model"], r["cost_usd"]) for r in rows(log_dir)] == [("unmetered", "dall-e-3", None)]


# -- anthropic -----------------------------------------------------------------------------------


def test_anthropic_messages_create_and_stream_are_metered_with_cache_reads_and_writes(sim, log_dir):
    with anthropic_client(sim, log_dir) as client:
        message = client.messages.create(model="claude-sonnet-4.5", max_tokens=200, system="Be brief.",
                                         messages=[{"role": "user", "content": PROMPT}])
        with client.messages.stream(model="claude-sonnet-4.5", max_tokens=200, system="Be brief.",
                                    messages=[{"role": "user", "content": PROMPT}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    u = message.usage
    assert u.cache_read_input_tokens > 0 and u.cache_creation_input_tokens > 0  # both kept out of input_tokens
    expected = Usage(u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens, u.output_tokens,
                     u.cache_read_input_tokens, u.output_tokens_details.thinking_tokens,
                     cache_write_tokens=u.cache_creation_input_tokens)
    plain, streamed = rows(log_dir)
    check_row(plain, "anthropic.messages", "claude-sonnet-4.5", expected)
    check_row(streamed, "anthropic.messages", "claude-sonnet-4.5", expected, stream=True)
    assert text == message.content[0].text and final.usage.output_tokens == u.output_tokens
    assert plain["max_tokens"] == 200


async def test_anthropic_async_stream_is_metered(sim, log_dir):
    transport = hs.AsyncMeteredTransport(log_dir=log_dir)
    async with anthropic.AsyncAnthropic(base_url=sim.url, api_key="x",
                                        http_client=httpx2.AsyncClient(transport=transport)) as client:
        events = [e async for e in await client.messages.create(
            model="claude-sonnet-4.5", max_tokens=50, messages=[{"role": "user", "content": "hi"}], stream=True)]
    delta = next(e for e in events if e.type == "message_delta")
    (row,) = rows(log_dir)
    assert row["stream"] and row["status"] == "ok" and row["output_tokens"] == delta.usage.output_tokens > 0


def test_anthropic_refusal_reaches_the_caller_unwrapped_and_unretried(sim, log_dir):
    transport = hs.MeteredTransport(log_dir=log_dir, budget=hs.Budget(**TINY))
    # The SDK's default retries: a refusal must not be retried (one blocked row, no backoff).
    with anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=3,
                             http_client=httpx2.Client(transport=transport)) as client:
        with pytest.raises(hs.BudgetExceededError) as info:
            client.messages.create(model="claude-sonnet-4.5", max_tokens=1000,
                                   messages=[{"role": "user", "content": PROMPT}])
        assert isinstance(info.value, anthropic.AnthropicError)
    assert sim.requests == 0
    assert [(r["status"], r["endpoint"]) for r in rows(log_dir)] == [("blocked", "anthropic.messages")]


# -- langchain-openai ----------------------------------------------------------------------------


def test_langchain_chat_responses_and_embeddings_are_metered(sim, log_dir):
    http = httpx2.Client(transport=hs.MeteredTransport(log_dir=log_dir, prices=PRICES))
    common = dict(base_url=sim.base_url, api_key="x", http_client=http, max_retries=0)
    chat = ChatOpenAI(model="gpt-4.1", max_tokens=60, **common).invoke(PROMPT)
    resp = ChatOpenAI(model="gpt-4.1", max_tokens=60, use_responses_api=True, **common).invoke(PROMPT)
    vectors = OpenAIEmbeddings(model="text-embedding-3-small", check_embedding_ctx_length=False,
                               **common).embed_documents([PROMPT, "second"])
    http.close()
    assert chat.content and resp.text and [len(v) for v in vectors] == [8, 8]
    chat_row, resp_row, emb_row = rows(log_dir)
    for row, message in ((chat_row, chat), (resp_row, resp)):
        meta = message.usage_metadata
        assert (row["input_tokens"], row["output_tokens"]) == (meta["input_tokens"], meta["output_tokens"])
        assert row["status"] == "ok" and row["cost_nanos"] > 0
    assert (chat_row["endpoint"], resp_row["endpoint"], emb_row["endpoint"]) == (
        "chat.completions", "responses", "embeddings")
    assert emb_row["status"] == "ok" and emb_row["cost_nanos"] == cost("text-embedding-3-small",
                                                                       Usage(emb_row["input_tokens"], 0))


def test_langchain_refusals_reach_the_caller(sim, log_dir):
    http = httpx2.Client(transport=hs.MeteredTransport(log_dir=log_dir, prices=PRICES, budget=hs.Budget(**TINY)))
    common = dict(base_url=sim.base_url, api_key="x", http_client=http, max_retries=0)
    with pytest.raises(hs.BudgetExceededError):
        ChatOpenAI(model="gpt-4.1", max_tokens=2000, use_responses_api=True, **common).invoke(PROMPT)
    with pytest.raises(hs.BudgetExceededError):
        OpenAIEmbeddings(model="text-embedding-3-small", check_embedding_ctx_length=False,
                         **common).embed_documents(["word " * 2000])
    http.close()
    assert sim.requests == 0 and [r["status"] for r in rows(log_dir)] == ["blocked", "blocked"]


# -- pydantic-ai ---------------------------------------------------------------------------------


def agent(sim, log_dir, **options) -> Agent:
    http = httpx2.AsyncClient(transport=hs.AsyncMeteredTransport(log_dir=log_dir, **options))
    provider = OpenAIProvider(base_url=sim.base_url, api_key="x", http_client=http)
    return Agent(OpenAIResponsesModel("gpt-4.1", provider=provider))


def test_pydantic_ai_responses_model_is_metered(sim, log_dir):
    result = agent(sim, log_dir).run_sync(PROMPT, model_settings={"max_tokens": 80})
    (row,) = rows(log_dir)
    usage = result.usage
    assert result.output and row["endpoint"] == "responses" and row["status"] == "ok"
    assert (row["input_tokens"], row["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
    assert row["cost_nanos"] == cost("gpt-4.1", Usage(row["input_tokens"], row["output_tokens"],
                                                      row["cached_input_tokens"], row["reasoning_tokens"])) > 0
    assert row["max_tokens"] == 80


def test_pydantic_ai_refusal_reaches_the_caller(sim, log_dir):
    with pytest.raises(hs.BudgetExceededError):
        agent(sim, log_dir, budget=hs.Budget(**TINY)).run_sync(PROMPT)
    assert sim.requests == 0 and [r["status"] for r in rows(log_dir)] == ["blocked"]
