"""Spend analytics: the pure functions in holysheep_lab.analysis.spend and the df.hs accessor."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import holysheep_lab as hs
import holysheep_lab.analysis as A
from holysheep_lab.analysis import frames, spend
from holysheep_lab.core.budget import Budget
from holysheep_lab.errors import ConfigError
from holysheep_lab.log.schema import CALL_SCHEMA


def make_log(days: int = 10, per_day: int = 20, start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
             seed: int = 0, models=("gpt-4.1", "deepseek-v3.2", "gemini-2.5-flash")) -> pd.DataFrame:
    """A small call log in the shape read_log returns."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    ts = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n)), unit="s")
    status = rng.choice(["ok", "ok", "ok", "ok", "ok", "ok", "ok", "error", "blocked"], n)
    model = rng.choice(list(models), n)
    tin = np.where(status == "ok", rng.integers(100, 5000, n), 0)
    tout = np.where(status == "ok", rng.integers(10, 800, n), 0)
    cost = np.where(status == "ok", (tin + tout) * 2e-6, 0.0)
    return pd.DataFrame({
        "call_id": [f"c{i}" for i in range(n)],
        "ts": pd.DatetimeIndex(ts).as_unit("us"),
        "model": pd.Categorical(model),
        "status": pd.Categorical(status),
        "input_tokens": tin.astype("int64"),
        "output_tokens": tout.astype("int64"),
        "cached_input_tokens": (tin // 4).astype("int64"),
        "reasoning_tokens": np.zeros(n, "int64"),
        "cost_usd": cost,
        "latency_ms": np.where(status == "blocked", np.nan, rng.uniform(100, 3000, n)),
        "attempts": np.where(status == "blocked", 0, rng.choice([1, 1, 1, 2, 3], n)).astype("int64"),
        "project": pd.Categorical(rng.choice(["a", "b", None], n)),
        "conversation_id": [None] * n,
        "ttft_ms": np.nan,
    })


# --------------------------------------------------------------------------- exports, imports


def test_all_pinned():
    assert spend.__all__ == sorted(spend.__all__)
    assert set(A.__all__) >= {"daily", "monthly", "by_model", "by", "latency", "tokens_per_call",
                              "error_rates", "burn_rate", "budget_status", "context_growth",
                              "forecast", "backtest", "daily_from_log"}
    # The HTML report is a floor above the analysis it draws on.
    from holysheep_lab.reports import html

    assert {"report", "Report"} <= set(html.__all__) and hs.report is html.report


def test_import_holysheep_lab_does_not_import_pandas():
    code = "import sys, holysheep_lab; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- daily / monthly


def test_daily_totals_and_fill():
    df = make_log(days=5)
    d = df.hs.daily(tz="UTC")
    assert list(d.columns) == ["date", "calls", "cost_usd", "input_tokens", "output_tokens", "unpriced_calls"]
    assert len(d) == 5 and d["calls"].sum() == len(df)
    assert d["cost_usd"].sum() == pytest.approx(df["cost_usd"].sum())
    assert d["input_tokens"].sum() == df["input_tokens"].sum()
    # Idle days inside the range appear with zero spend.
    gap = df[(df.ts < "2026-11-02") | (df.ts >= "2026-11-03")]
    g = gap.hs.daily(tz="UTC")
    assert len(g) == 5 and g.loc[g.date == "2026-11-02", "cost_usd"].item() == 0


def test_daily_by_model_matches_pandas_groupby():
    df = make_log(days=7)
    d = df.hs.daily(by="model", tz="UTC")
    ref = (df.assign(date=df.ts.dt.tz_convert("UTC").dt.tz_localize(None).dt.floor("D"))
           .groupby(["date", "model"], observed=True)["cost_usd"].sum())
    got = d.set_index(["date", "model"])["cost_usd"]
    assert len(got) == len(ref)
    for (day, model), v in ref.items():
        assert got.loc[(day, model)] == pytest.approx(v)


def test_daily_local_day_and_dst():
    berlin = ZoneInfo("Europe/Berlin")
    stamps = [
        datetime(2026, 10, 24, 22, 30, tzinfo=UTC),  # 00:30 on the 25th in Berlin (CEST)
        datetime(2026, 10, 25, 22, 30, tzinfo=UTC),  # 23:30 on the 25th (CET, 25-hour day)
        datetime(2026, 10, 25, 23, 0, tzinfo=UTC),   # 00:00 on the 26th
    ]
    df = pd.DataFrame({"ts": pd.DatetimeIndex(stamps).as_unit("us"), "model": "m", "status": "ok",
                       "cost_usd": [1.0, 2.0, 4.0]})
    d = spend.daily(df, tz=berlin)
    assert d["date"].dt.strftime("%Y-%m-%d").tolist() == ["2026-10-25", "2026-10-26"]
    assert d["cost_usd"].tolist() == [3.0, 4.0]
    # Same in UTC: three different split.
    assert spend.daily(df, tz="UTC")["cost_usd"].tolist() == [1.0, 2.0 + 4.0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1_700_000_000, max_value=1_900_000_000), min_size=1, max_size=50),
    st.sampled_from(["America/New_York", "Europe/Berlin", "Asia/Kathmandu", "Australia/Lord_Howe",
                     "Pacific/Chatham", "UTC", "America/St_Johns"]),
)
def test_local_days_matches_pandas(seconds, zone):
    us = np.array(seconds, dtype=np.int64) * 1_000_000
    got = frames.local_days(us, ZoneInfo(zone))
    ref = (pd.DatetimeIndex(us.astype("datetime64[us]"), tz="UTC").tz_convert(zone)
           .tz_localize(None).normalize().as_unit("us").asi8 // spend.US_PER_DAY)
    assert got.tolist() == ref.tolist()


def test_time_zone_rules_naive_other_tz_and_mixed():
    utc = pd.DataFrame({"ts": pd.to_datetime(["2026-11-01 23:30"]).tz_localize("UTC"), "cost_usd": [1.0]})
    naive = utc.assign(ts=utc.ts.dt.tz_localize(None))  # naive = UTC
    tokyo = utc.assign(ts=utc.ts.dt.tz_convert("Asia/Tokyo"))  # other zone: converted
    mixed = pd.DataFrame({"ts": pd.Series(["2026-11-02T08:30:00+09:00", "2026-11-01 23:30"], dtype=object),
                          "cost_usd": [1.0, 1.0]})
    for frame in (utc, naive, tokyo):
        assert spend.daily(frame, tz="UTC")["date"].dt.strftime("%Y-%m-%d").tolist() == ["2026-11-01"]
    m = spend.daily(mixed, tz="UTC")
    assert m["calls"].tolist() == [2]
    with pytest.raises(ConfigError, match="ts"):
        spend.daily(pd.DataFrame({"ts": ["not a time"], "cost_usd": [1.0]}), tz="UTC")


def test_monthly():
    df = make_log(days=40, start=datetime(2026, 10, 10, tzinfo=UTC))
    m = df.hs.monthly(tz="UTC")
    assert m["month"].dt.strftime("%Y-%m").tolist() == ["2026-10", "2026-11"]
    assert m["cost_usd"].sum() == pytest.approx(df.cost_usd.sum())
    mb = df.hs.monthly(by="project", tz="UTC")
    assert set(mb["project"]) == {"a", "b", "(none)"}


def test_nan_costs_are_unpriced_not_nan():
    df = make_log(days=2)
    df.loc[df.index[:5], "cost_usd"] = np.nan
    d = df.hs.daily(tz="UTC")
    assert d["cost_usd"].notna().all() and d["unpriced_calls"].sum() == 5
    assert df.hs.by_model()["unpriced_calls"].sum() == 5


# --------------------------------------------------------------------------- by / stats


def test_by_model_and_project():
    df = make_log()
    bm = df.hs.by_model()
    assert list(bm.columns)[:4] == ["model", "calls", "cost_usd", "share"]
    assert bm["share"].sum() == pytest.approx(1.0)
    assert bm["cost_usd"].is_monotonic_decreasing
    bp = df.hs.by("project")
    assert "(none)" in set(bp["project"]) and bp["calls"].sum() == len(df)
    with pytest.raises(ConfigError, match="nope"):
        df.hs.by("nope")


def test_latency_tokens_errors():
    df = make_log()
    lat = df.hs.latency()
    sent = df[df.status != "blocked"]
    for _, row in lat.iterrows():
        ref = sent.loc[sent.model == row["model"], "latency_ms"]
        assert row["p50_ms"] == pytest.approx(ref.median())
        assert row["p95_ms"] == pytest.approx(ref.quantile(0.95))
        assert row["calls"] == len(ref)
    tp = df.hs.tokens_per_call()
    assert (tp["cached_share"].between(0.2, 0.3)).all()
    er = df.hs.error_rates()
    assert er["calls"].sum() == len(df)
    assert (er["ok"] + er["error"] + er["blocked"] + er["unpriced"] == er["calls"]).all()
    tot = spend.error_rates(df, by=None)
    assert tot["blocked_rate"].item() == pytest.approx((df.status == "blocked").mean())
    assert tot["retry_rate"].item() == pytest.approx((sent.attempts > 1).mean())


def test_burn_rate():
    df = make_log(days=10)
    br = df.hs.burn_rate(tz="UTC")
    assert br["period"].tolist() == ["last_24h", "last_7d", "last_30d", "today", "month_to_date"]
    end = df.ts.max()
    last7 = df.loc[df.ts > end - pd.Timedelta(days=7), "cost_usd"].sum()
    assert br.set_index("period").loc["last_7d", "cost_usd"] == pytest.approx(last7)
    assert br.set_index("period").loc["last_30d", "cost_usd"] == pytest.approx(df.cost_usd.sum())


# --------------------------------------------------------------------------- budget status


def test_budget_status_flags_projection_and_runs_out():
    # A flat $10/day, 20 days into November; monthly limit 250 -> blocks around day 24 (95 %).
    ts = pd.date_range("2026-11-01", "2026-11-20 23:00", freq="h", tz="UTC").as_unit("us")
    df = pd.DataFrame({"ts": ts, "model": "m", "status": "ok", "cost_usd": 10 / 24,
                       "project": pd.Categorical(np.where(np.arange(len(ts)) % 2, "a", "b"))})
    budget = Budget(daily=12, monthly=250, alert_at=0.8, block_at=0.95, tz="UTC",
                    projects={"a": Budget(daily=4, monthly=None), "ghost": Budget(daily=1, monthly=None)})
    bs = df.hs.budget_status(budget, now=datetime(2026, 11, 21, tzinfo=UTC))
    rows = {(r.scope, r.window): r for r in bs.itertuples()}
    month = rows[("global", "monthly")]
    assert month.spent_usd == pytest.approx(200.0)
    assert month.remaining_usd == pytest.approx(50.0)
    assert month.alert and not month.blocked
    assert month.projected_usd == pytest.approx(300.0, rel=0.05)
    assert month.runs_out.date() in (date(2026, 11, 24), date(2026, 11, 25))
    day = rows[("global", "daily")]
    assert day.spent_usd == 0.0 and day.projected_usd == pytest.approx(10.0, rel=0.1)
    assert pd.isna(day.runs_out)
    a = rows[("project:a", "daily")]
    assert a.spent_usd == 0.0 and a.limit_usd == 4.0
    ghost = rows[("project:ghost", "daily")]  # a project without calls: spent 0, no crash
    assert ghost.spent_usd == 0.0 and ghost.projected_usd == 0.0
    # As of the last call (the default "now"): the day is nearly over, 10 USD spent.
    bs2 = df.hs.budget_status(Budget(daily=9, monthly=None, tz="UTC"))
    assert bs2.loc[0, "blocked"] and bs2.loc[0, "runs_out"].date() == date(2026, 11, 20)


def test_budget_status_needs_a_budget():
    with pytest.raises(ConfigError, match="Budget"):
        make_log().hs.budget_status({"daily": 5})


# --------------------------------------------------------------------------- context growth


def test_context_growth_finds_the_explosion_only():
    base = datetime(2026, 11, 3, 12, tzinfo=UTC)
    rows = []
    for i in range(30):  # the explosion: 2k -> ~100k
        rows.append(("boom", base + timedelta(minutes=i), int(2000 * 1.15**i), 0.01 * i))
    rows.append(("boom", base + timedelta(minutes=31), 0, 0.0))  # a failed call: ignored
    for c in range(20):  # ordinary short chats that grow a little
        for i in range(4):
            rows.append((f"chat{c}", base + timedelta(hours=1, minutes=c * 5 + i), 500 + 400 * i, 0.001))
    for i in range(12):  # long but flat: not an explosion
        rows.append(("flat", base + timedelta(hours=3, minutes=i), 30_000, 0.1))
    df = pd.DataFrame(rows, columns=["conversation_id", "ts", "input_tokens", "cost_usd"])
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["model"], df["status"], df["project"] = "claude-sonnet-4.5", "ok", "support"
    cg = df.hs.context_growth()
    assert cg["conversation_id"].tolist() == ["boom"]
    r = cg.iloc[0]
    assert r.calls == 30 and r.first_input_tokens == 2000 and r.growth > 40 and r.increasing_share == 1.0
    assert r.project == "support" and r.cost_usd == pytest.approx(sum(0.01 * i for i in range(30)))
    chain = spend.context_chain(df, "boom")
    assert chain["call"].tolist()[:3] == [1, 2, 3] and chain["cum_cost_usd"].is_monotonic_increasing


# --------------------------------------------------------------------------- bad input


def test_missing_columns_are_named():
    df = make_log().drop(columns=["cost_usd", "status"])
    with pytest.raises(AttributeError, match="status, cost_usd"):
        df.hs  # noqa: B018
    with pytest.raises(ConfigError, match="cost_usd"):
        spend.daily(df)
    with pytest.raises(ConfigError, match="latency_ms"):
        make_log().drop(columns=["latency_ms"]).hs.latency()
    with pytest.raises(ConfigError, match="DataFrame"):
        spend.daily([1, 2, 3])


def test_empty_log_gives_empty_frames_with_columns():
    df = make_log().iloc[:0]
    assert df.hs.daily().empty and "cost_usd" in df.hs.daily().columns
    assert df.hs.daily(by="model").columns.tolist()[:2] == ["date", "model"]
    for res in (df.hs.monthly(), df.hs.by_model(), df.hs.by("project"), df.hs.latency(),
                df.hs.tokens_per_call(), df.hs.error_rates(), df.hs.burn_rate(), df.hs.context_growth()):
        assert res.empty and len(res.columns) > 1
    bs = df.hs.budget_status(Budget(daily=5, monthly=50, tz="UTC"))
    assert (bs["spent_usd"] == 0).all()


def test_one_day_log():
    df = make_log(days=1)
    assert len(df.hs.daily(tz="UTC")) == 1
    assert len(df.hs.monthly(tz="UTC")) == 1
    assert df.hs.burn_rate(tz="UTC")["cost_usd"].iloc[0] > 0


def test_unknown_time_zone():
    with pytest.raises(ConfigError, match="time zone"):
        make_log().hs.daily(tz="Mars/Olympus")


# --------------------------------------------------------------------------- fast path from disk


def _write_hive(df: pd.DataFrame, root) -> None:
    table = pa.Table.from_pandas(
        df.assign(model=df.model.astype(str), status=df.status.astype(str),
                  project=df.project.astype(object).where(df.project.notna(), None)),
        preserve_index=False,
    )
    full = pa.table({name: table[name] if name in table.column_names else pa.nulls(len(table), field.type)
                     for name, field in zip(CALL_SCHEMA.names, CALL_SCHEMA, strict=True)}, schema=CALL_SCHEMA)
    days = df.ts.dt.strftime("%Y-%m-%d").to_numpy()
    for day in sorted(set(days)):
        d = root / f"date={day}"
        d.mkdir()
        pq.write_table(full.filter(pa.array(days == day)), d / "part-0.parquet")


def test_daily_from_log_matches_in_memory(tmp_path):
    df = make_log(days=6, per_day=50)
    df.loc[df.index[:3], "cost_usd"] = np.nan
    _write_hive(df, tmp_path)
    for by in ("model", "project", None):
        for tz in ("UTC", "America/New_York"):
            fast = spend.daily_from_log(tmp_path, by=by, tz=tz)
            ref = spend.daily(df, by=by, tz=tz, fill=False)
            pd.testing.assert_frame_equal(fast, ref, check_dtype=False)
    # Pruned to one local day: same as filtering in memory.
    one = spend.daily_from_log(tmp_path, by="model", tz="America/New_York", start="2026-11-03", end="2026-11-03")
    ref = spend.daily(df, by="model", tz="America/New_York")
    ref = ref[ref.date == "2026-11-03"].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, ref, check_dtype=False)
    with pytest.raises(ConfigError, match="No call log"):
        spend.daily_from_log(tmp_path / "missing")
    assert spend.daily_from_log(tmp_path, start="2030-01-01").empty


def test_daily_from_log_reads_what_read_log_reads(tmp_path):
    # One reader: un-rolled journal rows count, and a call in both Parquet and a journal once.
    from holysheep_lab.log import CallRecord, LogWriter, read_log

    records = [CallRecord(call_id=f"c{i}", ts=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=5 * i),
                          model=("a", "b")[i % 2], status="ok", input_tokens=10 * i, output_tokens=i,
                          cost_usd=None if i == 7 else 0.01 * i, project=None if i % 3 else "p")
               for i in range(40)]
    rolled = LogWriter(tmp_path, roll_interval=None)
    rolled.append_many(records[:30])
    rolled.close()
    live = LogWriter(tmp_path, roll_interval=None)
    live.append_many(records[25:])  # 25-29 again (as after a crash mid-roll), 30-39 only in the journal
    try:
        df = read_log(tmp_path)
        assert len(df) == 40
        for by in ("model", "project", None):
            for tz in ("UTC", "Asia/Tokyo"):
                pd.testing.assert_frame_equal(spend.daily_from_log(tmp_path, by=by, tz=tz),
                                              spend.daily(df, by=by, tz=tz, fill=False), check_dtype=False)
    finally:
        live.close()
