"""df.hs.anomalies(): growing conversations, retry storms, spend days off the forecast band, and
the report's section; on hand-made logs where the answer is known, and on the sample log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import holysheep_lab as hs
from holysheep_lab.analysis.anomalies import ANOMALY_COLUMNS, KINDS, retry_storms, spend_days
from holysheep_lab.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "calls"
T0 = datetime(2026, 5, 4, tzinfo=UTC)


def calls(n: int, start: datetime, every: timedelta, **columns) -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq=every).as_unit("us")
    base = {"ts": ts, "model": "gpt-4.1", "status": "ok", "cost_usd": 0.01, "input_tokens": 500,
            "output_tokens": 50, "attempts": 1, "conversation_id": None}
    base.update(columns)
    return pd.DataFrame(base)


def test_a_growing_conversation_is_flagged_and_a_steady_one_is_not():
    steady = calls(30, T0, timedelta(minutes=1), conversation_id="steady", input_tokens=8000)
    growing = calls(30, T0, timedelta(minutes=1), conversation_id="agent-loop",
                    input_tokens=np.arange(30) * 2000 + 1000, cost_usd=np.arange(30) * 0.02)
    found = pd.concat([steady, growing], ignore_index=True).hs.anomalies()
    assert list(found.columns) == list(ANOMALY_COLUMNS)
    growth = found[found.kind == "context_growth"]
    assert growth["subject"].tolist() == ["agent-loop"]
    row = growth.iloc[0]
    assert row.calls == 30 and row.score == pytest.approx(59_000 / 1000)
    assert row.cost_usd == pytest.approx(np.arange(30).sum() * 0.02)
    assert "1,000 to 59,000" in row.detail


def test_a_retry_storm_is_found_in_its_window_and_model():
    quiet = calls(24 * 12, T0, timedelta(minutes=5))  # a day of calls, one every 5 minutes
    burst_at = T0 + timedelta(hours=10, minutes=20)
    storm = calls(60, burst_at, timedelta(seconds=15), model="claude-sonnet-4.5", attempts=3,
                  status=["error" if i % 4 == 0 else "ok" for i in range(60)])
    other = calls(60, burst_at, timedelta(seconds=15), model="gpt-4.1-mini")  # same window, healthy
    blocked = calls(200, burst_at, timedelta(seconds=1), model="o4-mini", status="blocked", attempts=0)
    df = pd.concat([quiet, storm, other, blocked], ignore_index=True).sort_values("ts", kind="stable")
    found = retry_storms(df)
    assert found["subject"].tolist() == ["claude-sonnet-4.5"]
    row = found.iloc[0]
    # 60 calls x 15 s = 15 minutes from 10:20: the 10:20 and 10:30 windows, one storm.
    assert row.start == pd.Timestamp(T0 + timedelta(hours=10, minutes=20))
    assert row.end == pd.Timestamp(T0 + timedelta(hours=10, minutes=40))
    assert row.calls == 60 and row.score == pytest.approx((60 * 2 + 15) / 60)
    assert "135 retries and failures in 20 min" in row.detail
    assert retry_storms(df, min_events=200).empty  # thresholds hold
    assert retry_storms(df.drop(columns="attempts"), min_events=10).empty  # 10 + 5 failures: under the share
    with pytest.raises(ConfigError, match="window_minutes"):
        retry_storms(df, window_minutes=0)


def test_spend_days_off_the_band_above_and_below():
    rng = np.random.default_rng(4)
    daily = 10 * rng.lognormal(-0.005, 0.1, 70)
    daily[50], daily[60] = 45.0, 1.0  # a runaway day and a stopped job
    days = pd.date_range(T0 + timedelta(hours=12), periods=70, freq="D").as_unit("us")
    df = pd.DataFrame({"ts": days, "model": "m", "status": "ok", "cost_usd": daily})
    found = spend_days(df, tz="UTC")
    assert found["subject"].tolist() == [(T0 + timedelta(days=50)).date().isoformat(),
                                         (T0 + timedelta(days=60)).date().isoformat()]
    above, below = found.iloc[0], found.iloc[1]
    assert above.score > 3 and "above" in above.detail and below.score < 0.2 and "below" in below.detail
    assert above.start == pd.Timestamp(T0 + timedelta(days=50))
    # Judged as of day 50 (in progress): neither it nor later days are.
    assert spend_days(df, tz="UTC", now=T0 + timedelta(days=50, hours=13)).empty
    assert len(spend_days(df.iloc[:30], tz="UTC")) == 0  # too little history to judge


def test_empty_and_partial_frames():
    empty = calls(0, T0, timedelta(minutes=1))
    out = empty.hs.anomalies()
    assert out.empty and list(out.columns) == list(ANOMALY_COLUMNS)
    no_ids = calls(40, T0, timedelta(minutes=1), input_tokens=np.arange(40) * 5000 + 10).drop(
        columns=["conversation_id"])
    assert no_ids.hs.anomalies().empty


def test_the_sample_logs_context_explosion_and_its_day():
    df = hs.read_log(SAMPLE)
    found = df.hs.anomalies(tz="Europe/Berlin")
    assert set(found["kind"]) <= set(KINDS)
    growth = found[found.kind == "context_growth"]
    assert growth["subject"].str.startswith("conv-explosion").any()
    days = found[found.kind == "spend_day"]
    explosion = days[days.subject == "2026-10-14"]
    assert len(explosion) == 1 and explosion.iloc[0].score > 2
    assert len(days) <= 8  # a handful of ~90 judged days, not every other one


def test_the_report_has_an_anomalies_section():
    df = hs.read_log(SAMPLE, start=date(2026, 9, 1))
    page = hs.report(df, tz="Europe/Berlin").html
    section = page[page.index("<h2>Anomalies</h2>"):]
    section = section[: section.index("<h2>", 5)]
    assert "conv-explosion" in section and "2026-10-14" in section and "above the 99% band" in section
