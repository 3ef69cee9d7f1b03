"""Keys never stored or raised, on every path, against a real relay that quotes them back.

The EchoRelay (loopback aiohttp) answers 401 with the request's credential in its message, the
way relays do. Whatever path the request took (hs.Client, the openai SDK through the metered
transports, a bare httpx2 client with `api-key` / `x-api-key` headers, Basic credentials in the
URL), the key must not appear in the Parquet rows, in any exception's text, in the logs, or in
the HTML report; the caller still learns that the key was refused.
"""

from __future__ import annotations

import logging

import httpx2
import pytest
from _support.echo_relay import EchoRelay

import holysheep_lab as hs
from holysheep_lab.errors import redact
from holysheep_lab.log import read_table

openai = pytest.importorskip("openai")  # a dev dependency (uv.lock): present under `make test`

# Not key-shaped: no `sk-` prefix, so only the transport's knowledge of it can hide it.
KEY = "relay7Q2xw9ZkP4mT8vB3nL6c"
BODY = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


@pytest.fixture
def relay():
    with EchoRelay() as r:
        yield r


@pytest.fixture
def everything_logged(caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level: ours, httpx2's, the SDK's
    return caplog


def stored_text(log_dir) -> str:
    """Every row of the log as text, and the HTML report built from it."""
    table = read_table(log_dir)
    assert table.num_rows >= 1
    report = hs.report(hs.read_log(log_dir)).html
    return repr(table.to_pylist()) + report


def errors_of(log_dir) -> list[str]:
    return [r["error"] for r in read_table(log_dir).to_pylist()]


def exception_text(exc: BaseException) -> str:
    """The exception and its whole chain as a user would see them (str, repr, body, args)."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "body", "")), repr(seen.args)]
        response = getattr(seen, "response", None)
        if response is not None:
            parts.append(response.text)
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def assert_hidden(*texts: str) -> None:
    for text in texts:
        assert KEY not in text


def test_sdk_401_echo_is_redacted_everywhere(relay, tmp_path, everything_logged):
    log_dir = tmp_path / "log"
    client = openai.OpenAI(base_url=relay.base_url, api_key=KEY, max_retries=0,
                           http_client=httpx2.Client(transport=hs.MeteredTransport(log_dir=log_dir)))
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4.1", messages=BODY["messages"], max_tokens=20)
    client.close()
    assert relay.seen == [KEY]  # the relay got the real key and quoted it
    assert "Incorrect API key provided: ***" in str(info.value)  # the caller still learns why
    (error,) = errors_of(log_dir)
    assert "HTTP 401" in error and "***" in error
    assert_hidden(exception_text(info.value), stored_text(log_dir), everything_logged.text)


async def test_async_sdk_401_echo_is_redacted_everywhere(relay, tmp_path, everything_logged):
    log_dir = tmp_path / "log"
    client = openai.AsyncOpenAI(base_url=relay.base_url, api_key=KEY, max_retries=0,
                                http_client=httpx2.AsyncClient(transport=hs.AsyncMeteredTransport(log_dir=log_dir)))
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(model="gpt-4.1", messages=BODY["messages"], max_tokens=20, stream=True)
    await client.close()
    assert relay.seen == [KEY]
    assert_hidden(exception_text(info.value), stored_text(log_dir), everything_logged.text)


def test_sdk_pass_through_request_is_redacted_too(relay, tmp_path):
    # GET /models has no adapter: not metered, but its error answer still passes the transport.
    client = openai.OpenAI(base_url=relay.base_url, api_key=KEY, max_retries=0,
                           http_client=httpx2.Client(transport=hs.MeteredTransport(log_dir=tmp_path / "log")))
    with pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    client.close()
    assert relay.seen == [KEY]
    assert_hidden(exception_text(info.value))


def test_hs_client_401_echo_is_redacted_everywhere(relay, tmp_path, everything_logged):
    log_dir = tmp_path / "log"
    with hs.Client(api_key=KEY, base_url=relay.base_url, log_dir=log_dir) as c:
        with pytest.raises(hs.APIError) as info:
            c.chat("gpt-4.1", "hi", max_tokens=20)
        with pytest.raises(hs.APIError) as streamed:
            "".join(c.chat("gpt-4.1", "hi", max_tokens=20, stream=True))
        assert_hidden(repr(c))
    assert info.value.status_code == 401 and "***" in info.value.body
    assert relay.seen == [KEY, KEY]
    assert_hidden(exception_text(info.value), exception_text(streamed.value), stored_text(log_dir),
                  everything_logged.text)


@pytest.mark.parametrize("header", ["api-key", "x-api-key", "Authorization"])
@pytest.mark.parametrize("gzip", [False, True])
def test_every_key_header_is_redacted_from_the_answer_and_the_row(tmp_path, header, gzip):
    log_dir = tmp_path / "log"
    value = f"Bearer {KEY}" if header == "Authorization" else KEY
    with EchoRelay(gzip=gzip) as relay, httpx2.Client(
            base_url=relay.base_url, headers={header: value},
            transport=hs.MeteredTransport(log_dir=log_dir)) as http:
        r = http.post("/chat/completions", json=BODY)
    assert relay.seen == [KEY]
    assert r.status_code == 401 and r.json()["error"]["param"] == "***"  # still valid JSON, decoded
    assert_hidden(r.text, stored_text(log_dir))


def test_basic_credentials_in_the_url_are_redacted(tmp_path):
    log_dir = tmp_path / "log"
    with EchoRelay() as relay, httpx2.Client(transport=hs.MeteredTransport(log_dir=log_dir)) as http:
        url = relay.base_url.replace("http://", f"http://alice:{KEY}@") + "/chat/completions"
        r = http.post(url, json=BODY)
    assert relay.seen == [KEY]  # httpx2 sent them as Basic
    assert_hidden(r.text, stored_text(log_dir))


def test_a_key_seen_by_the_transport_is_redacted_from_failures_too(tmp_path):
    # The metering learns each request's key: text it stores later (a failure's message) is
    # redacted even when the key is not key-shaped and the caller never told it.
    transport = hs.MeteredTransport(log_dir=tmp_path / "log")
    with EchoRelay() as relay, httpx2.Client(base_url=relay.base_url, transport=transport,
                                            headers={"Authorization": f"Bearer {KEY}"}) as http:
        http.post("/chat/completions", json=BODY)
    assert KEY in transport.metering.secrets
    assert_hidden(redact(f"connection to relay with {KEY} reset", *transport.metering.secrets))


@pytest.mark.parametrize("url", ["ftp://alice:{key}@relay.example/v1", "relay.example/v1?key={key}",
                                 "https://alice:{key}@relay.example:99999/v1", "https://{key}@/v1"])
def test_a_bad_base_url_error_shows_no_credentials(url):
    with pytest.raises(hs.ConfigError, match="base_url") as info:
        hs.Client(api_key="k", base_url=url.format(key=KEY))
    assert_hidden(str(info.value))


def test_the_client_repr_shows_the_url_without_credentials(tmp_path):
    c = hs.Client(api_key=KEY, base_url=f"https://alice:{KEY}@relay.example/v1", log_dir=tmp_path / "log")
    try:
        assert "https://relay.example/v1" in repr(c)
        assert_hidden(repr(c))
    finally:
        c.close()


@pytest.mark.parametrize(("text", "shown"), [
    ("https://user:pass@host/v1", "https://host/v1"),
    ("see https://user:p@ss@host:8/v1 now", "see https://host:8/v1 now"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("https://token@relay.example/v1", "https://relay.example/v1"),
    ("https://g.example/v1?key=AIzaSecret&x=1", "https://g.example/v1?key=***&x=1"),
])
def test_urls_are_shown_without_credentials(text, shown):
    assert redact(text) == shown
