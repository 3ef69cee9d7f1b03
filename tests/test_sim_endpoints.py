"""Every wire format against the simulator: what it answers (shape, usage, streams, faults), and
the whole path through `hs.MeteredTransport` under `httpx2.Client`: one row per call with the
right tokens and cost, refusals before sending, the unmetered-POST refusal and `passthrough`."""

from __future__ import annotations

import base64
import json
import math
import struct
from decimal import Decimal

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import holysheep_lab as hs
from holysheep_lab.core.pricing import Usage
from holysheep_lab.endpoints import find_endpoint
from holysheep_lab.log import read_table
from holysheep_lab.sim.anthropic import total_input_tokens
from holysheep_lab.sim.embeddings import embedding_tokens
from holysheep_lab.sim.responses import input_tokens
from holysheep_lab.sim.server import FORMATS
from holysheep_lab.transports.metered import outcome_of

MODEL = "sim-model"
PRICE = hs.Price("3", "15", "0.30", max_output=4096, cache_write="3.75")  # writes dearer than input
PRICES = {MODEL: PRICE}
TEXT = "Prices: 31415926 😀 𠮷 base64 QUJDRA== " * 6
SIM_OPTIONS = dict(cached_ratio=0.5, cache_write_ratio=0.2, reasoning_ratio=0.25)

# kind -> (path under the server root, request body)
CASES = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": TEXT}],
                                      "max_tokens": 300}),
    "responses": ("/v1/responses", {"model": MODEL, "input": TEXT, "instructions": "Be brief.",
                                    "max_output_tokens": 300}),
    "embeddings": ("/v1/embeddings", {"model": MODEL, "input": [TEXT, [101, 102, 103, 104, 105]]}),
    "completions": ("/v1/completions", {"model": MODEL, "prompt": [TEXT, "second prompt"], "max_tokens": 60,
                                        "n": 2}),
    "anthropic": ("/v1/messages", {"model": MODEL, "max_tokens": 300, "system": "Be brief.",
                                   "messages": [{"role": "user", "content": TEXT}]}),
}
STREAMING = ("chat", "responses", "completions", "anthropic")
ENDPOINT_NAMES = {"chat": "chat.completions", "responses": "responses", "embeddings": "embeddings",
                  "completions": "completions", "anthropic": "anthropic.messages"}


def expected_usage(kind: str, answer: dict) -> Usage:
    """The bill of an answer, read by hand from each format's documented usage fields."""
    u = answer["usage"]
    if kind in ("chat", "completions"):
        details = u["prompt_tokens_details"]
        return Usage(u["prompt_tokens"], u["completion_tokens"], details["cached_tokens"],
                     u["completion_tokens_details"]["reasoning_tokens"],
                     cache_write_tokens=details.get("cache_write_tokens", 0))
    if kind == "responses":
        details = u["input_tokens_details"]
        return Usage(u["input_tokens"], u["output_tokens"], details["cached_tokens"],
                     u["output_tokens_details"]["reasoning_tokens"], cache_write_tokens=details["cache_write_tokens"])
    if kind == "embeddings":
        return Usage(u["prompt_tokens"], 0)
    # Anthropic: input_tokens excludes cache reads and writes.
    return Usage(u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"],
                 u["output_tokens"], u["cache_read_input_tokens"], u["output_tokens_details"]["thinking_tokens"],
                 cache_write_tokens=u["cache_creation_input_tokens"])


def sse_payloads(text: str) -> list[dict]:
    out = []
    for block in text.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def rows(log_dir) -> list[dict]:
    return read_table(log_dir).to_pylist()


@pytest.fixture
def sim():
    with hs.Simulator(**SIM_OPTIONS) as s:
        yield s


@pytest.fixture
def raw(sim):
    with httpx2.Client(base_url=sim.url, timeout=10) as c:
        yield c


class Counting(httpx2.BaseTransport):
    """The real transport, counting what reaches the network."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.sent: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(request.url.path)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def metered(sim, log_dir, **options) -> tuple[httpx2.Client, hs.MeteredTransport, Counting]:
    counting = Counting()
    transport = hs.MeteredTransport(counting, log_dir=log_dir, prices=PRICES, **options)
    return httpx2.Client(base_url=sim.url, transport=transport, timeout=10), transport, counting


# -- what the simulator answers ------------------------------------------------------------------


def test_the_server_routes_every_format_the_client_meters():
    names = {fmt.name for fmt in FORMATS}
    assert names == set(ENDPOINT_NAMES.values())
    for fmt in FORMATS:
        for path in fmt.paths:
            endpoint = find_endpoint("POST", path)
            assert endpoint is not None and endpoint.name == fmt.name


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_format_answers_deterministically_with_its_usage(raw, sim, kind):
    path, body = CASES[kind]
    first = raw.post(path, json=body)
    assert first.status_code == 200, first.text
    again = raw.post(path, json=body).json()
    assert expected_usage(kind, first.json()) == expected_usage(kind, again)
    usage = expected_usage(kind, first.json())
    if kind == "embeddings":
        assert usage.input_tokens == math.ceil(len(TEXT.encode()) / 4) + 5
        assert usage.cached_input_tokens == usage.output_tokens == 0
    else:
        assert 0 < usage.cached_input_tokens < usage.input_tokens
        assert usage.output_tokens > 0 and 0 <= usage.reasoning_tokens <= usage.output_tokens
    assert sim.by_endpoint == {ENDPOINT_NAMES[kind]: 2} and sim.completed == 2


@pytest.mark.parametrize("kind", STREAMING)
def test_a_stream_says_what_the_plain_answer_says(raw, kind):
    path, body = CASES[kind]
    plain = raw.post(path, json=body).json()
    streamed = raw.post(path, json={**body, "stream": True, "stream_options": {"include_usage": True}}
                        if kind in ("chat", "completions") else {**body, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(streamed.text)
    if kind == "chat":
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        assert text == plain["choices"][0]["message"]["content"] and events[-1]["usage"] == plain["usage"]
    elif kind == "completions":
        text = "".join(e["choices"][0]["text"] for e in events if e["choices"] and e["choices"][0]["index"] == 0)
        assert text == plain["choices"][0]["text"] and events[-1]["usage"] == plain["usage"]
        assert streamed.text.endswith("data: [DONE]\n\n")
    elif kind == "responses":
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert text == "".join(p["text"] for p in plain["output"][-1]["content"])
        assert events[-1]["type"] in ("response.completed", "response.incomplete")
        assert events[-1]["response"]["usage"] == plain["usage"] and "[DONE]" not in streamed.text
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
    else:
        text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
        assert text == plain["content"][0]["text"]
        start = events[0]["message"]["usage"]
        delta = next(e for e in events if e["type"] == "message_delta")["usage"]
        assert start["output_tokens"] == 1 and delta == plain["usage"] and events[-1]["type"] == "message_stop"
        assert start["input_tokens"] == plain["usage"]["input_tokens"]
        assert "event: message_start\n" in streamed.text


def test_responses_that_hit_their_cap_are_incomplete(raw):
    body = {"model": MODEL, "input": "x", "max_output_tokens": 1}
    answer = raw.post("/v1/responses", json=body).json()
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_output_tokens"}
    events = sse_payloads(raw.post("/v1/responses", json={**body, "stream": True}).text)
    assert events[-1]["type"] == "response.incomplete" and events[-1]["response"]["usage"]["output_tokens"] == 1


def test_embeddings_are_deterministic_unit_vectors_of_the_asked_dimension(raw):
    body = {"model": MODEL, "input": ["alpha", "beta", "alpha"]}
    data = raw.post("/v1/embeddings", json=body).json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2] and all(len(d["embedding"]) == 8 for d in data)
    assert data[0]["embedding"] == data[2]["embedding"] != data[1]["embedding"]
    assert math.isclose(sum(v * v for v in data[1]["embedding"]), 1.0, rel_tol=1e-9)
    wide = raw.post("/v1/embeddings", json={**body, "dimensions": 64}).json()["data"]
    assert len(wide[0]["embedding"]) == 64
    packed = raw.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()["data"]
    floats = struct.unpack("<8f", base64.b64decode(packed[1]["embedding"]))
    assert floats == pytest.approx(data[1]["embedding"], rel=1e-6)
    assert raw.post("/v1/embeddings", json={**body, "dimensions": 0}).status_code == 400
    tokens = raw.post("/v1/embeddings", json={"model": MODEL, "input": [[1, 2, 3], [4]]}).json()["usage"]
    assert tokens == {"prompt_tokens": 4, "total_tokens": 4}


def test_legacy_completions_bill_every_best_of_generation(raw):
    one = raw.post("/v1/completions", json={"model": MODEL, "prompt": "p", "max_tokens": 40}).json()
    best = raw.post("/v1/completions", json={"model": MODEL, "prompt": "p", "max_tokens": 40, "best_of": 3}).json()
    assert len(one["choices"]) == len(best["choices"]) == 1
    assert best["usage"]["completion_tokens"] > one["usage"]["completion_tokens"]
    assert best["usage"]["completion_tokens"] <= 3 * 40
    default = raw.post("/v1/completions", json={"model": MODEL, "prompt": "p"}).json()
    assert 1 <= default["usage"]["completion_tokens"] <= 16  # the API's default cap
    batch = raw.post("/v1/completions", json={"model": MODEL, "prompt": ["a", "b"], "n": 2}).json()
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2, 3]


def test_anthropic_errors_and_auth_have_anthropic_shapes():
    with hs.Simulator(api_key="sk-ant-secret-1234") as s, httpx2.Client(base_url=s.url) as c:
        body = CASES["anthropic"][1]
        denied = c.post("/v1/messages", json=body)
        assert denied.status_code == 401 and denied.json()["type"] == "error"
        assert denied.json()["error"]["type"] == "authentication_error" and "sk-ant" not in denied.text
        for header in ({"x-api-key": "sk-ant-secret-1234"}, {"Authorization": "Bearer sk-ant-secret-1234"}):
            assert c.post("/v1/messages", json=body, headers=header).status_code == 200
        assert c.post("/v1/responses", json=CASES["responses"][1], headers={"x-api-key": "wrong"}).status_code == 401
        missing = c.post("/v1/messages", json={**body, "max_tokens": None}, headers={"x-api-key": "sk-ant-secret-1234"})
        assert missing.status_code == 400 and "max_tokens" in missing.json()["error"]["message"]
        limited = c.post("/v1/messages", json=body, headers={"x-api-key": "sk-ant-secret-1234",
                                                            "X-Sim-Fault": "rate_limit"})
        assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limit_error"
        assert c.get("/v1/messages").status_code == 405


@pytest.mark.parametrize("kind", sorted(CASES))
def test_body_faults_for_every_format(raw, kind):
    path, body = CASES[kind]
    no_usage = raw.post(path, json=body, headers={"X-Sim-Fault": "no_usage"}).json()
    assert no_usage.get("usage") is None and no_usage != {}
    negative = raw.post(path, json=body, headers={"X-Sim-Fault": "negative_usage"}).json()["usage"]
    key = {"chat": "completion_tokens", "completions": "completion_tokens", "responses": "output_tokens",
           "embeddings": "prompt_tokens", "anthropic": "output_tokens"}[kind]
    assert negative[key] < 0
    malformed = raw.post(path, json=body, headers={"X-Sim-Fault": "malformed"})
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    with pytest.raises(httpx2.RemoteProtocolError):
        raw.post(path, json=body, headers={"X-Sim-Fault": "cut_stream"})


@pytest.mark.parametrize("kind", STREAMING)
def test_stream_faults_for_every_format(raw, kind):
    path, body = CASES[kind]
    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}} if kind in (
        "chat", "completions") else {**body, "stream": True}
    received: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError), raw.stream("POST", path, json=stream_body,
                                                               headers={"X-Sim-Fault": "cut_stream"}) as r:
        received.extend(r.iter_lines())
    joined = "\n".join(received)
    bill = {"chat": '"usage":{', "completions": '"usage":{', "responses": "response.completed",
            "anthropic": "message_delta"}[kind]
    assert "data: {" in joined and bill not in joined
    assert not any(end in joined for end in ("[DONE]", "message_stop", "response.completed"))
    no_usage = raw.post(path, json=stream_body, headers={"X-Sim-Fault": "no_usage"}).text
    assert '"usage":{' not in no_usage and len(sse_payloads(no_usage)) > 3


# -- the client's bound holds for anything the simulator bills -----------------------------------

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


@settings(max_examples=80, deadline=None)
@given(system=text, turns=st.lists(text, min_size=1, max_size=4), cap=st.integers(1, 500))
def test_simulated_input_never_exceeds_the_adapters_bound(system, turns, cap):
    from holysheep_lab.endpoints.anthropic import ANTHROPIC_MESSAGES
    from holysheep_lab.endpoints.embeddings import EMBEDDINGS
    from holysheep_lab.endpoints.responses import RESPONSES

    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    anthropic = {"model": "m", "max_tokens": cap, "system": system, "messages": msgs}
    assert total_input_tokens(anthropic) <= ANTHROPIC_MESSAGES.plan(anthropic, False).size.safe_bound()
    items = [{"role": m["role"], "content": [{"type": "input_text", "text": m["content"]}]} for m in msgs]
    responses = {"model": "m", "instructions": system, "input": items,
                 "tools": [{"type": "function", "name": system or "f"}]}
    assert input_tokens(responses) <= RESPONSES.plan(responses, False).size.safe_bound()
    batch = [t for t in turns if t] or ["x"]
    facts = EMBEDDINGS.plan({"model": "m", "input": [*batch, [1, 2, 3]]}, False)
    assert embedding_tokens([*batch, [1, 2, 3]]) <= facts.size.safe_bound() + facts.exact_tokens


# -- end to end through hs.MeteredTransport -------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_endpoint_logs_one_row_with_the_right_tokens_and_cost(sim, log_dir, kind):
    path, body = CASES[kind]
    client, _, counting = metered(sim, log_dir)
    with client:
        r = client.post(path, json=body)
    assert r.status_code == 200
    usage = expected_usage(kind, r.json())
    (row,) = rows(log_dir)
    assert (row["status"], row["endpoint"], row["model"], row["stream"], row["partial"]) == (
        "ok", ENDPOINT_NAMES[kind], MODEL, False, False)
    assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"], row["reasoning_tokens"],
            row["cache_write_tokens"]) == (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                                           usage.reasoning_tokens, usage.cache_write_tokens)
    assert row["cost_nanos"] == PRICE.cost_nanos(usage) > 0
    assert Decimal(str(row["estimated_cost_usd"])) >= Decimal(row["cost_nanos"]) / 10**9  # the bound held
    assert outcome_of(r).record.call_id == row["call_id"] and counting.sent == [path]


@pytest.mark.parametrize("kind", STREAMING)
def test_each_stream_logs_the_same_bill_as_the_plain_call(sim, log_dir, kind):
    path, body = CASES[kind]
    client, _, _ = metered(sim, log_dir)
    with client:
        plain = client.post(path, json=body)
        with client.stream("POST", path, json={**body, "stream": True}) as r:
            seen = list(r.iter_lines())
    plain_row, stream_row = rows(log_dir)
    assert stream_row["stream"] and not stream_row["partial"] and stream_row["status"] == "ok"
    for col in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost_nanos", "endpoint"):
        assert stream_row[col] == plain_row[col], col
    assert plain.status_code == 200 and stream_row["ttft_ms"] is not None
    if kind in ("chat", "completions"):  # the usage chunk we asked for is hidden from the caller
        assert not any('"usage":{' in line for line in seen)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_endpoint_is_refused_over_budget_before_sending(sim, log_dir, kind):
    path, body = CASES[kind]
    if kind == "embeddings":
        body = {**body, "input": ["word " * 400]}  # embeddings have no output: a long input passes the cap
    client, _, counting = metered(sim, log_dir, budget=hs.Budget(daily=0.0001, monthly=None, tz="UTC"))
    with client, pytest.raises(hs.BudgetExceededError) as info:
        client.post(path, json=body)
    assert info.value.model == MODEL
    assert sim.requests == 0 and counting.sent == []
    (row,) = rows(log_dir)
    assert (row["status"], row["endpoint"], row["attempts"]) == ("blocked", ENDPOINT_NAMES[kind], 0)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_an_answer_without_readable_usage_is_charged_its_worst_case_not_zero(sim, log_dir, kind):
    path, body = CASES[kind]
    client, _, _ = metered(sim, log_dir)
    with client:
        for fault in ("no_usage", "negative_usage", "malformed"):
            r = client.post(path, json=body, headers={"X-Sim-Fault": fault})
            assert r.status_code == 200
    logged = rows(log_dir)
    # Readable answers without usable usage are handed back (ok); a malformed body is an error.
    assert sorted(row["status"] for row in logged) == ["error", "ok", "ok"]
    for row in logged:
        # Paid for either way: its cost is the reservation, and the row says why.
        assert row["usage_missing"] is True and row["error"]
        assert row["cost_nanos"] == round(row["estimated_cost_usd"] * 10**9) > 0


@pytest.mark.parametrize("kind", STREAMING)
def test_a_cut_stream_is_settled_at_its_bound(sim, log_dir, kind):
    path, body = CASES[kind]
    client, _, _ = metered(sim, log_dir)
    with client, pytest.raises(httpx2.RemoteProtocolError), client.stream(
            "POST", path, json={**body, "stream": True}, headers={"X-Sim-Fault": "cut_stream"}) as r:
        list(r.iter_lines())
    (row,) = rows(log_dir)
    assert row["partial"] and row["status"] == "error" and row["cost_nanos"] > 0
    assert row["input_tokens"] >= expected_input(kind, body)


def expected_input(kind: str, body: dict) -> int:
    if kind == "responses":
        return input_tokens(body)
    if kind == "anthropic":
        return total_input_tokens(body)
    return 1


def test_an_unmetered_post_is_refused_before_sending_and_passthrough_lets_it_through(sim, log_dir):
    client, _, counting = metered(sim, log_dir)
    with client, pytest.raises(hs.UnmeteredEndpointError, match=r"passthrough=\['/v1/images/generations'\]"):
        client.post("/v1/images/generations", json={"model": "dall-e-3", "prompt": "a cat"})
    assert counting.sent == [] and rows(log_dir) == []
    client, _, counting = metered(sim, log_dir, passthrough=["/v1/images/generations"])
    with client:
        r = client.post("/v1/images/generations", json={"model": "dall-e-3", "prompt": "a cat"})
        assert r.status_code == 404 and outcome_of(r) is None  # the simulator has no images: it answered anyway
        assert client.get("/v1/models").status_code == 200  # GETs pass, unlogged
        with pytest.raises(hs.UnmeteredEndpointError):
            client.post("/v1/audio/speech", json={"model": "tts-1", "input": "hi"})
    assert counting.sent == ["/v1/images/generations", "/v1/models"]
    (row,) = rows(log_dir)
    assert (row["status"], row["endpoint"], row["model"], row["cost_usd"], row["cost_nanos"]) == (
        "unmetered", "/v1/images/generations", "dall-e-3", None, None)
