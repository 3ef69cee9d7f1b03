"""One budget per machine by default: clients logging to one folder share its ledger.

Two kernels following the README (same budget, same log folder, no `ledger=`) used to spend
1.98x the cap, each with its own per-process ledger. The default is now a mapped file in the
log folder (or the SQLite file a folder already has); `ledger=hs.MemoryLedger()` is the
per-process opt-out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from _support.other_process import call_from_another_process

import holysheep_lab as hs
from holysheep_lab.ledger.mapped import MAPPED_FILE, MappedLedger
from holysheep_lab.ledger.sqlite import LEDGER_FILE
from holysheep_lab.log import read_table

LIMIT = 0.04  # USD a day; the block line is 95 % of it
LINE_NANOS = int(LIMIT * 0.95 * 10**9)

# One process: a kernel or a script, configured as the README says (no ledger=).
CHILD = textwrap.dedent(
    """
    import json, sys, threading
    import holysheep_lab as hs
    base_url, log_dir, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
    client = hs.Client(base_url=base_url, log_dir=log_dir, budget=hs.Budget(daily=limit, monthly=None))
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start spending together
    ok, refused, other, lock = [], [], [], threading.Lock()

    def spend(i):
        # Call until the budget says no: alone, one process would fill the block line.
        for j in range(300):
            try:
                r = client.chat("gpt-4.1", "hello " * ((i + j) % 40), max_tokens=150)
            except hs.BudgetExceededError:
                with lock:
                    refused.append(1)
                return
            except Exception as exc:
                with lock:
                    other.append(repr(exc))
                return
            with lock:
                ok.append(r.record.cost_nanos)

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    print(json.dumps({"ok": len(ok), "nanos": sum(ok), "refused": len(refused), "other": other,
                      "ledger": type(client.metering.ledger).__name__}))
    """
)


def _race(base_url: str, log_dir: Path, processes: int = 2) -> list[dict[str, object]]:
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, base_url, str(log_dir), str(LIMIT)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    reports = []
    for (out, err), p in zip(outs, procs, strict=True):
        assert p.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def _worst_call_nanos() -> int:
    price = hs.PriceTable.default().price("gpt-4.1")
    return price.worst_case_nanos(2_000, 150)


def test_two_processes_on_one_log_folder_share_its_budget_with_no_configuration(log_dir: Path) -> None:
    with hs.Simulator(latency=0.002) as sim:
        reports = _race(sim.base_url, log_dir)
        completed = sim.completed
    assert all(r["other"] == [] for r in reports), reports
    assert {r["ledger"] for r in reports} == {"MappedLedger"}
    total = sum(int(r["nanos"]) for r in reports)  # type: ignore[call-overload]
    # Zero overshoot: together they stay under the one block line (each alone would reach it).
    assert total <= LINE_NANOS
    assert total > LINE_NANOS - 2 * _worst_call_nanos()  # ...and the budget was really used up
    assert all(int(r["ok"]) > 0 for r in reports)  # type: ignore[call-overload]
    assert sum(int(r["refused"]) for r in reports) > 0  # type: ignore[call-overload]
    assert sum(int(r["ok"]) for r in reports) == completed  # type: ignore[call-overload]
    # The log agrees, and a restarted process sees the spend before it sends anything.
    table = read_table(log_dir)
    assert sum(c or 0 for c in table.column("cost_nanos").to_pylist()) == total
    code = textwrap.dedent(f"""
        import json, holysheep_lab as hs
        c = hs.Client(base_url="http://127.0.0.1:9/v1", log_dir={str(log_dir)!r}, budget=hs.Budget(daily={LIMIT}, monthly=None))
        line = [x for x in c.budget_status() if x["window"] == "daily"][0]
        print(json.dumps({{"spent": line["spent_usd"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert abs(json.loads(out.stdout.strip().splitlines()[-1])["spent"] - total / 10**9) < 1e-9


def test_a_restarted_process_sees_the_spend_even_of_calls_the_log_has_not_rolled(log_dir: Path) -> None:
    with hs.Simulator() as sim:
        first = hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=hs.Budget(daily=LIMIT, monthly=None))
        spent = 0
        while True:
            try:
                spent += first.chat("gpt-4.1", "word " * 40, max_tokens=100).record.cost_nanos or 0
            except hs.BudgetExceededError:
                break
        # Left open, as a kernel that is still running: a second process must block at once.
        before = sim.requests
        out = call_from_another_process(sim.base_url, log_dir, daily=LIMIT, model="gpt-4.1", prompt="word " * 40,
                                        max_tokens=100)
        assert out.stdout.strip() == "BLOCKED daily", out.stderr[-2000:]
        assert sim.requests == before
        first.close()
    assert 0 < spent <= LINE_NANOS


def test_two_clients_in_one_process_share_it_too_and_memory_ledger_opts_out(log_dir: Path) -> None:
    budget = hs.Budget(daily=LIMIT, monthly=None)
    with hs.Simulator() as sim:
        a = hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget)
        b = hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget)
        cost = a.chat("gpt-4.1", "word " * 40, max_tokens=100).record.cost_nanos
        assert cost
        day = a.metering.guard.buckets()[("global", "daily")]
        assert b.metering.ledger.snapshot([day])[day].spent == cost
        # Explicit opt-out: a per-process budget that learns only from the log at start-up.
        own = hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget, ledger=hs.MemoryLedger())
        assert isinstance(own.metering.ledger, hs.MemoryLedger)
        a.chat("gpt-4.1", "word " * 40, max_tokens=100)
        assert own.metering.ledger.snapshot([day])[day].spent == cost  # seeded once, then on its own
        assert b.metering.ledger.snapshot([day])[day].spent == 2 * cost
        for c in (a, b, own):
            c.close()


def test_the_ledger_file_lives_hidden_in_the_log_folder(log_dir: Path) -> None:
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        c.chat("gpt-4.1", "hello", max_tokens=20)
        assert isinstance(c.metering.ledger, MappedLedger)
    assert (log_dir / MAPPED_FILE).is_file()
    assert not (log_dir / LEDGER_FILE).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a foreign file in the log folder would warn
        assert read_table(log_dir).num_rows == 1
        assert len(hs.read_log(log_dir)) == 1
