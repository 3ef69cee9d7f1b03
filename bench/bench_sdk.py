"""The metered transport under the openai SDK vs the SDK alone: per-call wall time, interleaved.

Same requests, same simulator (in its own process, so it does not share our GIL), rounds
interleaved (alternating order) so drift hits every variant alike. Each round gives a per-call
mean for every variant; the overhead is the median over rounds of the paired ratio
metered / alone (robust to load shifting between rounds). Besides wall time it reports this
process's CPU time per call (the simulator runs elsewhere): on a shared, loaded machine the CPU
figure is the steadier measure of what the transport adds.
Goal (issue 6): the metered SDK within 5 % of the SDK alone.

Variants (sync `openai.OpenAI`, httpx2 under it):
- sdk_alone / sdk_metered: a chat completion;
- sdk_alone_stream / sdk_metered_stream: the same streamed and read to the end (the metered
  one injects the usage request and strips the usage chunk);
- sdk_metered_budget: metered with a budget and two alert channels (one of them down).

Run: .venv/bin/python bench/bench_sdk.py [--profile]   (--profile: cProfile the metered call)
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
from pathlib import Path

import httpx2
import openai

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, median, paired_ratio, save, simulator_process

import holysheep_lab as hs

ROUNDS, CALLS = 15, 100
PAIRS = {"sdk_metered": "sdk_alone", "sdk_metered_budget": "sdk_alone", "sdk_metered_stream": "sdk_alone_stream"}
MESSAGES = [{"role": "user", "content": "Summarise the quarterly results in three bullet points."}]


def main(profile: bool = False) -> None:
    with simulator_process() as base, tempfile.TemporaryDirectory() as tmp:
        def sdk(transport=None) -> openai.OpenAI:
            http = httpx2.Client(transport=transport) if transport is not None else httpx2.Client()
            return openai.OpenAI(base_url=base, api_key="x", http_client=http, max_retries=2)

        alerts = hs.AlertManager(channels=[hs.CallbackChannel(lambda alert: None),
                                           hs.WebhookChannel("http://127.0.0.1:9/hook", style="generic")])
        alone = sdk()
        metered = sdk(hs.MeteredTransport(log_dir=Path(tmp) / "metered"))
        budgeted = sdk(hs.MeteredTransport(log_dir=Path(tmp) / "budgeted", alerts=alerts,
                                           budget=hs.Budget(daily=10_000, monthly=100_000)))

        def call(client):
            return lambda: client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=64)

        def stream(client):
            def run():
                for _ in client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=64,
                                                        stream=True):
                    pass
            return run

        variants = {
            "sdk_alone": call(alone),
            "sdk_metered": call(metered),
            "sdk_metered_budget": call(budgeted),
            "sdk_alone_stream": stream(alone),
            "sdk_metered_stream": stream(metered),
        }
        if profile:
            for fn in variants.values():
                fn()
            prof = cProfile.Profile()
            prof.runcall(lambda: [variants["sdk_metered"]() for _ in range(500)])
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        wall, cpu = interleaved(variants, ROUNDS, CALLS, warmup=40)
        for c in (alone, metered, budgeted):
            c.close()
        alerts.close()
    def ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
        return round(paired_ratio(samples, a, b) - 1, 4)

    out = {
        "wall_us_per_call_median": {k: round(median(v), 1) for k, v in wall.items()},
        "cpu_us_per_call_median": {k: round(median(v), 1) for k, v in cpu.items()},
        "wall_overhead_vs_sdk_alone": {a: ratio(wall, a, b) for a, b in PAIRS.items()},
        "cpu_overhead_vs_sdk_alone": {a: ratio(cpu, a, b) for a, b in PAIRS.items()},
        "cpu_us_added_per_call": {a: round(median([x - y for x, y in zip(cpu[a], cpu[b], strict=True)]), 1)
                                  for a, b in PAIRS.items()},
        "goal": "overhead <= 0.05",
        "openai": openai.__version__,
        "load_average_at_end": list(os.getloadavg()),
        "rounds": ROUNDS, "calls_per_round": CALLS,
    }
    print(out)
    save("sdk", out)


if __name__ == "__main__":
    main(profile="--profile" in sys.argv)
