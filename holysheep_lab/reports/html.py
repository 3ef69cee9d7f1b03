"""The spend report: ``hs.report(df)`` / ``df.hs.report()`` -> `Report`, one self-contained HTML page.

This is the report for people: charts and tables of a call log (spend, forecast, budget status,
models, latency, errors, context growth). Not to be confused with the usage report
(`holysheep_lab.reports.usage`: ``client.usage_report()`` and the server's ``/usage``), a small
JSON-ready dict of totals.

`report(df, budget=None)` builds the whole page in memory (pure apart from reading the Vega
JavaScript bundle, which vl-convert-python produces offline: `notebook.render.vega_bundle`, the
one the notebook charts inline too) from one
building block per section (`_SECTIONS`); `.save(path)` writes it. The page loads nothing from
the network: vega, vega-lite and vega-embed are inlined once, each chart's spec sits in a JSON
script tag, and every piece of user text (title, model names, projects, errors) is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import holysheep_lab.analysis.charts as _charts
import holysheep_lab.analysis.spend as _sp
from holysheep_lab.analysis.anomalies import anomalies as _anomalies
from holysheep_lab.analysis.budgets import budget_status
from holysheep_lab.analysis.forecast import backtest as _backtest
from holysheep_lab.analysis.forecast import forecast as _forecast
from holysheep_lab.analysis.frames import NAT_MICROS, cost_usd, require_columns, valid_micros
from holysheep_lab.core.budget import Budget, resolve_tz
from holysheep_lab.core.clock import micros_to_datetime
from holysheep_lab.core.display import format_share, format_usd
from holysheep_lab.errors import ConfigError, HolySheepError
from holysheep_lab.notebook.render import vega_bundle

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Report", "report"]


@dataclass(frozen=True, slots=True)
class Report:
    """A finished report: ``.html`` (the page), ``.title``, ``.save(path)``, notebook display."""

    html: str
    title: str

    def _repr_html_(self) -> str:
        # An iframe isolates the page's scripts and styles from the notebook's own.
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            'style="width:100%;height:900px;border:1px solid #ddd" '
            f'title="{html.escape(self.title, quote=True)}"></iframe>'
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page to `path` (UTF-8, atomically) and return the path."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        try:
            tmp.write_text(self.html, encoding="utf-8")
            os.replace(tmp, p)
        except OSError as exc:
            raise HolySheepError(f"Cannot write the report to {str(p)!r}: {exc.strerror or exc}.") from exc
        return p

    def __repr__(self) -> str:
        return f"<Report {self.title!r}: {len(self.html) / 1e6:.1f} MB of HTML>"


# --------------------------------------------------------------------------- JavaScript


_EMBED = """
document.querySelectorAll('script[type="application/json"][data-chart]').forEach(function (el) {
  var target = document.getElementById(el.getAttribute('data-chart'));
  vegaEmbed(target, JSON.parse(el.textContent), {renderer: 'svg', actions: false})
    .catch(function (err) { target.textContent = 'This chart could not be drawn: ' + err; console.error(err); });
});
"""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222;
padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-top:0} .kpis{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:140px}
.kpi b{display:block;font-size:20px} .kpi span{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child{text-align:left} .warn{color:#b00020;font-weight:600}
.chart{margin:12px 0;min-height:60px} .note{color:#666;font-size:12px}
"""


# --------------------------------------------------------------------------- formatting


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _money(v: Any) -> str:
    return "" if v is None or _isnan(v) else format_usd(float(v))


def _isnan(v: Any) -> bool:
    try:
        return bool(np.isnan(v))
    except (TypeError, ValueError):
        import pandas as pd

        return v is pd.NaT


def _fmt(v: Any, kind: str) -> str:
    if v is None or _isnan(v):
        return "–"
    if kind == "usd":
        return _money(v)
    if kind == "int":
        return f"{int(v):,}"
    if kind == "pct":
        return format_share(float(v))
    if kind == "ms":
        return f"{v:,.0f}"
    if kind == "f1":
        return f"{v:,.1f}"
    if kind == "date":
        return f"{v:%Y-%m-%d}"
    if kind == "ts":
        return f"{v:%Y-%m-%d %H:%M} UTC"
    if kind == "bool":
        return "yes" if v else "no"
    return str(v)


def _table(df: pd.DataFrame, cols: dict[str, tuple[str, str]], max_rows: int = 30) -> str:
    """HTML table of `cols` {column: (header, kind)}; every cell escaped."""
    if df is None or len(df) == 0:
        return '<p class="note">No data.</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in cols.values())
    rows = []
    for rec in df.head(max_rows).to_dict("records"):
        cells = "".join(f"<td>{_e(_fmt(rec.get(c), kind))}</td>" for c, (_, kind) in cols.items())
        rows.append(f"<tr>{cells}</tr>")
    more = f'<p class="note">{len(df) - max_rows} more rows not shown.</p>' if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def _spec_json(chart: Any) -> str:
    # Inside <script>, "<", ">" and "&" must not appear raw: a model name like "</script>"
    # would end the tag. JSON allows \\u escapes, and JSON.parse restores them.
    text = json.dumps(chart.to_dict(), separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --------------------------------------------------------------------------- building blocks

#: Table columns of each section: {column: (header, format kind)}.
_BUDGET_COLS = {
    "scope": ("scope", "s"), "window": ("window", "s"), "limit_usd": ("limit", "usd"),
    "spent_usd": ("spent", "usd"), "remaining_usd": ("remaining", "usd"), "used": ("used", "pct"),
    "alert": ("alert", "bool"), "blocked": ("blocking", "bool"),
    "projected_usd": ("projected at window end", "usd"), "runs_out": ("runs out", "date"),
}
_FORECAST_COLS = {"date": ("day", "date"), "yhat": ("expected", "usd"), "lo": ("low", "usd"), "hi": ("high", "usd")}
_MODEL_COLS = {
    "model": ("model", "s"), "calls": ("calls", "int"), "cost_usd": ("spend", "usd"),
    "share": ("share", "pct"), "cost_per_call": ("per call", "usd"),
    "usd_per_1k_tokens": ("per 1k tokens", "usd"), "unpriced_calls": ("unpriced", "int"),
}
_PROJECT_COLS = {
    "project": ("project", "s"), "calls": ("calls", "int"), "cost_usd": ("spend", "usd"),
    "share": ("share", "pct"), "cost_per_call": ("per call", "usd"),
}
_LATENCY_COLS = {
    "model": ("model", "s"), "calls": ("calls", "int"), "p50_ms": ("p50 ms", "ms"),
    "p95_ms": ("p95 ms", "ms"), "p99_ms": ("p99 ms", "ms"), "ttft_p50_ms": ("TTFT p50 ms", "ms"),
}
_ERROR_COLS = {
    "model": ("model", "s"), "calls": ("calls", "int"), "error": ("errors", "int"),
    "blocked": ("blocked", "int"), "error_rate": ("error rate", "pct"),
    "retry_rate": ("retried", "pct"), "mean_attempts": ("mean attempts", "f1"),
}
_CONTEXT_COLS = {
    "conversation_id": ("conversation", "s"), "project": ("project", "s"), "model": ("model", "s"),
    "calls": ("calls", "int"), "first_input_tokens": ("first prompt", "int"),
    "last_input_tokens": ("last prompt", "int"), "growth": ("growth x", "f1"),
    "cost_usd": ("cost", "usd"), "first_ts": ("started", "ts"),
}
_ANOMALY_COLS = {"kind": ("kind", "s"), "subject": ("what", "s"), "start": ("from", "ts"), "calls": ("calls", "int"),
                 "cost_usd": ("cost", "usd"), "detail": ("detail", "s")}
_BACKTEST_COLS = {"method": ("method", "s"), "origins": ("origins", "int"), "mae": ("MAE", "usd"),
                  "mape": ("MAPE %", "f1"), "total_ape": ("14-day total error %", "f1")}


@dataclass(slots=True)
class _Page:
    """The report being built: its HTML blocks and its charts (embedded at the end)."""

    title: str
    body: list[str] = field(default_factory=list)
    charts: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, *blocks: str) -> None:
        self.body.extend(blocks)

    def chart(self, name: str, build: Callable[[], Any]) -> None:
        """A chart's placeholder; a chart that cannot be built says so instead of sinking the report."""
        cid = f"chart-{len(self.charts) + 1}"
        try:
            self.charts.append((cid, build()))
        except (HolySheepError, ValueError, KeyError) as exc:
            self.body.append(f'<p class="note">Chart "{_e(name)}" unavailable: {_e(exc)}</p>')
            return
        self.body.append(f'<div class="chart" id="{cid}" aria-label="{_e(name)}"></div>')

    def html(self) -> str:
        """The whole page: every block, each chart's spec as JSON, then the inlined Vega bundle."""
        scripts = "".join(
            f'<script type="application/json" data-chart="{cid}">{_spec_json(c)}</script>' for cid, c in self.charts
        )
        js = vega_bundle().replace("</script", "<\\/script") if self.charts else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(self.body)
            + scripts
            + (f"<script>{js}</script><script>{_EMBED}</script>" if self.charts else "")
            + "</body></html>\n"
        )


@dataclass(frozen=True, slots=True)
class _Log:
    """What every section reads: the log, its options, and what is computed once for all."""

    df: pd.DataFrame
    budget: Budget | None
    zone: tzinfo
    now: datetime | None
    forecast_days: int
    status: np.ndarray  # the status column as objects
    fc: pd.DataFrame | None  # the forecast; None for an empty log or one too odd to forecast

    @property
    def calls(self) -> int:
        return len(self.df)


def _heading(page: _Page, log: _Log) -> None:
    zone = log.zone
    n = log.calls
    if n:
        us, _ = valid_micros(log.df)
        first = micros_to_datetime(int(us[us > NAT_MICROS].min())).astimezone(zone)
        last = micros_to_datetime(int(us.max())).astimezone(zone)
        span = f"{first:%Y-%m-%d} to {last:%Y-%m-%d} ({getattr(zone, 'key', str(zone))})"
    else:
        span = "empty log"
    page.add(f"<h1>{_e(page.title)}</h1><p class=\"sub\">{_e(f'{n:,} calls, {span}')}</p>")


def _headline(page: _Page, log: _Log) -> None:
    """The headline figures: spend, calls, burn rate, month-end projection, errors."""
    df, n, fc = log.df, log.calls, log.fc
    total = float(cost_usd(df)[0].sum()) if n else 0.0
    kpis = [("total spend", _money(total)), ("calls", f"{n:,}")]
    burn = _sp.burn_rate(df, now=log.now, tz=log.zone) if n else None
    if burn is not None and len(burn):  # empty when no call has a timestamp
        b = burn.set_index("period")
        kpis.append(("last 7 days, per day", _money(b.loc["last_7d", "usd_per_day"])))
        kpis.append(("month to date", _money(b.loc["month_to_date", "cost_usd"])))
    if fc is not None:
        me = fc.attrs["month_end"]
        kpis.append((f"projected {me['month']}", f"{_money(me['projected'])} ({_money(me['lo'])}–{_money(me['hi'])})"))
        if log.budget is not None:
            hit = fc.attrs["blocked_from"]  # the first global line the forecast reaches
            kpis.append(("calls blocked from", f"{hit['date']:%Y-%m-%d}: {hit['line']} limit {_money(hit['limit_usd'])}, "
                         f"blocks at {_money(hit['block_usd'])}" if hit else f"not within {log.forecast_days} days"))
    if n:
        status = log.status
        sent = int((status != "blocked").sum())
        kpis.append(("error rate", f"{(status == 'error').sum() / max(sent, 1):.1%}"))
        kpis.append(("blocked calls", f"{int((status == 'blocked').sum()):,}"))
    page.add('<div class="kpis">' + "".join(
        f'<div class="kpi"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in kpis) + "</div>")


def _budget_section(page: _Page, log: _Log) -> None:
    if log.budget is not None:
        page.add("<h2>Budget</h2>", _table(budget_status(log.df, log.budget, now=log.now), _BUDGET_COLS))


def _forecast_section(page: _Page, log: _Log) -> None:
    page.add("<h2>Forecast</h2>")
    fc = log.fc
    if fc is None:
        page.add('<p class="note">No forecast: the log has no calls.</p>')
        return
    page.chart("cumulative spend", lambda: _charts.cumulative_chart(log.df, log.budget, fc, log.zone))
    page.add(f'<p class="note">Model: {_e(fc.attrs["method"])}, {fc.attrs["interval"]:.0%} '
             f'prediction band, {fc.attrs["history_days"]} days of history.</p>',
             _table(fc.head(14), _FORECAST_COLS))


def _spend_sections(page: _Page, log: _Log) -> None:
    """Daily spend and model share charts, then the per-model and per-project tables."""
    df = log.df
    page.add("<h2>Daily spend</h2>")
    page.chart("daily spend by model", lambda: _charts.daily_spend_chart(df, tz=log.zone))
    page.chart("model share", lambda: _charts.model_share_chart(df, tz=log.zone))
    page.add("<h2>By model</h2>", _table(_sp.by_model(df), _MODEL_COLS))
    if "project" in df.columns:
        page.add("<h2>By project</h2>", _table(_sp.by(df, "project"), _PROJECT_COLS))


def _latency_section(page: _Page, log: _Log) -> None:
    if "latency_ms" in log.df.columns:
        page.add("<h2>Latency</h2>")
        page.chart("latency distribution", lambda: _charts.latency_chart(log.df))
        page.add(_table(_sp.latency(log.df), _LATENCY_COLS))


def _errors_section(page: _Page, log: _Log) -> None:
    df = log.df
    page.add("<h2>Errors, retries and blocked calls</h2>", _table(_sp.error_rates(df), _ERROR_COLS))
    if "error" in df.columns and log.calls:
        errs = df.loc[log.status == "error", "error"].astype("object").fillna("(no message)")
        top = errs.value_counts().head(10).rename_axis("error").reset_index(name="calls")
        page.add(_table(top, {"error": ("error", "s"), "calls": ("calls", "int")}))


def _context_section(page: _Page, log: _Log) -> None:
    df = log.df
    if "conversation_id" in df.columns and "input_tokens" in df.columns:
        page.add("<h2>Context growth</h2>")
        cg = _sp.context_growth(df)
        if len(cg):
            page.chart("context growth", lambda: _charts.context_growth_chart(df))
        page.add(_table(cg, _CONTEXT_COLS, max_rows=10))


def _anomalies_section(page: _Page, log: _Log) -> None:
    """Growing conversations, retry storms and spend days off the forecast band."""
    page.add("<h2>Anomalies</h2>")
    if not log.calls:
        return
    found = _anomalies(log.df, tz=log.zone, now=log.now)
    page.add('<p class="note">Conversations whose prompt grows call over call, retry storms (10-minute windows), '
             "and days whose spend left the 99 % band of the forecast made the day before.</p>",
             _table(found, _ANOMALY_COLS))


def _accuracy_section(page: _Page, log: _Log) -> None:
    page.add("<h2>Forecast accuracy</h2>")
    if not log.calls:
        return
    try:
        bt = _backtest(log.df, tz=log.zone)
    except HolySheepError as exc:
        page.add(f'<p class="note">{_e(exc)}</p>')
        return
    page.add('<p class="note">Rolling-origin backtest, 14-day horizon, against two naive baselines.</p>',
             _table(bt, _BACKTEST_COLS))


#: The report's sections, in page order.
_SECTIONS: tuple[Callable[[_Page, _Log], None], ...] = (
    _heading, _headline, _budget_section, _forecast_section, _spend_sections, _latency_section,
    _errors_section, _context_section, _anomalies_section, _accuracy_section,
)


# --------------------------------------------------------------------------- the report


def report(
    df: pd.DataFrame,
    budget: Budget | None = None,
    title: str | None = None,
    tz: str | tzinfo | None = None,
    now: datetime | None = None,
    forecast_days: int = 30,
) -> Report:
    """Build the spend report of a call log.

    Sections: headline figures, budget status (with a budget), forecast (table and cumulative
    chart against the monthly budget), daily spend by model, model share, per-model and
    per-project tables, latency, errors/retries, context growth, anomalies (growing conversations, retry
    storms, days off the forecast band), and the forecast backtest.
    `tz` defaults to the budget's zone, else local; `now` to the log's last call. Sections
    that the log cannot support (too short for a backtest, no conversation ids) say so
    instead of failing.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"report() needs a call-log DataFrame, not {type(df).__name__}.")
    require_columns(df, ["ts", "model", "status", "cost_usd"], "report()")
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be a holysheep_lab.budget.Budget, not {type(budget).__name__}.")
    zone = resolve_tz(tz) if tz is not None else (budget.zone if budget is not None else resolve_tz(None))
    fc = None
    if len(df):
        try:
            fc = _forecast(df, days=forecast_days, tz=zone, budget=budget, now=now)
        except HolySheepError:
            fc = None
    log = _Log(df, budget, zone, now, forecast_days, np.asarray(df["status"].astype("object")), fc)
    page = _Page(title or "LLM spend report")
    for section in _SECTIONS:
        section(page, log)
    return Report(html=page.html(), title=page.title)
