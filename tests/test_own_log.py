"""A client's budget, calibration and usage report come from its own log, not from logs in its subfolders."""

from __future__ import annotations

from pathlib import Path

import pytest

import holysheep_lab as hs
from holysheep_lab.errors import LogError
from holysheep_lab.log import read_table


@pytest.fixture
def sim():
    with hs.Simulator() as s:
        yield s


def _daily_spent(client: hs.Client) -> float:
    return [ln for ln in client.budget_status() if ln["window"] == "daily"][0]["spent_usd"]


def _spend(base_url: str, log_dir: Path, calls: int) -> float:
    budget = hs.Budget(daily=100.0, monthly=None)
    with hs.Client(base_url=base_url, log_dir=log_dir, budget=budget, ledger=hs.MemoryLedger()) as client:
        for _ in range(calls):
            client.chat("gpt-4.1", "hello", max_tokens=16)
        return _daily_spent(client)


def test_restart_counts_only_its_own_log(sim, tmp_path: Path) -> None:
    own = _spend(sim.base_url, tmp_path / "team", 2)
    nested = _spend(sim.base_url, tmp_path / "team" / "alice", 3)
    assert own > 0 and nested > 0
    budget = hs.Budget(daily=100.0, monthly=None)
    with hs.Client(base_url=sim.base_url, log_dir=tmp_path / "team", budget=budget, ledger=hs.MemoryLedger()) as client:
        assert _daily_spent(client) == pytest.approx(own, abs=1e-12)
    # read_log still reads the team folder: both logs
    assert len(hs.read_log(tmp_path / "team")) == 5
    assert read_table(tmp_path / "team", columns=["call_id"], below=False).num_rows == 2


def test_below_false_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="does not exist"):
        read_table(tmp_path / "nope", below=False)
    with pytest.raises(LogError, match="one path"):
        read_table([tmp_path, tmp_path], below=False)
