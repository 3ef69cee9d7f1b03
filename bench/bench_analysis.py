"""Daily spend by model on a 10M-row log: DuckDB vs pandas vs polars vs holysheep-lab; and
`read_log` + `df.hs.daily()` on a 3M-row log written by another tool vs pyarrow alone.

    python bench/bench_analysis.py [--rows 10000000] [--days 180] [--dir /tmp/hs_bench_log] [--runs 3]
        [--foreign-rows 3000000] [--foreign-dir /tmp/hs_bench_foreign] [--rounds 7]

The foreign logs: the core columns (call_id .. schema_version), hive partitions by UTC date,
written by DuckDB (COPY ... PARTITION_BY: one file per day) and by pyarrow's dataset writer
(three overlapping files per day), see `make_foreign_log`. Measured in interleaved
rounds in the same run: `pq.read_table` + `Table.group_by` (per UTC day: calls, cost and token
sums) against `hs.read_log` + `df.hs.daily(tz="UTC")`, reading every column and reading only
the ones daily() needs; the figure is the median over rounds of ours / pyarrow.

Writes a synthetic hive-partitioned log (date=YYYY-MM-DD/part-0.parquet, CALL_SCHEMA, zstd;
made with pyarrow directly, reused if present), then measures in the same run, medians of
`runs` (each engine starts from the files or from the same in-memory data):

* from disk: DuckDB read_parquet + GROUP BY; pandas read_parquet + groupby; polars scan;
  ours: `spend.daily_from_log` (the log reader's `read_table` + numpy) and `read_log` + `df.hs.daily`;
* in memory: DuckDB over the Arrow table; pandas groupby; ours `df.hs.daily` on the frame
  `read_log` returns (categorical model);
* peak memory of `read_log` (RSS high-water mark in a fresh process, minus the baseline)
  against the Arrow table's size.

Results go to bench/results/analysis.json; the forecast backtest numbers too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, paired_ratio, save

MODELS = ["gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2", "gpt-4.1-mini",
          "gpt-4o-mini", "gpt-5-mini", "o4-mini"]
PROJECTS = [f"project-{i:02d}" for i in range(20)]


def make_log(root: Path, rows: int, days: int, seed: int = 0) -> None:
    """Write the synthetic log with pyarrow, one file per UTC day (skipped if already there)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from holysheep_lab.log.schema import CALL_SCHEMA

    marker = root / "_bench.json"
    spec = {"rows": rows, "days": days, "seed": seed, "schema": CALL_SCHEMA.names}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    start_us = 1_779_000_000 * 1_000_000  # 2026-05-17
    per_day = np.full(days, rows // days)
    per_day[: rows % days] += 1
    model_dict = pa.array(MODELS)
    project_dict = pa.array(PROJECTS)
    status_dict = pa.array(["ok", "error", "blocked", "unpriced"])
    row0 = 0
    for d in range(days):
        n = int(per_day[d])
        ts = np.sort(start_us + d * 86_400_000_000 + rng.integers(0, 86_400_000_000, n))
        m = rng.choice(len(MODELS), n, p=np.array([8, 6, 5, 4, 3, 2, 1, 1]) / 30)
        st = rng.choice(4, n, p=[0.96, 0.02, 0.015, 0.005])
        tin = rng.integers(50, 8000, n)
        tout = rng.integers(5, 1200, n)
        cost = (tin * 2.0 + tout * 8.0) * 1e-6 * (m + 1) / 3
        cost = np.where(st == 3, np.nan, np.where(st == 0, cost, 0.0))
        cols: dict[str, Any] = {
            "call_id": pc.cast(pa.array(np.arange(row0, row0 + n)), pa.string()),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "model": model_dict.take(pa.array(m)),
            "status": status_dict.take(pa.array(st)),
            "input_tokens": pa.array(tin), "output_tokens": pa.array(tout),
            "cached_input_tokens": pa.array(tin // 4), "reasoning_tokens": pa.array(np.zeros(n, np.int64)),
            "cost_usd": pa.array(cost, from_pandas=True),
            "estimated_cost_usd": pa.array(np.nan_to_num(cost) * 1.5),
            "latency_ms": pa.array(rng.lognormal(6.5, 0.6, n)),
            "attempts": pa.array(np.ones(n, np.int64)), "http_status": pa.array(np.full(n, 200, np.int64)),
            "project": project_dict.take(pa.array(rng.integers(0, len(PROJECTS), n))),
            "price_version": pa.array(["builtin-2026.11"] * 1, pa.string()).take(pa.array(np.zeros(n, np.int64))),
            "schema_version": pa.array(np.ones(n, np.int64)),
            "cost_nanos": pa.array((np.nan_to_num(cost) * 1e9).astype(np.int64)),
            "stream": pa.array(np.zeros(n, bool)), "partial": pa.array(np.zeros(n, bool)),
            "endpoint": pa.array(["chat.completions"]).take(pa.array(np.zeros(n, np.int64))),
            "input_bytes": pa.array(tin * 4), "max_tokens": pa.array(np.full(n, 2048, np.int64)),
        }
        arrays = [cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type) for f in CALL_SCHEMA]
        table = pa.Table.from_arrays(arrays, schema=CALL_SCHEMA)
        day = np.datetime64(int(ts[0]), "us").astype("datetime64[D]")
        part = root / f"date={day}"
        part.mkdir()
        pq.write_table(table, part / "part-0.parquet", compression="zstd")
        row0 += n
    marker.write_text(json.dumps(spec))


CORE = ("call_id", "ts", "model", "status", "input_tokens", "output_tokens", "cached_input_tokens",
        "reasoning_tokens", "cost_usd", "estimated_cost_usd", "latency_ms", "attempts", "http_status", "error",
        "project", "price_version", "schema_version")


def _foreign_slice(rng: Any, first: int, n: int, days: int) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    start_us = 1_780_000_000 * 1_000_000
    ts = np.sort(start_us + rng.integers(0, days * 86_400_000_000, n))
    st = rng.choice(np.array(["ok", "error", "blocked"], dtype=object), n, p=[0.96, 0.03, 0.01])
    tin, tout = rng.integers(50, 8000, n), rng.integers(5, 1200, n)
    cost = np.where(st == "ok", (tin * 2.0 + tout * 8.0) * 1e-6, 0.0)
    table = pa.table({
        "call_id": pc.cast(pa.array(np.arange(first, first + n)), pa.string()),
        "ts": pa.array(ts.astype("datetime64[us]")).cast(pa.timestamp("us", tz="UTC")),
        "model": pa.array(np.array(MODELS, dtype=object)[rng.integers(0, len(MODELS), n)]),
        "status": pa.array(st), "input_tokens": tin, "output_tokens": tout,
        "cached_input_tokens": tin // 4, "reasoning_tokens": np.zeros(n, np.int64), "cost_usd": cost,
        "estimated_cost_usd": cost * 1.5, "latency_ms": rng.lognormal(6.5, 0.6, n),
        "attempts": np.ones(n, np.int64), "http_status": np.full(n, 200), "error": pa.nulls(n, pa.string()),
        "project": pa.array(np.array(PROJECTS, dtype=object)[rng.integers(0, len(PROJECTS), n)]),
        "price_version": pa.array(np.array(["vendor-2026.11"], dtype=object)[np.zeros(n, np.int64)]),
        "schema_version": np.ones(n, np.int64),
    })
    return table.append_column("date", pc.strftime(table["ts"], format="%Y-%m-%d"))


def make_foreign_log(root: Path, rows: int, writer: str, days: int = 90, seed: int = 1) -> None:
    """A log another tool wrote: the core columns, hive `date=` partitions by UTC date
    (skipped if already there). `writer` "duckdb": DuckDB's COPY ... PARTITION_BY of the rows
    ordered by ts (one file per day, a few of them not in ts order: its threads); "pyarrow":
    pyarrow's dataset writer, fed in 1M-row slices (three files per day, their ts ranges
    overlapping, so a reader that sorts must merge them)."""
    import shutil

    import pyarrow as pa
    import pyarrow.dataset as ds

    marker = root / "_bench.json"
    spec = {"rows": rows, "days": days, "seed": seed, "writer": writer, "columns": list(CORE)}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    chunk = 1_000_000
    slices = [_foreign_slice(rng, first, min(chunk, rows - first), days) for first in range(0, rows, chunk)]
    if writer == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        everything = pa.concat_tables(slices)
        del slices
        con.register("calls", everything)
        con.execute(f"COPY (SELECT * FROM calls ORDER BY ts) TO '{root}' (FORMAT parquet, PARTITION_BY (date))")
        con.close()
    else:
        for k, dated in enumerate(slices):
            ds.write_dataset(dated, root, format="parquet", partitioning=["date"], partitioning_flavor="hive",
                             basename_template=f"part-{k}-{{i}}.parquet", existing_data_behavior="overwrite_or_ignore")
    marker.write_text(json.dumps(spec))


def rounds_of(variants: dict[str, Any], rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds of each variant per round, the order alternating between rounds."""
    wall, cpu = interleaved(variants, rounds, calls=1, warmup=1)
    return ({k: [v / 1e6 for v in vs] for k, vs in wall.items()}, {k: [v / 1e6 for v in vs] for k, vs in cpu.items()})


def paired(samples: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a / b."""
    return round(paired_ratio(samples, a, b), 2)


def foreign_read_and_daily(root: Path, rounds: int) -> dict[str, Any]:
    """`read_log` + `df.hs.daily()` against `pq.read_table` + `group_by`, interleaved rounds."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import holysheep_lab as hs

    need = ["ts", "model", "status", "cost_usd", "input_tokens", "output_tokens"]
    aggs = [("call_id", "count"), ("cost_usd", "sum"), ("input_tokens", "sum"), ("output_tokens", "sum")]

    def pyarrow_all() -> Any:
        t = pq.read_table(root)
        return t.append_column("day", pc.floor_temporal(t["ts"], unit="day")).group_by("day").aggregate(aggs)

    def pyarrow_cols() -> Any:
        t = pq.read_table(root, columns=need)
        t = t.append_column("day", pc.floor_temporal(t["ts"], unit="day"))
        return t.group_by("day").aggregate([("ts", "count"), *aggs[1:]])

    def ours_all() -> Any:
        return hs.read_log(root).hs.daily(tz="UTC")

    def ours_cols() -> Any:
        return hs.read_log(root, columns=need).hs.daily(tz="UTC")

    variants = {"pyarrow_read_group_by_all_columns": pyarrow_all, "ours_read_log_hs_daily_all_columns": ours_all,
                "pyarrow_read_group_by_daily_columns": pyarrow_cols, "ours_read_log_hs_daily_daily_columns": ours_cols}
    load_before = os.getloadavg()
    wall, cpu = rounds_of(variants, rounds)
    load_after = os.getloadavg()
    ours, theirs = ours_all(), pyarrow_all().sort_by("day")
    agree = (ours["calls"].tolist() == theirs["call_id_count"].to_pylist()
             and bool(np.allclose(ours["cost_usd"], theirs["cost_usd_sum"].to_numpy())))

    return {
        "rounds": rounds, "ours_equals_pyarrow": agree,
        "load_average_1_5_15_before_after": [[round(x, 2) for x in load_before], [round(x, 2) for x in load_after]],
        "median_wall_seconds": {k: round(statistics.median(v), 3) for k, v in wall.items()},
        "median_cpu_seconds": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "ratio_all_columns": paired(wall, "ours_read_log_hs_daily_all_columns", "pyarrow_read_group_by_all_columns"),
        "ratio_daily_columns": paired(wall, "ours_read_log_hs_daily_daily_columns", "pyarrow_read_group_by_daily_columns"),
        "cpu_ratio_all_columns": paired(cpu, "ours_read_log_hs_daily_all_columns", "pyarrow_read_group_by_all_columns"),
    }


def duckdb_pair(root: Path, rounds: int) -> dict[str, Any]:
    """`read_log(columns=...)` + `df.hs.daily(by="model")` against DuckDB's hive read + GROUP BY
    on the 10M-row log, interleaved rounds (`python bench/bench_analysis.py --only-duckdb-pair`)."""
    import duckdb

    import holysheep_lab.analysis  # noqa: F401
    from holysheep_lab.log import read_log

    glob = f"{root}/*/*.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")

    def duck() -> Any:
        return con.sql("SELECT CAST(ts AS DATE) AS day, model, sum(cost_usd) AS cost, count(*) AS calls "
                       f"FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY ALL").to_arrow_table()

    def ours() -> Any:
        return read_log(root, columns=["ts", "model", "status", "cost_usd"]).hs.daily(by="model", tz="UTC")

    load_before = os.getloadavg()
    wall, _ = rounds_of({"duckdb": duck, "ours_read_log_then_hs_daily": ours}, rounds)
    load_after = os.getloadavg()
    ref, got = duck(), ours()
    agree = len(got) == ref.num_rows and int(got["calls"].sum()) == sum(ref["calls"].to_pylist())
    return {"rounds": rounds, "groups_agree": agree,
            "load_average_1_5_15_before_after": [[round(x, 2) for x in load_before], [round(x, 2) for x in load_after]],
            "median_wall_seconds": {k: round(statistics.median(v), 3) for k, v in wall.items()},
            "read_log_then_hs_daily_over_duckdb": paired(wall, "ours_read_log_then_hs_daily", "duckdb")}


def timed(fn: Any, runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


MEM_CODE = """
import resource, sys, gc
def rss():
    # High-water mark of resident memory (VmHWM; ru_maxrss as a fallback), bytes.
    try:
        return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
import pandas, pyarrow, pyarrow.parquet, pyarrow.dataset
from holysheep_lab.log import read_log, read_table
gc.collect()
base = rss()
what = sys.argv[2]
if what == "read_log":
    df = read_log(sys.argv[1])
    size = int(df.memory_usage(deep=True).sum())
elif what == "read_table":
    t = read_table(sys.argv[1])
    size = t.nbytes
else:
    import pyarrow.dataset as ds
    t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
    size = t.nbytes
print(rss() - base, size)
"""


def memory(path: Path) -> dict[str, Any]:
    out = {}
    for what in ("arrow_dataset", "read_table", "read_log"):
        res = subprocess.run([sys.executable, "-c", MEM_CODE, str(path), what], capture_output=True, text=True)
        if res.returncode != 0:
            out[what] = {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
            continue
        peak, size = map(int, res.stdout.split())
        out[what] = {"peak_rss_delta_bytes": peak, "result_bytes": size}
    arrow = out.get("arrow_dataset", {}).get("result_bytes")
    if arrow and "peak_rss_delta_bytes" in out.get("read_log", {}):
        out["read_log_peak_over_arrow_size"] = round(out["read_log"]["peak_rss_delta_bytes"] / arrow, 2)
    return out


def backtests() -> dict[str, Any]:
    """The forecast vs the baselines: synthetic histories and the sample log (14-day horizon)."""
    from holysheep_lab.testing import synthetic_series

    F = importlib.import_module("holysheep_lab.analysis.forecast")
    scenarios = {
        "flat_weekly": dict(trend=0.0), "linear_growth": dict(trend=0.3),
        "exp_growth": dict(trend=0.25, growth="exp"), "decline": dict(trend=-0.15),
        "weak_cycle_growth": dict(trend=0.2, weekend=0.85), "strong_cycle": dict(trend=0.1, weekend=0.2),
        "noisy_spiky": dict(trend=0.2, noise=0.3, spikes=0.03),
        "no_cycle_no_trend": dict(trend=0.0, weekend=1.0),
    }
    res: dict[str, Any] = {}
    for name, kw in scenarios.items():
        y, first = synthetic_series(days=180, seed=1, **kw)
        bt = F.backtest_series(y, first, horizon=14)
        res[name] = {r.method: {"mae": round(r.mae, 3), "mape": round(r.mape, 2), "total_ape": round(r.total_ape, 2)}
                     for r in bt.itertuples()}
    sample = Path(__file__).resolve().parent.parent / "data" / "sample" / "calls"
    if sample.exists():
        import holysheep_lab.analysis  # noqa: F401
        from holysheep_lab.log import read_log

        df = read_log(sample)
        for h in (7, 14, 28):
            bt = df.hs.backtest(horizon=h, tz="Europe/Berlin")
            res[f"sample_log_h{h}"] = {r.method: {"mae": round(r.mae, 3), "mape": round(r.mape, 2),
                                                  "total_ape": round(r.total_ape, 2)} for r in bt.itertuples()}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hs_bench_log"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-backtest", action="store_true")
    ap.add_argument("--foreign-rows", type=int, default=3_000_000)
    ap.add_argument("--foreign-dir", type=Path, default=Path("/tmp/hs_bench_foreign"),
                    help="the logs go to DIR-duckdb and DIR-pyarrow")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--foreign-writers", default="duckdb,pyarrow", help="which foreign logs: duckdb, pyarrow or both")
    ap.add_argument("--only-foreign", action="store_true", help="just the 3M-row foreign log comparison")
    ap.add_argument("--only-duckdb-pair", action="store_true",
                    help="just the goal's pair on the 10M-row log: read_log + hs.daily vs DuckDB, interleaved rounds")
    args = ap.parse_args()
    if args.only_duckdb_pair:
        make_log(args.dir, args.rows, args.days)
        print("versus duckdb", json.dumps(duckdb_pair(args.dir, args.rounds)), flush=True)
        return

    foreign = {}
    for writer in args.foreign_writers.split(","):
        folder = Path(f"{args.foreign_dir}-{writer}")
        t = time.perf_counter()
        make_foreign_log(folder, args.foreign_rows, writer)
        print(f"foreign log ({writer}) ready in {time.perf_counter() - t:.1f}s at {folder}", flush=True)
        foreign[f"written_by_{writer}"] = foreign_read_and_daily(folder, args.rounds)
        print("foreign", writer, json.dumps(foreign[f"written_by_{writer}"]), flush=True)
    if args.only_foreign:
        return

    t = time.perf_counter()
    make_log(args.dir, args.rows, args.days)
    print(f"log ready in {time.perf_counter() - t:.1f}s at {args.dir}", flush=True)

    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    import holysheep_lab.analysis  # noqa: F401
    from holysheep_lab.analysis import spend
    from holysheep_lab.log import read_log

    glob = f"{args.dir}/*/*.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    q = ("SELECT CAST(ts AS DATE) AS day, model, sum(cost_usd) AS cost, count(*) AS calls "
         "FROM {src} GROUP BY ALL")
    disk: dict[str, float] = {}
    mem: dict[str, float] = {}
    n_groups: dict[str, int] = {}

    def duck_disk() -> Any:
        return con.sql(q.format(src=f"read_parquet('{glob}', hive_partitioning=true)")).to_arrow_table()

    def duck_disk_berlin() -> Any:
        return con.sql(
            "SELECT CAST(timezone('Europe/Berlin', ts) AS DATE) AS day, model, sum(cost_usd), count(*) "
            f"FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY ALL").to_arrow_table()

    def pandas_disk() -> Any:
        df = pd.read_parquet(args.dir, columns=["ts", "model", "cost_usd"])
        return df.groupby([df["ts"].dt.floor("D"), "model"], observed=True)["cost_usd"].agg(["sum", "count"])

    def polars_disk() -> Any:
        return (pl.scan_parquet(glob, hive_partitioning=True)
                .group_by(pl.col("ts").dt.date().alias("day"), "model")
                .agg(pl.col("cost_usd").sum(), pl.len()).collect())

    # Same work as the DuckDB query (cost and calls); then with token sums too.
    def ours_disk() -> Any:
        return spend.daily_from_log(args.dir, by="model", tz="UTC", tokens=False)

    def ours_disk_tokens() -> Any:
        return spend.daily_from_log(args.dir, by="model", tz="UTC")

    def ours_disk_berlin() -> Any:
        return spend.daily_from_log(args.dir, by="model", tz="Europe/Berlin", tokens=False)

    def ours_read_log() -> Any:
        return read_log(args.dir, columns=["ts", "model", "status", "cost_usd"]).hs.daily(by="model", tz="UTC")

    def ours_read_log_all() -> Any:
        return read_log(args.dir).hs.daily(by="model", tz="UTC")

    for name, fn in [("duckdb", duck_disk), ("duckdb_tz_berlin", duck_disk_berlin), ("pandas", pandas_disk),
                     ("polars", polars_disk), ("ours_daily_from_log", ours_disk),
                     ("ours_daily_from_log_with_token_sums", ours_disk_tokens),
                     ("ours_daily_from_log_tz_berlin", ours_disk_berlin),
                     ("ours_read_log_then_hs_daily", ours_read_log),
                     ("ours_read_log_all_columns_then_hs_daily", ours_read_log_all)]:
        disk[name], out = timed(fn, args.runs)
        n_groups[f"disk_{name}"] = len(out)
        print(f"disk   {name:34s} {disk[name]:7.3f}s  ({len(out)} groups)", flush=True)

    table = ds.dataset(args.dir, format="parquet", partitioning="hive").to_table(
        columns=["ts", "model", "cost_usd", "input_tokens", "output_tokens"])
    frame = read_log(args.dir)
    con.register("arrow_tbl", table)

    def duck_mem() -> Any:
        return con.sql(q.format(src="arrow_tbl")).to_arrow_table()

    def pandas_mem() -> Any:
        return frame.groupby([frame["ts"].dt.floor("D"), "model"], observed=True)["cost_usd"].agg(["sum", "count"])

    pl_frame = pl.from_arrow(table)

    def polars_mem() -> Any:
        return pl_frame.group_by(pl.col("ts").dt.date().alias("day"), "model").agg(pl.col("cost_usd").sum(), pl.len())

    def ours_mem() -> Any:
        return frame.hs.daily(by="model", tz="UTC")

    def ours_mem_berlin() -> Any:
        return frame.hs.daily(by="model", tz="Europe/Berlin")

    for name, fn in [("duckdb_over_arrow", duck_mem), ("pandas_groupby", pandas_mem), ("polars", polars_mem),
                     ("ours_hs_daily", ours_mem), ("ours_hs_daily_tz_berlin", ours_mem_berlin)]:
        mem[name], out = timed(fn, args.runs)
        n_groups[f"mem_{name}"] = len(out)
        print(f"memory {name:34s} {mem[name]:7.3f}s  ({len(out)} groups)", flush=True)
    # The goal's pair again in interleaved rounds (the loop above runs each engine's runs in a
    # row, so load that comes and goes favours one or the other).
    load_before = os.getloadavg()
    pair_wall, _ = rounds_of({"duckdb": duck_disk, "ours_read_log_then_hs_daily": ours_read_log,
                              "ours_daily_from_log": ours_disk}, args.rounds)
    load_after = os.getloadavg()
    versus_duckdb = {"rounds": args.rounds,
                     "load_average_1_5_15_before_after": [[round(x, 2) for x in load_before],
                                                          [round(x, 2) for x in load_after]],
                     "median_wall_seconds": {k: round(statistics.median(v), 3) for k, v in pair_wall.items()},
                     "read_log_then_hs_daily_over_duckdb": paired(pair_wall, "ours_read_log_then_hs_daily", "duckdb"),
                     "daily_from_log_over_duckdb": paired(pair_wall, "ours_daily_from_log", "duckdb")}
    print("versus duckdb", json.dumps(versus_duckdb), flush=True)
    # Same numbers as DuckDB: a correctness check of the fast paths.
    ref = duck_disk().to_pandas().groupby(["day", "model"])["cost"].sum()
    ours = ours_disk().set_index(["date", "model"])["cost_usd"]
    ours.index = ours.index.set_levels(ours.index.levels[0].date, level=0)
    agree = bool(np.allclose(ours.sort_index().to_numpy(), ref.sort_index().to_numpy()))
    frame = table = pl_frame = None  # let go of the in-memory data before measuring memory

    mem_res = memory(args.dir)
    print("memory", json.dumps(mem_res), flush=True)
    bt = {} if args.skip_backtest else backtests()
    path = save("analysis", {
        "what": "daily spend by model (UTC days unless noted), median seconds of runs; read_log memory; "
                "forecast backtest (MAE USD/day, MAPE %, total_ape = error of the horizon total %)",
        "command": "python bench/bench_analysis.py",
        "rows": args.rows, "days": args.days, "models": len(MODELS), "projects": len(PROJECTS),
        "runs": args.runs,
        "from_disk_seconds": {k: round(v, 3) for k, v in disk.items()},
        "in_memory_seconds": {k: round(v, 3) for k, v in mem.items()},
        "groups": n_groups, "ours_equals_duckdb": agree,
        "read_log_memory": mem_res,
        "versus_duckdb_interleaved": versus_duckdb,
        "foreign_log_3m": {"rows": args.foreign_rows, "command": "python bench/bench_analysis.py --only-foreign",
                           **foreign},
        "backtest": bt,
    })
    print(f"saved {path}")


if __name__ == "__main__":
    main()
