"""LineChannel against a local stand-in for the LINE Messaging API (tests/_support/chat_receivers.py)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from _support.alerting import alert, deliver
from _support.chat_receivers import UUID, FakeLine, utf16_len
from _support.receivers import closed_port

import holysheep_lab as hs
from holysheep_lab.alerts import AlertManager, Level, LineChannel
from holysheep_lab.alerts.line import line_flex_message, line_text_message
from holysheep_lab.errors import AlertDeliveryError, ConfigError

TOKEN = "LiNeTokEn0123456789abcdefghijklmnopqrstuvwxyzSECRET/+="
GROUP = "C" + "0123456789abcdef" * 2
ROOM = "R" + "fedcba9876543210" * 2
USER1 = "U" + "1" * 32
USER2 = "U" + "2" * 32


def channel(line: FakeLine, to=GROUP, **kw) -> LineChannel:
    return LineChannel(TOKEN, to, api_base=line.base_url, **kw)


def rows(flex: dict) -> dict[str, str]:
    return {r["contents"][0]["text"]: r["contents"][1]["text"] for r in flex["contents"]["body"]["contents"]}


# ---------------------------------------------------------------- on the wire


def test_push_request_is_what_line_documents():
    with FakeLine(TOKEN) as line:
        m = deliver(channel(line), alert(project="nlp"))
    (call,) = line.calls
    assert (call.method, call.path, call.status) == ("POST", "/v2/bot/message/push", 200)
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.headers["Content-Type"] == "application/json"
    assert UUID.fullmatch(call.headers["X-Line-Retry-Key"])
    body = call.json()
    assert set(body) == {"to", "messages"} and body["to"] == GROUP
    (flex,) = body["messages"]
    assert flex["type"] == "flex" and set(flex) == {"type", "altText", "contents"}
    assert flex["altText"] == ("WARNING: daily budget (global) at 76.2% — $7.62 of $10.00; "
                               "resets 2026-11-29 00:00 Europe/Berlin")
    bubble = flex["contents"]
    assert bubble["type"] == "bubble" and set(bubble) == {"type", "header", "body", "footer"}
    header = bubble["header"]
    assert header["backgroundColor"] == "#F1C40F"
    assert [t["text"] for t in header["contents"]] == ["WARNING · 76.2%", "WARNING: daily budget (global) at 76.2%"]
    assert rows(flex) == {
        "Spent": "$7.62 of $10.00 (76.2%)", "In flight": "$0.1200", "Level": "WARNING (at 75%)",
        "Scope": "global", "Window": "day:2026-11-28", "Resets": "2026-11-29 00:00 Europe/Berlin",
        "Project": "nlp", "Model": "gpt-4.1",
    }
    assert "2026-11-28 14:03 UTC" in bubble["footer"]["contents"][0]["text"]
    assert [(d.ok, d.attempts, d.error) for d in m.deliveries] == [(True, 1, None)]
    assert len(line.accepted) == 1


def test_level_colours_and_readable_ink():
    colours = {lv.name: line_flex_message(alert(lv))["contents"]["header"] for lv in
               (Level.INFO, Level.WARNING, Level.CRITICAL, Level.EMERGENCY)}
    assert {k: h["backgroundColor"] for k, h in colours.items()} == {
        "INFO": "#3498DB", "WARNING": "#F1C40F", "CRITICAL": "#E67E22", "EMERGENCY": "#E74C3C"}
    # Dark text on amber, white on the darker colours.
    assert {k: h["contents"][0]["color"] for k, h in colours.items()} == {
        "INFO": "#FFFFFF", "WARNING": "#111111", "CRITICAL": "#FFFFFF", "EMERGENCY": "#FFFFFF"}


def test_text_style_sends_one_text_message():
    with FakeLine(TOKEN) as line:
        deliver(channel(line, style="text"), alert())
    (msg,) = line.accepted[0]["messages"]
    assert msg["type"] == "text" and set(msg) == {"type", "text"}
    lines = msg["text"].split("\n")
    assert lines[0].startswith("WARNING: daily budget (global) at 76.2% — $7.62 of $10.00")
    assert "Spent: $7.62 of $10.00 (76.2%)" in lines and "Window: day:2026-11-28" in lines
    assert "Resets: 2026-11-29 00:00 Europe/Berlin" in lines


def test_long_names_stay_within_line_limits_counted_in_utf16():
    # 🍣 is one code point but two UTF-16 units: LINE's 5,000 counts units.
    big = alert(project="🍣" * 6000, model="m\n" * 3000, scope="project:" + "x" * 5000)
    text = line_text_message(big)["text"]
    assert utf16_len(text) <= 5000 and text.endswith("…")
    assert utf16_len(text) >= 4999  # clipped, not truncated far below the limit
    flex = line_flex_message(big)
    assert utf16_len(flex["altText"]) <= 400
    assert len(json.dumps(flex["contents"], ensure_ascii=False).encode()) < 30 * 1024
    assert "\n" not in rows(flex)["Model"]
    with FakeLine(TOKEN) as line:  # the stand-in enforces the limits as LINE does
        deliver(channel(line), big)
        deliver(channel(line, style="text"), big)
    assert [c.status for c in line.calls] == [200, 200]


# ---------------------------------------------------------------- retry keys


def test_retries_of_one_alert_reuse_its_retry_key():
    with FakeLine(TOKEN, [500, 503]) as line:
        m = deliver(channel(line), alert(), max_attempts=3)
    assert [c.status for c in line.calls] == [500, 503, 200]
    keys = {c.headers["X-Line-Retry-Key"] for c in line.calls}
    assert len(keys) == 1
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 3)]


def test_each_alert_gets_a_fresh_retry_key():
    with FakeLine(TOKEN) as line:
        ch = channel(line)
        deliver(ch, alert(Level.WARNING))
        deliver(ch, alert(Level.WARNING))  # an equal alert, fired again: a new push
        deliver(ch, alert(Level.CRITICAL, spent="9.10"))
    keys = [c.headers["X-Line-Retry-Key"] for c in line.calls]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert len(line.accepted) == 3


def test_a_lost_answer_then_409_counts_as_delivered_once():
    # LINE accepted the push, but the answer was lost (500): the retry with the same key
    # gets 409, which means "already accepted". Shown once, recorded as delivered.
    with FakeLine(TOKEN, ["accept-then-500"]) as line:
        m = deliver(channel(line), alert(), max_attempts=3)
    assert [c.status for c in line.calls] == [500, 409]
    assert line.calls[0].headers["X-Line-Retry-Key"] == line.calls[1].headers["X-Line-Retry-Key"]
    assert len(line.accepted) == 1
    assert [(d.ok, d.attempts, d.error) for d in m.deliveries] == [(True, 2, None)]


# ---------------------------------------------------------------- failures


def test_429_is_retried_after_retry_after_with_the_same_key():
    with FakeLine(TOKEN, [429], retry_after="0.4") as line:
        m = deliver(channel(line), alert(), max_attempts=2)
    first, second = line.calls
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.35  # the manager's own backoff would be ~0.01 s
    assert first.headers["X-Line-Retry-Key"] == second.headers["X-Line-Retry-Key"]
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 2)]


def test_monthly_quota_429_is_not_retried_and_says_so():
    with FakeLine(TOKEN, ["monthly"]) as line:
        m = deliver(channel(line), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1) and len(line.calls) == 1
    assert "HTTP 429" in d.error and "month's message quota" in d.error
    assert "You have reached your monthly limit." in d.error


def test_401_names_the_token_fix_and_is_not_retried():
    wrong = "WrongTokenValue0123456789"
    with FakeLine(TOKEN) as line:
        m = deliver(LineChannel(wrong, GROUP, api_base=line.base_url), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1) and [c.status for c in line.calls] == [401]
    assert d.error.startswith("line:C01234567: C01234567…: HTTP 401: LINE refused the channel access token")
    assert "LINE Developers Console" in d.error and "channel_access_token" in d.error
    assert wrong not in d.error and TOKEN not in d.error


def test_403_names_the_group_membership_fix():
    with FakeLine(TOKEN, [403]) as line:
        m = deliver(channel(line), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1)
    assert "C01234567…: HTTP 403: LINE forbids this push" in d.error
    assert "bot is still a member of that group" in d.error and "invite it again" in d.error
    assert "(LINE: Access to this API is not available for your account)" in d.error


def test_400_invalid_to_names_the_id_fix():
    # A well-formed id this bot cannot reach (another provider's id, or it left the group).
    with FakeLine(TOKEN, members=[USER1]) as line:
        m = deliver(channel(line), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1) and [c.status for c in line.calls] == [400]
    assert "C01234567…: HTTP 400: not a recipient this bot can reach" in d.error
    assert "webhook events" in d.error and "The property, 'to', in the request body is invalid" in d.error


def test_500_is_retried_then_recorded():
    with FakeLine(TOKEN, [500, 500, 500]) as line:
        m = deliver(channel(line), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 3) and len(line.calls) == 3
    assert "HTTP 500: LINE had a server error (LINE: Internal server error)" in d.error


def test_unreachable_api_is_a_retryable_error():
    ch = LineChannel(TOKEN, GROUP, api_base=f"http://127.0.0.1:{closed_port()}", timeout=1)
    with pytest.raises(AlertDeliveryError) as info:
        asyncio.run(ch.send(alert()))
    assert info.value.retryable is True
    assert "ConnectError posting to http://127.0.0.1:" in str(info.value)


# ---------------------------------------------------------------- several recipients


def test_several_ids_get_one_push_each_with_their_own_key():
    with FakeLine(TOKEN) as line:
        ch = channel(line, [GROUP, USER1, ROOM, GROUP])  # duplicates are dropped
        m = deliver(ch, alert())
    assert sorted(c.path for c in line.calls) == ["/v2/bot/message/push"] * 3
    assert sorted(a["to"] for a in line.accepted) == sorted([GROUP, USER1, ROOM])
    assert len({c.headers["X-Line-Retry-Key"] for c in line.calls}) == 3
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 1)]
    assert ch.name == "line:C01234567+2"


def test_a_retry_asks_only_the_recipients_that_failed():
    with FakeLine(TOKEN, fail_first={USER1: 500}) as line:
        m = deliver(channel(line, [GROUP, USER1]), alert(), max_attempts=3)
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 2)]
    to_user = [c for c in line.calls if c.json()["to"] == USER1]
    to_group = [c for c in line.calls if c.json()["to"] == GROUP]
    assert len(to_group) == 1 and [c.status for c in to_user] == [500, 200]
    assert to_user[0].headers["X-Line-Retry-Key"] == to_user[1].headers["X-Line-Retry-Key"]
    assert sorted(a["to"] for a in line.accepted) == sorted([GROUP, USER1])


def test_one_unreachable_recipient_fails_the_delivery_but_not_the_others():
    with FakeLine(TOKEN, members=[GROUP]) as line:
        m = deliver(channel(line, [GROUP, USER1]), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1)
    assert d.error.startswith("line:C01234567+1: 1 of 2 LINE requests failed: U11111111…: HTTP 400: not a recipient")
    assert [a["to"] for a in line.accepted] == [GROUP]


def test_multicast_sends_user_ids_in_batches_of_500_and_pushes_groups():
    users = [f"U{n:032x}" for n in range(1, 1203)]  # 1,202 users: 500 + 500 + 202
    with FakeLine(TOKEN) as line:
        m = deliver(channel(line, [GROUP, *users, ROOM], multicast=True), alert())
    multicasts = [a for a in line.accepted if a["path"] == "/v2/bot/message/multicast"]
    pushes = [a for a in line.accepted if a["path"] == "/v2/bot/message/push"]
    assert sorted(len(a["to"]) for a in multicasts) == [202, 500, 500]
    assert sorted(i for a in multicasts for i in a["to"]) == users
    assert sorted(a["to"] for a in pushes) == sorted([GROUP, ROOM])
    assert len({c.headers["X-Line-Retry-Key"] for c in line.calls}) == 5
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 1)]


def test_multicast_of_one_user_is_a_push():
    with FakeLine(TOKEN) as line:
        deliver(channel(line, [USER1, GROUP], multicast=True), alert())
    assert sorted(a["path"] for a in line.accepted) == ["/v2/bot/message/push"] * 2


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"channel_access_token": ""}, "channel_access_token is empty"),
    ({"channel_access_token": "   "}, "channel_access_token is empty"),
    ({"channel_access_token": None}, "channel_access_token is empty"),
    ({"channel_access_token": "Bearer abc"}, "without 'Bearer '"),
    ({"channel_access_token": "abc\r\nX-Evil: 1"}, "line breaks"),
    ({"to": []}, "to is empty"),
    ({"to": ""}, "is not a LINE user, group or room id"),
    ({"to": "@mybot"}, "not the @LINE ID"),
    ({"to": [GROUP, "C123"]}, "to[1] 'C123' is not a LINE user, group or room id"),
    ({"to": GROUP.upper()}, "is not a LINE user, group or room id"),
    ({"to": 42}, "to must be a LINE id or a list"),
    ({"api_base": "ftp://api.line.me"}, "got a ftp URL"),
    ({"api_base": "api.line.me"}, "got a scheme-less URL"),
    ({"api_base": "http://api.line.me"}, "plain http would send the token unencrypted"),
    ({"api_base": "https://user:pw@api.line.me"}, "without user info"),
    ({"api_base": "https://api.line.me/?x=1"}, "without user info, query or fragment"),
    ({"api_base": "https://api.line.me:http"}, "port is not a number"),
    ({"style": "carousel"}, "style must be 'flex' or 'text'"),
    ({"timeout": 0}, "timeout must be a positive number"),
    ({"timeout": float("nan")}, "timeout must be a positive number"),
])
def test_settings_are_checked_at_construction(kwargs, needle):
    args = {"channel_access_token": TOKEN, "to": GROUP, **kwargs}
    with pytest.raises(ConfigError) as info:
        LineChannel(args.pop("channel_access_token"), args.pop("to"), **args)
    assert needle in str(info.value)
    assert TOKEN not in str(info.value)


def test_a_token_passed_as_to_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        LineChannel(TOKEN, TOKEN)  # arguments swapped
    assert TOKEN not in str(info.value) and "to[0] is not a LINE" in str(info.value)


def test_loopback_http_and_a_path_prefix_are_allowed():
    ch = LineChannel(TOKEN, GROUP, api_base="http://localhost:8080/line/")
    assert ch.api_base == "http://localhost:8080/line"
    assert LineChannel(TOKEN, GROUP).api_base == "https://api.line.me"


# ---------------------------------------------------------------- secrets


def test_the_token_is_never_written(caplog):
    with caplog.at_level(logging.DEBUG), FakeLine(TOKEN, ["echo-token", 500, 500, 429]) as line:
        ch = channel(line, [GROUP, USER1])
        down = LineChannel(TOKEN, ROOM, api_base=f"http://127.0.0.1:{closed_port()}", timeout=1)
        m = AlertManager([ch, down], cooldown=0, max_attempts=3, backoff=0.01)
        m.fire(alert())
        m.fire(alert(Level.CRITICAL, spent="9.5"))
        assert m.flush(20)
        texts = [repr(ch), str(ch), repr(down), repr(m), caplog.text]
        texts += [d.error or "" for d in m.deliveries]
        with pytest.raises(AlertDeliveryError) as info:
            asyncio.run(down.send(alert()))
        texts.append(str(info.value))
        m.close()
    assert any("bad request for channel token ***" in t for t in texts)  # the echo, redacted
    assert any(not d.ok for d in m.deliveries) and caplog.text
    for text in texts:
        assert TOKEN not in text
    assert "channel_access_token=***" in repr(ch)


# ---------------------------------------------------------------- end to end


def test_a_client_crossing_warning_and_critical_pushes_once_per_level(log_dir):
    with FakeLine(TOKEN) as line:
        alerts = hs.AlertManager(channels=[hs.LineChannel(TOKEN, GROUP, api_base=line.base_url)],
                                 levels=[("WARNING", 0.75), ("CRITICAL", 0.9)], cooldown=0)
        budget = hs.Budget(daily=0.01, monthly=None, alert_at=0.99, block_at=1.0)
        with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget,
                                              alerts=alerts) as client:
            calls = 0
            for _ in range(300):  # until the budget refuses: far past both levels
                try:
                    client.chat("gpt-4.1", "word " * 20, max_tokens=20)
                    calls += 1
                except hs.BudgetExceededError:
                    break
            assert alerts.flush(10)
        alerts.close()
    assert calls > 10
    headers = [a["messages"][0]["contents"]["header"]["contents"][0]["text"] for a in line.accepted]
    assert sorted(h.split(" · ")[0] for h in headers) == ["CRITICAL", "WARNING"]
    assert [c.status for c in line.calls] == [200, 200]
    assert all(a["to"] == GROUP for a in line.accepted)
    assert len({a["retry_key"] for a in line.accepted}) == 2
    assert [(d.ok, d.attempts) for d in alerts.deliveries] == [(True, 1), (True, 1)]


def test_public_names():
    assert hs.LineChannel is LineChannel and "LineChannel" in hs.__all__
    assert "LineChannel" in dir(hs)
