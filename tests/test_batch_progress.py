"""chat_many / achat_many: progress bar, budget-aware refusals, and safe interruption."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal

import pyarrow.compute as pc
import pytest

import holysheep_lab as hs
from holysheep_lab.client.progress import FAILING_COLOUR, MIXED_COLOUR, OK_COLOUR, BatchProgress
from holysheep_lab.core.display import format_usd
from holysheep_lab.log import read_table

PROMPTS = [f"Summarise ticket {i} in two sentences." for i in range(40)]


def _ledger(client) -> tuple[float, float]:
    line = next(ln for ln in client.budget_status() if ln["scope"] == "global" and ln["window"] == "daily")
    return line["spent_usd"], line["reserved_usd"]


def test_budget_refusals_never_reach_the_server(log_dir):
    with hs.Simulator(latency=0.02) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                                       budget=hs.Budget(daily=0.01, tz="UTC")) as c:
        results = c.chat_many(PROMPTS, model="gpt-4.1", max_tokens=64, concurrency=4, progress=False)
        answered = [r for r in results if isinstance(r, hs.ChatResult)]
        refused = [r for r in results if isinstance(r, hs.BudgetExceededError)]
        assert answered and refused and len(answered) + len(refused) == len(PROMPTS)
        assert sim.requests == len(answered)  # a refusal is decided before anything is sent
        # In prompt order: the answered ones come first, each refusal after the budget filled up.
        assert all(isinstance(r, hs.ChatResult) for r in results[: len(answered) // 2])
        spent, reserved = _ledger(c)
        assert reserved == 0 and spent == pytest.approx(sum(r.cost_usd for r in answered))
    table = read_table(log_dir, columns=["status", "cost_usd"])
    statuses = table["status"].to_pylist()
    assert statuses.count("ok") == len(answered) and statuses.count("blocked") == len(refused)


def test_progress_bar_shows_running_cost_and_refusals(log_dir, capsys):
    with hs.Simulator(latency=0.01) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                                       budget=hs.Budget(daily=0.005, tz="UTC")) as c:
        results = c.chat_many(PROMPTS[:20], model="gpt-4.1", max_tokens=64, concurrency=2)
    err = capsys.readouterr().err  # outside Jupyter the bar is a line on stderr
    refused = sum(isinstance(r, hs.BudgetExceededError) for r in results)
    answered = sum(isinstance(r, hs.ChatResult) for r in results)
    cost = sum(r.cost_usd for r in results if isinstance(r, hs.ChatResult))
    final = err.rstrip("\n").rsplit("\r", 1)[-1]
    assert refused and answered
    assert final.startswith("holysheep 20/20 · ")
    assert f"{answered} answered" in final and f"{refused} refused" in final and format_usd(cost) in final
    assert "failed" not in final


def test_progress_needs_no_tqdm(log_dir, capsys, monkeypatch):
    # The default progress=True runs on a plain install: no tqdm, no AttributeError.
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with hs.Simulator(latency=0.01) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                                       budget=hs.Budget(daily=0.005, tz="UTC")) as c:
        results = c.chat_many(PROMPTS[:20], model="gpt-4.1", max_tokens=64, concurrency=2)  # progress=True
    assert len(results) == 20
    assert any(isinstance(r, hs.ChatResult) for r in results)
    assert any(isinstance(r, hs.BudgetExceededError) for r in results)
    assert "holysheep 20/20" in capsys.readouterr().err


def test_progress_shows_failures_and_turns_red_when_they_dominate(log_dir, capsys):
    with hs.Simulator(latency=0.01) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        results = c.chat_many(PROMPTS[:6], model="gpt-4.l", max_tokens=16, concurrency=2)  # a typo'd model
        assert sim.requests == 0
    assert all(isinstance(r, hs.UnknownModelError) for r in results)
    final = capsys.readouterr().err.rstrip("\n").rsplit("\r", 1)[-1]
    assert "holysheep 6/6 · 0 answered · 6 failed · $0.00" in final
    assert "UnknownModelError" in final and "did you mean 'gpt-4.1'?" in final.lower() and "(x6)" in final

    bar = BatchProgress(4, widget=False, stream=io.StringIO())
    assert bar.colour == OK_COLOUR
    bar.update(results[0])
    assert bar.colour == FAILING_COLOUR  # 1 failed, 0 answered
    answer = _answer(log_dir)
    bar.update(answer)
    assert bar.colour == MIXED_COLOUR  # as many answered as failed: not dominated
    bar.update(answer)
    assert bar.colour == MIXED_COLOUR
    bar.update(hs.BudgetExceededError(scope="global", window="daily", spent=Decimal(0), reserved=Decimal(0),
                                      limit=Decimal(1), estimate=Decimal(2), resets_at=None))
    assert bar.colour == MIXED_COLOUR and bar.done == 4 and (bar.answered, bar.refused, bar.failed) == (2, 1, 1)
    assert 'data-colour="#e74c3c"' not in bar.html() and f"data-colour='{MIXED_COLOUR}'" in bar.html()


def _answer(log_dir) -> hs.ChatResult:
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        return c.chat("gpt-4.1", "hi", max_tokens=8)


def test_bad_concurrency_is_refused(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        for bad in (0, -1, 1.5, True, "4"):
            with pytest.raises(hs.ConfigError, match="concurrency"):
                c.chat_many(PROMPTS[:2], model="gpt-4.1", concurrency=bad, progress=False)
        assert sim.requests == 0


async def test_cancelling_achat_many_releases_every_reservation(log_dir):
    with hs.Simulator(latency=0.4) as sim:
        async with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=10, tz="UTC")) as c:
            task = asyncio.create_task(c.achat_many(PROMPTS, model="gpt-4.1", max_tokens=64, concurrency=4))
            await asyncio.sleep(1.0)  # two rounds answered, the third in flight
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            spent, reserved = _ledger(c)
            assert reserved == 0
            sent = sim.requests
    table = read_table(log_dir, columns=["status", "cost_usd"])
    ok = table.filter(pc.equal(table["status"], "ok"))
    assert ok.num_rows >= 4 and table.num_rows == sent  # every call sent is logged, answered or not
    assert spent == pytest.approx(pc.sum(table["cost_usd"]).as_py())


SCRIPT = textwrap.dedent("""
    import json, sys
    import holysheep_lab as hs
    sim = hs.Simulator(latency=0.4).start()
    client = hs.Client(base_url=sim.base_url, log_dir=sys.argv[1], budget=hs.Budget(daily=10, tz="UTC"),
                       log_content=True)
    prompts = [f"prompt {i}" for i in range(40)]
    print("START", flush=True)
    kept, resumed = None, None

    def said(r):  # the prompt a result answered (logged with log_content=True)
        return json.loads(r.record.prompt)[-1]["content"] if isinstance(r, hs.ChatResult) else None
    try:
        client.chat_many(prompts, model="gpt-4.1", max_tokens=64, concurrency=4, progress=False)
        outcome = "finished"
    except hs.BatchInterrupted as exc:
        outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "not a KeyboardInterrupt"
        kept = [None if r is None else (type(r).__name__, said(r)) for r in exc.results]
        line = client.budget_status().line("daily")
        spent, reserved, sent, answered = line["spent_usd"], line["reserved_usd"], sim.requests, sim.completed
        full = exc.resume()
        resumed = [(type(r).__name__, said(r)) for r in full]
    client.close()
    print(json.dumps({"outcome": outcome, "spent": spent, "reserved": reserved, "sent": sent,
                      "answered": answered, "kept": kept, "resumed": resumed, "total_sent": sim.requests}),
          flush=True)
    sim.stop()
""")


def test_ctrl_c_during_chat_many_keeps_the_answers_the_log_and_the_ledger_straight(tmp_path):
    log = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout.readline().strip() == "START"
    time.sleep(1.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["outcome"] == "interrupted" and report["reserved"] == 0
    kept = report["kept"]
    # Every finished answer is kept, in prompt order; None where the call had not finished.
    assert len(kept) == 40
    done = [i for i, k in enumerate(kept) if k is not None]
    assert len(done) >= 4 and len(done) < 40
    assert all(kept[i] == ["ChatResult", f"prompt {i}"] for i in done)
    # The log and the ledger agree with what was paid before the interrupt.
    table = read_table(log, columns=["status", "cost_usd", "prompt"])
    first = table.slice(0, report["sent"])
    assert 4 <= pc.sum(pc.equal(first["status"], "ok")).as_py() <= report["answered"]
    assert report["spent"] == pytest.approx(pc.sum(first["cost_usd"]).as_py())
    # resume() runs only the rest: the whole batch in prompt order, the finished ones not resent.
    assert report["resumed"] == [["ChatResult", f"prompt {i}"] for i in range(40)]
    assert report["total_sent"] == report["sent"] + (40 - len(done))
    assert "Traceback" not in err
