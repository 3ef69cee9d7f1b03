"""Per-call wall time: hs.Client.chat vs a bare httpx2 post of the same request, interleaved.

The simulator runs in its own process. Rounds alternate the variants' order; the ratio is the
median over rounds of metered / bare from the same round (robust to load shifting between
rounds). CPU time of this process per call is reported beside it.
Goal (issues 2, 3 and 10): metered <= 1.10x the bare post with the default machine-wide ledger
(a mapped file in the log folder, `MappedLedger`), also with a budget and two alert channels
attached. Beside it, for what the ledger costs: the per-process MemoryLedger, and the SQLite
ledger (the previous default, still used by folders that have one).
Run: .venv/bin/python bench/bench_overhead.py
`--phases`: instead, where the CPU of a call goes: thread CPU time of each phase inside real
calls of the default client and of the bare post (wrappers around each phase; best of 8 x 500).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, median, paired_ratio, save, simulator_process

import holysheep_lab as hs

ROUNDS, CALLS = 15, 200
MESSAGES = [{"role": "user", "content": "Summarise the quarterly results in three bullet points."}]
BODY = {"model": "gpt-4.1", "messages": MESSAGES, "max_tokens": 64, "temperature": 0.7}


def _timed(cls: Any, name: str, label: str, acc: dict[str, int]) -> None:
    """Wrap `cls.name` so each call adds its thread CPU time to `acc[label]`."""
    inner = getattr(cls, name)
    clock = time.thread_time_ns

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            acc[label] = acc.get(label, 0) + clock() - t

    setattr(cls, name, timed)


def phases(rounds: int = 8, calls: int = 500) -> None:
    from holysheep_lab.core.guard import Guard
    from holysheep_lab.core.metering import Metering
    from holysheep_lab.log.writer import LogWriter
    from holysheep_lab.transports import metered

    acc: dict[str, int] = {}
    # Sub-phases (indented) are inside the phase above them.
    for cls, name, label in [(Metering, "plan", "plan"), (Metering, "admit", "admit"), (Guard, "reserve", "  reserve"),
                             (Metering, "complete", "complete"), (Guard, "settle", "  settle"),
                             (LogWriter, "append", "  journal append"),
                             (httpx2.HTTPTransport, "handle_request", "network"), (httpx2.Response, "read", "body read"),
                             (metered, "read_unkept", "body read")]:  # hs.Client's own calls read the stream
        _timed(cls, name, label, acc)
    with simulator_process() as base, tempfile.TemporaryDirectory() as tmp:
        bare = httpx2.Client(base_url=base)
        plain = hs.Client(base_url=base, log_dir=Path(tmp) / "plain")
        variants: dict[str, Callable[[], Any]] = {
            "bare_httpx2_post": lambda: bare.post("/chat/completions", json=BODY).json(),
            "hs_client_chat": lambda: plain.chat("gpt-4.1", MESSAGES, max_tokens=64),
        }
        for fn in variants.values():
            for _ in range(300):
                fn()
        best: dict[str, tuple[int, dict[str, int]]] = {}
        for _ in range(rounds):
            for name, fn in variants.items():
                acc.clear()
                t = time.thread_time_ns()
                for _ in range(calls):
                    fn()
                total = time.thread_time_ns() - t
                if name not in best or total < best[name][0]:
                    best[name] = (total, dict(acc))
        plain.close()
        bare.close()
    for name, (total, parts) in best.items():
        us = {k: round(v / calls / 1000, 1) for k, v in parts.items()}
        us["the rest (client, flow, request and result objects)"] = round(
            (total - sum(v for k, v in parts.items() if not k.startswith(" "))) / calls / 1000, 1)
        print(f"{name}: {total / calls / 1000:.1f} us CPU per call", us)


def main() -> None:
    with simulator_process() as base, tempfile.TemporaryDirectory() as tmp:
        bare = httpx2.Client(base_url=base)
        plain = hs.Client(base_url=base, log_dir=Path(tmp) / "plain")  # the default: machine-wide mapped file
        memory = hs.Client(base_url=base, log_dir=Path(tmp) / "memory", ledger=hs.MemoryLedger())
        (Path(tmp) / "sqlite").mkdir()
        sqlite = hs.Client(base_url=base, log_dir=Path(tmp) / "sqlite",
                           ledger=hs.SQLiteLedger(Path(tmp) / "sqlite" / ".ledger.sqlite"))
        received: list[object] = []
        alerts = hs.AlertManager(channels=[
            hs.CallbackChannel(received.append),
            hs.WebhookChannel("http://127.0.0.1:9/hook", style="generic"),  # down: must not slow calls
        ])
        guarded = hs.Client(base_url=base, log_dir=Path(tmp) / "guarded", alerts=alerts,
                            budget=hs.Budget(daily=10_000, monthly=100_000))
        variants = {
            "bare_httpx2_post": lambda: bare.post("/chat/completions", json=BODY).json(),
            "hs_client_chat": lambda: plain.chat("gpt-4.1", MESSAGES, max_tokens=64),
            "hs_client_chat_memory_ledger": lambda: memory.chat("gpt-4.1", MESSAGES, max_tokens=64),
            "hs_client_chat_sqlite_ledger": lambda: sqlite.chat("gpt-4.1", MESSAGES, max_tokens=64),
            "hs_client_chat_budget_alerts": lambda: guarded.chat("gpt-4.1", MESSAGES, max_tokens=64),
        }
        wall, cpu = interleaved(variants, ROUNDS, CALLS)
        assert type(plain.metering.ledger).__name__ == "MappedLedger"
        for c in (plain, memory, sqlite, guarded, bare):
            c.close()
        alerts.close()
    base = "bare_httpx2_post"
    out = {
        "per_call_us_median": {k: round(median(v), 1) for k, v in wall.items()},
        "ratio_vs_bare": {k: round(paired_ratio(wall, k, base), 3) for k in wall},
        "cpu_us_per_call_median": {k: round(median(v), 1) for k, v in cpu.items()},
        "cpu_ratio_vs_bare": {k: round(paired_ratio(cpu, k, base), 3) for k in cpu},
        "goal": "ratio <= 1.10",
        "load_average_at_end": list(os.getloadavg()),
        "rounds": ROUNDS, "calls_per_round": CALLS,
    }
    print(out)
    save("overhead", out)


if __name__ == "__main__":
    phases() if "--phases" in sys.argv else main()
