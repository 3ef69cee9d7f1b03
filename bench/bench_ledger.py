"""Ledger throughput: reserve+settle pairs per second, memory vs mapped file vs SQLite vs Redis.

Each pair is what the guard does for one call: reserve the worst case in a daily and a monthly
bucket (both limited), then settle the actual cost. Sequential (one thread: the latency a call
pays) and 8 threads on one ledger (contention). Median of several runs; each backend's runs are
interleaved with the others' (round by round), so load drifting over the run hits all alike.
The machine-wide default is the mapped file (`MappedLedger`); SQLite beside it is the baseline
it replaced and the memory ledger the per-process floor, both measured in the same run.

    python bench/bench_ledger.py            # starts its own redis-server on a free port
    python bench/bench_ledger.py --quick    # fewer pairs, for a smoke run

Writes bench/results/ledger.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the real redis-server helper the tests use

from _support.redis_server import RedisServer  # noqa: E402

from holysheep_lab.ledger import Charge, Ledger, MappedLedger, MemoryLedger, RedisLedger, SQLiteLedger  # noqa: E402

__all__ = ["main"]


def pairs_per_second(ledger: Ledger, pairs: int, threads: int) -> float:
    exp = time.time() + 86_400
    day, month = "global|day:bench", "global|month:bench"
    limit = 10**18  # never refuses: measure the bookkeeping, not the refusals
    per_thread = pairs // threads
    barrier = threading.Barrier(threads + 1)

    def run() -> None:
        barrier.wait()
        for _ in range(per_thread):
            rid = uuid.uuid4().hex
            ledger.reserve(rid, [Charge(day, 2_000, limit, exp), Charge(month, 2_000, limit, exp)], 600)
            ledger.settle(rid, [Charge(day, 1_000, limit, exp), Charge(month, 1_000, limit, exp)])

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return per_thread * threads / (time.perf_counter() - start)


def measure(make: Callable[[], Ledger], pairs: int, threads: int) -> float:
    with make() as ledger:  # type: ignore[attr-defined]
        pairs_per_second(ledger, max(threads, pairs // 10), threads)  # warm up
        return pairs_per_second(ledger, pairs, threads)


def summary(rates: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(rates)), "min": round(min(rates)), "max": round(max(rates))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    scale = 0.1 if opts.quick else 1.0
    tmp = Path(tempfile.mkdtemp(prefix="hs-bench-"))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        with RedisServer() as server:
            makers: dict[str, tuple[Callable[[], Ledger], int]] = {
                "memory": (MemoryLedger, int(50_000 * scale)),
                "mapped": (lambda: MappedLedger(tmp / f"{uuid.uuid4().hex}.mmap"), int(20_000 * scale)),
                "sqlite": (lambda: SQLiteLedger(tmp / f"{uuid.uuid4().hex}.sqlite"), int(5_000 * scale)),
                "redis": (lambda: RedisLedger(server.url, prefix=f"b{uuid.uuid4().hex[:6]}:"), int(5_000 * scale)),
            }
            rates: dict[str, dict[str, list[float]]] = {n: {"sequential": [], "threads_8": []} for n in makers}
            for _ in range(opts.runs):  # round by round: every backend once per round
                for name, (make, pairs) in makers.items():
                    rates[name]["sequential"].append(measure(make, pairs, 1))
                    rates[name]["threads_8"].append(measure(make, pairs, 8))
            for name in makers:
                results[name] = {k: summary(v) for k, v in rates[name].items()}
                print(f"{name:7s} pairs/s  sequential {results[name]['sequential']['median']:>8,}"
                      f"   8 threads {results[name]['threads_8']['median']:>8,}", flush=True)
            for base in ("sqlite", "memory"):  # the default it replaced; the per-process floor
                same_run = {
                    k: round(statistics.median(a / b for a, b in zip(rates["mapped"][k], rates[base][k], strict=True)), 2)
                    for k in ("sequential", "threads_8")
                }
                results[f"mapped_vs_{base}"] = {k: {"median": v} for k, v in same_run.items()}
                print(f"mapped / {base} pairs/s, median of same-round ratios: {same_run}")
            # Baseline: bare PING round trips, sequential, through the same client library.
            import redis

            client = redis.Redis.from_url(server.url)
            client.ping()
            start = time.perf_counter()
            for _ in range(int(5_000 * scale)):
                client.ping()
            ping_rate = int(5_000 * scale) / (time.perf_counter() - start)
            client.close()
            results["redis_ping_baseline"] = {"sequential": {"median": round(ping_rate)}}
            print(f"redis PING round trips/s (baseline, 2 per pair) {ping_rate:,.0f}")
            redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "what": "reserve+settle pairs per second (2 buckets each), median of interleaved runs",
        "command": "python bench/bench_ledger.py" + (" --quick" if opts.quick else ""),
        "runs": opts.runs,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_end": list(__import__("os").getloadavg()),
        "machine": {
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
            "sqlite": sqlite3.sqlite_version,
            "redis_server": redis_version,
            "platform": platform.platform(),
        },
        "results": results,
    }
    path = ROOT / "bench" / "results" / "ledger.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
