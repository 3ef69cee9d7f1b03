"""Batch throughput at 64 in flight: hs chat_many vs the official openai SDK's AsyncOpenAI
(asyncio.gather with a semaphore of 64) vs a bare httpx2 AsyncClient, in the same run against a
simulator in its own process; plus the budget meter refresher's CPU, idle and during a batch.

Goal (issue 5): chat_many >= 2x the openai SDK; refresher < 2 % of one core while idle.
Run: .venv/bin/python bench/bench_batch.py [--profile]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, save, simulator_process

import holysheep_lab as hs

ROUNDS, CALLS, CONCURRENCY = 5, 2000, 64
PROMPTS = [f"Summarise support ticket {i} in three bullet points." for i in range(CALLS)]
MAX_TOKENS = 64


def rate(seconds: float) -> float:
    return CALLS / seconds


def run_hs(client: hs.Client) -> float:
    t0 = time.perf_counter()
    results = client.chat_many(PROMPTS, model="gpt-4.1", max_tokens=MAX_TOKENS, concurrency=CONCURRENCY,
                               progress=False)
    elapsed = time.perf_counter() - t0
    assert all(isinstance(r, hs.ChatResult) for r in results), [r for r in results if not isinstance(r, hs.ChatResult)][:1]
    return rate(elapsed)


def run_openai(base: str) -> float:
    import openai

    async def main() -> float:
        sdk = openai.AsyncOpenAI(api_key="sim", base_url=base, max_retries=0,
                                 http_client=httpx2.AsyncClient(limits=httpx2.Limits(max_connections=256,
                                                                                     max_keepalive_connections=64)))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(p: str) -> None:
            async with gate:
                await sdk.chat.completions.create(model="gpt-4.1", max_tokens=MAX_TOKENS,
                                                  messages=[{"role": "user", "content": p}])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(p) for p in PROMPTS))
        elapsed = time.perf_counter() - t0
        await sdk.close()
        return rate(elapsed)

    return asyncio.run(main())


def run_httpx2(base: str) -> float:
    async def main() -> float:
        async with httpx2.AsyncClient(base_url=base, limits=httpx2.Limits(max_connections=256,
                                                                         max_keepalive_connections=64)) as http:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(p: str) -> None:
                async with gate:
                    r = await http.post("/chat/completions", json={"model": "gpt-4.1", "max_tokens": MAX_TOKENS,
                                                                   "messages": [{"role": "user", "content": p}]})
                    r.json()

            t0 = time.perf_counter()
            await asyncio.gather(*(one(p) for p in PROMPTS))
            return rate(time.perf_counter() - t0)

    return asyncio.run(main())


def cpu_share(seconds: float) -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def refresher_cpu(base: str, tmp: Path) -> dict[str, float]:
    """Idle process CPU with and without a live meter; refreshes per second during a batch."""
    from holysheep_lab.notebook import BudgetMeter

    with hs.Client(base_url=base, log_dir=tmp / "meter", budget=hs.Budget(daily=10_000)) as client:
        time.sleep(0.5)
        without = cpu_share(3.0)
        meter = BudgetMeter(client)
        time.sleep(0.5)
        idle = cpu_share(3.0)
        before = meter.updates
        t0 = time.perf_counter()
        client.chat_many(PROMPTS[:1000], model="gpt-4.1", max_tokens=MAX_TOKENS, concurrency=CONCURRENCY,
                         progress=False)
        elapsed = time.perf_counter() - t0
        per_second = (meter.updates - before) / elapsed
        meter.close()
    return {"idle_process_cpu_without_meter": round(without, 5), "idle_process_cpu_with_meter": round(idle, 5),
            "idle_meter_cpu_share_of_one_core": round(max(0.0, idle - without), 5),
            "refreshes_per_second_during_batch": round(per_second, 2)}


def profile(client: hs.Client) -> None:
    """cProfile sees one thread only: drive the same batch code (run_batch) on this thread's loop."""
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(client.achat_many(PROMPTS, model="gpt-4.1", max_tokens=MAX_TOKENS, concurrency=CONCURRENCY))
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats("holysheep_lab", 30)


def main() -> None:
    with simulator_process() as base, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        client = hs.Client(base_url=base, log_dir=tmp / "hs", budget=hs.Budget(daily=100_000, monthly=1_000_000))
        run_hs(client), run_openai(base), run_httpx2(base)  # warm up: imports, connections, JIT-free caches
        if "--profile" in sys.argv:
            profile(client)
            client.close()
            return
        samples: dict[str, list[float]] = {"hs_chat_many": [], "openai_async_gather": [], "bare_httpx2_async": []}
        for _ in range(ROUNDS):  # interleaved, so drift hits every variant alike
            samples["hs_chat_many"].append(run_hs(client))
            samples["openai_async_gather"].append(run_openai(base))
            samples["bare_httpx2_async"].append(run_httpx2(base))
        client.close()
        meter = refresher_cpu(base, tmp)
    med = {k: round(median(v), 1) for k, v in samples.items()}
    out = {
        "calls_per_second_median": med,
        "samples": {k: [round(x, 1) for x in v] for k, v in samples.items()},
        "ratio_hs_vs_openai": round(med["hs_chat_many"] / med["openai_async_gather"], 2),
        "ratio_hs_vs_bare_httpx2": round(med["hs_chat_many"] / med["bare_httpx2_async"], 2),
        "meter_refresher": meter,
        "rounds": ROUNDS, "calls_per_round": CALLS, "concurrency": CONCURRENCY,
        "goal": "hs_chat_many >= 2x openai; idle meter < 0.02 of one core",
    }
    print(out)
    save("batch", out)


if __name__ == "__main__":
    main()
