"""The usage report and budget lines a client shows (the seed's report keys, and more)."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .budget import NANOS_PER_USD, Window, window_bounds
from .ledger.base import bucket_name

if TYPE_CHECKING:
    from .metering import Meter

__all__ = ["UsageReport", "budget_lines", "usage_report"]


class UsageReport(dict[str, Any]):
    """A plain dict (JSON-ready) that renders as a small table in Jupyter."""

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
            for k, v in self.items() if k != "model_breakdown"
        )
        models = "".join(
            f"<tr><td>{html.escape(m)}</td><td>{b['requests']}</td><td>${b['cost_usd']:.4f}</td></tr>"
            for m, b in self.get("model_breakdown", {}).items()
        )
        return (f"<table>{rows}</table><table><tr><th>model</th><th>requests</th><th>cost</th></tr>"
                f"{models}</table>")


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def budget_lines(meter: Meter) -> list[dict[str, Any]]:
    """Every budget line now: spent, reserved, limit, block limit, remaining, resets_at."""
    budget = meter.budget
    now = meter.clock()
    zone = meter.guard.zone
    lines = budget.all_lines() if budget else []
    keys = {(ln.scope, ln.window): bucket_name(ln.scope, _key(ln.window, now, zone)) for ln in lines}
    for w in Window:
        keys.setdefault(("global", w), bucket_name("global", _key(w, now, zone)))
    states = meter.ledger.snapshot(list(keys.values()))
    limits = {(ln.scope, ln.window): ln for ln in lines}
    out = []
    for (scope, window), bucket in keys.items():
        st = states[bucket]
        ln = limits.get((scope, window))
        spent = st.spent / NANOS_PER_USD
        reserved = st.reserved / NANOS_PER_USD
        limit = float(ln.limit) if ln else None
        out.append({
            "scope": scope, "window": window.value, "spent_usd": spent, "reserved_usd": reserved,
            "limit_usd": limit, "block_usd": ln.block_nanos / NANOS_PER_USD if ln else None,
            "alert_usd": limit * ln.alert_at if ln and limit else None,
            "remaining_usd": max(0.0, limit - spent) if limit is not None else None,
            "ratio": spent / limit if limit else None,
            "resets_at": window_bounds(window, now, zone)[1],
        })
    return out


def _key(window: Window, now: Any, zone: Any) -> str:
    from .budget import window_key

    return window_key(window, now, zone)


def usage_report(meter: Meter, days: int = 7) -> UsageReport:
    """The seed's report over the last `days` local days, read from the log (every process)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .errors import ConfigError
    from .log import read_table

    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be a whole number >= 1, not {days!r}.")
    now = meter.clock()
    zone = meter.guard.zone
    start = window_bounds(Window.DAY, now - timedelta(days=days - 1), zone)[0]
    cols = ["ts", "model", "status", "cost_usd", "input_tokens", "output_tokens", "latency_ms"]
    table = read_table(meter.log_dir, start=start, columns=cols) if meter.log_dir.exists() else pa.table({c: [] for c in cols})
    sent = table.filter(pc.field("status") != "blocked") if table.num_rows else table

    def total(t: pa.Table, col: str) -> Any:
        return pc.sum(t[col]).as_py() or 0

    breakdown: dict[str, dict[str, Any]] = {}
    if sent.num_rows:
        grouped = sent.group_by("model").aggregate([
            ("model", "count"), ("cost_usd", "sum"), ("input_tokens", "sum"), ("output_tokens", "sum")])
        for row in sorted(grouped.to_pylist(), key=lambda r: -(r["cost_usd_sum"] or 0)):
            breakdown[row["model"]] = {
                "requests": row["model_count"], "cost_usd": round(row["cost_usd_sum"] or 0.0, 9),
                "input_tokens": row["input_tokens_sum"] or 0, "output_tokens": row["output_tokens_sum"] or 0,
            }
    lines = {(ln["scope"], ln["window"]): ln for ln in budget_lines(meter)}
    day, month = lines.get(("global", "daily")), lines.get(("global", "monthly"))
    latency = pc.mean(sent["latency_ms"]).as_py() if sent.num_rows else None
    return UsageReport(
        period_days=days,
        total_requests=sent.num_rows,
        total_cost_usd=round(total(sent, "cost_usd"), 9) if sent.num_rows else 0.0,
        total_input_tokens=total(sent, "input_tokens") if sent.num_rows else 0,
        total_output_tokens=total(sent, "output_tokens") if sent.num_rows else 0,
        avg_latency_ms=round(latency, 3) if latency is not None else 0.0,
        model_breakdown=breakdown,
        daily_budget_remaining=day["remaining_usd"] if day else None,
        monthly_budget_remaining=month["remaining_usd"] if month else None,
        blocked_requests=table.num_rows - sent.num_rows,
        error_requests=int(pc.sum(pc.equal(sent["status"], "error")).as_py() or 0) if sent.num_rows else 0,
    )
