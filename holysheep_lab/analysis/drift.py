"""Our cost against the relay's own figure: the calls where the two price lists disagree.

A relay that reports what it billed (OpenRouter-style `usage.cost`) has it logged beside ours
as `relay_cost_usd`. The drift of a call is relay / ours - 1 (`core.pricing.relay_drift`: 0.2
means the relay charged 20 % more); the metering warns per call above `relay_cost_tolerance`,
and `cost_drift` lists such calls from a log after the fact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from holysheep_lab.analysis.frames import require_columns
from holysheep_lab.core.pricing import RELAY_COST_TOLERANCE
from holysheep_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["cost_drift"]

_COLUMNS = ("call_id", "ts", "model", "project", "status", "cost_usd", "relay_cost_usd")


def cost_drift(df: pd.DataFrame, tolerance: float = RELAY_COST_TOLERANCE) -> pd.DataFrame:
    """The calls whose relay-reported cost differs from ours by more than `tolerance` (a
    fraction of ours; 0 lists every difference), in log order, with the log's index.

    Columns: ``call_id``, ``ts``, ``model``, ``project``, ``status`` (those the frame has),
    ``cost_usd`` (ours), ``relay_cost_usd``, ``drift_usd`` (relay - ours) and ``drift``
    (relay / ours - 1; +-inf where ours is 0). ``.attrs``: ``compared`` (calls with both
    figures), ``flagged``, ``tolerance``, ``cost_usd`` and ``relay_cost_usd`` (the compared
    calls' totals).
    """
    require_columns(df, ["cost_usd", "relay_cost_usd"], "cost_drift")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise ConfigError(f"cost_drift: tolerance must be a fraction >= 0 (0.05: 5 %), not {tolerance!r}.")
    ours = df["cost_usd"].to_numpy(dtype="float64", na_value=np.nan)
    relay = df["relay_cost_usd"].to_numpy(dtype="float64", na_value=np.nan)
    both = ~(np.isnan(ours) | np.isnan(relay))
    with np.errstate(divide="ignore", invalid="ignore"):
        # relay_drift's rule, for a column: relative to ours; 0 / 0 is no drift.
        drift = np.where(ours == 0, np.where(relay == 0, 0.0, np.copysign(np.inf, relay)), (relay - ours) / ours)
    flagged = both & (np.abs(drift) > tolerance)
    out: pd.DataFrame = df.loc[flagged, [c for c in _COLUMNS if c in df.columns]].copy()
    out["drift_usd"] = relay[flagged] - ours[flagged]
    out["drift"] = drift[flagged]
    out.attrs = {"compared": int(both.sum()), "flagged": int(flagged.sum()), "tolerance": float(tolerance),
                 "cost_usd": float(ours[both].sum()), "relay_cost_usd": float(relay[both].sum())}
    return out
