"""The usage report: a small JSON-ready dict of totals over the last N days (the seed's keys).

Not to be confused with the spend report (`holysheep_lab.reports.html`: ``hs.report(df)`` ->
a self-contained HTML page of charts and tables). The usage report is what
``client.usage_report(days)`` (`usage_report`: totals from the log, budget remainders from the
ledger) and the server's ``/usage`` endpoint (`usage_from_log`: the log alone) return; both
are built by `summarize_usage`. Pandas-free. Budget lines themselves are
`holysheep_lab.reports.budget`.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from holysheep_lab.core.budget import Budget, Window, local_zone, window_bounds
from holysheep_lab.core.display import format_ms, format_tokens, format_usd, no_math
from holysheep_lab.reports.budget import ledger_status

if TYPE_CHECKING:
    from holysheep_lab.core.metering import Metering

__all__ = ["USAGE_COLUMNS", "UsageReport", "summarize_usage", "usage_from_log", "usage_report"]


class UsageReport(dict[str, Any]):
    """A plain dict (JSON-ready) that renders as a small table in Jupyter (money in $, MathJax kept off)."""

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(_fmt(k, v))}</td></tr>"
            for k, v in self.items() if k != "model_breakdown"
        )
        models = "".join(
            f"<tr><td>{html.escape(m)}</td><td>{b['requests']:,}</td><td>{html.escape(format_usd(b['cost_usd']))}</td></tr>"
            for m, b in self.get("model_breakdown", {}).items()
        )
        return no_math(f"<table>{rows}</table><table><tr><th>model</th><th>requests</th><th>cost</th></tr>"
                       f"{models}</table>", "div")


_MONEY_KEYS = ("total_cost_usd", "daily_budget_remaining", "monthly_budget_remaining")


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "no limit" if key in _MONEY_KEYS else ""
    if key in _MONEY_KEYS:
        return format_usd(v)
    if key == "avg_latency_ms":
        return format_ms(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return format_tokens(v)  # counts: 12,345
    return f"{v:.6g}" if isinstance(v, float) else str(v)


USAGE_COLUMNS = ("ts", "model", "status", "cost_usd", "input_tokens", "output_tokens", "latency_ms")


def summarize_usage(table: Any, days: int, *, daily_remaining: float | None = None,
                    monthly_remaining: float | None = None) -> UsageReport:
    """The seed's report keys from an Arrow table of calls (USAGE_COLUMNS) already cut to the
    period. Pure: the client (ledger remainders) and the server (log remainders) share it."""
    import pyarrow.compute as pc

    sent = table.filter(pc.field("status") != "blocked") if table.num_rows else table

    def total(col: str) -> Any:
        if not sent.num_rows:
            return 0
        return pc.sum(sent[col]).as_py() or 0

    breakdown: dict[str, dict[str, Any]] = {}
    if sent.num_rows:
        grouped = sent.group_by("model").aggregate([
            ("model", "count"), ("cost_usd", "sum"), ("input_tokens", "sum"), ("output_tokens", "sum")])
        for row in sorted(grouped.to_pylist(), key=lambda r: (-(r["cost_usd_sum"] or 0), r["model"])):
            breakdown[row["model"]] = {
                "requests": row["model_count"], "cost_usd": round(row["cost_usd_sum"] or 0.0, 9),
                "input_tokens": row["input_tokens_sum"] or 0, "output_tokens": row["output_tokens_sum"] or 0,
            }
    latency = pc.mean(sent["latency_ms"]).as_py() if sent.num_rows else None
    return UsageReport(
        period_days=days,
        total_requests=sent.num_rows,
        total_cost_usd=round(float(total("cost_usd")), 9),
        total_input_tokens=int(total("input_tokens")),
        total_output_tokens=int(total("output_tokens")),
        avg_latency_ms=round(latency, 3) if latency is not None else 0.0,
        model_breakdown=breakdown,
        daily_budget_remaining=daily_remaining,
        monthly_budget_remaining=monthly_remaining,
        blocked_requests=table.num_rows - sent.num_rows,
        error_requests=int(pc.sum(pc.equal(sent["status"], "error")).as_py() or 0) if sent.num_rows else 0,
    )


def _check_days(days: Any) -> int:
    from holysheep_lab.errors import ConfigError

    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be a whole number >= 1, not {days!r}.")
    return days


def _usage_table(log_dir: Path, start: datetime, *, below: bool) -> Any:
    import pyarrow as pa

    from holysheep_lab.log import read_table

    if not log_dir.exists():
        return pa.table({c: [] for c in USAGE_COLUMNS})
    return read_table(log_dir, start=start, columns=list(USAGE_COLUMNS), below=below)


def usage_report(meter: Metering, days: int = 7) -> UsageReport:
    """What ``client.usage_report(days)`` returns: the last `days` local days, read from the log
    (every process's calls); budget remainders (``remaining_usd`` of the global lines, see
    `holysheep_lab.reports.budget`) from the ledger."""
    days = _check_days(days)
    start = window_bounds(Window.DAY, meter.clock() - timedelta(days=days - 1), meter.guard.zone)[0]
    lines = {(ln["scope"], ln["window"]): ln for ln in ledger_status(meter)}
    day, month = lines.get(("global", "daily")), lines.get(("global", "monthly"))
    return summarize_usage(_usage_table(meter.log_dir, start, below=False), days,
                           daily_remaining=day["remaining_usd"] if day else None,
                           monthly_remaining=month["remaining_usd"] if month else None)


def usage_from_log(log_dir: str | Path, days: int = 7, *, budget: Budget | None = None,
                   now: datetime | None = None) -> UsageReport:
    """The same report from a log folder alone (no client, no ledger), every log below it (a
    team folder) included: budget remainders are the budget's limits minus the spend the logs
    hold for today and this month."""
    import pyarrow.compute as pc

    days = _check_days(days)
    now = now or datetime.now(UTC)
    zone = budget.zone if budget is not None else local_zone()
    start = window_bounds(Window.DAY, now - timedelta(days=days - 1), zone)[0]
    month_start = window_bounds(Window.MONTH, now, zone)[0]
    day_start = window_bounds(Window.DAY, now, zone)[0]
    table = _usage_table(Path(log_dir), min(start, month_start) if budget is not None else start, below=True)

    def since(moment: datetime) -> Any:
        return table.filter(pc.field("ts") >= pc.scalar(moment)) if table.num_rows else table

    def remaining(limit: Any, moment: datetime) -> float | None:
        if limit is None:
            return None
        t = since(moment)
        t = t.filter(pc.field("status") != "blocked") if t.num_rows else t
        spent = (pc.sum(t["cost_usd"]).as_py() or 0.0) if t.num_rows else 0.0
        return max(0.0, float(limit) - spent)

    return summarize_usage(since(start), days,
                           daily_remaining=remaining(budget.daily, day_start) if budget is not None else None,
                           monthly_remaining=remaining(budget.monthly, month_start) if budget is not None else None)
