"""Alert channels against real receivers: an aiohttp webhook server and aiosmtpd on loopback."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from _support.alerting import RESETS, TS, alert, deliver
from _support.receivers import SMTPReceiver, WebhookReceiver, closed_port, self_signed_cert
from conftest import require_ci_tool

from holysheep_lab.alerts import (
    Alert,
    AlertManager,
    CallbackChannel,
    EmailChannel,
    Level,
    NotebookChannel,
    WebhookChannel,
)
from holysheep_lab.alerts.styles import DiscordStyle, GenericStyle, SlackStyle, WebhookStyle
from holysheep_lab.errors import AlertDeliveryError, ConfigError

TOKEN = "s3cretTOKENxyz"


# ---------------------------------------------------------------- webhook payloads


def test_slack_payload_shape_on_the_wire():
    with WebhookReceiver() as rx:
        ch = WebhookChannel(rx.url(), style="slack", headers={"X-Team": "ml"})
        m = deliver(ch, alert(project="<!channel> & co"))
    (req,) = rx.requests
    assert req.path == f"/services/T0001/B0002/{TOKEN}"
    assert req.headers["Content-Type"] == "application/json" and req.headers["X-Team"] == "ml"
    body = req.json()
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("WARNING: daily budget (global) at 76.2% — $7.62 of $10.00; resets 2026-11-29 00:00")
    header, section, context = body["blocks"]
    title = "WARNING: daily budget (global) at 76.2%"
    assert header == {"type": "header", "text": {"type": "plain_text", "text": title}}
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in section["fields"]}
    assert all(f["type"] == "mrkdwn" for f in section["fields"]) and len(section["fields"]) <= 10
    assert fields["*Spent*"] == "$7.62 of $10.00 (76.2%)"
    assert fields["*In flight*"] == "$0.1200"  # 4 significant digits under $1
    assert fields["*Resets*"] == "2026-11-29 00:00 Europe/Berlin"
    assert fields["*Project*"] == "&lt;!channel&gt; &amp; co"  # no @channel ping from a project name
    assert context["type"] == "context" and context["elements"][0]["type"] == "mrkdwn"
    assert "2026-11-28 14:03:07 UTC" in context["elements"][0]["text"]
    assert [(d.ok, d.attempts, d.error) for d in m.deliveries] == [(True, 1, None)]


def test_discord_payload_shape_and_level_colours():
    with WebhookReceiver() as rx:
        ch = WebhookChannel(rx.url("/api/webhooks/123/" + TOKEN), style="discord")
        deliver(ch, alert(Level.INFO), alert(Level.WARNING), alert(Level.CRITICAL), alert(Level.EMERGENCY))
    # Separate fire() calls are delivered concurrently: match bodies by level, not order.
    bodies = {r.json()["embeds"][0]["title"].split(":")[0]: r.json() for r in rx.requests}
    assert {k: b["embeds"][0]["color"] for k, b in bodies.items()} == {
        "INFO": 0x3498DB, "WARNING": 0xF1C40F, "CRITICAL": 0xE67E22, "EMERGENCY": 0xE74C3C}
    body = bodies["WARNING"]
    assert set(body) == {"username", "allowed_mentions", "embeds"}
    assert body["username"] == "holysheep-lab" and body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    assert set(embed) == {"title", "description", "color", "fields", "timestamp", "footer"}
    assert embed["title"] == "WARNING: daily budget (global) at 76.2%"
    assert embed["description"].endswith("resets 2026-11-29 00:00 Europe/Berlin")
    assert isinstance(embed["color"], int)
    assert datetime.fromisoformat(embed["timestamp"]) == TS
    assert {"name": "Spent", "value": "$7.62 of $10.00 (76.2%)", "inline": True} in embed["fields"]
    assert {"name": "Model", "value": "gpt-4.1", "inline": True} in embed["fields"]
    assert all(len(f["value"]) <= 1024 for f in embed["fields"]) and len(embed["fields"]) <= 25


def test_generic_payload_is_plain_json():
    with WebhookReceiver() as rx:
        deliver(WebhookChannel(rx.url("/hook"), style="generic"), alert(project="nlp"))
    assert rx.requests[0].json() == {
        "source": "holysheep-lab", "level": "WARNING", "threshold": 0.75, "scope": "global",
        "window": "daily", "window_key": "day:2026-11-28", "spent": 7.62, "limit": 10.0,
        "ratio": 0.762, "reserved": 0.12, "resets_at": "2026-11-29T00:00:00+01:00",
        "ts": "2026-11-28T14:03:07+00:00", "project": "nlp", "model": "gpt-4.1",
        "title": "WARNING: daily budget (global) at 76.2%",
        "text": "WARNING: daily budget (global) at 76.2% — $7.62 of $10.00; resets 2026-11-29 00:00 Europe/Berlin",
        "refused": False,
    }


def test_one_jump_reaches_the_webhook_in_level_order():
    from holysheep_lab.core.events import SpendEvent

    ev = SpendEvent.from_usd("global", "daily", "day:2026-11-28", Decimal("1"), Decimal("9.5"), Decimal(0),
                    Decimal(10), 0.95, 0.8, RESETS, TS)
    with WebhookReceiver() as rx:
        m = AlertManager([WebhookChannel(rx.url())], cooldown=0)
        m.observe([ev])
        assert m.flush(10)
        m.close()
    assert [r.json()["blocks"][0]["text"]["text"].split(":")[0] for r in rx.requests] == [
        "INFO", "WARNING", "CRITICAL"]


# ---------------------------------------------------------------- webhook failures


def test_500_then_200_is_retried_and_recorded():
    with WebhookReceiver(statuses=[500, 429]) as rx:
        m = deliver(WebhookChannel(rx.url()), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts, d.error) == (True, 3, None)
    assert len(rx.requests) == 3


def test_retry_after_is_honoured():
    with WebhookReceiver(statuses=[429], retry_after="0.4") as rx:
        m = deliver(WebhookChannel(rx.url(), style="generic"), alert(), max_attempts=2)
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 2)]
    first, second = rx.requests
    assert second.at - first.at >= 0.35  # our own backoff would be ~0.01 s


def test_delivery_errors_carry_typed_retry_facts():
    with WebhookReceiver(statuses=[404, 429, 503], retry_after="7") as rx:
        ch = WebhookChannel(rx.url(), style="generic")
        errors = []
        for _ in range(3):
            with pytest.raises(AlertDeliveryError) as info:
                asyncio.run(ch.send(alert()))
            errors.append(info.value)
    assert [(e.status_code, e.retryable, e.retry_after) for e in errors] == [
        (404, False, 7.0), (429, True, 7.0), (503, True, 7.0)]
    with pytest.raises(AlertDeliveryError) as down:
        asyncio.run(WebhookChannel(f"http://127.0.0.1:{closed_port()}/h", timeout=1).send(alert()))
    assert (down.value.status_code, down.value.retryable, down.value.retry_after) == (None, True, None)


def test_4xx_is_not_retried_and_error_has_no_secret():
    with WebhookReceiver(statuses=[404]) as rx:
        m = deliver(WebhookChannel(rx.url()), alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1)
    assert d.error == f"webhook:slack:127.0.0.1: HTTP 404 from http://127.0.0.1:{rx.port}/…: boom"
    assert TOKEN not in d.error


def test_down_webhook_never_breaks_or_slows_the_call(caplog):
    port = closed_port()
    ch = WebhookChannel(f"http://127.0.0.1:{port}/services/T0001/B0002/{TOKEN}", style="discord", timeout=1)
    m = AlertManager([ch], cooldown=0, max_attempts=3, backoff=0.01)
    with caplog.at_level(logging.DEBUG):
        a = alert()
        t = time.perf_counter()
        m.fire(a)
        assert time.perf_counter() - t < 0.5
        assert m.flush(10)
        m.close()
    (d,) = m.deliveries
    assert not d.ok and d.attempts == 3 and "ConnectError" in (d.error or "")
    for text in (d.error or "", caplog.text, repr(ch), str(ch), repr(m)):
        assert TOKEN not in text and "/services/" not in text


def test_hanging_webhook_does_not_slow_observe_or_other_channels():
    from holysheep_lab.core.events import SpendEvent

    def crossing(day: int) -> SpendEvent:  # crosses WARNING only
        return SpendEvent.from_usd("global", "daily", f"day:2026-12-{day:02d}", Decimal("7"), Decimal("8"), Decimal(0),
                          Decimal(10), 0.95, 0.8, RESETS, TS)

    got: list[Alert] = []
    with WebhookReceiver(hang=True) as rx:
        hook = WebhookChannel(rx.url(), timeout=0.3)
        m = AlertManager([hook, CallbackChannel(got.append, name="cb")], cooldown=0, max_attempts=2, backoff=0.01)
        m.observe([crossing(1)])  # starts the worker
        assert rx.wait_for(1)
        durations = []
        for day in range(2, 22):  # every call settles while the webhook hangs
            t = time.perf_counter()
            m.observe([crossing(day)])
            durations.append(time.perf_counter() - t)
        # Typically ~50 us; asserted loosely because shared CI machines are noisy.
        assert max(durations) < 0.5
        assert sorted(durations)[len(durations) // 2] < 0.05
        assert m.flush(20)
        m.close()
    assert len(got) == 21  # the callback got every alert while the webhook hung
    hook_results = [d for d in m.deliveries if d.channel == hook.name]
    assert len(hook_results) == 21 and all(not d.ok and d.attempts == 2 for d in hook_results)
    assert "no answer from http://127.0.0.1:" in (hook_results[0].error or "")


class PagerStyle:
    """A service of our own: its body, a header it needs, and a fix for its 403."""

    name = "pager"

    def __init__(self) -> None:
        self.headers = {"X-Pager-Version": "2", "User-Agent": "pager-client"}

    def payload(self, alert: Alert) -> dict[str, object]:
        return {"summary": alert.title, "severity": alert.level.name.lower()}

    def hint(self, status: int) -> str | None:
        return "renew the pager integration key" if status == 403 else None


def test_a_style_object_shapes_the_message_and_its_errors():
    with WebhookReceiver(statuses=[403, 400]) as rx:
        ch = WebhookChannel(rx.url("/v2/enqueue"), style=PagerStyle(), headers={"User-Agent": "ours"})
        assert ch.name == "webhook:pager:127.0.0.1" and repr(ch).startswith("WebhookChannel(style='pager', ")
        m = deliver(ch, alert(), alert(Level.CRITICAL), max_attempts=1)
        deliver(ch, alert())
    bodies = sorted((r.json() for r in rx.requests), key=lambda b: b["severity"])
    assert bodies == [{"summary": "CRITICAL: daily budget (global) at 76.2%", "severity": "critical"},
                      {"summary": "WARNING: daily budget (global) at 76.2%", "severity": "warning"},
                      {"summary": "WARNING: daily budget (global) at 76.2%", "severity": "warning"}]
    assert all(r.headers["X-Pager-Version"] == "2" for r in rx.requests)
    assert all(r.headers["User-Agent"] == "ours" for r in rx.requests)  # the channel's headers win
    assert all(r.headers["Content-Type"] == "application/json" for r in rx.requests)
    errors = sorted(d.error or "" for d in m.deliveries)
    assert errors == [f"webhook:pager:127.0.0.1: HTTP 400 from http://127.0.0.1:{rx.port}/…: boom",
                      f"webhook:pager:127.0.0.1: HTTP 403 from http://127.0.0.1:{rx.port}/…: boom"
                      " — renew the pager integration key"]


def test_style_names_map_to_style_objects():
    url = f"https://hooks.slack.com/services/T0001/B0002/{TOKEN}"
    assert isinstance(WebhookChannel(url).style, SlackStyle)
    assert isinstance(WebhookChannel(url, style="generic").style, GenericStyle)
    discord = WebhookChannel(url, style="discord", username="budget-bot").style
    assert isinstance(discord, DiscordStyle) and discord.username == "budget-bot"
    given = DiscordStyle("ops")
    ch = WebhookChannel(url, style=given)
    assert ch.style is given and ch.payload(alert())["username"] == "ops"
    assert ch.name == "webhook:discord:hooks.slack.com"
    for style in ("line", 42, object(), PagerStyle):  # PagerStyle: the class, not an object
        with pytest.raises(ConfigError, match="style must be one of slack, discord, generic, or a WebhookStyle"):
            WebhookChannel(url, style=style)  # type: ignore[arg-type]
    assert isinstance(PagerStyle(), WebhookStyle) and not isinstance(object(), WebhookStyle)


def test_webhook_secrets_never_shown_and_config_checked():
    url = f"https://hooks.slack.com/services/T0001/B0002/{TOKEN}"
    ch = WebhookChannel(url, headers={"Authorization": "Bearer abcdef123456"})
    for text in (repr(ch), str(ch), ch.name, ch.safe_url):
        assert TOKEN not in text and "abcdef123456" not in text
    assert repr(ch) == ("WebhookChannel(style='slack', url='https://hooks.slack.com/…', timeout=5, "
                        "headers=['Authorization'])")
    with pytest.raises(ConfigError, match="style"):
        WebhookChannel(url, style="line")
    for bad in (f"ftp://x/{TOKEN}", f"hooks.slack.com/{TOKEN}", f"https://h/{TOKEN}\r\nX: y"):
        with pytest.raises(ConfigError) as info:
            WebhookChannel(bad)
        assert TOKEN not in str(info.value)


def test_httpx2_request_log_does_not_carry_the_url(caplog):
    with WebhookReceiver() as rx, caplog.at_level(logging.DEBUG):
        deliver(WebhookChannel(rx.url()), alert())
    assert rx.requests and TOKEN not in caplog.text


# ---------------------------------------------------------------- e-mail


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_email_plain_with_auth_parts_and_injection_safety():
    evil = "nlp\r\nBcc: evil@example.com\r\nX-Evil: 1"
    with SMTPReceiver(login=("alerts", "pa55word!")) as smtp:
        ch = EmailChannel("127.0.0.1", smtp.port, sender="Budget Bot <bot@example.com>",
                          to=["ops@example.com", "Lead <lead@example.com>"], username="alerts",
                          password="pa55word!", security="none", timeout=5)
        m = deliver(ch, alert(project=evil + " <b>x</b>", scope="project:" + evil))
    assert [(d.ok, d.attempts) for d in m.deliveries] == [(True, 1)]
    (got,) = smtp.messages
    assert got["authenticated"] and got["mail_from"] == "bot@example.com"
    assert got["rcpt_tos"] == ["ops@example.com", "lead@example.com"]  # no evil@ in the envelope
    msg = _parse(got["data"])
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert "\n" not in msg["Subject"] and msg["Subject"].startswith(
        "[holysheep-lab] WARNING: daily budget (project:nlp Bcc: evil@example.com X-Evil: 1) at 76%")
    assert msg["From"] == "Budget Bot <bot@example.com>"
    assert msg["To"] == "ops@example.com, Lead <lead@example.com>"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    page = msg.get_body(("html",)).get_content()
    assert "WARNING: daily budget" in text and "Spent: $7.62 of $10.00 (76.2%)" in text
    assert "Resets: 2026-11-29 00:00 Europe/Berlin" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def test_email_global_subject_matches_the_short_form():
    ch = EmailChannel("smtp.example.com", sender="bot@example.com", to="ops@example.com")
    assert ch.subject(alert()) == "[holysheep-lab] WARNING: daily budget at 76%"
    assert ch.recipients == ["ops@example.com"]


def test_email_wrong_password_fails_without_retry_or_leak():
    with SMTPReceiver(login=("alerts", "right")) as smtp:
        ch = EmailChannel("127.0.0.1", smtp.port, sender="bot@example.com", to="ops@example.com",
                          username="alerts", password="wrong-pa55", security="none", timeout=5)
        m = deliver(ch, alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1) and "SMTPAuthenticationError" in (d.error or "")
    assert smtp.messages == []
    for text in (d.error or "", repr(ch), str(ch), repr(m)):
        assert "wrong-pa55" not in text
    assert "password=***" in repr(ch)


def test_email_starttls_required_is_never_downgraded():
    with SMTPReceiver() as smtp:  # offers no STARTTLS
        ch = EmailChannel("127.0.0.1", smtp.port, sender="bot@example.com", to="ops@example.com", timeout=5)
        m = deliver(ch, alert(), max_attempts=3)
    (d,) = m.deliveries
    assert (d.ok, d.attempts) == (False, 1) and "SMTPNotSupportedError" in (d.error or "")
    assert smtp.messages == []


def test_email_starttls_with_auth(tmp_path: Path):
    require_ci_tool("openssl")  # makes the test certificate
    cert, key = self_signed_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with SMTPReceiver(login=("alerts", "tls-pa55"), tls_context=server_ctx) as smtp:
        ch = EmailChannel("127.0.0.1", smtp.port, sender="bot@example.com", to="ops@example.com",
                          username="alerts", password="tls-pa55", ssl_context=client_ctx, timeout=5)
        m = deliver(ch, alert())
    assert [(d.ok, d.error) for d in m.deliveries] == [(True, None)]
    assert smtp.messages[0]["tls"] and smtp.messages[0]["authenticated"]


def test_email_config_validation():
    ok = {"sender": "bot@example.com", "to": "ops@example.com"}
    bad_cases = [
        {"sender": "bot@example.com\r\nBcc: x@y.z", "to": "ops@example.com"},
        {"sender": "bot@example.com", "to": ["ops@example.com", "a@b.c\nBcc: x@y.z"]},
        {"sender": "not-an-address", "to": "ops@example.com"},
        {"sender": "a@b.c, d@e.f", "to": "ops@example.com"},
        {**ok, "to": []},
        {**ok, "security": "tls"},
        {**ok, "username": "u"},  # no password
        {**ok, "username": "u", "password": "hunter2-secret", "security": "none"},  # clear text, remote
        {**ok, "timeout": 0},
    ]
    for kw in bad_cases:
        with pytest.raises(ConfigError) as info:
            EmailChannel("smtp.example.com", **kw)
        assert "hunter2-secret" not in str(info.value) and str(info.value)
    with pytest.raises(ConfigError):
        EmailChannel("smtp.example.com\r\n", **ok)
    with pytest.raises(ConfigError):
        EmailChannel("smtp.example.com", 0, **ok)


# ---------------------------------------------------------------- callback and notebook


def test_callback_sync_and_async():
    seen: list[tuple[str, str]] = []

    def sync_fn(a: Alert) -> None:
        seen.append(("sync", a.level.name))

    async def async_fn(a: Alert) -> None:
        seen.append(("async", a.level.name))

    m = AlertManager([CallbackChannel(sync_fn), CallbackChannel(async_fn)], cooldown=0)
    m.fire(alert(Level.CRITICAL))
    assert m.flush(5)
    m.close()
    assert sorted(seen) == [("async", "CRITICAL"), ("sync", "CRITICAL")]
    assert {d.channel for d in m.deliveries} == {
        "callback:test_callback_sync_and_async.<locals>.sync_fn",
        "callback:test_callback_sync_and_async.<locals>.async_fn"}
    with pytest.raises(ConfigError):
        CallbackChannel("not callable")  # type: ignore[arg-type]


def test_notebook_channel_prints_outside_a_kernel(capsys):
    ch = NotebookChannel()
    assert not ch.in_notebook and repr(ch) == "NotebookChannel(in_notebook=False, keep=3)"
    deliver(ch, alert())
    assert capsys.readouterr().out.strip() == alert().text


def test_notebook_channel_updates_its_display_in_a_real_kernel():
    jupyter_client = pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    repo = Path(__file__).resolve().parents[1]
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km.start_kernel(cwd=str(repo))
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        code = (
            "from decimal import Decimal\n"
            "import holysheep_lab.alerts as al\n"
            "ch = al.NotebookChannel()\n"
            "m = al.AlertManager([ch], cooldown=0)\n"
            "m.fire(al.Alert(al.Level.CRITICAL, 'project:nlp', 'daily', 'day:2026-11-28', Decimal(9),"
            " Decimal(10), 0.9, project='<nlp>'))\n"
            "assert m.flush(10)\n"
            "m.close()\n"
            "print('IN_NOTEBOOK', ch.in_notebook, [d.ok for d in m.deliveries])\n"
        )
        msgs: list[dict] = []
        reply = kc.execute_interactive(code, timeout=60, output_hook=msgs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    kinds = [(m["msg_type"], m["content"]) for m in msgs]
    shown = [c for t, c in kinds if t == "display_data"]
    updates = [c for t, c in kinds if t == "update_display_data"]
    assert shown and updates, [t for t, _ in kinds]
    display_id = shown[0]["transient"]["display_id"]
    assert updates[-1]["transient"]["display_id"] == display_id
    page = updates[-1]["data"]["text/html"]
    assert "CRITICAL: daily budget (project:nlp) at 90.0%" in page and "&lt;nlp&gt;" in page
    assert any(t == "stream" and "IN_NOTEBOOK True [True]" in c["text"] for t, c in kinds)
