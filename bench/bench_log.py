"""Call-log throughput: append (flushed per call), roll into Parquet, read_log of 1M rows.

    python bench/bench_log.py [--repeats 5] [--appends 50000] [--roll-rows 100000] [--read-rows 1000000]

Goals (issue 2): append with flush per call >= 50,000/s; roll >= 250,000 rows/s. Each figure
is the median of `repeats` runs in fresh folders under the system temp dir; the spread is kept
too. Also measured: appends while background rolls run (roll_rows=5000: rate and the worst
append latency, i.e. how long an append can stall behind a roll), and reading a 1M-row, 30-day
log as written by writers (5,000-row parts), after `compact`, and one week of it.
Results: bench/results/log.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["main"]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from holysheep_lab.log import CallRecord, LogWriter, compact, read_log, read_table

RESULTS = Path(__file__).parent / "results"
MODELS = ("gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2")


def records(n: int, start: datetime, span: timedelta, offset: int = 0) -> list[CallRecord]:
    """Realistic rows: a few models and projects, costs, latencies; some errors and unpriced."""
    step = span / max(n, 1)
    out = []
    for i in range(offset, offset + n):
        status = "error" if i % 50 == 0 else "unpriced" if i % 97 == 0 else "ok"
        out.append(CallRecord(
            call_id=f"01J{i:023d}", ts=start + step * (i - offset), model=MODELS[i % 4], status=status,
            input_tokens=200 + i % 1800, output_tokens=50 + i % 900, cached_input_tokens=i % 64,
            reasoning_tokens=0, cost_usd=None if status == "unpriced" else (i % 1000) * 1e-5,
            estimated_cost_usd=0.02, latency_ms=300.0 + i % 700, attempts=1 + (i % 50 == 0),
            http_status=500 if status == "error" else 200, error="HTTP 500" if status == "error" else None,
            project=("nlp", "search", None)[i % 3], price_version="builtin-2026.11",
            cost_nanos=None if status == "unpriced" else (i % 1000) * 10_000, max_tokens=1024,
            input_bytes=800 + i % 7000, conversation_id=f"{i % 5000:016x}",
        ))
    return out


def _fresh() -> Path:
    return Path(tempfile.mkdtemp(prefix="hs_bench_log_"))


def bench_append(recs: list[CallRecord], repeats: int) -> dict[str, Any]:
    rates = []
    for _ in range(repeats):
        folder = _fresh()
        w = LogWriter(folder, roll_rows=10**9, roll_interval=None)
        t0 = time.perf_counter()
        for r in recs:
            w.append(r)
        rates.append(len(recs) / (time.perf_counter() - t0))
        w.close()
        shutil.rmtree(folder)
    return {"appends_per_s": statistics.median(rates), "runs": sorted(rates), "n": len(recs),
            "goal": 50_000}


def bench_append_with_rolls(recs: list[CallRecord], repeats: int) -> dict[str, Any]:
    """Appends while the background thread rolls every 5,000 rows: rate and worst stall."""
    rates, worst, p999 = [], [], []
    for _ in range(repeats):
        folder = _fresh()
        w = LogWriter(folder, roll_rows=5000, roll_interval=None)
        lat = []
        clock = time.perf_counter
        t0 = clock()
        for r in recs:
            a = clock()
            w.append(r)
            lat.append(clock() - a)
        rates.append(len(recs) / (clock() - t0))
        w.close()
        lat.sort()
        worst.append(lat[-1] * 1e3)
        p999.append(lat[int(len(lat) * 0.999)] * 1e3)
        shutil.rmtree(folder)
    return {"appends_per_s": statistics.median(rates), "runs": sorted(rates),
            "worst_append_ms": statistics.median(worst), "p99_9_append_ms": statistics.median(p999),
            "n": len(recs), "roll_rows": 5000}


def bench_roll(recs: list[CallRecord], repeats: int) -> dict[str, Any]:
    rates = []
    for _ in range(repeats):
        folder = _fresh()
        w = LogWriter(folder, roll_rows=10**9, roll_interval=None)
        w.append_many(recs)
        t0 = time.perf_counter()
        w.roll()
        rates.append(len(recs) / (time.perf_counter() - t0))
        w.close()
        shutil.rmtree(folder)
    return {"rows_per_s": statistics.median(rates), "runs": sorted(rates), "n": len(recs),
            "goal": 250_000}


def bench_read(n: int, repeats: int) -> dict[str, Any]:
    folder = _fresh()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    span = timedelta(days=30)
    chunk = 50_000
    t0 = time.perf_counter()
    with LogWriter(folder, roll_rows=5000) as w:
        for k in range(0, n, chunk):
            size = min(chunk, n - k)
            w.append_many(records(size, start + span * (k / n), span * (size / n), offset=k))
    build = time.perf_counter() - t0
    files_before = len(list(folder.glob("date=*/*.parquet")))

    def timed(fn) -> tuple[float, list[float], Any]:
        runs, out = [], None
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            runs.append(time.perf_counter() - t)
        return statistics.median(runs), sorted(runs), out

    parts_s, parts_runs, df = timed(lambda: read_log(folder))
    assert len(df) == n, len(df)
    table_s, _, _ = timed(lambda: read_table(folder))
    t = time.perf_counter()
    summary = compact(folder)
    compact_s = time.perf_counter() - t
    files_after = len(list(folder.glob("date=*/*.parquet")))
    merged_s, merged_runs, df = timed(lambda: read_log(folder))
    assert len(df) == n
    week = (datetime(2026, 10, 10), datetime(2026, 10, 17))
    week_s, _, wk = timed(lambda: read_log(folder, start=week[0], end=week[1]))
    shutil.rmtree(folder)
    return {
        "rows": n, "build_s": build,
        "read_log_parts_s": parts_s, "read_log_parts_runs": parts_runs, "files_before_compact": files_before,
        "read_table_parts_s": table_s,
        "compact_s": compact_s, "compact": str(summary), "files_after_compact": files_after,
        "read_log_compacted_s": merged_s, "read_log_compacted_runs": merged_runs,
        "read_log_one_week_s": week_s, "one_week_rows": len(wk),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--appends", type=int, default=50_000)
    ap.add_argument("--roll-rows", type=int, default=100_000)
    ap.add_argument("--read-rows", type=int, default=1_000_000)
    ap.add_argument("--memory-dir", type=Path, default=Path("/tmp/hs_bench_log"),
                    help="the 10M-row log of bench_analysis.py (read_log peak memory; skipped if absent)")
    args = ap.parse_args()
    now = datetime(2026, 11, 28, tzinfo=UTC)
    recs = records(max(args.appends, args.roll_rows), now, timedelta(hours=1))
    result: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "platform": platform.platform(), "load_avg_at_start": os.getloadavg()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python bench/bench_log.py " + " ".join(sys.argv[1:]),
    }
    # Warm-up: first-use imports (pyarrow.parquet, numpy) must not count against the first run.
    warm = _fresh()
    with LogWriter(warm) as w:
        w.append_many(recs[:100])
    read_table(warm)
    shutil.rmtree(warm)

    result["append_flush_per_call"] = a = bench_append(recs[: args.appends], args.repeats)
    print(f"append, flushed per call: {a['appends_per_s']:,.0f}/s (goal 50,000)  runs {[round(x) for x in a['runs']]}")
    result["append_with_background_rolls"] = b = bench_append_with_rolls(recs[: args.appends], args.repeats)
    print(f"append with background rolls every 5,000: {b['appends_per_s']:,.0f}/s, "
          f"worst append {b['worst_append_ms']:.1f} ms, p99.9 {b['p99_9_append_ms']:.2f} ms")
    result["roll"] = r = bench_roll(recs[: args.roll_rows], args.repeats)
    print(f"roll into Parquet: {r['rows_per_s']:,.0f} rows/s (goal 250,000)  runs {[round(x) for x in r['runs']]}")
    result["read"] = rd = bench_read(args.read_rows, max(3, args.repeats - 2))
    print(f"read_log {rd['rows']:,} rows: {rd['read_log_parts_s']:.2f} s from {rd['files_before_compact']} "
          f"parts, {rd['read_log_compacted_s']:.2f} s after compact ({rd['files_after_compact']} files, "
          f"compact {rd['compact_s']:.1f} s); one week ({rd['one_week_rows']:,} rows) "
          f"{rd['read_log_one_week_s']:.2f} s; read_table {rd['read_table_parts_s']:.2f} s")
    if (args.memory_dir / "_bench.json").exists():
        # Peak RSS of read_log in a fresh process (minus the baseline after imports) over the
        # Arrow table's size (issue 4: at most 1.2x); the same measurement as bench_analysis.py.
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_analysis", Path(__file__).parent / "bench_analysis.py")
        analysis = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(analysis)
        mem = analysis.memory(args.memory_dir)
        result["read_log_memory"] = mem
        result["read_log_peak_memory_ratio"] = {
            "ratio": mem.get("read_log_peak_over_arrow_size"), "goal": 1.2,
            "rows": json.loads((args.memory_dir / "_bench.json").read_text())["rows"]}
        print(f"read_log peak memory: {mem.get('read_log_peak_over_arrow_size')}x the Arrow table (goal 1.2)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "log.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
