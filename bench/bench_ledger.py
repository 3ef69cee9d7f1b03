"""Ledger throughput: reserve+settle pairs per second, memory vs SQLite vs Redis.

Each pair is what the guard does for one call: reserve the worst case in a daily and a monthly
bucket (both limited), then settle the actual cost. Sequential (one thread: the latency a call
pays) and 8 threads on one ledger (contention). Median of several runs.

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

from holysheep_lab.ledger import Charge, Ledger, MemoryLedger, RedisLedger, SQLiteLedger  # noqa: E402

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


def measure(make: Callable[[], Ledger], pairs: int, threads: int, runs: int) -> dict[str, float]:
    rates = []
    for _ in range(runs):
        with make() as ledger:  # type: ignore[attr-defined]
            pairs_per_second(ledger, max(threads, pairs // 10), threads)  # warm up
            rates.append(pairs_per_second(ledger, pairs, threads))
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
                "sqlite": (lambda: SQLiteLedger(tmp / f"{uuid.uuid4().hex}.sqlite"), int(5_000 * scale)),
                "redis": (lambda: RedisLedger(server.url, prefix=f"b{uuid.uuid4().hex[:6]}:"), int(5_000 * scale)),
            }
            for name, (make, pairs) in makers.items():
                results[name] = {
                    "sequential": measure(make, pairs, 1, opts.runs),
                    "threads_8": measure(make, pairs, 8, opts.runs),
                }
                print(f"{name:7s} pairs/s  sequential {results[name]['sequential']['median']:>8,}"
                      f"   8 threads {results[name]['threads_8']['median']:>8,}", flush=True)
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
        "what": "reserve+settle pairs per second (2 buckets each), median of runs",
        "command": "python bench/bench_ledger.py" + (" --quick" if opts.quick else ""),
        "runs": opts.runs,
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
