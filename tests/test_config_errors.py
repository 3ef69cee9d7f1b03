"""Every invalid setting is a named ConfigError at construction, never silent, never a raw error later.

One parametrised test: each case builds the object (or makes the call) with one bad setting and
expects a ConfigError (also a ValueError) whose message names that setting, so the user knows
what to fix. Cases cover the list of issue 10 and the ones like them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx2
import pytest

import holysheep_lab as hs
from holysheep_lab.alerts import EmailChannel, LineChannel, WebhookChannel
from holysheep_lab.core.pricing import Tier
from holysheep_lab.errors import ConfigError
from holysheep_lab.serve import make_app, serve

NAN, INF = math.nan, math.inf
OFFLINE = "http://127.0.0.1:9/v1"  # nothing listens: a case that sent anything would fail differently


def client(**kw: Any) -> hs.Client:
    return hs.Client(api_key=kw.pop("api_key", "k"), base_url=kw.pop("base_url", OFFLINE), **kw)


def chat(**params: Any) -> Callable[[], Any]:
    def call() -> Any:
        with client() as c:
            return c.chat("gpt-4.1", "hi", **{"max_tokens": 10, **params})
    return call


def price_table(prices: dict[str, Any]) -> Callable[[], Any]:
    return lambda: hs.PriceTable(prices)


CASES: list[tuple[str, Callable[[], Any], str]] = [
    # -- timeouts and backoffs: NaN, inf, negative, zero
    *[(f"client-timeout-{v}", lambda v=v: client(timeout=v), "Client timeout") for v in (NAN, INF, -1, 0, "30")],
    *[(f"retry-{field}-{v}", lambda f=field, v=v: hs.Retry(**{f: v}), f"Retry.{field}")
      for field in ("backoff", "max_backoff", "max_total") for v in (NAN, INF, -0.5)],
    ("retry-max-attempts-0", lambda: hs.Retry(max_attempts=0), "Retry.max_attempts"),
    ("retry-statuses-str", lambda: hs.Retry(retry_statuses="429"), "Retry.retry_statuses"),
    ("retry-statuses-200", lambda: hs.Retry(retry_statuses={200, 429}), "Retry.retry_statuses"),
    ("retry-timeouts-str", lambda: hs.Retry(retry_timeouts="yes"), "Retry.retry_timeouts"),
    *[(f"ratelimit-{field}-{v}", lambda f=field, v=v: hs.RateLimit(**{f: v}), f"RateLimit.{field}")
      for field in ("rpm", "tpm") for v in (NAN, INF, -1, 0, 1.5)],
    *[(f"alerts-{field}-{v}", lambda f=field, v=v: hs.AlertManager(**{f: v}), f"AlertManager {field}")
      for field in ("cooldown", "backoff", "attempt_timeout") for v in (NAN, INF, -1)],
    ("alerts-attempt-timeout-0", lambda: hs.AlertManager(attempt_timeout=0), "AlertManager attempt_timeout"),
    ("alerts-max-attempts-0", lambda: hs.AlertManager(max_attempts=0), "AlertManager max_attempts"),
    ("alerts-clock", lambda: hs.AlertManager(clock=5), "AlertManager clock"),
    ("alerts-tz-str", lambda: hs.AlertManager(tz="Europe/Berlin"), "AlertManager tz"),
    ("webhook-timeout", lambda: WebhookChannel("https://hooks.slack.com/services/T/B/x", timeout=NAN),
     "WebhookChannel timeout"),
    ("email-timeout", lambda: EmailChannel("smtp.example.com", sender="a@example.com", to="b@example.com",
                                           timeout=-1), "EmailChannel timeout"),
    ("line-timeout", lambda: LineChannel("token", "U" + "0" * 32, timeout=INF), "LineChannel timeout"),
    ("sqlite-timeout", lambda: hs.SQLiteLedger("budget.db", timeout=NAN), "SQLiteLedger timeout"),
    ("sqlite-path", lambda: hs.SQLiteLedger(5), "SQLiteLedger path"),
    ("redis-timeout", lambda: hs.RedisLedger(socket_timeout=-1), "RedisLedger socket_timeout"),
    # -- budgets
    ("budget-tz-int", lambda: hs.Budget(tz=5), "tz"),
    ("budget-tz-unknown", lambda: hs.Budget(tz="Mars/Olympus"), "time zone"),
    ("budget-daily-sub-nano", lambda: hs.Budget(daily=1e-12), "Budget.daily"),
    ("budget-monthly-sub-nano", lambda: hs.Budget(daily=None, monthly=5e-10), "Budget.monthly"),
    ("budget-daily-nan", lambda: hs.Budget(daily=NAN), "Budget.daily"),
    ("budget-block-at-nan", lambda: hs.Budget(block_at=NAN), "Budget.block_at"),
    ("budget-projects-str", lambda: hs.Budget(projects="nlp"), "Budget.projects"),
    ("budget-projects-name", lambda: hs.Budget(projects={"": hs.Budget()}), "Budget.projects"),
    # -- the client's other options
    ("client-ledger-str", lambda: client(ledger="x.db"), 'hs.SQLiteLedger("x.db")'),
    ("client-ledger-object", lambda: client(ledger=object()), "ledger"),
    ("client-alerts", lambda: client(alerts=[hs.NotebookChannel()]), "alerts"),
    ("client-budget-dict", lambda: client(budget={"daily": 5}), "budget"),
    ("client-project-empty", lambda: client(project=" "), "project"),
    ("client-log-dir", lambda: client(log_dir=5), "log_dir"),
    ("client-api-key-space", lambda: client(api_key="my key"), "api_key"),
    ("client-api-key-newline", lambda: client(api_key="k\r\nX-Evil: 1"), "api_key"),
    ("client-base-url-port", lambda: client(base_url="https://relay.example:99999/v1"), "base_url"),
    ("client-base-url-no-host", lambda: client(base_url="https:///v1"), "base_url"),
    ("client-transport", lambda: client(transport=httpx2.AsyncHTTPTransport()), "transport"),
    ("client-async-transport", lambda: client(async_transport=httpx2.AsyncHTTPTransport()), "async_transport"),
    ("client-allow-unpriced", lambda: client(allow_unpriced="no"), "allow_unpriced"),
    ("client-log-content", lambda: client(log_content=1), "log_content"),
    ("transport-sync-inner", lambda: hs.MeteredTransport(httpx2.AsyncHTTPTransport()), "MeteredTransport"),
    ("transport-async-inner", lambda: hs.AsyncMeteredTransport(httpx2.HTTPTransport()), "AsyncMeteredTransport"),
    ("callback-name", lambda: hs.CallbackChannel(print, name=""), "CallbackChannel name"),
    # -- request parameters: refused before anything is sent
    *[(f"chat-n-{v}", chat(n=v), "n (answers per request)") for v in (-3, 0, True, 1.5)],
    ("chat-max-tokens-negative", chat(max_tokens=-5), "max_tokens"),
    *[(f"chat-temperature-{v}", chat(temperature=v), "temperature") for v in (NAN, INF, "hot")],
    # -- prices
    ("price-cached-above-input", lambda: hs.Price(input=1, output=1, cached_input=2), "Price.cached_input"),
    ("tier-cached-above-input", lambda: hs.Price(1, 1, tiers=[Tier(1000, input=2, cached_input=3)]),
     "Price.cached_input"),
    ("tier-input-below-base-cached", lambda: hs.Price(4, 1, 3, tiers=[Tier(1000, input=2)]), "Price.cached_input"),
    ("prices-case-collision", price_table({"GPT-X": hs.Price(1, 1), "gpt-x": hs.Price(2, 2)}), "differ only in case"),
    ("prices-case-collision-extend", lambda: hs.PriceTable.default().extend({"My-Model": hs.Price(1, 1),
                                                                              "my-model": hs.Price(1, 2)}),
     "differ only in case"),
    ("client-prices-case-collision", lambda: client(prices={"Relay-M": hs.Price(1, 1), "relay-m": hs.Price(1, 1)}),
     "differ only in case"),
    # -- serve
    ("serve-token-space", lambda: make_app(".", token="two words"), "token"),
    ("serve-port", lambda: serve(".", port=70_000), "port"),
]


@pytest.mark.parametrize(("build", "setting"), [pytest.param(b, s, id=i) for i, b, s in CASES])
def test_an_invalid_setting_is_a_named_config_error(build, setting):
    with pytest.raises(ConfigError) as info:
        build()
    assert isinstance(info.value, ValueError)
    assert setting in str(info.value), str(info.value)


def test_the_ledger_message_says_what_to_write():
    with pytest.raises(ConfigError) as info:
        client(ledger="x.db")
    assert "a string is not a ledger" in str(info.value)


def test_valid_edge_settings_are_accepted(tmp_path):
    # The checks refuse what cannot work, nothing more.
    assert hs.Budget(daily=1e-9, monthly=None).daily == Decimal("1e-9")
    assert hs.Budget(tz=timezone(timedelta(minutes=7))).zone.utcoffset(None) == timedelta(minutes=7)
    assert hs.Price(1, 1, 1).cached_input == 1  # a cache read at the input price is fine
    assert hs.Retry(backoff=0, max_total=0).backoff == 0
    assert hs.PriceTable({"GPT-X": hs.Price(1, 1)}).price("GPT-X").input == 1
    hs.AlertManager(cooldown=0, backoff=0).close()
    with client(timeout=0.5, log_dir=tmp_path / "log", ledger=hs.MemoryLedger()) as c:
        assert c.estimate("gpt-4.1", "hi", max_tokens=10, n=2).output_tokens_bound == 20
