"""The simulator, over real loopback HTTP (httpx2 and the official openai SDK)."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from decimal import Decimal
from types import SimpleNamespace

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holysheep_lab.sim import server as sim_module
from holysheep_lab.sim.server import FAULTS, Simulator, count_prompt_tokens, simulate_completion

CHAT = "/chat/completions"


def body(content: str = "hello world", model: str = "gpt-4.1", **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
def sim():
    with Simulator() as s:
        yield s


@pytest.fixture
def client(sim):
    with httpx2.Client(base_url=sim.base_url, timeout=5.0) as c:
        yield c


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]


def test_exports_are_pinned():
    assert sorted(sim_module.__all__) == [
        "DEFAULT_MAX_TOKENS",
        "FAULTS",
        "SimulatedCompletion",
        "Simulator",
        "count_prompt_tokens",
        "serve",
        "simulate_completion",
    ]
    assert {
        "rate_limit", "server_error", "unavailable", "timeout", "malformed", "html", "html_200",
        "no_usage", "negative_usage", "cut_stream", "disconnect",
    } == FAULTS  # fmt: skip


def test_importing_the_module_does_not_import_aiohttp():
    code = "import sys, holysheep_lab.sim; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- shape and usage


def test_completion_has_the_openai_shape(client):
    r = client.post(CHAT, json=body(max_tokens=64))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int) and abs(data["created"] - time.time()) < 60
    assert data["model"] == "gpt-4.1"
    [choice] = data["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    u = data["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"]["cached_tokens"] == 0
    assert u["completion_tokens_details"]["reasoning_tokens"] == 0
    assert "cost" not in u
    # Ids are unique per response.
    assert client.post(CHAT, json=body(max_tokens=64)).json()["id"] != data["id"]


def test_prompt_token_formula_is_exact(client):
    # "hello world": 11 bytes -> ceil(11/4) + 4 = 7; "héllo": 6 bytes -> 2 + 4 = 6; "" -> 4.
    assert client.post(CHAT, json=body("hello world")).json()["usage"]["prompt_tokens"] == 7
    msgs = [
        {"role": "system", "content": "héllo"},
        {"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]},
        {"role": "assistant", "content": ""},
    ]
    r = client.post(CHAT, json={"model": "m", "messages": msgs})
    assert r.json()["usage"]["prompt_tokens"] == 6 + (2 + 4) + 4 == count_prompt_tokens(msgs)


def test_usage_is_deterministic_and_depends_on_the_request(client):
    first = client.post(CHAT, json=body("same words", max_tokens=500)).json()
    again = client.post(CHAT, json=body("same words", max_tokens=500)).json()
    assert first["usage"] == again["usage"]
    assert first["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
    completions = {
        client.post(CHAT, json=body(f"prompt {i}", max_tokens=500)).json()["usage"][
            "completion_tokens"
        ]
        for i in range(10)
    }
    assert len(completions) > 5  # the hash spreads different requests


def test_completion_tokens_respect_the_limits(client):
    seen = []
    for i in range(40):
        u = client.post(CHAT, json=body(f"q{i}", max_tokens=20)).json()["usage"]
        assert 1 <= u["completion_tokens"] <= 20
        seen.append(u["completion_tokens"])
    assert max(seen) > 10  # not stuck at the bottom of the range
    default = [client.post(CHAT, json=body(f"d{i}")).json()["usage"] for i in range(40)]
    assert all(1 <= u["completion_tokens"] <= 256 for u in default)
    assert max(u["completion_tokens"] for u in default) > 128
    # max_completion_tokens wins over the legacy max_tokens, as in OpenAI's API.
    for i in range(20):
        b = body(f"c{i}", max_tokens=10_000, max_completion_tokens=3)
        assert 1 <= client.post(CHAT, json=b).json()["usage"]["completion_tokens"] <= 3


def test_finish_reason_length_when_the_limit_is_hit(client):
    data = client.post(CHAT, json=body(max_tokens=1)).json()
    assert data["usage"]["completion_tokens"] == 1
    assert data["choices"][0]["finish_reason"] == "length"


messages_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant"]),
            "content": st.one_of(
                st.text(max_size=300),
                st.none(),
                st.lists(
                    st.one_of(
                        st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}),
                        st.fixed_dictionaries(
                            {
                                "type": st.just("image_url"),
                                "image_url": st.fixed_dictionaries({"url": st.text()}),
                            }
                        ),
                    ),
                    max_size=3,
                ),
            ),
        }
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    messages=messages_strategy,
    limit=st.integers(1, 3000),
    cached=st.floats(0, 1),
    reasoning=st.floats(0, 1),
    seed=st.integers(0, 2**31),
)
def test_usage_invariants(messages, limit, cached, reasoning, seed):
    req = {"model": "m", "messages": messages, "max_tokens": limit}
    c = simulate_completion(req, seed=seed, cached_ratio=cached, reasoning_ratio=reasoning)
    compact = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    assert c.prompt_tokens == count_prompt_tokens(messages)
    assert c.prompt_tokens <= len(compact.encode("utf-8"))  # the client's byte bound holds
    assert 1 <= c.completion_tokens <= limit
    assert 0 <= c.cached_tokens <= c.prompt_tokens
    assert c.cached_tokens == math.floor(c.prompt_tokens * cached)
    assert 0 <= c.reasoning_tokens <= c.completion_tokens
    visible = c.completion_tokens - c.reasoning_tokens
    assert len(c.text.split()) == (max(1, round(visible * 0.75)) if visible else 0)
    assert c == simulate_completion(req, seed=seed, cached_ratio=cached, reasoning_ratio=reasoning)


def test_long_completions_wrap_the_corpus():
    c = simulate_completion(body("long", max_tokens=40_000))
    words = c.text.split()
    assert len(words) == max(1, round(c.completion_tokens * 0.75))
    assert c.completion_tokens > 4096 / 0.75  # this request really takes the wrap-around path


def test_cached_and_reasoning_tokens_when_configured():
    with Simulator(cached_ratio=0.5, reasoning_ratio=0.25) as s, httpx2.Client() as c:
        u = c.post(s.base_url + CHAT, json=body("x" * 400, max_tokens=400)).json()["usage"]
    assert u["prompt_tokens"] == 104
    assert u["prompt_tokens_details"]["cached_tokens"] == 52
    assert u["completion_tokens_details"]["reasoning_tokens"] == u["completion_tokens"] // 4


def test_relay_cost_from_the_given_prices():
    prices = {
        "cheap": (1, 2, 0.5),
        "obj": SimpleNamespace(input=3, output=4, cached_input=None),
    }
    with (
        Simulator(report_cost=True, prices=prices, cached_ratio=0.5) as s,
        httpx2.Client(base_url=s.base_url) as c,
    ):
        u = c.post(CHAT, json=body("x" * 40, model="cheap")).json()["usage"]
        p, out = u["prompt_tokens"], u["completion_tokens"]
        cached = u["prompt_tokens_details"]["cached_tokens"]
        assert cached == p // 2 > 0
        expected = (Decimal(p - cached) * 1 + Decimal(cached) * Decimal("0.5") + out * 2) / 10**6
        assert u["cost"] == pytest.approx(float(expected), rel=1e-12)
        u2 = c.post(CHAT, json=body("x" * 40, model="obj")).json()["usage"]  # cached falls back
        expected2 = (u2["prompt_tokens"] * 3 + u2["completion_tokens"] * 4) / 1e6
        assert u2["cost"] == pytest.approx(expected2, rel=1e-12)
        assert "cost" not in c.post(CHAT, json=body(model="unpriced")).json()["usage"]
        s.configure(cost_factor=1.5)  # a relay whose figure drifts from the list price
        drifted = c.post(CHAT, json=body("x" * 40, model="cheap")).json()["usage"]["cost"]
        assert drifted == pytest.approx(float(expected) * 1.5, rel=1e-12)


# ---------------------------------------------------------------- streaming


def test_streaming_with_final_usage_chunk(client):
    plain = client.post(CHAT, json=body("stream me", max_tokens=80)).json()
    r = client.post(
        CHAT,
        json=body("stream me", max_tokens=80, stream=True, stream_options={"include_usage": True}),
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert len({ch["id"] for ch in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [ch["choices"][0]["delta"]["content"] for ch in chunks[1:-2]]
    assert len(content) >= 2
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == plain["choices"][0]["finish_reason"]
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"] == plain["usage"]
    assert "".join(content) == plain["choices"][0]["message"]["content"]


def test_streaming_without_include_usage_has_no_usage(client):
    r = client.post(CHAT, json=body(max_tokens=30, stream=True))
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(ch["choices"] and "usage" not in ch for ch in chunks)


def test_stream_delay_spaces_the_chunks():
    with Simulator(stream_delay=0.03) as s, httpx2.Client() as c:
        arrivals = []
        with c.stream("POST", s.base_url + CHAT, json=body(max_tokens=12, stream=True)) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.perf_counter())
    assert len(arrivals) >= 4
    assert arrivals[-1] - arrivals[0] >= 0.03 * (len(arrivals) - 1) * 0.9


# ---------------------------------------------------------------- latency


def test_latency_and_jitter():
    with Simulator(latency=0.3, jitter=0.05) as s, httpx2.Client() as c:
        c.get(s.url + "/health")  # connect first, so only the simulated latency is timed
        t = time.perf_counter()
        c.post(s.base_url + CHAT, json=body())
        assert time.perf_counter() - t >= 0.3
        t = time.perf_counter()
        c.get(s.url + "/health")  # latency applies to completions only
        assert time.perf_counter() - t < 0.3


async def test_latency_does_not_block_the_server_loop():
    async with Simulator(latency=0.3) as s, httpx2.AsyncClient(base_url=s.base_url) as c:
        t = time.perf_counter()
        rs = await asyncio.gather(*(c.post(CHAT, json=body(f"{i}")) for i in range(10)))
        elapsed = time.perf_counter() - t
    assert [r.status_code for r in rs] == [200] * 10
    assert elapsed < 1.5  # 10 x 0.3 s would be 3 s if the sleeps were serial


# ---------------------------------------------------------------- faults


def fault(client, name, **extra):
    return client.post(CHAT, json=body(**extra), headers={"X-Sim-Fault": name})


def test_rate_limit_has_retry_after_and_ratelimit_headers():
    with Simulator(retry_after=2.5) as s, httpx2.Client(base_url=s.base_url) as c:
        r = fault(c, "rate_limit")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"  # whole seconds, rounded up
    assert r.headers["retry-after-ms"] == "2500"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-reset-requests"] == "2.5s"
    err = r.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and err["message"] and "type" in err


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [("server_error", 500, "server_error"), ("unavailable", 503, "service_unavailable")],
)
def test_server_errors(client, name, status, code):
    r = fault(client, name)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize(("name", "status"), [("html", 502), ("html_200", 200)])
def test_html_pages(client, name, status):
    r = fault(client, name)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.lstrip().lower().startswith(("<html", "<!doctype html"))
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_malformed_body(client):
    r = fault(client, "malformed")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.text.startswith('{"id":')
    with pytest.raises(json.JSONDecodeError):
        r.json()
    s = fault(client, "malformed", stream=True)
    events = sse_events(s.text)
    assert events[-1] == "[DONE]"
    with pytest.raises(json.JSONDecodeError):
        [json.loads(e) for e in events[:-1]]


def test_no_usage_and_negative_usage(client):
    r = fault(client, "no_usage")
    assert r.status_code == 200 and "usage" not in r.json()
    assert r.json()["choices"][0]["message"]["content"]
    u = fault(client, "negative_usage").json()["usage"]
    assert u["completion_tokens"] < 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    streamed = fault(client, "no_usage", stream=True, stream_options={"include_usage": True})
    events = sse_events(streamed.text)
    assert events[-1] == "[DONE]" and len(events) > 3
    assert all(json.loads(e)["choices"] and json.loads(e)["usage"] is None for e in events[:-1])


def test_cut_stream_breaks_the_body(client):
    with (
        pytest.raises(httpx2.RemoteProtocolError),
        client.stream(
            "POST",
            CHAT,
            json=body(max_tokens=200, stream=True, stream_options={"include_usage": True}),
            headers={"X-Sim-Fault": "cut_stream"},
        ) as r,
    ):
        received = []
        for line in r.iter_lines():
            received.append(line)
    assert any(line.startswith("data: {") for line in received)
    assert not any("[DONE]" in line or '"usage":{' in line for line in received)
    with pytest.raises(httpx2.RemoteProtocolError):
        fault(client, "cut_stream")  # not streaming: Content-Length promised, half sent
    assert client.post(CHAT, json=body()).status_code == 200  # the client recovers


def test_disconnect(client):
    with pytest.raises(httpx2.RemoteProtocolError):
        fault(client, "disconnect")


def test_timeout_hangs_then_504():
    with Simulator(hang=0.3) as s, httpx2.Client(base_url=s.base_url) as c:
        with pytest.raises(httpx2.ReadTimeout):
            c.post(CHAT, json=body(), headers={"X-Sim-Fault": "timeout"}, timeout=0.1)
        r = c.post(CHAT, json=body(), headers={"X-Sim-Fault": "timeout"}, timeout=5)
        assert r.status_code == 504


def test_stop_releases_a_hanging_request():
    s = Simulator(hang=30).start()
    outcome = []

    def call():
        try:
            headers = {"X-Sim-Fault": "timeout"}
            r = httpx2.post(s.base_url + CHAT, json=body(), headers=headers, timeout=20)
            outcome.append(r)
        except httpx2.HTTPError as exc:
            outcome.append(exc)

    t = threading.Thread(target=call)
    t.start()
    deadline = time.time() + 5
    while s.faults.get("timeout") != 1 and time.time() < deadline:
        time.sleep(0.01)
    t0 = time.perf_counter()
    s.stop()
    t.join(5)
    assert time.perf_counter() - t0 < 2
    assert not t.is_alive() and outcome
    assert isinstance(outcome[0], httpx2.HTTPError) or outcome[0].status_code == 503


def test_header_targets_one_call_and_can_veto_config():
    with Simulator(fault="server_error") as s, httpx2.Client(base_url=s.base_url) as c:
        assert c.post(CHAT, json=body()).status_code == 500
        assert fault(c, "none").status_code == 200
        assert fault(c, "rate_limit").status_code == 429
    with Simulator() as s, httpx2.Client(base_url=s.base_url) as c:
        assert fault(c, "unavailable").status_code == 503
        assert c.post(CHAT, json=body()).status_code == 200
        bad = fault(c, "explode")
        assert bad.status_code == 400 and "explode" in bad.json()["error"]["message"]


def test_fail_first_then_succeed_and_runtime_reconfiguration():
    with Simulator(fail_first=2, fault="unavailable") as s, httpx2.Client(base_url=s.base_url) as c:
        assert [c.post(CHAT, json=body()).status_code for _ in range(4)] == [503, 503, 200, 200]
        s.configure(fault="rate_limit", fail_first=1, retry_after=0)
        statuses = [c.post(CHAT, json=body()).status_code for _ in range(3)]
        assert statuses == [429, 200, 200]
        s.configure(fault=None)
        assert c.post(CHAT, json=body()).status_code == 200
        assert s.faults == {"unavailable": 2, "rate_limit": 1}


def statuses_for(seed: int, n: int = 40, **options) -> list[int]:
    with Simulator(seed=seed, **options) as s, httpx2.Client(base_url=s.base_url) as c:
        return [c.post(CHAT, json=body()).status_code for _ in range(n)]


def test_fault_rate_is_seeded():
    a = statuses_for(7, fault_rate=0.3)
    assert a == statuses_for(7, fault_rate=0.3)
    assert a != statuses_for(8, fault_rate=0.3)
    failed = [x for x in a if x != 200]
    assert 3 <= len(failed) <= 25
    assert set(failed) <= {429, 500, 503}  # the default mix: retryable faults
    assert len(set(failed)) >= 2
    only = statuses_for(7, fault_rate=0.3, fault="server_error")
    assert set(only) == {200, 500}


def test_configured_fault_without_schedule_always_fails():
    assert statuses_for(0, n=5, fault="html") == [502] * 5


def test_configure_validates():
    s = Simulator()
    with pytest.raises(ValueError, match="unknown fault"):
        s.configure(fault="boom")
    with pytest.raises(ValueError, match="cached_ratio"):
        s.configure(cached_ratio=1.5)
    with pytest.raises(ValueError, match="latency"):
        Simulator(latency=-1)
    with pytest.raises(TypeError, match="nonsense"):
        Simulator(nonsense=1)
    s.configure(latency=0.5)
    assert s.options["latency"] == 0.5


def test_configure_is_safe_while_requests_flow(sim, client):
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            sim.configure(fault="unavailable")
            sim.configure(fault=None)

    t = threading.Thread(target=flip)
    t.start()
    try:
        statuses = {client.post(CHAT, json=body()).status_code for _ in range(40)}
    finally:
        stop.set()
        t.join()
    assert statuses <= {200, 503}


# ---------------------------------------------------------------- auth and validation


def test_auth_only_when_configured():
    with Simulator(api_key="sk-secret-123456") as s, httpx2.Client(base_url=s.base_url) as c:
        assert c.post(CHAT, json=body()).status_code == 401
        wrong = c.post(CHAT, json=body(), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert "sk-secret" not in wrong.text
        ok = c.post(CHAT, json=body(), headers={"Authorization": "Bearer sk-secret-123456"})
        assert ok.status_code == 200
        assert "sk-secret" not in repr(s) + repr(s.options)
    with Simulator() as s:
        assert httpx2.post(s.base_url + CHAT, json=body()).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(),
        json.dumps({"model": "m"}).encode(),
        json.dumps({"model": "m", "messages": []}).encode(),
        json.dumps({"model": "m", "messages": ["hi"]}).encode(),
        json.dumps({"model": "m", "messages": [{"role": "user", "content": 5}]}).encode(),
        json.dumps(body(max_tokens=0)).encode(),
        json.dumps(body(max_tokens="10")).encode(),
    ],
)
def test_bad_requests_get_400_with_an_openai_error(sim, client, payload):
    r = client.post(CHAT, content=payload, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and err["type"] == "invalid_request_error"
    assert sim.requests == 1 and sim.last_requests == [] and sim.by_model == {}


def test_other_endpoints(sim, client):
    models = client.get("/models").json()
    assert models["object"] == "list"
    assert {"gpt-4.1", "deepseek-v3.2"} <= {m["id"] for m in models["data"]}
    assert client.get(sim.url + "/health").json() == {"status": "ok"}
    assert client.get("/nope").status_code == 404
    assert client.get(CHAT).status_code == 405
    # Both /v1/chat/completions and /chat/completions answer.
    assert httpx2.post(sim.url + CHAT, json=body()).status_code == 200


# ---------------------------------------------------------------- counters


def test_counters_and_history():
    with Simulator(history=3) as s, httpx2.Client(base_url=s.base_url) as c:
        for i in range(4):
            c.post(CHAT, json=body(f"m{i}", model="a"))
        c.post(CHAT, json=body(model="b"))
        fault(c, "server_error")
        c.post(CHAT, content=b"{")
        assert s.requests == 7
        assert s.completed == 5
        assert s.by_model == {"a": 4, "b": 1, "gpt-4.1": 1}
        assert s.faults == {"server_error": 1}
        contents = [r["messages"][0]["content"] for r in s.last_requests]
        assert contents == ["m3", "hello world", "hello world"]
        assert s.last_requests[0]["model"] == "a"
        s.reset()
        assert (s.requests, s.completed, s.by_model, s.last_requests) == (0, 0, {}, [])


# ---------------------------------------------------------------- lifecycle


def test_start_stop_is_clean_and_repeatable():
    gc.collect()  # what earlier tests left behind must not be blamed on the simulator
    before = set(threading.enumerate())  # threads of earlier tests may end meanwhile: only new ones count
    s = Simulator()
    with pytest.raises(RuntimeError):
        s.base_url  # noqa: B018 - not started
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unclosed socket or loop would be a ResourceWarning
        for _ in range(2):  # the same instance, twice in a row
            s.start()
            assert s.start() is s  # idempotent
            assert httpx2.get(s.url + "/health").status_code == 200
            s.stop()
            s.stop()
            assert not s.running
        for _ in range(20):
            with Simulator() as other:
                assert other.base_url.startswith("http://127.0.0.1:")
        gc.collect()
    assert [t.name for t in set(threading.enumerate()) - before] == []
    assert repr(s) == "<Simulator stopped>"


def test_fixed_port_and_port_in_use():
    port = free_port()
    with Simulator(port=port) as s:
        assert s.port == port and s.base_url == f"http://127.0.0.1:{port}/v1"
        before = threading.active_count()
        with pytest.raises(OSError):
            Simulator(port=port).start()
        assert threading.active_count() == before
    with Simulator(port=port) as s:  # freed on stop
        assert httpx2.get(s.url + "/health").status_code == 200


async def test_async_context_manager():
    async with Simulator() as s, httpx2.AsyncClient(base_url=s.base_url) as c:
        r = await c.post(CHAT, json=body())
        assert r.status_code == 200
    assert not s.running


def test_serve_runs_in_the_foreground_until_interrupted():
    port = free_port()
    code = f"from holysheep_lab.sim.server import serve; serve(port={port}, latency=0.0)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in first
        assert httpx2.post(f"http://127.0.0.1:{port}/v1" + CHAT, json=body()).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# ---------------------------------------------------------------- the official SDK


def test_openai_sdk_talks_to_it(sim):
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as oa:
        done = oa.chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi there"}], max_tokens=50
        )
        assert done.choices[0].message.content
        expected_prompt = count_prompt_tokens([{"role": "user", "content": "hi there"}])
        assert done.usage.prompt_tokens == expected_prompt
        assert 1 <= done.usage.completion_tokens <= 50
        stream = oa.chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": "hi there"}],
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == done.choices[0].message.content
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == done.usage.total_tokens
        with pytest.raises(openai.RateLimitError):
            oa.chat.completions.create(
                model="gpt-4.1",
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"X-Sim-Fault": "rate_limit"},
            )
