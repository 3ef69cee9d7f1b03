"""Budget meters and the dashboard at the traitlet level: no browser, no kernel."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from html import escape as html_escape
from pathlib import Path

import httpx2
import pytest

import holysheep_lab as hs
from holysheep_lab.alerts.model import Level
from holysheep_lab.core.budget import Window, window_key
from holysheep_lab.core.display import format_usd
from holysheep_lab.ledger.base import bucket_name
from holysheep_lab.notebook import BudgetMeter, dashboard
from holysheep_lab.notebook.view import OK_COLOUR, level_for, render_html

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "calls"
PROMPTS = [f"Summarise ticket {i} in two sentences." for i in range(48)]


@pytest.fixture(scope="module")
def sim():
    with hs.Simulator(latency=0.06) as s:
        yield s


@pytest.fixture
def client(sim, log_dir):
    c = hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=0.2, monthly=10.0, tz="UTC"),
                  alerts=hs.AlertManager(cooldown=0))
    yield c
    c.close()


class Recorder:
    """Every value a trait takes, with the time it took it."""

    def __init__(self, widget, name: str = "value") -> None:
        self.seen: list[tuple[float, object]] = []
        widget.observe(lambda ch: self.seen.append((time.monotonic(), ch["new"])), name)

    def before(self, t: float) -> list[object]:
        return [v for ts, v in self.seen if ts < t]


def _wait(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _spend_until_refused(client, project: str | None = None) -> int:
    """Sequential calls (each settles before the next reserves) until the budget refuses."""
    for n in range(100):
        try:
            client.chat("gpt-4.1", PROMPTS[n % len(PROMPTS)], max_tokens=64, project=project)
        except hs.BudgetExceededError:
            return n
    raise AssertionError("the budget never refused")


def _exact_ratio(client) -> float:
    line = next(ln for ln in client.budget_status() if ln["scope"] == "global" and ln["window"] == "daily")
    return line["spent_usd"] / line["limit_usd"]


def test_meter_moves_while_a_sync_batch_runs(client):
    meter = BudgetMeter(client)
    row = meter.rows()[("global", "daily")]
    bars, details = Recorder(row.bar), Recorder(row.detail)
    reserved_seen: list[float] = []
    row.detail.observe(lambda _ch: reserved_seen.append(meter.state.lines[0].reserved), "value")
    results = client.chat_many(PROMPTS, model="gpt-4.1", max_tokens=64, concurrency=4, progress=False)
    done = time.monotonic()
    assert all(isinstance(r, hs.ChatResult) for r in results)
    during = bars.before(done)
    # 12 rounds of 60 ms: a refresher at ~4 Hz must have shown several intermediate values.
    assert len(set(during)) >= 3, during
    assert during == sorted(during) and during[-1] < 100
    assert len(details.before(done)) >= 3
    assert any(r > 0 for r in reserved_seen), "in-flight reservations never showed"
    assert _wait(lambda: row.bar.value == round(_exact_ratio(client) * 100, 1))
    assert _wait(lambda: meter.state.lines[0].reserved == 0.0)
    assert f"last minute: {len(PROMPTS)} calls" in meter.footer.value
    meter.close()


async def test_meter_moves_with_async_batch_and_openai_sdk(client, sim):
    import openai

    meter = BudgetMeter(client)
    bars = Recorder(meter.rows()[("global", "daily")].bar)
    await client.achat_many(PROMPTS[:32], model="gpt-4.1", max_tokens=64, concurrency=4)
    done = time.monotonic()
    assert len(set(bars.before(done))) >= 2
    # The openai SDK through the metered transport: the same Metering, so the same meter moves.
    before = meter.rows()[("global", "daily")].bar.value
    sdk = openai.OpenAI(api_key="sim", base_url=sim.base_url,
                        http_client=httpx2.Client(transport=hs.MeteredTransport(metering=client.metering)))
    for _ in range(3):
        await asyncio.to_thread(sdk.chat.completions.create, model="gpt-4.1", max_tokens=64,
                                messages=[{"role": "user", "content": "Hello from the SDK, a long-ish prompt"}])
    assert _wait(lambda: meter.rows()[("global", "daily")].bar.value > before)
    assert _wait(lambda: meter.rows()[("global", "daily")].bar.value == round(_exact_ratio(client) * 100, 1))
    meter.close()


def _seed(client, usd: float) -> None:
    now = client.metering.clock()
    zone = client.metering.guard.zone
    buckets = {bucket_name("global", window_key(w, now, zone)): int(usd * 1e9) for w in Window}
    client.metering.ledger.seed(buckets, {b: time.time() + 86400 * 40 for b in buckets})


@pytest.mark.parametrize(("spent", "colour", "level"), [
    (0.10, OK_COLOUR, None),
    (0.50, "#3498db", "INFO"),
    (0.75, "#f1c40f", "WARNING"),
    (0.90, "#e67e22", "CRITICAL"),
    (0.98, "#e74c3c", "EMERGENCY"),
])
def test_colour_per_alert_level(sim, log_dir, spent, colour, level):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir,
                   budget=hs.Budget(daily=1.0, monthly=100.0, alert_at=0.95, block_at=0.99, tz="UTC")) as c:
        meter = BudgetMeter(c)
        _seed(c, spent)
        meter.refresh()
        row = meter.rows()[("global", "daily")]
        assert row.bar.style.bar_color == colour
        assert row.bar.value == pytest.approx(spent * 100)
        assert (level or "%") in row.detail.value
        monthly = meter.rows()[("global", "monthly")]
        assert monthly.bar.style.bar_color == OK_COLOUR  # 1 % of the monthly limit
        if spent >= 0.98:
            assert "BLOCKING" not in row.detail.value  # 98 % < block_at 99 %
        meter.close()


def test_soft_limit_turns_the_meter_to_warning():
    assert level_for(0.6, (Level.INFO, Level.WARNING), alert_at=0.6) is Level.WARNING
    assert level_for(0.59, (Level.INFO, Level.WARNING), alert_at=0.6) is Level.INFO
    assert level_for(0.95, (Level.INFO, Level.WARNING, Level.CRITICAL), alert_at=0.6) is Level.CRITICAL
    assert level_for(None, (Level.INFO,)) is None


def test_reset_time_is_the_local_window_end(sim, log_dir):
    # 23:30 UTC on 2026-03-28 is 00:30 on the 29th in Berlin, the day clocks go forward
    # (a 23-hour day): the window ends at local midnight, 22:00 UTC on the 29th.
    fixed = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, clock=lambda: fixed,
                   budget=hs.Budget(daily=5, monthly=50, tz="Europe/Berlin")) as c:
        meter = BudgetMeter(c)
        lines = {ln.window: ln for ln in meter.state.lines}
        assert lines["daily"].resets_at == datetime(2026, 3, 30, 0, 0, tzinfo=c.metering.guard.zone)
        assert lines["daily"].resets_at.astimezone(UTC) == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
        assert lines["monthly"].resets_at.isoformat() == "2026-04-01T00:00:00+02:00"
        assert "resets 2026-03-30 00:00 Europe/Berlin" in meter.rows()[("global", "daily")].detail.value
        meter.close()


def test_last_alert_and_project_lines(sim, log_dir):
    budget = hs.Budget(daily=0.01, monthly=10, tz="UTC", projects={"nlp": hs.Budget(daily=0.005, monthly=None)})
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget, alerts=hs.AlertManager(cooldown=0)) as c:
        meter = BudgetMeter(c)
        assert ("project:nlp", "daily") in meter.rows()
        assert meter.rows()[("project:nlp", "daily")].label.value == "daily nlp"
        _spend_until_refused(c, project="nlp")
        last = c.metering.alerts.history[-1].title if c.metering.alerts.flush(5) and c.metering.alerts.history else None
        # The refusal at the project's block line fires EMERGENCY (98 % > block_at 0.95): the last alert.
        assert last is not None and last.startswith("EMERGENCY") and last.endswith("refusing calls")
        assert "project:nlp" in last
        assert _wait(lambda: f"last alert: {last}" in meter.footer.value), meter.footer.value
        assert meter.rows()[("project:nlp", "daily")].bar.value > 0
        meter.close()


def test_no_budget_shows_spend_without_a_limit(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        meter = BudgetMeter(c)
        c.chat("gpt-4.1", "hi", max_tokens=16)
        meter.refresh()
        row = meter.rows()[("global", "daily")]
        assert "no limit" in row.detail.value and row.bar.value == 0
        meter.close()


def test_refresher_stops_when_the_client_closes(client):
    meter = BudgetMeter(client)
    thread = meter._thread
    assert thread.is_alive() and repr(meter).endswith("live>")
    client.chat("gpt-4.1", "hi", max_tokens=16)
    client.close()
    thread.join(3)
    assert not thread.is_alive() and repr(meter).endswith("stopped>")
    assert client.metering._listeners == []  # unsubscribed


def test_close_and_garbage_collection_end_the_thread(client):
    meter = BudgetMeter(client)
    meter.close()
    assert not meter.running and client.metering._listeners == []
    other = BudgetMeter(client)
    thread = other._thread
    del other
    gc.collect()
    thread.join(3)
    assert not thread.is_alive()


def test_idle_meter_costs_almost_no_cpu(client):
    meter = BudgetMeter(client, idle=0.2)
    time.sleep(0.3)
    updates = meter.updates
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(1.0)
    cpu = (time.process_time() - c0) / (time.perf_counter() - t0)
    assert cpu < 0.05, f"idle process CPU {cpu:.1%}"
    assert meter.updates == updates  # woke 5 times, found nothing to redraw
    meter.close()


def test_display_bundle_and_cheap_repr(client, monkeypatch):
    meter = BudgetMeter(client)
    client.chat("gpt-4.1", "hi", max_tokens=16)
    bundle = meter._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "hs-meter-line" in bundle["text/html"] and "data-window='daily'" in bundle["text/html"]
    assert bundle["text/plain"].startswith("BudgetMeter(daily ")
    # The snapshot is current, not the throttled refresher's last pass.
    assert f"data-percent='{round(_exact_ratio(client) * 100, 1)}'" in bundle["text/html"]

    def boom(*_a, **_k):
        raise AssertionError("repr must not read the ledger")

    monkeypatch.setattr(client.metering.ledger, "snapshot", boom)
    assert repr(meter).startswith("<BudgetMeter 2 lines")
    monkeypatch.undo()  # close() takes a last reading for the snapshot it leaves
    meter.close()


def test_missing_ipywidgets_gives_an_install_hint(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(hs.MissingExtraError, match="pip install ipywidgets"):
        BudgetMeter(client)


def test_bad_source_is_refused():
    with pytest.raises(hs.ConfigError, match=r"hs\.Client"):
        BudgetMeter(object())


def test_a_client_or_its_metering_is_the_source(client):
    for source in (client, client.metering):
        meter = BudgetMeter(source)
        assert meter.metering is client.metering
        assert set(meter.rows()) == {("global", "daily"), ("global", "monthly")}
        meter.close()


def test_import_does_not_load_widgets_or_charts():
    code = ("import sys, holysheep_lab as hs; hs.BudgetMeter; "
            "assert 'ipywidgets' not in sys.modules and 'altair' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dashboard_from_a_log_folder():
    board = dashboard(SAMPLE, days=7, budget=hs.Budget(daily=60, monthly=1200, tz="Europe/Berlin"))
    assert board.meter is None and len(board.figures) == 2
    assert "calls in the last 7 days" in board.status.value
    data = board.figures[0].to_dict()
    assert len({row["date"] for row in next(iter(data["datasets"].values()))}) == 7
    board.button.click()  # the refresh button redraws
    assert len(board.figures) == 2
    assert "no alert manager" in board.alerts.value


def test_dashboard_for_a_client_has_live_meters_and_alerts(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=0.01, tz="UTC"),
                   alerts=hs.AlertManager(cooldown=0)) as c:
        board = hs.dashboard(c)
        assert board.meter is not None and board.meter.box in board.box.children
        assert "no calls logged" in board.status.value
        answered = _spend_until_refused(c)
        assert c.metering.alerts.flush(5)
        board.refresh()
        assert board.alerts.value.count("holysheep-alert") >= 2  # INFO, WARNING, ...
        assert len(board.figures) == 2 and f"{answered + 1} calls" in board.status.value  # + the blocked row
        board.close()
        assert not board.meter.running


def test_one_refresher_thread_per_meter(client):
    def meters() -> int:
        return sum(t.name == "holysheep-meter" for t in threading.enumerate())

    before = meters()
    meter = BudgetMeter(client)
    client.chat_many(PROMPTS[:8], model="gpt-4.1", max_tokens=16, progress=False)
    assert meters() == before + 1  # calls only set an Event; they never start threads
    meter.close()
    assert meters() == before


def test_dashboard_alerts_and_status_follow_the_meter_without_refresh(sim, log_dir):
    budget = hs.Budget(daily=0.01, monthly=10, tz="UTC")
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget, alerts=hs.AlertManager(cooldown=0)) as c:
        board = dashboard(c)
        assert "no alerts yet" in board.alerts.value
        seen = Recorder(board.status)
        _spend_until_refused(c)
        c.metering.alerts.flush(5)
        last = c.metering.alerts.history[-1]
        # No refresh() call: the meter's refresher redraws the alert list and the status line.
        assert _wait(lambda: html_escape(last.title) in board.alerts.value), board.alerts.value
        spent = c.budget_status().line("daily")["spent_usd"]
        assert _wait(lambda: f"today {format_usd(spent)} spent" in board.status.value), board.status.value
        assert len(seen.seen) >= 2 and "tex2jax_ignore" in board.status.value
        board.close()


def test_progress_widget_turns_red_when_failures_dominate(log_dir):
    from holysheep_lab.client.progress import FAILING_COLOUR, MIXED_COLOUR, OK_COLOUR, BatchProgress

    bar = BatchProgress(3, widget=True)  # the notebook form, built outside a kernel
    assert bar._bar.style.bar_color == OK_COLOUR
    unknown = hs.UnknownModelError("gpt-4.l", ["gpt-4.1"])
    bar.update(unknown)
    assert bar._bar.style.bar_color == FAILING_COLOUR and bar._bar.value == 1
    assert "1 failed" in bar._label.value and "Did you mean" in bar._label.value
    assert "tex2jax_ignore" in bar._label.value and "tex2jax_ignore" in bar.html()
    with hs.Simulator() as s, hs.Client(base_url=s.base_url, log_dir=log_dir) as c:
        answer = c.chat("gpt-4.1", "hi", max_tokens=8)
    bar.update(answer)
    assert bar._bar.style.bar_color == MIXED_COLOUR
    bar.close()


EXP = ("experiment:rag-v2", "experiment")


def test_an_experiment_has_a_live_line_that_stays_final_after_its_block(client):
    meter = BudgetMeter(client, idle=0.2)
    assert EXP not in meter.rows()
    with client.experiment("rag-v2", budget=0.012) as exp:
        # Open, no call yet: the idle wake-up notices it.
        assert _wait(lambda: EXP in meter.rows()), [ln.key for ln in meter.state.lines]
        row = meter.rows()[EXP]
        assert row.label.value == "experiment rag-v2" and row.bar.value == 0
        assert row.box in meter.box.children
        bars = Recorder(row.bar)
        # ~28 calls fit, two at a time: 14 rounds of 60 ms for a refresher at ~4 Hz to show.
        results = client.chat_many(PROMPTS, model="gpt-4.1", max_tokens=64, concurrency=2, progress=False)
        during = bars.before(time.monotonic())
        refused = sum(isinstance(r, hs.BudgetExceededError) for r in results)
        assert refused > 0  # the experiment's cap, not the daily budget (0.2)
        # Moved while the batch ran (the refresher, no refresh() call), never past the cap.
        assert len(set(during)) >= 3 and during == sorted(during) and max(during) <= 100, during
        line = meter.state.lines[-1]
        assert line.key == EXP and line.resets_at is None and not line.done and "running" in line.detail
    final = exp.summary()
    assert _wait(lambda: meter.state.lines[-1].done), meter.state.lines[-1]
    line = meter.state.lines[-1]
    assert line.spent == final.cost_usd and line.limit == 0.012 and line.calls == final.calls
    assert line.refused == final.refused == refused and line.reserved == 0
    assert row.bar.value == round(final.cost_usd / 0.012 * 100, 1)
    detail = row.detail.value
    assert f"{format_usd(final.cost_usd)} of {format_usd(0.012)}" in detail and f"{refused:,} refused" in detail
    assert "done" in detail and "resets" not in detail and "tex2jax_ignore" in detail
    html = meter._repr_mimebundle_()["text/html"]
    assert "data-scope='experiment:rag-v2' data-window='experiment'" in html
    assert "experiment rag-v2" in meter._repr_mimebundle_()["text/plain"]
    # The same name again: its new run takes the line.
    with client.experiment("rag-v2") as again:
        client.chat("gpt-4.1", "one more", max_tokens=16)
        assert _wait(lambda: meter.state.lines[-1].calls == 1)
        assert meter.state.lines[-1].limit is None and "no limit" in meter.rows()[EXP].detail.value
    assert len([ln for ln in meter.state.lines if ln.key == EXP]) == 1 and again.calls == 1
    meter.close()


def test_a_run_shorter_than_a_refresh_still_gets_its_line(client):
    meter = BudgetMeter(client, interval=5.0, idle=60.0)  # the refresher sleeps through the whole run
    meter.refresh()
    with client.experiment("blink") as exp:
        client.chat("gpt-4.1", "hi", max_tokens=16)
    meter.refresh()  # after the block: only the call's listener saw the run open
    line = meter.state.lines[-1]
    assert line.key == ("experiment:blink", "experiment") and line.done and line.calls == 1
    assert line.spent == exp.cost_usd > 0
    meter.close()


def test_experiments_of_another_client_stay_off_this_meter(client, sim, log_dir):
    meter = BudgetMeter(client)
    with hs.Client(base_url=sim.base_url, log_dir=log_dir / "other") as other, other.experiment("theirs"):
        other.chat("gpt-4.1", "hi", max_tokens=16)
        meter.refresh()
        assert [ln.window for ln in meter.state.lines] == ["daily", "monthly"]
    meter.close()


def test_a_growing_conversation_is_named_on_the_meter(sim, log_dir):
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, ledger=hs.MemoryLedger()) as client:
        meter = BudgetMeter(client, interval=5.0, idle=60.0)
        history: list[dict[str, str]] = []
        for turn in range(6):  # each turn resends the whole history, which grows
            meter.refresh()
            assert ("runaway" in meter.footer.value) == (turn >= 5)  # five calls before the rule can tell
            history.append({"role": "user", "content": f"Turn {turn}: " + "context word " * 1500})
            history.append({"role": "assistant", "content": client.chat("gpt-4.1", history, max_tokens=16).text})
        meter.refresh()
        (found,) = client.metering.runaways.findings()
        assert found.calls == 6 and f"runaway: {html_escape(found.detail)}" in meter.footer.value
        assert "runaway: conversation" in render_html(meter.state)  # the saved snapshot says it too
        meter.close()
