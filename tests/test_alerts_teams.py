"""TeamsChannel against a local stand-in for a Teams Workflows webhook (tests/_support/chat_receivers.py)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from _support.alerting import alert, deliver
from _support.chat_receivers import FakeTeams
from _support.receivers import closed_port

import holysheep_lab as hs
from holysheep_lab.alerts import AlertManager, Level, TeamsChannel
from holysheep_lab.alerts.teams import MAX_MESSAGE_BYTES, card_style, payload_size, teams_payload
from holysheep_lab.errors import AlertDeliveryError, ConfigError

SIG = FakeTeams.SIG


def test_workflows_message_with_one_adaptive_card_on_the_wire():
    with FakeTeams() as teams:
        m = deliver(TeamsChannel(teams.url()), alert(project="nlp"))
    (call,) = teams.calls
    assert (call.method, call.status) == ("POST", 202)
    assert call.path == teams.url().removeprefix(f"http://127.0.0.1:{teams.port}")  # sig kept
    assert call.headers["Content-Type"] == "application/json; charset=utf-8"
    body = call.json()
    assert set(body) == {"type", "attachments"} and body["type"] == "message"
    (att,) = body["attachments"]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive" and att["contentUrl"] is None
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    head, text, facts, footer = card["body"]
    assert head["type"] == "Container" and head["style"] == "warning"
    (title,) = head["items"]
    assert title == {"type": "TextBlock", "text": "WARNING: daily budget (global) at 76.2%", "size": "Medium",
                     "weight": "Bolder", "color": "warning", "wrap": True}
    assert text["text"].endswith("— $7.62 of $10.00; resets 2026-11-29 00:00 Europe/Berlin")
    assert facts["type"] == "FactSet"
    assert {f["title"]: f["value"] for f in facts["facts"]} == {
        "Spent": "$7.62 of $10.00 (76.2%)", "In flight": "$0.1200", "Level": "WARNING (at 75%)",
        "Scope": "global", "Window": "day:2026-11-28", "Resets": "2026-11-29 00:00 Europe/Berlin",
        "Project": "nlp", "Model": "gpt-4.1",
    }
    assert "2026-11-28 14:03:07 UTC" in footer["text"] and footer["isSubtle"] is True
    assert teams.cards == [card]
    assert [(d.ok, d.attempts, d.error) for d in m.deliveries] == [(True, 1, None)]


def test_level_styles():
    assert [card_style(lv) for lv in (Level.INFO, Level.WARNING, Level.CRITICAL, Level.EMERGENCY)] == [
        "accent", "warning", "attention", "attention"]
    # Levels with their own colour: by threshold band.
    assert [card_style(Level(n, t, 0x123456)) for n, t in (("a", 0.3), ("b", 0.8), ("c", 0.95))] == [
        "accent", "warning", "attention"]
    card = teams_payload(alert(Level.EMERGENCY, spent="9.9"))["attachments"][0]["content"]
    assert card["body"][0]["style"] == "attention" and card["body"][0]["items"][0]["color"] == "attention"


def test_long_names_stay_under_the_teams_size_limit():
    big = alert(project="🍣" * 20000, model="\\" * 20000, scope="project:" + '"' * 20000)
    payload = teams_payload(big)
    encoded = json.dumps(payload, ensure_ascii=False)
    assert payload_size(payload) <= MAX_MESSAGE_BYTES / 2  # far below, even counted as UTF-16
    assert len(encoded.encode("utf-8")) <= payload_size(payload)
    facts = payload["attachments"][0]["content"]["body"][2]["facts"]
    assert all(len(f["value"]) <= 300 for f in facts) and facts[-2]["value"].endswith("…")
    with FakeTeams() as teams:  # the stand-in answers 413 above 28 KB
        m = deliver(TeamsChannel(teams.url()), big)
    assert [c.status for c in teams.calls] == [202] and m.deliveries[0].ok


# ---------------------------------------------------------------- failures


def test_wrong_signature_says_to_copy_the_url_again_and_is_not_retried():
    with FakeTeams() as teams:
        m = deliver(TeamsChannel(teams.url(sig="WrongSignature123")), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1) and [c.status for c in teams.calls] == [401]
    assert d.error.startswith(f"teams:127.0.0.1: HTTP 401 from http://127.0.0.1:{teams.port}/…")
    assert "copy the URL again from the flow's trigger" in d.error
    assert "WrongSignature123" not in d.error and "/workflows/" not in d.error


def test_deleted_workflow_says_so():
    with FakeTeams() as teams:
        url = teams.url(path="/workflows/0000/triggers/manual/paths/invoke")
        m = deliver(TeamsChannel(url), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1)
    assert "HTTP 404" in d.error and "deleted or turned off" in d.error


@pytest.mark.parametrize(("status", "needle"), [
    (400, "When a Teams webhook request is received"),
    (403, "owner can still post"),
    (413, "larger than Teams accepts"),
])
def test_other_refusals_name_the_fix(status, needle):
    with FakeTeams([status]) as teams:
        m = deliver(TeamsChannel(teams.url()), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1)
    assert f"HTTP {status}" in d.error and needle in d.error and SIG not in d.error


def test_429_is_retried_after_retry_after():
    with FakeTeams([429], retry_after="0.4") as teams:
        m = deliver(TeamsChannel(teams.url()), alert(), max_attempts=2)
    first, second = teams.calls
    assert (first.status, second.status) == (429, 202)
    assert second.at - first.at >= 0.35
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 2)]


def test_500_then_202_is_retried():
    with FakeTeams([500, 502]) as teams:
        m = deliver(TeamsChannel(teams.url()), alert(), max_attempts=3)
    assert [c.status for c in teams.calls] == [500, 502, 202]
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 3)]
    assert len(teams.cards) == 1


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(("url", "needle"), [
    ("", "it is empty"),
    ("   ", "it is empty"),
    (None, "it is empty"),
    ("http://prod-01.westus.logic.azure.com/workflows/x?sig=" + SIG, "plain http:// is only allowed"),
    ("ftp://prod-01.westus.logic.azure.com/workflows/x?sig=" + SIG, "got a ftp URL"),
    ("https:///workflows/x?sig=" + SIG, "got a https URL"),
    ("prod-01.westus.logic.azure.com/workflows/x?sig=" + SIG, "scheme-less"),
    ("https://prod-01.westus.logic.azure.com/x?sig=" + SIG + "\r\nX-Evil: 1", "line break"),
])
def test_url_is_checked_at_construction(url, needle):
    with pytest.raises(ConfigError) as info:
        TeamsChannel(url)
    assert needle in str(info.value) and SIG not in str(info.value)


def test_https_and_loopback_http_are_accepted():
    ch = TeamsChannel(f"https://prod-01.westus.logic.azure.com:443/workflows/x/triggers/manual/paths/invoke?sig={SIG}")
    assert ch.name == "teams:prod-01.westus.logic.azure.com"
    assert TeamsChannel(f"http://localhost:9/hook?sig={SIG}", name="teams-ml").name == "teams-ml"


# ---------------------------------------------------------------- secrets


def test_the_webhook_url_is_never_written(caplog):
    with caplog.at_level(logging.DEBUG), FakeTeams([500, 500, 500, 400]) as teams:
        ch = TeamsChannel(teams.url(), timeout=1)
        down = TeamsChannel(f"http://127.0.0.1:{closed_port()}{teams.path}?sig={SIG}", name="down", timeout=1)
        m = AlertManager([ch, down], cooldown=0, max_attempts=2, backoff=0.01)
        m.fire(alert())
        m.fire(alert(Level.CRITICAL, spent="9.5"))
        assert m.flush(20)
        texts = [repr(ch), str(ch), repr(down), repr(m), caplog.text]
        texts += [d.error or "" for d in m.deliveries]
        with pytest.raises(AlertDeliveryError) as info:
            asyncio.run(down.send(alert()))
        texts.append(str(info.value))
        m.close()
    assert sum(not d.ok for d in m.deliveries) >= 3 and caplog.text
    for text in texts:
        assert SIG not in text and "/workflows/" not in text and FakeTeams.WORKFLOW not in text
    assert repr(ch) == f"TeamsChannel(url='http://127.0.0.1:{teams.port}/…', timeout=1)"


def test_public_names():
    assert hs.TeamsChannel is TeamsChannel and "TeamsChannel" in hs.__all__
