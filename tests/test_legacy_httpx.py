"""openai SDK < 3 (on legacy `httpx`) through hs.HttpxMeteredTransport, in its own environment.

The legacy SDK cannot live in .venv (openai 3.x is there), so `make legacy-env` builds
.venv-legacy from tests/legacy-requirements.txt (exact pins with hashes) and this test runs
tests/_support/legacy_env.py with that interpreter against a simulator it starts here. The rows
it logged must equal hs.Client's for the same requests. Under CI=true a missing environment
fails the test.

openai 2.x retries *any* exception its transport raises (then wraps it in APIConnectionError);
the legacy adapter makes our errors instances of openai.OpenAIError, which the SDK passes
through unretried, so a refusal is one 'blocked' row and raises hs.BudgetExceededError at once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _support.legacy_env import legacy_python

import holysheep_lab as hs
from holysheep_lab.log import read_table

SCRIPT = Path(__file__).parent / "_support" / "legacy_env.py"
SAME = ("model", "status", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
        "cost_nanos", "cost_usd", "estimated_cost_usd", "stream", "partial", "attempts", "http_status", "max_tokens")
REQUESTS = [
    ("gpt-4.1", "Summarise the quarterly results in three bullet points.", 200),
    ("claude-sonnet-4.5", "Write a haiku about budgets " * 3, 300),
    ("gpt-4.1", "word " * 120, 250),
    ("deepseek-v3.2", "Translate 'hello' into French.", 50),
    ("gpt-4.1", "Explain the difference between cost and price.", 400),
    ("claude-sonnet-4.5", "List five prime numbers.", 20),
    ("gemini-2.5-flash", "Say hi.", 5),
]
BUDGET = dict(daily=0.012, monthly=None, block_at=0.95, tz="UTC")


def rows(log_dir: Path) -> list[dict]:
    return read_table(log_dir).to_pylist()


def same(rs: list[dict]) -> list[tuple]:
    return [tuple(r[k] for k in SAME) for r in rs]


def reference(sim: hs.Simulator, log_dir: Path, *, stream: bool) -> list[dict]:
    with hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(**BUDGET)) as c:
        for model, prompt, max_tokens in REQUESTS:
            try:
                if stream:
                    with c.chat(model, prompt, max_tokens=max_tokens, stream=True) as s:
                        for _ in s:
                            pass
                else:
                    c.chat(model, prompt, max_tokens=max_tokens)
            except hs.BudgetExceededError:
                pass
    return rows(log_dir)


def test_openai_2_through_the_legacy_httpx_adapter(tmp_path):
    python = legacy_python()
    out = tmp_path / "legacy"
    with hs.Simulator() as sim:
        plain = reference(sim, tmp_path / "ref", stream=False)
        streamed = reference(sim, tmp_path / "ref-stream", stream=True)
        sent_before = sim.requests
        spec = {"requests": REQUESTS, "budget": BUDGET}
        proc = subprocess.run([str(python), str(SCRIPT), sim.base_url, str(out), json.dumps(spec)],
                              capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr[-3000:]
        sent = sim.requests - sent_before
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert int(report["openai"].split(".")[0]) < 3 and report["httpx"].startswith("0.")

    statuses = [r["status"] for r in plain]
    assert "ok" in statuses and "blocked" in statuses

    # sync: rows equal hs.Client's; each refusal raised as hs.BudgetExceededError, at once
    assert same(rows(out / "sync")) == same(plain)
    refused = [s["refused"] for s in report["sync"] if "refused" in s]
    assert len(refused) == statuses.count("blocked")
    for r in refused:
        assert r["type"] == "BudgetExceededError" and r["is_budget"] and r["is_openai_error"]
        assert r["cause"] is None and r["window"] == "daily"
        assert r["seconds"] < 0.4  # no SDK back-off (it would sleep 0.5 s, then 1 s)
    oks = [s["ok"] for s in report["sync"] if "ok" in s]
    assert oks == [[r["input_tokens"], r["output_tokens"]] for r in plain if r["status"] == "ok"]

    # streaming: the caller never sees the injected usage chunk; the rows have the usage
    assert same(rows(out / "stream")) == same(streamed)
    for s in filter(None, report["stream"]):
        assert s["n"] > 1 and s["all_have_choices"] and not s["any_usage"]

    # async: the same rows and refusals
    assert same(rows(out / "async")) == same(plain)
    assert [a if a == "ok" else a["type"] for a in report["async"]] == [
        "ok" if s == "ok" else "BudgetExceededError" for s in statuses]

    # a failing relay: 2 transport attempts, no SDK retries on top, one row
    assert report["retry"]["type"] == "InternalServerError" and report["retry"]["status"] == 500
    (retry_row,) = rows(out / "retry")
    assert (retry_row["status"], retry_row["attempts"]) == ("error", 2)

    # other endpoints pass through unlogged; every chat request the relay saw is accounted for
    assert report["models"] and "gpt-4.1" in report["models"]
    answered = statuses.count("ok") * 2 + [r["status"] for r in streamed].count("ok")
    assert sent == answered + 2


def test_openai_2_never_sees_an_echoed_key(tmp_path):
    from _support.echo_relay import EchoRelay

    python = legacy_python()
    key = "legacyRelayKey7Q2xw9ZkP4"  # not key-shaped: only the transport can know it is one
    with EchoRelay(gzip=True) as relay:
        proc = subprocess.run([str(python), str(SCRIPT), relay.base_url, str(tmp_path), json.dumps({"echo_key": key})],
                              capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert relay.seen == [key]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["type"] == "AuthenticationError" and "Incorrect API key provided: ***" in report["text"]
    assert key not in report["text"]
    (row,) = rows(tmp_path / "echo")
    assert "HTTP 401" in row["error"] and key not in repr(row)


@pytest.mark.parametrize("ci", ["true"])
def test_missing_legacy_env_fails_under_ci(monkeypatch, tmp_path, ci):
    from _support import legacy_env

    monkeypatch.setattr(legacy_env, "LEGACY_VENV", tmp_path / "absent")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        legacy_env.legacy_python()
