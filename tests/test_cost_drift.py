"""The relay's own cost against ours, end to end against the simulator: a warning per call above
the tolerance, the relay's figure logged beside ours, and `df.hs.cost_drift()` listing them."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

import holysheep_lab as hs
from holysheep_lab.analysis import cost_drift
from holysheep_lab.core.metering import CostDriftWarning
from holysheep_lab.core.pricing import RELAY_COST_TOLERANCE, relay_drift

MODELS = ("gpt-4.1", "deepseek-v3.2", "claude-sonnet-4.5")


def run(log_dir, cost_factor: float, **client_options) -> list[warnings.WarningMessage]:
    """Three calls against a relay that reports its cost at `cost_factor` x the seed prices."""
    with hs.Simulator(report_cost=True, cost_factor=cost_factor, cached_ratio=0.25) as sim, hs.Client(
            base_url=sim.base_url, log_dir=log_dir, **client_options) as c, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for model in MODELS:
            c.chat(model, "How much did this cost? " * 20, max_tokens=60)
    return [w for w in seen if issubclass(w.category, CostDriftWarning)]


def test_a_relay_charging_20_percent_more_is_flagged_per_call(log_dir):
    assert RELAY_COST_TOLERANCE == 0.05
    flagged = run(log_dir, 1.2)
    assert len(flagged) == len(MODELS)
    text = str(flagged[0].message)
    assert "+20.0%" in text and "relay" in text.lower() and "5 % tolerance" in text and "gpt-4.1" in text
    assert flagged[0].filename == __file__  # points at the caller's line, not inside the library
    df = hs.read_log(log_dir)
    assert (df["relay_cost_usd"] / df["cost_usd"]).tolist() == pytest.approx([1.2] * 3, rel=1e-9)
    drift = df.hs.cost_drift()
    assert drift["model"].astype(str).tolist() == list(MODELS) and drift["call_id"].tolist() == df["call_id"].tolist()
    assert drift["drift"].tolist() == pytest.approx([0.2] * 3, rel=1e-9)
    assert drift["drift_usd"].tolist() == pytest.approx((df["cost_usd"] * 0.2).tolist(), rel=1e-9)
    assert drift.attrs["compared"] == drift.attrs["flagged"] == 3 and drift.attrs["tolerance"] == 0.05
    assert drift.attrs["relay_cost_usd"] == pytest.approx(1.2 * drift.attrs["cost_usd"], rel=1e-9)
    # A looser tolerance lists none of them.
    assert df.hs.cost_drift(tolerance=0.25).empty


def test_drift_within_the_tolerance_is_quiet_but_listed_on_request(log_dir):
    assert run(log_dir, 1.02) == []
    df = hs.read_log(log_dir)
    assert df.hs.cost_drift().empty and df.hs.cost_drift().attrs["compared"] == 3
    assert df.hs.cost_drift(tolerance=0.01)["drift"].tolist() == pytest.approx([0.02] * 3, rel=1e-9)


def test_the_tolerance_is_a_client_option(log_dir):
    assert run(log_dir, 1.2, relay_cost_tolerance=0.25) == []
    assert run(log_dir, 1.2, relay_cost_tolerance=None) == []
    assert len(run(log_dir, 1.03, relay_cost_tolerance=0.0)) == 3
    for bad in (-0.1, "5%", True):
        with pytest.raises(hs.ConfigError, match="relay_cost_tolerance"):
            hs.Client(base_url="http://127.0.0.1:9", log_dir=log_dir, relay_cost_tolerance=bad)


def test_a_relay_that_reports_no_cost_is_not_compared(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        c.chat("gpt-4.1", "hi", max_tokens=10)
    df = hs.read_log(log_dir)
    assert df["relay_cost_usd"].isna().all()
    assert df.hs.cost_drift(tolerance=0).attrs["compared"] == 0


def test_the_drift_rule():
    assert relay_drift(1.0, 1.2) == pytest.approx(0.2) and relay_drift(2.0, 1.0) == -0.5
    assert relay_drift(0.0, 0.0) == 0.0 and relay_drift(0.0, 0.1) == math.inf and relay_drift(0.0, -1) == -math.inf
    frame = pd.DataFrame({"cost_usd": [1.0, 0.0, 0.0, 2.0, None, 1.0], "relay_cost_usd": [1.2, 0.0, 0.1, 1.0, 1.0, None]})
    out = cost_drift(frame, tolerance=0.1)
    assert out.index.tolist() == [0, 2, 3]  # the log's index; rows missing a figure are not compared
    assert out["drift"].tolist() == [relay_drift(1.0, 1.2), math.inf, -0.5]
    assert out.attrs["compared"] == 4
    with pytest.raises(hs.ConfigError, match="tolerance"):
        cost_drift(frame, tolerance=-1)
    with pytest.raises(hs.ConfigError, match="relay_cost_usd"):
        cost_drift(frame.drop(columns="relay_cost_usd"))
