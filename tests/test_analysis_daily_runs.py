"""daily() on a frame sorted by ts (as read_log returns it) sums day runs found by binary
search; it must give what the general path gives on the same rows in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import holysheep_lab.analysis  # noqa: F401  (registers df.hs)
from holysheep_lab.analysis import spend


def frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 5000
    start = pd.Timestamp("2026-03-20", tz="UTC").value // 1000  # spans the March DST switch in Europe
    us = np.sort(start + rng.integers(0, 20 * 86_400_000_000, n))
    us = us[(us < start + 5 * 86_400_000_000) | (us > start + 8 * 86_400_000_000)]  # idle days inside
    m = len(us)
    cost = rng.uniform(0, 0.1, m)
    cost[rng.random(m) < 0.05] = np.nan  # unpriced calls
    tokens = pd.array(rng.integers(1, 5000, m), dtype="Int64")
    tokens[rng.random(m) < 0.05] = pd.NA
    return pd.DataFrame({"ts": pd.to_datetime(us, unit="us", utc=True), "model": "m", "status": "ok",
                         "cost_usd": cost, "input_tokens": tokens, "output_tokens": rng.integers(1, 300, m)})


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/Sao_Paulo", "Asia/Kolkata"])
@pytest.mark.parametrize("fill", [True, False])
def test_sorted_frames_sum_day_runs_like_the_general_path(tz, fill):
    df = frame(1)
    shuffled = df.sample(frac=1.0, random_state=3)
    assert spend._day_runs(spend.utc_micros(shuffled["ts"]), spend.resolve_tz(tz)) is None
    fast, slow = spend.daily(df, tz=tz, fill=fill), spend.daily(shuffled, tz=tz, fill=fill)
    assert spend._day_runs(spend.utc_micros(df["ts"]), spend.resolve_tz(tz)) is not None
    pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=1e-12)
    assert (fast["calls"] == 0).any() == fill  # the idle days are there only when filled


def test_one_row_and_float_tokens():
    one = frame(2).iloc[:1]
    assert spend.daily(one, tz="UTC")["calls"].tolist() == [1]
    df = frame(3).assign(input_tokens=lambda d: d["input_tokens"].astype("float64") + 0.4)
    pd.testing.assert_frame_equal(spend.daily(df, tz="UTC"), spend.daily(df.iloc[::-1], tz="UTC"),
                                  check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("kind", ["category", "str", "many_categories"])
def test_by_a_label_in_day_runs_like_the_general_path(tz, kind):
    df = frame(4)
    rng = np.random.default_rng(5)
    pool = [f"m{i}" for i in range(200 if kind == "many_categories" else 4)]
    labels = pd.Series(rng.choice(pool, len(df)), dtype="object")
    labels[rng.random(len(df)) < 0.03] = None  # calls without the label: "(none)"
    df["project"] = labels.astype("category" if kind != "str" else "str").to_numpy()
    fast = spend.daily(df, by="project", tz=tz)
    slow = spend.daily(df.sample(frac=1.0, random_state=1), by="project", tz=tz)
    pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=1e-12)
    assert "(none)" in set(fast["project"]) and fast["calls"].sum() == len(df)
