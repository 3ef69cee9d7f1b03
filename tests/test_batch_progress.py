"""chat_many / achat_many: progress bar, budget-aware refusals, and safe interruption."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.compute as pc
import pytest

import holysheep_lab as hs
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
    err = capsys.readouterr().err  # tqdm.auto is text outside Jupyter, on stderr
    refused = sum(isinstance(r, hs.BudgetExceededError) for r in results)
    cost = sum(r.cost_usd for r in results if isinstance(r, hs.ChatResult))
    assert "holysheep" in err and "20/20" in err
    assert f"refused={refused}" in err and f"cost=${cost:.4f}" in err


def test_progress_without_tqdm_runs_silently(log_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm is optional: `import tqdm.auto` fails
    with hs.Simulator(latency=0.01) as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                                       budget=hs.Budget(daily=0.005, tz="UTC")) as c:
        results = c.chat_many(PROMPTS[:20], model="gpt-4.1", max_tokens=64, concurrency=2)  # progress=True
    assert len(results) == 20
    assert any(isinstance(r, hs.ChatResult) for r in results)
    assert any(isinstance(r, hs.BudgetExceededError) for r in results)
    assert "holysheep" not in capsys.readouterr().err


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
    client = hs.Client(base_url=sim.base_url, log_dir=sys.argv[1], budget=hs.Budget(daily=10, tz="UTC"))
    print("START", flush=True)
    try:
        client.chat_many([f"prompt {i}" for i in range(40)], model="gpt-4.1", max_tokens=64, concurrency=4,
                         progress=False)
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "interrupted"
    line = client.budget_status()[0]
    client.close()
    print(json.dumps({"outcome": outcome, "spent": line["spent_usd"], "reserved": line["reserved_usd"],
                      "sent": sim.requests, "answered": sim.completed}), flush=True)
    sim.stop()
""")


def test_ctrl_c_during_chat_many_keeps_the_log_and_the_ledger_straight(tmp_path):
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
    table = read_table(log, columns=["status", "cost_usd"])
    ok = table.filter(pc.equal(table["status"], "ok")).num_rows
    assert table.num_rows == report["sent"]  # every request sent is one row
    assert 4 <= ok <= report["answered"]  # what was answered and read is logged as ok
    assert report["spent"] == pytest.approx(pc.sum(table["cost_usd"]).as_py())
    assert "Traceback" not in err
