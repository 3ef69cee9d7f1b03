"""AiohttpTransport: the default wire of hs.Client's async path, against the real simulator."""

from __future__ import annotations

import asyncio
import gc
import gzip
import time
import warnings
from decimal import Decimal

import aiohttp
import httpx2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import free_port

import holysheep_lab as hs
from holysheep_lab.log import read_table
from holysheep_lab.transports.aio import AiohttpTransport

FAST_RETRY = hs.Retry(backoff=0.01, max_backoff=0.05)


@pytest.fixture
def sim():
    with hs.Simulator() as s:
        yield s


def rows(log_dir):
    return read_table(log_dir).to_pylist()


def inner_transport(client: hs.Client) -> object:
    http = client._async[asyncio.get_running_loop()]
    return http._transport._inner


async def test_plain_call_goes_through_aiohttp(sim, log_dir):
    async with hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        r = await c.achat("gpt-4.1", "Hello there", max_tokens=30)
        assert isinstance(inner_transport(c), AiohttpTransport)
    assert r.text and r.cost_usd > 0 and r.record.attempts == 1
    (row,) = rows(log_dir)
    assert row["status"] == "ok" and row["http_status"] == 200 and row["call_id"] == r.call_id


async def test_streaming_yields_as_chunks_arrive_and_settles_from_usage(sim, log_dir):
    sim.configure(stream_delay=0.05)
    async with hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        t0 = time.perf_counter()
        stream = await c.achat("gpt-4.1", "tell me a story", max_tokens=40, stream=True)
        seen: list[float] = []
        parts = []
        async for piece in stream:
            seen.append(time.perf_counter() - t0)
            parts.append(piece)
    assert len(parts) > 3 and "".join(parts) == stream.result.text
    assert seen[0] < seen[-1] - 0.1  # the first delta came long before the last: not buffered
    r = stream.result
    assert r.usage.output_tokens >= 1 and r.cost_usd > 0
    assert sim.last_requests[-1]["stream_options"] == {"include_usage": True}
    (row,) = rows(log_dir)
    assert row["stream"] is True and row["partial"] is False and row["status"] == "ok" and row["ttft_ms"] > 0


@pytest.mark.parametrize("fault, fail_first, attempts", [("unavailable", 2, 3), ("rate_limit", 1, 2)])
async def test_retries_are_counted_in_the_row(sim, log_dir, fault, fail_first, attempts):
    sim.configure(fault=fault, fail_first=fail_first, retry_after=0.2)
    async with hs.Client(base_url=sim.base_url, log_dir=log_dir, retry=FAST_RETRY) as c:
        t0 = time.perf_counter()
        r = await c.achat("gpt-4.1", "hi", max_tokens=5)
        elapsed = time.perf_counter() - t0
    assert r.record.attempts == attempts and sim.requests == attempts
    if fault == "rate_limit":
        assert elapsed >= 0.2  # Retry-After honoured
    assert rows(log_dir)[0]["attempts"] == attempts


async def test_timeout_is_an_api_timeout_after_retries(sim, log_dir):
    sim.configure(fault="timeout", hang=5)
    async with hs.Client(base_url=sim.base_url, log_dir=log_dir, timeout=0.3, budget=hs.Budget(daily=10),
                         retry=hs.Retry(max_attempts=2, backoff=0.01)) as c:
        t0 = time.perf_counter()
        with pytest.raises(hs.APITimeoutError) as info:
            await c.achat("gpt-4.1", "hi", max_tokens=5)
        assert time.perf_counter() - t0 < 4.0  # two 0.3 s attempts, not two 5 s hangs
        assert isinstance(info.value.__cause__, httpx2.ReadTimeout)
        assert all(ln["reserved_usd"] == 0 for ln in c.budget_status())
    # Both attempts reached the relay unanswered: each stays charged (one row for the resent one).
    final, attempt = sorted(rows(log_dir), key=lambda r: len(r["call_id"]))
    assert final["status"] == "unknown" and final["attempts"] == 2 and "APITimeoutError" in final["error"]
    assert attempt["status"] == "unknown" and attempt["call_id"] == final["call_id"] + ".1"
    assert final["cost_usd"] == attempt["cost_usd"] == final["estimated_cost_usd"] > 0


async def test_connection_refused_is_an_api_connection_error(log_dir):
    async with hs.Client(base_url=f"http://127.0.0.1:{free_port()}/v1", log_dir=log_dir, retry=hs.Retry.none()) as c:
        with pytest.raises(hs.APIConnectionError, match="Could not reach") as info:
            await c.achat("gpt-4.1", "hi")
    assert isinstance(info.value.__cause__, httpx2.ConnectError)
    assert rows(log_dir)[0]["status"] == "error"


async def test_disconnect_before_an_answer_is_retried_then_a_connection_error(sim, log_dir):
    sim.configure(fault="disconnect", fail_first=1)
    async with hs.Client(base_url=sim.base_url, log_dir=log_dir, retry=FAST_RETRY) as c:
        r = await c.achat("gpt-4.1", "hi", max_tokens=5)  # the dropped connection is retried
        assert r.record.attempts == 2
        sim.configure(fault="disconnect", fail_first=None)  # every attempt now
        with pytest.raises(hs.APIConnectionError) as info:
            await c.achat("gpt-4.1", "hi", max_tokens=5)
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)


async def test_cut_stream_settles_a_partial_row(sim, log_dir):
    sim.configure(fault="cut_stream")
    async with hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        stream = await c.achat("gpt-4.1", "tell me a story", max_tokens=200, stream=True)
        with pytest.raises(httpx2.RemoteProtocolError):
            async for _ in stream:
                pass
    (row,) = rows(log_dir)
    assert row["partial"] is True and row["status"] == "error" and 0 < row["cost_usd"] <= row["estimated_cost_usd"]


async def test_200_concurrent_calls_never_overshoot(log_dir):
    limit = Decimal("0.10")
    with hs.Simulator(latency=0.005) as sim:
        async with hs.Client(base_url=sim.base_url, log_dir=log_dir,
                             budget=hs.Budget(daily=limit, monthly=None, block_at=0.95)) as c:
            prompts = [f"request {i} " + "lorem " * (i % 50) for i in range(200)]
            results = await asyncio.gather(*(c.achat("claude-sonnet-4.5", p, max_tokens=200) for p in prompts),
                                           return_exceptions=True)
        completed, received = sim.completed, sim.requests
    ok = [r for r in results if isinstance(r, hs.ChatResult)]
    refused = [r for r in results if isinstance(r, hs.BudgetExceededError)]
    assert len(ok) + len(refused) == 200, [r for r in results if not isinstance(r, (hs.ChatResult, hs.BudgetExceededError))][:3]
    assert ok and refused
    assert sum(Decimal(r.record.cost_nanos) for r in ok) / 10**9 <= limit * Decimal("0.95")
    assert received == completed == len(ok)


def _no_unclosed(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_closing_the_client_leaves_no_unclosed_session(sim, log_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = hs.Client(base_url=sim.base_url, log_dir=log_dir)
        await asyncio.gather(*(c.achat("gpt-4.1", f"hi {i}", max_tokens=5) for i in range(20)))
        transport = inner_transport(c)
        await c.aclose()
        assert "closed" in repr(transport)
        del c, transport
        gc.collect()
    assert _no_unclosed(caught) == []


def test_sync_batch_then_close_leaves_no_unclosed_session(sim, log_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = hs.Client(base_url=sim.base_url, log_dir=log_dir)
        results = c.chat_many([f"p{i}" for i in range(20)], model="gpt-4.1", max_tokens=5, progress=False)
        assert all(isinstance(r, hs.ChatResult) for r in results)
        c.close()  # the private loop's client is closed on that loop
        del c
        gc.collect()
    assert _no_unclosed(caught) == []


def test_a_transport_dropped_without_aclose_does_not_report_an_unclosed_session(sim):
    async def use() -> AiohttpTransport:
        t = AiohttpTransport()
        async with httpx2.AsyncClient(transport=t) as http:
            ...
        t = AiohttpTransport()
        http = httpx2.AsyncClient(transport=t, base_url=sim.base_url)
        assert (await http.get("/models")).status_code == 200
        return t  # never closed: its loop ends first

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        transport = asyncio.run(use())
        del transport
        gc.collect()
    assert not [m for m in _no_unclosed(caught) if "client session" in m or "connector" in m]


async def test_wire_is_passed_through_as_httpx2_built_it():
    """Raw bytes + headers up (httpx2 decodes gzip), duplicates kept, redirects not followed,
    no headers or cookies added by aiohttp."""
    seen: list[tuple[dict[str, str], dict[str, str]]] = []  # (headers, cookies) per request

    async def gz(request: web.Request) -> web.Response:
        seen.append(({k.lower(): v for k, v in request.headers.items()}, dict(request.cookies)))
        resp = web.Response(body=gzip.compress(b"hello " * 100), headers={"Content-Encoding": "gzip"})
        resp.headers.add("X-Dup", "a")
        resp.headers.add("X-Dup", "b")
        resp.set_cookie("session", "abc")
        return resp

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/gz")

    app = web.Application()
    app.router.add_get("/gz", gz)
    app.router.add_get("/moved", moved)
    async with TestServer(app) as server:
        base = str(server.make_url(""))
        async with httpx2.AsyncClient(transport=AiohttpTransport(), base_url=base) as http:
            r = await http.get("/gz", headers={"X-Test": "1"})
            assert r.text == "hello " * 100 and r.headers.get_list("x-dup") == ["a", "b"]
            assert r.http_version == "HTTP/1.1" and r.reason_phrase == "OK"
            sent, cookies = seen[-1]
            assert sent["x-test"] == "1" and cookies == {}
            assert "python-httpx" in sent["user-agent"] and "aiohttp" not in sent["user-agent"].lower()
            await http.get("/gz")  # httpx2's cookie jar resends the cookie, exactly once
            assert seen[-1][1] == {"session": "abc"} and seen[-1][0]["cookie"] == "session=abc"
            r3 = await http.get("/moved")
            assert r3.status_code == 302 and r3.headers["location"] == "/gz"

        bare = httpx2.Request("GET", str(server.make_url("/gz")))  # no client headers: aiohttp must add none of its own
        t = AiohttpTransport()
        resp = await t.handle_async_request(bare)
        await resp.aread()
        await t.aclose()
        assert not set(seen[-1][0]) & {"user-agent", "accept", "accept-encoding", "content-type", "cookie"}


@pytest.mark.parametrize("exc, expected", [
    (aiohttp.ConnectionTimeoutError("t"), httpx2.ConnectTimeout),
    (aiohttp.SocketTimeoutError("t"), httpx2.ReadTimeout),
    (TimeoutError(), httpx2.ReadTimeout),
    (aiohttp.ServerDisconnectedError(), httpx2.RemoteProtocolError),
    (aiohttp.ClientPayloadError("cut"), httpx2.RemoteProtocolError),
    (aiohttp.ClientOSError(104, "reset"), httpx2.ReadError),
])
def test_errors_map_to_httpx2_with_the_request(exc, expected):
    from holysheep_lab.transports.aio import _raise_mapped

    request = httpx2.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    with pytest.raises(expected) as info:
        _raise_mapped(exc, request, in_body=True)
    assert info.value.request is request and info.value.__cause__ is exc
