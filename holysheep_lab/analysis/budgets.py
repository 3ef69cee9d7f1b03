"""Budget status from a call log: ``df.hs.budget_status(budget)``, with a projection.

The columns and rules are those of `holysheep_lab.reports.budget` (shared with
``client.budget_status()``, which reads the ledger instead): here `reserved_usd` is 0 (a log
holds finished calls only) and `projected_usd` / `runs_out` come from the forecast model.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

import numpy as np

from holysheep_lab.analysis.forecast import forecast_series
from holysheep_lab.analysis.frames import as_of_micros, cost_usd, require_columns, valid_micros
from holysheep_lab.analysis.spend import daily
from holysheep_lab.core.budget import Budget, Window, window_bounds
from holysheep_lab.core.clock import micros_to_datetime, to_micros, utc_now
from holysheep_lab.core.money import NANOS_PER_USD
from holysheep_lab.errors import ConfigError
from holysheep_lab.reports.budget import BUDGET_STATUS_COLUMNS, line_status

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["budget_status"]


def budget_status(df: pd.DataFrame, budget: Budget, now: datetime | None = None) -> pd.DataFrame:
    """Where each budget line stands in its current window (as of `now`; default: the log's end).

    One row per limit of `budget` (global daily/monthly, then each project's), windows in the
    budget's own time zone; columns `BUDGET_STATUS_COLUMNS` (`holysheep_lab.reports.budget`):

    * ``spent_usd``: cost in the window up to `now`; ``reserved_usd``: 0 (nothing in flight in
      a log); ``remaining_usd`` = max(0, limit - spent); ``used`` = spent / limit;
    * ``alert`` (used >= alert_at), ``blocked`` (spent >= block_usd: the guard now refuses calls);
    * ``projected_usd``: expected spend at window end. The rest of the window is projected
      with the forecast model (daily series of this scope; falls back to the last-7-day mean
      when history is short); today's remainder is prorated by the hours left.
    * ``runs_out``: the local date the projected spend reaches the block threshold
      (``block_usd``) within this window; NaT if it does not.

    A project in the budget but not in the log simply has spent 0.
    """
    import pandas as pd

    if not isinstance(budget, Budget):
        raise ConfigError(f"budget_status() needs a holysheep_lab.budget.Budget, not {type(budget).__name__}.")
    scoped = bool(budget.projects)
    require_columns(df, ["ts", "cost_usd", *(["project"] if scoped else [])], "budget_status()")
    zone = budget.zone
    us, ok = valid_micros(df)
    if ok is not None:
        df, us = df.loc[ok], us[ok]
    end = as_of_micros(us, now) if len(df) or now is not None else to_micros(utc_now())
    now_dt = micros_to_datetime(end)
    rows = []
    for line in budget.all_lines():
        sub, sub_us = df, us
        if line.scope.startswith("project:"):
            m = np.asarray(df["project"].astype("object") == line.scope[8:], dtype=bool)
            sub, sub_us = df.loc[m], us[m]
        start, stop = window_bounds(line.window, now_dt, zone)
        cost, _ = cost_usd(sub)
        spent = float(cost[(sub_us >= to_micros(start)) & (sub_us < end)].sum())
        proj, daily_path = _project_window(sub.loc[sub_us < end], zone, now_dt, stop, spent)
        threshold = line.block_nanos / NANOS_PER_USD  # the guard's refusal point, as `blocked`
        runs_out: date | None = None
        if spent >= threshold:
            runs_out = now_dt.astimezone(zone).date()
        elif daily_path is not None:
            hit = np.nonzero(spent + np.cumsum(daily_path[1]) >= threshold)[0]
            if len(hit):
                runs_out = daily_path[0][hit[0]]
        rows.append(line_status(line.scope, line.window, pd.Timestamp(start), pd.Timestamp(stop), line, spent,
                                projected_usd=proj, runs_out=runs_out))
    out = pd.DataFrame(rows, columns=list(BUDGET_STATUS_COLUMNS))
    out["runs_out"] = pd.to_datetime(out["runs_out"])
    return out


def _project_window(
    hist: pd.DataFrame, zone: tzinfo, now: datetime, stop: datetime, spent: float
) -> tuple[float, tuple[list[date], np.ndarray] | None]:
    """Projected spend at window end and the projected spend per remaining local day."""
    today = now.astimezone(zone).date()
    last_day = (stop - timedelta(microseconds=1)).astimezone(zone).date()
    d = daily(hist, tz=zone) if len(hist) else None
    if d is None or d.empty:
        return spent, None
    series = d["cost_usd"].to_numpy()
    first = d["date"].iloc[0].date()
    # Today is still running: forecast from yesterday, then prorate today's remainder.
    hist_days = (today - first).days
    y = series[:hist_days] if hist_days > 0 else series[:0]
    horizon = (last_day - today).days + 1
    if len(y) == 0:
        fc = np.full(horizon, float(series.sum()))  # only today so far: assume today's pace
    else:
        fc = forecast_series(y, first_day=first, days=horizon)["yhat"]
    day_start, day_end = window_bounds(Window.DAY, now, zone)
    left_today = max(0.0, (day_end - now) / (day_end - day_start))
    path = np.asarray(fc, dtype="float64").copy()
    path[0] = path[0] * left_today
    days = [today + timedelta(days=i) for i in range(horizon)]
    return spent + float(path.sum()), (days, path)
