"""One team member for tests/test_redis_team.py: an hs.Client on a shared RedisLedger.

Usage: python team_worker.py BASE_URL LOG_DIR REDIS_URL DAILY_LIMIT FAIL_OPEN
Prints "ready"; then, for each stdin line "run N", makes N concurrent `achat` calls and prints
one JSON line: the costs (nanos) of the answered calls and the exception names of the others,
with the error text of the first LedgerUnavailableError. "quit" closes the client and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys

import holysheep_lab as hs


async def main(base_url: str, log_dir: str, redis_url: str, limit: str, fail_open: str) -> None:
    client = hs.Client(base_url=base_url, log_dir=log_dir,
                       ledger=hs.RedisLedger(redis_url, fail_open=fail_open == "1", socket_timeout=1.0),
                       budget=hs.Budget(daily=float(limit), monthly=None, block_at=0.95, tz="UTC"),
                       retry=hs.Retry(backoff=0.01, max_backoff=0.05))
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    batch = 0
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        n = int(line[1])
        batch += 1
        results = await asyncio.gather(
            *(client.achat("gpt-4.1", f"batch {batch} call {i} " + "lorem " * (i % 40), max_tokens=120)
              for i in range(n)), return_exceptions=True)
        ok = [r.record.cost_nanos for r in results if isinstance(r, hs.ChatResult)]
        errors = [type(r).__name__ for r in results if not isinstance(r, hs.ChatResult)]
        unavailable = next((str(r) for r in results if isinstance(r, hs.LedgerUnavailableError)), None)
        print(json.dumps({"ok": ok, "errors": errors, "unavailable": unavailable}), flush=True)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
