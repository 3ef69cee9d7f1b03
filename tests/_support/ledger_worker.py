"""One process of the multi-process ledger test: N threads doing reserve-then-settle loops.

Usage: python ledger_worker.py KIND TARGET PREFIX BUCKET LIMIT THREADS LOOPS SEED
Prints "ready", waits for a line on stdin (so all processes start together), runs, and prints
one JSON line: what this process saw accepted (count and settled sum) and refused.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid

from holysheep_lab.ledger import Charge, Ledger, MappedLedger, RedisLedger, SQLiteLedger

__all__ = ["main"]


def main(argv: list[str]) -> None:
    kind, target, prefix, bucket = argv[:4]
    limit, threads, loops, seed = (int(x) for x in argv[4:8])
    ledger: Ledger = (SQLiteLedger(target) if kind == "sqlite" else MappedLedger(target) if kind == "mapped"
                      else RedisLedger(target, prefix=prefix))
    expires_at = time.time() + 3600
    lock = threading.Lock()
    totals = {"accepted": 0, "settled": 0, "refused": 0, "errors": 0}
    barrier = threading.Barrier(threads)

    def run(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        barrier.wait()
        for _ in range(loops):
            rid = uuid.uuid4().hex
            amount = rng.randint(50, 150)
            try:
                refusal = ledger.reserve(rid, [Charge(bucket, amount, limit, expires_at)], ttl=120)
                if refusal is not None:
                    with lock:
                        totals["refused"] += 1
                    continue
                actual = rng.randint(amount // 2, amount)  # the call cost less than its worst case
                ledger.settle(rid, [Charge(bucket, actual, limit, expires_at)])
            except Exception as exc:  # reported to the parent, which fails the test
                print(f"worker error: {exc!r}", file=sys.stderr)
                with lock:
                    totals["errors"] += 1
                continue
            with lock:
                totals["accepted"] += 1
                totals["settled"] += actual

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    print("ready", flush=True)
    sys.stdin.readline()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    ledger.close()
    print(json.dumps(totals), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
