"""Anthropic cache writes end to end: the simulator's usage (5-minute and 1-hour writes), the
adapter, the metering's cost at the write rates, the log's cache-write columns, and old logs
(schema v2, without those columns) still reading."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2
import pyarrow.parquet as pq
import pytest

import holysheep_lab as hs
from holysheep_lab.log import LogWriter, read_table
from holysheep_lab.log.schema import SCHEMA_VERSION, CallRecord

MODEL = "claude-sonnet-4.5"
# Anthropic's shape of rates: reads at 0.1x the input, 5-minute writes 1.25x, 1-hour writes 2x.
PRICE = hs.Price("3", "15", "0.30", max_output=8192, cache_write="3.75", cache_write_1h="6")
TEXT = "Quarterly numbers: 31,415 ↑ 9.2 % 😀; 𠮷野家 opened 3 stores. " * 20


def request(*, ttl: str | None = None, stream: bool = False) -> dict:
    block: dict = {"type": "text", "text": TEXT}
    if ttl is not None:
        block["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    return {"model": MODEL, "max_tokens": 200, "system": [block], "stream": stream,
            "messages": [{"role": "user", "content": "Summarise."}]}


def nanos(usage: dict) -> int:
    """The bill by hand from Anthropic's counts (input excludes reads and writes), in nanos:
    USD per 1M tokens x 1000 per token."""
    split = usage["cache_creation"]
    return (usage["input_tokens"] * 3000 + usage["cache_read_input_tokens"] * 300
            + split["ephemeral_5m_input_tokens"] * 3750 + split["ephemeral_1h_input_tokens"] * 6000
            + usage["output_tokens"] * 15000)


def final_usage(r: httpx2.Response, stream: bool) -> dict:
    if not stream:
        return r.json()["usage"]
    import json

    deltas = [json.loads(line[6:]) for line in r.text.splitlines()
              if line.startswith("data: ") and '"message_delta"' in line]
    return deltas[-1]["usage"]


@pytest.mark.parametrize("stream", [False, True])
def test_cache_writes_are_logged_and_billed_at_their_ttl_rates(log_dir, stream):
    transport = hs.MeteredTransport(log_dir=log_dir, prices={MODEL: PRICE})
    with hs.Simulator(cached_ratio=0.4, cache_write_ratio=0.3) as sim, httpx2.Client(
            base_url=sim.url, transport=transport, timeout=10) as client:
        answers = [client.post("/v1/messages", json=request(ttl=ttl, stream=stream)) for ttl in (None, "1h")]
    transport.close()
    usages = [final_usage(r, stream) for r in answers]
    five, hour = usages
    assert five["cache_creation"]["ephemeral_5m_input_tokens"] == five["cache_creation_input_tokens"] > 0
    assert hour["cache_creation"]["ephemeral_1h_input_tokens"] == hour["cache_creation_input_tokens"] > 0
    logged = read_table(log_dir).to_pylist()
    assert [row["status"] for row in logged] == ["ok", "ok"]
    for row, usage in zip(logged, usages, strict=True):
        writes = usage["cache_creation_input_tokens"]
        assert row["input_tokens"] == usage["input_tokens"] + usage["cache_read_input_tokens"] + writes
        assert (row["cached_input_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (
            usage["cache_read_input_tokens"], writes, usage["cache_creation"]["ephemeral_1h_input_tokens"])
        assert row["cost_nanos"] == nanos(usage)
        assert row["schema_version"] == SCHEMA_VERSION == 3
    # The same prompt costs more when its cache lives an hour.
    assert logged[1]["cost_nanos"] > logged[0]["cost_nanos"]


def test_logs_written_before_the_cache_write_columns_still_read(log_dir):
    with LogWriter(log_dir) as writer:
        writer.append(CallRecord(call_id="old", ts=datetime(2026, 10, 1, 12, tzinfo=UTC), model=MODEL, status="ok",
                                 input_tokens=10, output_tokens=2, cache_write_tokens=4))
    (part,) = log_dir.rglob("*.parquet")
    table = pq.read_table(part)
    pq.write_table(table.drop_columns(["cache_write_tokens", "cache_write_1h_tokens"]), part)  # a v2 file
    (row,) = read_table(log_dir).to_pylist()
    assert row["call_id"] == "old" and row["input_tokens"] == 10
    assert row["cache_write_tokens"] is None and row["cache_write_1h_tokens"] is None
    df = hs.read_log(log_dir)
    assert df["cache_write_tokens"].isna().all() and len(df) == 1
