"""Repricing a call log: identity under the logging table (every status, tiers, cache writes,
bounds), dated prices across a switchover at midnight in the log's zone, what-if models and
their totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx2
import numpy as np
import pandas as pd
import pytest

import holysheep_lab as hs
from holysheep_lab.analysis import compare_models, reprice, what_if
from holysheep_lab.core import pricing
from holysheep_lab.log import LogWriter
from holysheep_lab.log.schema import CallRecord

# A tier reachable by the simulator's prompts and dear cache writes, so the identity covers them.
TIERED = hs.Price("2", "10", "0.5", max_output=4096, cache_write="2.5", cache_write_1h="4",
                  tiers=[hs.Tier(above=150, input="4", output="20", cached_input="1", cache_write="5")])
TABLE = hs.PriceTable.default().extend({"sim-tiered": TIERED})
FAST = hs.Retry(max_attempts=1)


def test_tier_and_price_entry_are_public():
    assert hs.Tier is pricing.Tier and hs.PriceEntry is pricing.PriceEntry
    assert isinstance(TABLE.entry("sim-tiered"), hs.PriceEntry)


@pytest.fixture
def mixed_log(log_dir):
    """A real log with every kind of row: ok on several models (cached, reasoning, tiers, cache
    writes), usage missing, unknown (timed out), error, blocked and unpriced."""
    with hs.Simulator(cached_ratio=0.3, cache_write_ratio=0.2, reasoning_ratio=0.2, hang=2.0) as sim:
        with hs.Client(base_url=sim.base_url, log_dir=log_dir, prices=TABLE, retry=FAST, timeout=0.5,
                       allow_unpriced=True) as c:
            for model in ("gpt-4.1", "deepseek-v3.2", "gemini-2.5-pro", "sim-tiered"):
                c.chat(model, "short", max_tokens=20)
                c.chat(model, "a longer prompt that crosses the tier " * 30, max_tokens=40)
            c.chat("no-such-model", "hi", max_tokens=5)  # unpriced: answered, no price
            sim.configure(fault="no_usage")
            with pytest.warns(UserWarning, match="no usable usage"):
                c.chat("gpt-4.1", "hi", max_tokens=30)
            sim.configure(fault="timeout")
            with pytest.raises(hs.APITimeoutError):
                c.chat("sim-tiered", "hi", max_tokens=30)
            sim.configure(fault="server_error")
            with pytest.raises(hs.ServerError):
                c.chat("gpt-4.1", "hi", max_tokens=30)
            sim.configure(fault=None)
        with hs.Client(base_url=sim.base_url, log_dir=log_dir, prices=TABLE,
                       budget=hs.Budget(daily=1e-9, monthly=None)) as c, pytest.raises(hs.BudgetExceededError):
            c.chat("gpt-4.1", "hi", max_tokens=30)
        transport = hs.MeteredTransport(log_dir=log_dir, prices=TABLE)
        with httpx2.Client(base_url=sim.url, transport=transport, timeout=5) as raw:
            for ttl in (None, "1h"):
                block = {"type": "text", "text": "cache me " * 60, "cache_control": {"type": "ephemeral", "ttl": ttl}}
                r = raw.post("/v1/messages", json={"model": "sim-tiered", "max_tokens": 30, "system": [block],
                                                   "messages": [{"role": "user", "content": "go"}]})
                assert r.status_code == 200
        transport.close()
    return hs.read_log(log_dir)


def test_repricing_with_the_logging_table_changes_nothing(mixed_log):
    df = mixed_log
    statuses = set(df["status"].astype(str))
    assert {"ok", "unknown", "error", "blocked", "unpriced"} <= statuses
    assert df["usage_missing"].any() and (df["cache_write_1h_tokens"] > 0).any()
    tiered = df[df["model"] == "sim-tiered"]
    assert (tiered["input_tokens"] > 150).any() and (tiered["input_tokens"] <= 150).any()  # both sides of the tier
    again = reprice(df, TABLE)
    assert again is not df
    pd.testing.assert_frame_equal(again.drop(columns="repriced"), df)
    spend = df["status"].astype(str).isin(["ok", "error", "unknown"]) & (df["model"] != "no-such-model")
    assert again["repriced"].tolist() == spend.tolist()
    # The accessor is the same function.
    pd.testing.assert_frame_equal(df.hs.reprice(TABLE), again)


def test_repricing_under_another_table_recomputes_spend_rows_only(mixed_log):
    df = mixed_log
    doubled = {"sim-tiered": hs.Price("4", "20", "1", max_output=4096, cache_write="5", cache_write_1h="8",
                                      tiers=[hs.Tier(above=150, input="8", output="40", cached_input="2",
                                                     cache_write="10")])}
    out = df.hs.reprice(doubled)  # a dict: only its models are repriced
    mine = (df["model"] == "sim-tiered").to_numpy()
    spent = df["status"].astype(str).isin(["ok", "error", "unknown"]).to_numpy()
    assert out["repriced"].tolist() == (mine & spent).tolist()
    # Every rate doubled: each repriced row costs twice as much, bounds and tiers included.
    assert (out.loc[mine, "cost_nanos"] == 2 * df.loc[mine, "cost_nanos"]).all()
    assert (out.loc[mine, "cost_nanos"] > 0).all()
    assert set(out.loc[mine, "price_version"].astype(str)) == {hs.PriceTable(doubled).version}
    others = ~mine
    same = [c for c in df.columns if c != "price_version"]  # its categories grew by one
    pd.testing.assert_frame_equal(out.loc[others, same], df.loc[others, same])
    assert out.loc[others, "price_version"].astype(str).tolist() == df.loc[others, "price_version"].astype(str).tolist()
    assert df["cost_usd"].sum() < out["cost_usd"].sum()


PARIS = ZoneInfo("Europe/Paris")
SWITCH = datetime(2026, 3, 1, tzinfo=PARIS)  # midnight in the log's zone: 23:00 UTC the day before


def frame(rows: list[dict], log_dir) -> pd.DataFrame:
    with LogWriter(log_dir) as writer:
        for i, row in enumerate(rows):
            writer.append(CallRecord(call_id=f"c{i}", price_version="old", **row))
    return hs.read_log(log_dir)


def test_a_dated_table_prices_each_row_at_its_time_across_the_switchover(log_dir):
    just_before = SWITCH.astimezone(UTC) - timedelta(microseconds=1)
    at = SWITCH.astimezone(UTC)
    base = dict(model="m", status="ok", input_tokens=1000, output_tokens=100, cached_input_tokens=200,
                cost_usd=0.5, cost_nanos=500_000_000)
    df = frame([
        {**base, "ts": datetime(2025, 12, 31, tzinfo=UTC)},  # before the table's first price
        {**base, "ts": just_before},
        {**base, "ts": at},
        {**base, "ts": at + timedelta(days=40)},
        {**base, "ts": at, "model": "other"},  # not in the table
        {**base, "ts": at, "status": "blocked", "input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0},
        {**base, "ts": at, "status": "unpriced", "cost_usd": None, "cost_nanos": None},
    ], log_dir)
    table = hs.PriceTable({"m": [hs.Price("1", "2", "0.5", effective_from="2026-01-01"),
                                 hs.Price("3", "6", "1.5", effective_from=SWITCH)]})
    out = df.hs.reprice(table).set_index("call_id")
    ids = [f"c{i}" for i in range(7)]
    assert out.loc[ids, "repriced"].tolist() == [False, True, True, True, False, False, False]
    old = 800 * 1000 + 200 * 500 + 100 * 2000  # nanos: per 1M tokens x 1000 per token
    new = 800 * 3000 + 200 * 1500 + 100 * 6000
    assert out.loc[ids[:4], "cost_nanos"].tolist() == [500_000_000, old, new, new] and new == 3 * old
    assert out.loc[["c1", "c2"], "cost_usd"].tolist() == [old / 1e9, new / 1e9]
    assert out.loc[ids, "price_version"].astype(str).tolist() == [
        "old", table.version, table.version, table.version, "old", "old", "old"]
    assert np.isnan(out.loc["c6", "cost_usd"])  # the unpriced row stays null, not $0
    assert out["cost_nanos"].dtype == "Int64"
    assert out.loc[["c4", "c5"], "cost_usd"].tolist() == [0.5, 0.5]


def test_impossible_tokens_are_named_not_priced(log_dir):
    df = pd.DataFrame({"call_id": ["x"], "ts": [datetime(2026, 1, 1, tzinfo=UTC)], "model": ["m"],
                       "status": ["ok"], "cost_usd": [0.1], "input_tokens": [10], "output_tokens": [1],
                       "cached_input_tokens": [50]})
    with pytest.raises(hs.ConfigError, match="call x has impossible token counts"):
        reprice(df, {"m": hs.Price(1, 1)})
    with pytest.raises(hs.ConfigError, match="needs the call-log column"):
        reprice(df.drop(columns="output_tokens"), {"m": hs.Price(1, 1)})
    with pytest.raises(hs.ConfigError, match="PriceTable or a dict"):
        reprice(df, [hs.Price(1, 1)])


def by_hand(df: pd.DataFrame, rate_in: int, rate_out: int) -> int:
    """Nanos of the spend rows at a flat price (no cached or write rate: every input token at
    `rate_in` nanos), bounds included (a flat price's worst case is the same arithmetic)."""
    spend = df["status"].astype(str).isin(["ok", "error", "unknown"])
    return int((df.loc[spend, "input_tokens"] * rate_in + df.loc[spend, "output_tokens"] * rate_out).sum())


def test_what_if_and_compare_models_totals(mixed_log):
    df = mixed_log
    as_deepseek = df.hs.what_if("deepseek-v3.2")  # relay price 0.42 / 0.42, flat
    spend = df["status"].astype(str).isin(["ok", "error", "unknown"])
    assert as_deepseek["repriced"].tolist() == spend.tolist()  # every model, unpriced ones too
    assert set(as_deepseek.loc[spend, "model"].astype(str)) == {"deepseek-v3.2"}
    assert as_deepseek["logged_model"].tolist() == df["model"].tolist()
    kept = as_deepseek.loc[~spend, "model"].astype(str).tolist()
    assert kept == df.loc[~spend, "model"].astype(str).tolist() and kept
    expected = by_hand(df, 420, 420)
    assert int(as_deepseek.loc[spend, "cost_nanos"].sum()) == expected

    # Only the gpt-4.1 calls swapped: the rest keep their logged costs.
    swapped = what_if(df, "deepseek-v3.2", instead_of="gpt-4.1")
    gpt = (df["model"] == "gpt-4.1") & spend
    assert swapped["repriced"].tolist() == gpt.tolist()
    assert int(swapped["cost_nanos"].sum()) == int(df.loc[~gpt, "cost_nanos"].sum()) + by_hand(df[gpt], 420, 420)

    table = df.hs.compare_models(["deepseek-v3.2", "gpt-4.1"])
    logged = df["cost_usd"].sum()
    assert table["model"].tolist() == ["(as logged)", "deepseek-v3.2", "gpt-4.1"]
    assert table["calls"].tolist() == [len(df)] * 3 and table["repriced"].tolist()[1:] == [spend.sum()] * 2
    assert table["cost_usd"].tolist() == pytest.approx([logged, as_deepseek["cost_usd"].sum(),
                                                        what_if(df, "gpt-4.1")["cost_usd"].sum()])
    # The unpriced call (null cost) counts 0 as logged; under deepseek it is priced.
    assert table["cost_usd"][1] == pytest.approx(expected / 1e9, rel=1e-12)
    assert table["delta_usd"].tolist() == pytest.approx((table["cost_usd"] - logged).tolist())
    assert table["ratio"][0] == 1.0 and table["ratio"][1] == pytest.approx(table["cost_usd"][1] / logged)

    # Prices to try, not in any table: a dict of hs.Price.
    trial = compare_models(df, {"cheap": hs.Price("1", "2"), "dear": hs.Price("10", "20")})
    assert trial["cost_usd"].tolist()[1:] == pytest.approx([by_hand(df, 1000, 2000) / 1e9,
                                                            by_hand(df, 10_000, 20_000) / 1e9], rel=1e-12)
    with pytest.raises(hs.UnknownModelError):
        df.hs.compare_models(["no-such-model-anywhere"])
    with pytest.raises(hs.ConfigError, match="not both"):
        df.hs.compare_models({"cheap": hs.Price("1", "2")}, table=TABLE)
    with pytest.raises(hs.ConfigError, match="list of model names"):
        df.hs.compare_models("deepseek-v3.2")


def test_an_empty_log_reprices_to_an_empty_frame(log_dir):
    df = hs.read_log(log_dir)
    out = df.hs.reprice(TABLE)
    assert len(out) == 0 and "repriced" in out.columns and out["repriced"].dtype == np.bool_
    summary = df.hs.compare_models(["deepseek-v3.2"])
    assert summary["cost_usd"].tolist() == [0.0, 0.0] and np.isnan(summary["ratio"]).all()
