"""Per-call wall time: hs.Client.chat vs a bare httpx2 post of the same request, interleaved.

Goal (issues 2 and 3): metered <= 1.10x the bare post, also with a budget and two alert
channels attached. Run: .venv/bin/python bench/bench_overhead.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, save, simulator_process  # noqa: E402

import holysheep_lab as hs  # noqa: E402

ROUNDS, CALLS = 9, 200
MESSAGES = [{"role": "user", "content": "Summarise the quarterly results in three bullet points."}]
BODY = {"model": "gpt-4.1", "messages": MESSAGES, "max_tokens": 64, "temperature": 0.7}


def per_call(fn) -> float:
    t0 = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - t0) / CALLS * 1e6


def main() -> None:
    with simulator_process() as base, tempfile.TemporaryDirectory() as tmp:
        bare = httpx2.Client(base_url=base)
        plain = hs.Client(base_url=base, log_dir=Path(tmp) / "plain")
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
            "hs_client_chat_budget_alerts": lambda: guarded.chat("gpt-4.1", MESSAGES, max_tokens=64),
        }
        for fn in variants.values():  # warm up connections and imports
            for _ in range(50):
                fn()
        samples: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(ROUNDS):
            for name, fn in variants.items():
                samples[name].append(per_call(fn))
        for c in (plain, guarded, bare):
            c.close()
        alerts.close()
    med = {k: median(v) for k, v in samples.items()}
    base_us = med["bare_httpx2_post"]
    out = {
        "per_call_us_median": {k: round(v, 1) for k, v in med.items()},
        "ratio_vs_bare": {k: round(v / base_us, 3) for k, v in med.items()},
        "rounds": ROUNDS, "calls_per_round": CALLS,
    }
    print(out)
    save("overhead", out)


if __name__ == "__main__":
    main()
