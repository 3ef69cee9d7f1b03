"""AlertManager: crossings, once per level per window, cooldown, claim, worker behaviour."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import itertools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

import holysheep_lab.alerts as alerts_pkg
from holysheep_lab.alerts import Alert, AlertManager, CallbackChannel, Delivery, Level
from holysheep_lab.alerts.channel import Redacting
from holysheep_lab.core.events import SpendEvent
from holysheep_lab.errors import AlertDeliveryError, ConfigError

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


def event(before: str, after: str, *, limit: str = "10", scope: str = "global", window: str = "daily",
          day: int = 28, project: str | None = None, model: str | None = "gpt-4.1") -> SpendEvent:
    key = f"day:2026-11-{day:02d}" if window == "daily" else "month:2026-11"
    end_day = day if window == "daily" else 30
    resets = datetime(2026, 11, end_day, 23, 0, tzinfo=UTC)
    return SpendEvent.from_usd(
        scope=scope, window=window, window_key=key, before=Decimal(before), after=Decimal(after),
        reserved=Decimal("0.25"), limit=Decimal(limit), block_at=0.95, alert_at=0.8,
        resets_at=resets, ts=T0.replace(day=day), model=model, project=project,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make():
    made: list[AlertManager] = []

    def factory(*channels, **kw) -> tuple[AlertManager, list[Alert]]:
        got: list[Alert] = []
        kw.setdefault("cooldown", 0.0)
        m = AlertManager([CallbackChannel(got.append), *channels], **kw)
        made.append(m)
        return m, got

    yield factory
    for m in made:
        m.close()


def names(alerts: list[Alert]) -> list[str]:
    return [a.level.name for a in alerts]


def test_public_names_pinned():
    assert alerts_pkg.__all__ == sorted(alerts_pkg.__all__)
    assert set(alerts_pkg.__all__) == {
        "DEFAULT_LEVELS", "Alert", "AlertManager", "CallbackChannel", "Channel", "Delivery",
        "EmailChannel", "Level", "LineChannel", "NotebookChannel", "TeamsChannel", "WebhookChannel",
    }
    for name in ("callback", "channel", "email", "line", "manager", "model", "notebook", "styles", "teams",
                 "webhook"):
        mod = importlib.import_module(f"holysheep_lab.alerts.{name}")
        assert all(hasattr(mod, n) for n in mod.__all__)


# ---------------------------------------------------------------- levels config


def test_default_levels():
    m = AlertManager()
    assert [(lv.name, lv.threshold) for lv in m.levels] == [
        ("INFO", 0.5), ("WARNING", 0.75), ("CRITICAL", 0.9), ("EMERGENCY", 0.98)]
    assert Level.WARNING.colour == 0xF1C40F and Level.EMERGENCY.colour == 0xE74C3C
    assert len({lv.colour for lv in m.levels}) == 4
    assert m.cooldown == 300.0


def test_levels_from_mapping_and_pairs_are_sorted():
    assert [lv.name for lv in AlertManager(levels={"HIGH": 0.9, "LOW": 0.3}).levels] == ["LOW", "HIGH"]
    lv = AlertManager(levels=[("over", 1.2), ("half", 0.5)]).levels
    assert [(x.name, x.threshold) for x in lv] == [("half", 0.5), ("over", 1.2)]
    assert lv[1].colour == 0xE74C3C  # unknown name: colour by band


@pytest.mark.parametrize("levels", [
    {"INFO": 0}, {"INFO": -0.1}, {"INFO": 1.51}, {"INFO": float("nan")}, {"INFO": "0.5"},
    {"INFO": True}, {}, [("A", 0.5), ("a", 0.6)], [("A", 0.5), ("B", 0.5)],
    {"WARN|X": 0.5}, {"a\r\nBcc: x": 0.5}, [("A", 0.5, 1)], "INFO",
])
def test_levels_validation(levels):
    with pytest.raises(ConfigError) as info:
        AlertManager(levels=levels)
    assert isinstance(info.value, ValueError)


def test_other_settings_validated():
    for kw in ({"cooldown": -1}, {"max_attempts": 0}, {"attempt_timeout": 0}, {"claim": 42}):
        with pytest.raises(ConfigError):
            AlertManager(**kw)
    same = CallbackChannel(print, name="x")
    with pytest.raises(ConfigError, match="same channel object twice"):
        AlertManager([same, same])  # two channels of one name are fine (see test_two_channels_...)
    with pytest.raises(ConfigError):
        AlertManager([object()])


# ---------------------------------------------------------------- crossings


def test_each_level_fires_once_per_window_in_order(make):
    m, got = make()
    steps = ["0", "4", "5.5", "6", "8", "8.5", "9.5", "9.9", "10.4"]
    for before, after in itertools.pairwise(steps):
        m.observe([event(before, after)])
    assert m.flush(5)
    assert names(m.history) == ["INFO", "WARNING", "CRITICAL", "EMERGENCY"]  # in firing order
    assert sorted(names(got)) == sorted(names(m.history))  # separate calls deliver concurrently
    # The same crossing reported again (a retried event, a second observer) fires nothing.
    assert m.observe([event("7", "9.2")]) == []
    assert m.flush(5) and len(got) == 4
    assert [d.ok for d in m.deliveries] == [True] * 4


def test_one_jump_fires_every_crossed_level_lowest_first(make):
    m, got = make()
    fired = m.observe([event("1", "9.5")])
    assert names(fired) == ["INFO", "WARNING", "CRITICAL"]
    assert m.flush(5)
    assert names(got) == ["INFO", "WARNING", "CRITICAL"]  # delivered in order, none suppressed
    assert {a.dedup_key for a in got} == {
        "global|day:2026-11-28|INFO", "global|day:2026-11-28|WARNING", "global|day:2026-11-28|CRITICAL"}


def test_crossing_boundaries_are_exact(make):
    m, _ = make()
    assert names(m.observe([event("7.4", "7.5")])) == ["WARNING"]  # threshold <= after
    assert m.observe([event("7.5", "8")]) == []  # before == threshold: already crossed
    m2, _ = make()
    # Money is integer nanos: one nano below the threshold, then exactly on it, crosses INFO.
    assert names(m2.observe([event("2.999999999", "3", limit="6")])) == ["INFO"]
    m3, _ = make()
    assert m3.observe([event("2.999999998", "2.999999999", limit="6")]) == []  # a nano short
    assert m2.observe([event("0", "0", limit="0")]) == []  # no limit, no alert


def test_new_window_scope_and_window_kind_rearm(make):
    m, _ = make()
    m.observe([event("7", "8", day=28)])
    m.observe([event("7", "8", day=29)])  # next day re-arms
    m.observe([event("7", "8", window="monthly", limit="10")])  # independent window kind
    m.observe([event("7", "8", scope="project:nlp", project="nlp")])  # independent scope
    assert m.flush(5)
    assert [(a.scope, a.window_key, a.level.name) for a in m.history] == [
        ("global", "day:2026-11-28", "WARNING"),
        ("global", "day:2026-11-29", "WARNING"),
        ("global", "month:2026-11", "WARNING"),
        ("project:nlp", "day:2026-11-28", "WARNING"),
    ]


def test_cooldown_throttles_repeats_but_never_another_level(make):
    clock = Clock()
    m, _ = make(cooldown=300.0, clock=clock)
    m.observe([event("7", "8", day=28)])  # WARNING at t=1000
    clock.now += 100
    # Midnight re-armed the window, but the same (scope, daily, WARNING) is within cooldown.
    assert names(m.observe([event("7", "8", day=29)])) == []
    # A different level in the same instant is not throttled.
    assert names(m.observe([event("8", "9.2", day=29)])) == ["CRITICAL"]
    # Nor another scope or window kind.
    assert names(m.observe([event("7", "8", scope="project:a", day=29)])) == ["WARNING"]
    assert names(m.observe([event("7", "8", window="monthly")])) == ["WARNING"]
    clock.now += 250  # 350 s after the first WARNING
    assert names(m.observe([event("7", "8", day=30)])) == ["WARNING"]
    assert m.flush(5)
    assert [(a.window_key, a.level.name) for a in m.history] == [
        ("day:2026-11-28", "WARNING"), ("day:2026-11-29", "CRITICAL"), ("day:2026-11-29", "WARNING"),
        ("month:2026-11", "WARNING"), ("day:2026-11-30", "WARNING")]


def test_claim_gives_once_only_across_managers(make):
    claimed: dict[str, float] = {}
    lock = threading.Lock()
    calls: list[tuple[str, float]] = []

    def claim(key: str, expires_at: float) -> bool:  # what a shared ledger does
        with lock:
            calls.append((key, expires_at))
            if key in claimed:
                return False
            claimed[key] = expires_at
            return True

    a, got_a = make(claim=claim)
    b, got_b = make(claim=claim)
    ev = event("7", "9.2")
    a.observe([ev])
    assert a.flush(5)
    b.observe([ev])  # a second process seeing the same crossing
    assert b.flush(5)
    assert names(got_a) == ["WARNING", "CRITICAL"] and got_b == []
    assert b.history == [] and b.deliveries == []
    assert {k for k, _ in calls} == {"global|day:2026-11-28|WARNING", "global|day:2026-11-28|CRITICAL"}
    assert all(exp >= ev.resets_at.timestamp() for _, exp in calls)


def test_core_wiring_hooks_keep_explicit_settings(make):
    seen: list[str] = []

    def ledger_claim(key: str, expires_at: float) -> bool:
        seen.append(key)
        return True

    m, _ = make()
    m.use_claim(ledger_claim)  # what the metering core does with its ledger
    m.use_zone(BERLIN)
    (a,) = m.observe([event("7", "8")])
    assert m.flush(5) and seen == ["global|day:2026-11-28|WARNING"]
    assert a.resets_at is not None and a.resets_at.tzinfo is BERLIN

    explicit, _ = make(claim=lambda k, e: False, tz=UTC)
    explicit.use_claim(ledger_claim)
    explicit.use_zone(BERLIN)
    (b,) = explicit.observe([event("7", "8")])
    assert explicit.flush(5) and explicit.history == [] and len(seen) == 1
    assert b.resets_at is not None and b.resets_at.tzinfo is UTC


def test_failing_claim_fails_open(make, caplog):
    def claim(key: str, expires_at: float) -> bool:
        raise ConnectionError("redis down")

    m, got = make(claim=claim)
    with caplog.at_level(logging.WARNING, logger="holysheep_lab.alerts"):
        m.observe([event("7", "8")])
        assert m.flush(5)
    assert names(got) == ["WARNING"]
    assert "claim" in caplog.text


def test_concurrent_observers_fire_each_level_once(make):
    m, got = make()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(50):
            m.observe([event("4", "9.9")])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.flush(5)
    assert sorted(names(got)) == ["CRITICAL", "EMERGENCY", "INFO", "WARNING"]


# ---------------------------------------------------------------- the alert itself


def test_alert_text_title_and_html():
    m = AlertManager(tz=BERLIN)
    (alert,) = m.observe([event("7", "7.62")])
    m.close()
    assert alert.title == "WARNING: daily budget (global) at 76.2%"
    assert alert.text == (
        "WARNING: daily budget (global) at 76.2% — $7.62 of $10.00; resets 2026-11-29 00:00 Europe/Berlin")
    assert alert.spent == Decimal("7.62") and alert.limit == Decimal("10") and alert.reserved == Decimal("0.25")
    assert alert.ratio == pytest.approx(0.762)
    d = alert.to_dict()
    assert d["resets_at"] == "2026-11-29T00:00:00+01:00" and d["spent"] == 7.62 and d["level"] == "WARNING"
    hostile = Alert(Level.INFO, "project:<script>", "daily", "day:2026-11-28", Decimal("0.0375"),
                    Decimal("0.05"), 0.75, project="<script>alert(1)</script>")
    page = hostile._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "$0.03750 of $0.05000" in hostile.text  # 4 significant digits under $1


# ---------------------------------------------------------------- worker


def test_manual_fire_history_last_alert_and_subscribers(make):
    m, got = make(max_history=3)
    seen: list[str] = []
    unsubscribe = m.subscribe(lambda a: seen.append(a.level.name))
    m.subscribe(lambda a: 1 / 0)  # a broken subscriber must not stop anything
    manual = Alert(Level.CRITICAL, "global", "daily", "day:2026-11-28", Decimal(9), Decimal(10), 0.9)
    m.fire(manual)
    m.fire(manual)  # manual alerts bypass dedup
    assert m.flush(5)
    assert got == [manual, manual] and seen == ["CRITICAL", "CRITICAL"] and m.history == [manual, manual]
    unsubscribe()
    m.observe([event("0", "9.9")])
    assert m.flush(5)
    assert len(seen) == 2
    assert names(m.history) == ["WARNING", "CRITICAL", "EMERGENCY"]  # bounded to 3
    assert m.last_alert is not None and m.last_alert.level.name == "EMERGENCY"


def _alert() -> Alert:
    return Alert(Level.WARNING, "global", "daily", "day:2026-11-28", Decimal(8), Decimal(10), 0.8)


def test_retries_with_backoff_then_records_failure(make, caplog):
    calls: list[float] = []

    def flaky(alert: Alert) -> None:
        calls.append(time.monotonic())
        raise AlertDeliveryError("flaky", "HTTP 503", retryable=True)

    m, _ = make(CallbackChannel(flaky, name="flaky"), max_attempts=3, backoff=0.05)
    with caplog.at_level(logging.WARNING, logger="holysheep_lab.alerts"):
        m.fire(_alert())
        assert m.flush(5)
    (d,) = [d for d in m.deliveries if d.channel == "flaky"]
    assert isinstance(d, Delivery) and not d.ok and d.attempts == 3 and "HTTP 503" in (d.error or "")
    assert calls[1] - calls[0] >= 0.02 and calls[2] - calls[1] >= 0.04  # 0.05 * 2**n * [0.5, 1]
    assert "not delivered to flaky after 3 attempt(s)" in caplog.text


def test_non_retryable_and_user_errors_are_not_retried(make):
    def refused(alert: Alert) -> None:
        raise AlertDeliveryError("refused", "HTTP 404", retryable=False)

    def buggy(alert: Alert) -> None:
        raise KeyError("oops")

    m, _ = make(CallbackChannel(refused, name="refused"), CallbackChannel(buggy, name="buggy"), backoff=0.01)
    m.fire(_alert())
    assert m.flush(5)
    by = {d.channel: d for d in m.deliveries}
    assert (by["refused"].ok, by["refused"].attempts) == (False, 1)
    assert (by["buggy"].ok, by["buggy"].attempts) == (False, 1) and "KeyError" in (by["buggy"].error or "")


class Vault:
    """A custom channel holding a secret; its bug quotes the secret in the exception."""

    def __init__(self, name: str, secret: str, *, redacts: bool) -> None:
        self.name, self.secret = name, secret
        if redacts:
            self.redact = lambda text: text.replace(self.secret, "***")

    async def send(self, alert: Alert) -> None:
        raise RuntimeError(f"could not open {self.secret}")


def test_a_redacting_channel_hides_its_secrets_even_in_its_bugs(make, caplog):
    own, plain = Vault("own", "pin-4711-very-secret", redacts=True), Vault("plain", "pin-0815-also", redacts=False)
    key = Vault("key", "sk-" + "a1" * 12, redacts=False)
    assert isinstance(own, Redacting) and not isinstance(plain, Redacting)
    m, _ = make(own, plain, key, max_attempts=1)
    with caplog.at_level(logging.WARNING, logger="holysheep_lab.alerts"):
        m.fire(_alert())
        assert m.flush(5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not delivered to own" in w and w.endswith("could not open ***") for w in warnings)
    by = {d.channel: d.error for d in m.deliveries}
    assert by["own"] == "own: RuntimeError: could not open ***"
    assert by["plain"] == "plain: RuntimeError: could not open pin-0815-also"  # nothing told us it was secret
    assert by["key"] == "key: RuntimeError: could not open sk***"  # key-shaped: redacted for every channel


async def test_attempt_timeout_and_observe_inside_running_loop(make):
    async def slow(alert: Alert) -> None:
        await asyncio.sleep(5)

    m, got = make(CallbackChannel(slow, name="slow"), attempt_timeout=0.1, max_attempts=2, backoff=0.01)
    t = time.perf_counter()
    fired = m.observe([event("7", "8")])  # called from inside this test's running event loop
    assert time.perf_counter() - t < 0.5 and names(fired) == ["WARNING"]
    assert await asyncio.to_thread(m.flush, 5)
    (d,) = [d for d in m.deliveries if d.channel == "slow"]
    assert not d.ok and d.attempts == 2 and "no result within 0.1 s" in (d.error or "")
    assert names(got) == ["WARNING"]  # the other channel was not held up


def test_close_is_idempotent_and_later_alerts_never_raise(make):
    m, got = make()
    m.observe([event("7", "8")])
    m.close()
    assert names(got) == ["WARNING"]  # close() flushed first
    m.close()
    assert m.observe([event("8", "9.5")]) != []  # evaluated, dropped with a warning, no raise
    with pytest.raises(RuntimeError):
        m.fire(_alert())


def test_close_records_deliveries_it_had_to_cancel():
    async def stuck(alert: Alert) -> None:
        await asyncio.sleep(30)

    m = AlertManager([CallbackChannel(stuck, name="stuck")], cooldown=0)
    m.fire(_alert())
    t = time.perf_counter()
    m.close(timeout=0.2)
    assert time.perf_counter() - t < 3
    (d,) = m.deliveries
    assert not d.ok and "cancelled by close()" in (d.error or "")


def test_backlog_is_bounded_and_overflow_counted():
    release = threading.Event()

    def stuck(alert: Alert) -> None:
        release.wait(5)

    m = AlertManager([CallbackChannel(stuck, name="stuck")], cooldown=0, max_pending=2)
    for _ in range(5):
        m.fire(_alert())  # never raises, never blocks
    assert m.dropped == 3 and m.pending == 2
    release.set()
    assert m.flush(5)
    m.close()
    assert len(m.deliveries) == 2


def test_manager_repr_is_cheap_and_informative():
    text = repr(AlertManager([CallbackChannel(print, name="cb")], levels={"HALF": 0.5}))
    assert "HALF 50%" in text and "CallbackChannel('cb')" in text and "cooldown=300" in text


def test_time_is_not_wall_clock_bound():
    # resets_at keeps its own zone when no tz is given (UTC from the core).
    m = AlertManager(cooldown=0)
    (a,) = m.observe([event("7", "8")])
    m.close()
    assert a.resets_at == datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
    assert a.text.endswith("resets 2026-11-28 23:00 UTC")
    assert a.ts - T0 < timedelta(seconds=1)


# ---------------------------------------------------------------- levels above the block line


def refusal(after: str, **kw) -> SpendEvent:
    """What the guard reports when it refuses a call at this line: spend did not move."""
    return dataclasses.replace(event(after, after, **kw), refused=True)


def test_levels_above_the_block_line_fire_on_the_first_refusal(make):
    m, got = make()
    assert m.observe([event("0", "9.4")]) and m.flush(5)  # INFO..CRITICAL by crossing: 94 % < block 95 %
    assert names(got) == ["INFO", "WARNING", "CRITICAL"]
    (alert,) = m.observe([refusal("9.4")])
    assert alert.level.name == "EMERGENCY" and alert.refused and alert.spent == Decimal("9.4")
    assert alert.title == "EMERGENCY: daily budget (global) at 94.0%, refusing calls"
    assert alert.to_dict()["refused"] is True
    assert m.observe([refusal("9.45")]) == []  # once per window, however many refusals follow
    m.observe([refusal("0.1", day=29)])
    assert m.flush(5)
    assert names(got) == ["INFO", "WARNING", "CRITICAL", "EMERGENCY", "EMERGENCY"]  # the new day re-armed it
    assert got[-1].window_key == "day:2026-11-29"


def test_a_refusal_fires_only_levels_the_spend_cannot_reach(make):
    m, _ = make(levels={"LOW": 0.5, "AT": 0.95, "OVER": 1.2})
    assert [a.level.name for a in m.observe([refusal("1")])] == ["AT", "OVER"]  # >= block_at 0.95
    full = dataclasses.replace(refusal("2"), block_at=1.0, window_key="day:2026-11-27")
    assert [a.level.name for a in m.observe([full])] == ["OVER"]


def test_a_level_fired_by_crossing_is_not_fired_again_by_a_refusal(make):
    m, _ = make()
    open_line = dataclasses.replace(event("9.7", "9.9"), block_at=1.0)  # block at 100 %: 98 % is reachable
    assert [a.level.name for a in m.observe([open_line])] == ["EMERGENCY"]
    assert m.observe([dataclasses.replace(refusal("9.9"), block_at=1.0)]) == []  # 98 % < 100 %: crossings only
    assert m.observe([refusal("9.9")]) == []  # and the window's EMERGENCY is spent either way


def test_every_default_level_fires_with_the_default_budget_through_the_client(tmp_path):
    import holysheep_lab as hs

    fired: list[Alert] = []
    manager = hs.AlertManager(channels=[hs.CallbackChannel(fired.append)], cooldown=0)  # default levels
    budget = hs.Budget(daily=0.05, monthly=None, tz="UTC")  # default alert_at 0.8, block_at 0.95
    refusals = 0
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=tmp_path / "log", alerts=manager,
                                          budget=budget) as c:
        for _ in range(400):
            try:
                c.chat("gpt-4.1", "word " * 40, max_tokens=50)
            except hs.BudgetExceededError:
                refusals += 1
                if refusals == 3:
                    break
        spent = [ln for ln in c.budget_status() if ln["window"] == "daily"][0]["spent_usd"]
        assert manager.flush(5)
    assert refusals == 3 and spent <= 0.05 * 0.95
    assert [a.level.name for a in fired] == ["INFO", "WARNING", "CRITICAL", "EMERGENCY"]  # each once, in order
    emergency = fired[-1]
    assert emergency.refused and not any(a.refused for a in fired[:-1])
    assert float(emergency.spent) == pytest.approx(spent)  # the spend when the line started refusing


# ---------------------------------------------------------------- several channels of one kind


def test_two_slack_webhooks_in_one_manager_each_deliver_and_are_recorded_apart():
    from _support.receivers import WebhookReceiver

    from holysheep_lab.alerts import WebhookChannel

    with WebhookReceiver() as team, WebhookReceiver([404]) as oncall:
        a = WebhookChannel(team.url("/services/T1/B1/aaaa1111"), style="slack")
        b = WebhookChannel(oncall.url("/services/T2/B2/bbbb2222"), style="slack")
        c = WebhookChannel(team.url("/services/T3/B3/cccc3333"), style="slack")
        assert a.name == b.name == c.name  # same kind, same host: the names collide
        m = AlertManager([a, b, c], cooldown=0)
        try:
            assert m.channel_names == (a.name, f"{a.name}#2", f"{a.name}#3")
            m.observe([event("7", "8")])
            assert m.flush(10)
            by_name = {d.channel: d for d in m.deliveries}
        finally:
            m.close()
    assert sorted(r.path for r in team.requests) == ["/services/T1/B1/aaaa1111", "/services/T3/B3/cccc3333"]
    assert [r.path for r in oncall.requests] == ["/services/T2/B2/bbbb2222"]
    assert set(by_name) == set(m.channel_names)
    assert by_name[a.name].ok and by_name[f"{a.name}#3"].ok
    failed = by_name[f"{a.name}#2"]
    assert not failed.ok and "404" in failed.error and "bbbb2222" not in failed.error
