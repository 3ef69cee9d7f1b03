"""Every log below a folder: nested and multi-source folders, lists and globs, `source`, de-dup
across logs, foreign/corrupt/unrelated files named, pruning across logs, a foreign tool's hive
log, and the CLI report and served report over a team folder."""

from __future__ import annotations

import shutil
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import holysheep_lab as hs
from holysheep_lab.analysis.spend import daily_from_log
from holysheep_lab.cli import main
from holysheep_lab.errors import LogError
from holysheep_lab.log import CALL_SCHEMA, CallRecord, LogReadWarning, LogWriter, read_table
from holysheep_lab.log.reader import find_logs, scan_days

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 14, 12, tzinfo=UTC)


def rec(i: int, hours: float = 0.0, **kw) -> CallRecord:
    fields = {"model": "gpt-4.1", "status": "ok", "input_tokens": 100 + i, "output_tokens": 5,
              "cost_usd": 0.01 * (i + 1), **kw}
    return CallRecord(call_id=f"call-{i:06d}", ts=T0 + timedelta(hours=hours or i), **fields)


def write(folder: Path, records, roll: bool = True) -> None:
    w = LogWriter(folder, roll_interval=None)
    w.append_many(records)
    if roll:
        w.close()


def foreign_tool_log(folder: Path, rows: int, days: int, seed: int = 0) -> pa.Table:
    """A log written by another tool: the core columns, hive partitions by UTC date (pyarrow's
    own dataset writer, its file names and row groups). Returns what it wrote."""
    rng = np.random.default_rng(seed)
    start = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()) * 1_000_000
    ts = np.sort(start + rng.integers(0, days * 86_400_000_000, rows))
    models = np.array(["gpt-4.1", "gpt-4.1-mini", "claude-sonnet-4.5"], dtype=object)
    status = rng.choice(np.array(["ok", "error", "blocked"], dtype=object), rows, p=[0.95, 0.03, 0.02])
    tin = rng.integers(10, 5000, rows)
    cost = np.where(status == "ok", tin * 2e-6, 0.0)
    table = pa.table({
        "call_id": pa.array([f"f{i}" for i in range(rows)]),
        "ts": pa.array(ts.astype("datetime64[us]")).cast(pa.timestamp("us", tz="UTC")),
        "model": pa.array(models[rng.integers(0, 3, rows)]), "status": pa.array(status),
        "input_tokens": tin, "output_tokens": rng.integers(1, 500, rows),
        "cached_input_tokens": np.zeros(rows, np.int64), "reasoning_tokens": np.zeros(rows, np.int64),
        "cost_usd": cost, "estimated_cost_usd": cost, "latency_ms": rng.lognormal(6, 0.5, rows),
        "attempts": np.ones(rows, np.int64), "http_status": np.full(rows, 200), "error": pa.nulls(rows, pa.string()),
        "project": pa.array(np.array(["a", "b"], dtype=object)[rng.integers(0, 2, rows)]),
        "price_version": pa.array(["v1"] * rows), "schema_version": np.ones(rows, np.int64),
    })
    dated = table.append_column("date", pc.strftime(table["ts"], format="%Y-%m-%d"))
    ds.write_dataset(dated, folder, format="parquet", partitioning=["date"], partitioning_flavor="hive",
                     existing_data_behavior="overwrite_or_ignore", max_rows_per_group=20_000)
    return table


@pytest.fixture
def team(tmp_path) -> Path:
    """alice/calls (rolled), bob (a live journal and a rolled part), carol/nested/deeper (another
    tool's files), and unrelated files around them."""
    root = tmp_path / "team"
    write(root / "alice" / "calls", [rec(i, project="a") for i in range(6)])
    write(root / "bob", [rec(i, model="gpt-4.1-mini") for i in range(10, 13)])
    write(root / "bob", [rec(i, model="gpt-4.1-mini") for i in range(13, 15)], roll=False)
    carol = root / "carol" / "nested" / "deeper"
    part = carol / "date=2026-03-15"
    part.mkdir(parents=True)
    pq.write_table(pa.table({
        "call_id": ["c-1", "c-2"], "ts": pa.array([datetime(2026, 3, 15, 1), datetime(2026, 3, 15, 2)],
                                                  pa.timestamp("ms", tz="UTC")),
        "model": ["claude-sonnet-4.5"] * 2, "status": ["ok", "error"], "cost_usd": [0.5, 0.0]}), part / "x.parquet")
    (root / "README.md").write_text("team logs")
    (root / "alice" / "notebook.ipynb").write_text("{}")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "ignored.parquet").write_bytes(b"junk")
    return root


def quiet_read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)
        return hs.read_log(path, **kw)


def test_every_log_below_a_folder_is_read_with_its_source(team):
    with pytest.warns(LogReadWarning) as caught:
        df = hs.read_log(team)
    assert len(df) == 6 + 5 + 2
    assert df["ts"].is_monotonic_increasing
    assert list(df.columns) == [*CALL_SCHEMA.names, "source"] and df["source"].dtype == "category"
    by_source = df.groupby("source", observed=True)["call_id"].apply(sorted).to_dict()
    assert by_source == {"alice/calls": [f"call-{i:06d}" for i in range(6)],
                         "bob": [f"call-{i:06d}" for i in range(10, 15)],
                         "carol/nested/deeper": ["c-1", "c-2"]}
    assert df.loc[df["source"] == "carol/nested/deeper", "input_tokens"].isna().all()  # core columns only
    messages = "\n".join(str(w.message) for w in caught)
    assert str(team / "README.md") in messages and str(team / "alice" / "notebook.ipynb") in messages
    assert "ignored.parquet" not in messages  # hidden folders are not looked at
    with pytest.warns(LogReadWarning) as again:
        found = find_logs(team)
    assert str(team / "README.md") in "\n".join(str(w.message) for w in again)
    assert [(s.root, s.name) for s in found] == [
        (team / "alice" / "calls", "alice/calls"), (team / "bob", "bob"),
        (team / "carol" / "nested" / "deeper", "carol/nested/deeper")]


def test_one_log_below_the_folder_reads_as_that_log(tmp_path):
    sample = tmp_path / "sample"
    write(sample / "calls", [rec(i) for i in range(5)])
    (sample / "make_sample.py").write_text("print('hi')")
    with pytest.warns(LogReadWarning, match="make_sample.py"):
        below = hs.read_log(sample)
    direct = hs.read_log(sample / "calls")
    assert len(below) == 5 and "source" not in below.columns
    assert below.equals(direct)


def test_the_shipped_sample_reads_from_its_parent_folder():
    df = quiet_read(REPO / "data" / "sample")
    assert len(df) > 40_000 and df.equals(hs.read_log(REPO / "data" / "sample" / "calls"))


def test_a_list_and_a_glob_read_the_same_rows_as_the_folder(team):
    whole = quiet_read(team)
    listed = quiet_read([team / "alice", team / "bob", team / "carol"])
    globbed = quiet_read(str(team / "*"))
    for other in (listed, globbed):
        assert other["call_id"].tolist() == whole["call_id"].tolist()
        assert other["source"].astype(str).tolist() == whole["source"].astype(str).tolist()
    # A glob of part files (as DuckDB is given) selects the logs they are in.
    parts = quiet_read(str(team / "**" / "*.parquet"))
    assert set(parts["source"].astype(str)) == {"alice/calls", "bob", "carol/nested/deeper"}
    assert len(parts) == len(whole)  # the log's journal rows too
    with pytest.warns(LogReadWarning, match="one day of a log"):
        days = hs.read_log(str(team / "bob" / "date=*"))  # partitions, not logs: start=/end= pick days
    assert len(days) == 0
    one = quiet_read([team / "bob"])
    assert set(one["source"].astype(str)) == {"bob"}  # a list: always labelled
    with pytest.raises(LogError, match="matches nothing"):
        hs.read_log(str(team / "nobody*"))
    with pytest.raises(LogError, match="does not exist"):
        hs.read_log([team / "alice", team / "missing"])


def test_a_call_in_several_logs_is_read_once(tmp_path):
    root = tmp_path / "copies"
    write(root / "a", [rec(1), rec(2), rec(3)])
    shutil.copytree(root / "a", root / "b")  # someone copied a colleague's folder
    write(root / "b", [rec(4)])
    df = hs.read_log(root)
    assert df["call_id"].tolist() == ["call-000001", "call-000002", "call-000003", "call-000004"]
    assert df["source"].astype(str).tolist() == ["a", "a", "a", "b"]  # the first copy is kept


def test_columns_name_source_or_leave_it_out(team):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)
        assert read_table(team, columns=["ts", "cost_usd"]).column_names == ["ts", "cost_usd"]
        t = read_table(team, columns=["source", "model"])
        assert t.column_names == ["source", "model"] and pa.types.is_dictionary(t.schema.field("source").type)
        single = read_table(team / "bob", columns=["ts", "source"])
    assert set(single["source"].to_pylist()) == {"bob"}


def test_corrupt_and_foreign_files_in_any_log_are_named_and_skipped(team):
    bad = team / "bob" / "date=2026-03-14" / "part-corrupt.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    foreign = team / "carol" / "nested" / "deeper" / "date=2026-03-15" / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    stray = team / "alice" / "calls" / "date=2026-03-14" / "notes.txt"
    stray.write_text("x")
    with pytest.warns(LogReadWarning) as caught:
        df = hs.read_log(team)
    assert len(df) == 13
    messages = "\n".join(str(w.message) for w in caught)
    for path in (bad, foreign, stray):
        assert str(path) in messages


def test_date_filters_prune_partitions_in_every_log(team):
    # Break every partition but 15 March: a read of that day must not open the others.
    for part in team.rglob("date=*"):
        if part.name != "date=2026-03-15":
            for f in part.rglob("*.parquet"):
                f.write_bytes(b"garbage")
    write(team / "alice" / "calls", [rec(50, hours=14)])  # 15 March 02:00 in alice's log
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)  # the unrelated files
        warnings.filterwarnings("error", message=".*unreadable.*")
        df = hs.read_log(team, start=date(2026, 3, 15), end=date(2026, 3, 15))
    # bob's calls 12-14 fall on 15 March too (12 rolled into that partition, 13-14 in his journal).
    assert sorted(df["call_id"]) == ["c-1", "c-2", "call-000012", "call-000013", "call-000014", "call-000050"]


def test_nothing_in_range_still_gives_the_typed_columns_and_source(team, tmp_path):
    df = quiet_read(team, start="2030-01-01")
    (tmp_path / "empty").mkdir()
    empty = hs.read_log(tmp_path / "empty")  # an empty log's frame: the reference dtypes
    assert len(df) == 0 and list(df.columns) == [*empty.columns, "source"]
    assert df.drop(columns="source").dtypes.astype(str).tolist() == empty.dtypes.astype(str).tolist()
    assert df["source"].dtype == "category"


def test_scan_days_and_daily_from_log_cover_every_log(team):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)
        days = pa.concat_tables(list(scan_days(team, columns=["ts", "model", "source"])))
        whole = read_table(team, columns=["ts", "model", "source"])
        assert days.to_pylist() == whole.to_pylist()
        fast = daily_from_log(team, by="model", tz="UTC")
        slow = quiet_read(team).hs.daily(by="model", tz="UTC")
    assert fast[["date", "model", "calls"]].values.tolist() == slow[["date", "model", "calls"]].values.tolist()
    assert np.allclose(fast["cost_usd"], slow["cost_usd"])


def test_a_foreign_tools_hive_log_reads_like_pyarrow_reads_it(tmp_path):
    folder = tmp_path / "other-tool"
    written = foreign_tool_log(folder, rows=300_000, days=20)
    df = hs.read_log(folder, columns=None)
    assert len(df) == written.num_rows and "source" not in df.columns
    assert df["call_id"].tolist() == written["call_id"].to_pylist()
    d = df.hs.daily(tz="UTC")
    day = pc.floor_temporal(written["ts"], unit="day")
    ref = written.append_column("day", day).group_by("day").aggregate(
        [("cost_usd", "sum"), ("call_id", "count"), ("input_tokens", "sum")]).sort_by("day")
    assert d["calls"].tolist() == ref["call_id_count"].to_pylist()
    assert d["input_tokens"].tolist() == ref["input_tokens_sum"].to_pylist()
    assert np.allclose(d["cost_usd"], ref["cost_usd_sum"].to_numpy())
    # Its row groups are pruned by ts too: half a day reads only that half.
    noon = datetime(2026, 3, 5, 12, tzinfo=UTC)
    half = read_table(folder, start=noon, end=noon + timedelta(hours=6), columns=["ts"])
    mask = pc.and_(pc.greater_equal(written["ts"], pa.scalar(noon)),
                   pc.less(written["ts"], pa.scalar(noon + timedelta(hours=6))))
    assert half.num_rows == pc.sum(mask).as_py() > 0


def test_cli_report_reads_a_team_folder_and_several_paths(team, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)
        assert main(["report", str(team)]) == 0
        out = capsys.readouterr().out
        assert "gpt-4.1-mini" in out and "claude-sonnet-4.5" in out and "gpt-4.1 " in out
        assert main(["report", str(team / "alice"), str(team / "carol")]) == 0
        out = capsys.readouterr().out
    assert "claude-sonnet-4.5" in out and "gpt-4.1-mini" not in out


def test_served_report_and_usage_cover_a_nested_log(tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from holysheep_lab.serve import make_app

    now = datetime.now(UTC) - timedelta(minutes=5)
    write(tmp_path / "sample" / "calls", [CallRecord(call_id=f"s{i}", ts=now, model="gpt-4.1", status="ok",
                                                     input_tokens=10, output_tokens=5, cost_usd=0.25)
                                          for i in range(4)])

    async def fetch() -> tuple[dict, str]:
        async with TestClient(TestServer(make_app(tmp_path / "sample"))) as client:
            usage = await (await client.get("/api/usage/current")).json()
            page = await (await client.get("/")).text()
            return usage, page

    import asyncio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogReadWarning)
        usage, page = asyncio.run(fetch())
    assert usage["total_requests"] == 4 and usage["total_cost_usd"] == pytest.approx(1.0)
    assert "gpt-4.1" in page  # an empty log's page names no model


def test_the_pandas_path_reads_only_the_row_groups_in_range(tmp_path):
    from holysheep_lab.log import reader

    folder = tmp_path / "log" / "date=2026-03-14"
    folder.mkdir(parents=True)
    hours = [datetime(2026, 3, 14, h, tzinfo=UTC) for h in range(24)]
    pq.write_table(pa.table({"call_id": [f"h{h}" for h in range(24)], "ts": pa.array(hours, pa.timestamp("us", tz="UTC")),
                             "model": ["m"] * 24, "status": ["ok"] * 24, "cost_usd": [1.0] * 24}),
                   folder / "part-hours.parquet", row_group_size=4)
    lo, hi = datetime(2026, 3, 14, 9, tzinfo=UTC), datetime(2026, 3, 14, 11, tzinfo=UTC)
    part = reader._read_part(folder / "part-hours.parquet", CALL_SCHEMA, lo, hi, for_pandas=True)
    assert part.groups == [2] and part.table is not None and part.table.num_rows == 2
    df = hs.read_log(tmp_path / "log", start=lo, end=hi)
    assert df["call_id"].tolist() == ["h9", "h10"] and df["input_tokens"].isna().all()
