"""A shareable spend report: one self-contained HTML file (charts and their JavaScript inlined).

`report(df, budget=None)` builds the whole page in memory (pure apart from reading the Vega
JavaScript bundle, which vl-convert-python produces offline and we cache on disk); `.save(path)`
writes it. The page loads nothing from the network: vega, vega-lite and vega-embed are inlined
once, each chart's spec sits in a JSON script tag, and every piece of user text (title, model
names, projects, errors) is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_lab.analysis import charts as _charts
from holysheep_lab.analysis import spend as _sp
from holysheep_lab.analysis.forecast import backtest as _backtest
from holysheep_lab.analysis.forecast import forecast as _forecast
from holysheep_lab.core.budget import Budget, resolve_tz
from holysheep_lab.errors import ConfigError, HolySheepError, MissingExtraError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Report", "report", "vega_bundle"]


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


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one classic script (sets window.vegaEmbed).

    vl-convert builds it offline (several seconds), so it is cached per process and on disk
    under $XDG_CACHE_HOME/holysheep-lab (or ~/.cache), keyed by the vl-convert version.
    """
    try:
        import vl_convert as vlc
    except ImportError as exc:  # pragma: no cover - in the lock
        raise MissingExtraError("vl-convert-python", "Self-contained HTML reports") from exc
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "holysheep-lab"
    cached = cache_dir / f"vega-bundle-{vlc.__version__}.js"
    try:
        return cached.read_text(encoding="utf-8")
    except OSError:
        pass
    js = vlc.javascript_bundle()
    try:  # the cache is only an optimisation: any failure just means rebuilding next time
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(js, encoding="utf-8")
        os.replace(tmp, cached)
    except OSError:
        pass
    return js


_EMBED = """
document.querySelectorAll('script[type="application/json"][data-chart]').forEach(function (el) {
  var target = document.getElementById(el.getAttribute('data-chart'));
  vegaEmbed(target, JSON.parse(el.textContent), {renderer: 'svg', actions: false})
    .catch(function (err) { target.textContent = 'This chart could not be drawn: ' + err; console.error(err); });
});
"""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-top:0} .kpis{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:140px}
.kpi b{display:block;font-size:20px} .kpi span{color:#666;font-size:12px}
table{border-collapse:collapse;margin:8px 0;font-size:13px} th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child{text-align:left} .warn{color:#b00020;font-weight:600}
.chart{margin:12px 0;min-height:60px} .note{color:#666;font-size:12px}
"""


# --------------------------------------------------------------------------- formatting


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _money(v: Any) -> str:
    return "" if v is None or _isnan(v) else f"${v:,.2f}"


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
    if kind == "usd4":
        return f"${v:,.4f}"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "pct":
        return f"{v:.1%}"
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
    per-project tables, latency, errors/retries, context growth, and the forecast backtest.
    `tz` defaults to the budget's zone, else local; `now` to the log's last call. Sections
    that the log cannot support (too short for a backtest, no conversation ids) say so
    instead of failing.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"report() needs a call-log DataFrame, not {type(df).__name__}.")
    _sp.require_columns(df, ["ts", "model", "status", "cost_usd"], "report()")
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be a holysheep_lab.budget.Budget, not {type(budget).__name__}.")
    zone = resolve_tz(tz) if tz is not None else (budget.zone if budget is not None else resolve_tz(None))
    zone_name = getattr(zone, "key", str(zone))
    title = title or "LLM spend report"
    charts: list[tuple[str, Any]] = []
    body: list[str] = []

    def chart(name: str, build: Callable[[], Any]) -> str:
        cid = f"chart-{len(charts) + 1}"
        try:
            charts.append((cid, build()))
        except (HolySheepError, ValueError, KeyError) as exc:  # a chart must not sink the report
            return f'<p class="note">Chart "{_e(name)}" unavailable: {_e(exc)}</p>'
        return f'<div class="chart" id="{cid}" aria-label="{_e(name)}"></div>'

    us, _ = _sp._valid_ts(df)
    n = len(df)
    if n:
        first = pd.Timestamp(int(us[us > np.iinfo(np.int64).min].min()), unit="us", tz="UTC")
        last = pd.Timestamp(int(us.max()), unit="us", tz="UTC")
        span = f"{first.tz_convert(zone):%Y-%m-%d} to {last.tz_convert(zone):%Y-%m-%d} ({zone_name})"
    else:
        span = "empty log"
    body.append(f"<h1>{_e(title)}</h1><p class=\"sub\">{_e(f'{n:,} calls, {span}')}</p>")

    fc = None
    if n:
        try:
            fc = _forecast(df, days=forecast_days, tz=zone, budget=budget, now=now)
        except HolySheepError:
            fc = None
    # Headline figures.
    total = float(_sp._cost(df)[0].sum()) if n else 0.0
    burn = _sp.burn_rate(df, now=now, tz=zone) if n else None
    kpis = [("total spend", _money(total)), ("calls", f"{n:,}")]
    if burn is not None and len(burn):
        b = burn.set_index("period")
        kpis.append(("last 7 days, per day", _money(b.loc["last_7d", "usd_per_day"])))
        kpis.append(("month to date", _money(b.loc["month_to_date", "cost_usd"])))
    if fc is not None:
        me = fc.attrs["month_end"]
        kpis.append((f"projected {me['month']}", f"{_money(me['projected'])} ({_money(me['lo'])}–{_money(me['hi'])})"))
        if budget is not None:
            ex = fc.attrs["exhaustion_date"]
            kpis.append(("budget runs out", f"{ex:%Y-%m-%d}" if ex else f"not within {forecast_days} days"))
    status = np.asarray(df["status"].astype("object")) if n else np.array([])
    sent = int((status != "blocked").sum())
    if n:
        kpis.append(("error rate", f"{(status == 'error').sum() / max(sent, 1):.1%}"))
        kpis.append(("blocked calls", f"{int((status == 'blocked').sum()):,}"))
    body.append('<div class="kpis">' + "".join(
        f'<div class="kpi"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v in kpis) + "</div>")

    if budget is not None:
        body.append("<h2>Budget</h2>")
        bs = _sp.budget_status(df, budget, now=now)
        body.append(_table(bs, {
            "scope": ("scope", "s"), "window": ("window", "s"), "limit_usd": ("limit", "usd"),
            "spent_usd": ("spent", "usd"), "remaining_usd": ("remaining", "usd"), "used": ("used", "pct"),
            "alert": ("alert", "bool"), "blocked": ("blocking", "bool"),
            "projected_usd": ("projected at window end", "usd"), "runs_out": ("runs out", "date"),
        }))

    body.append("<h2>Forecast</h2>")
    if fc is not None:
        body.append(chart("cumulative spend", lambda: _charts.cumulative_chart(df, budget, fc, zone)))
        body.append(f'<p class="note">Model: {_e(fc.attrs["method"])}, {fc.attrs["interval"]:.0%} '
                    f'prediction band, {fc.attrs["history_days"]} days of history.</p>')
        body.append(_table(fc.head(14), {"date": ("day", "date"), "yhat": ("expected", "usd"),
                                         "lo": ("low", "usd"), "hi": ("high", "usd")}))
    else:
        body.append('<p class="note">No forecast: the log has no calls.</p>')

    body.append("<h2>Daily spend</h2>")
    body.append(chart("daily spend by model", lambda: _charts.daily_spend_chart(df, tz=zone)))
    body.append(chart("model share", lambda: _charts.model_share_chart(df, tz=zone)))

    body.append("<h2>By model</h2>")
    body.append(_table(_sp.by_model(df), {
        "model": ("model", "s"), "calls": ("calls", "int"), "cost_usd": ("spend", "usd"),
        "share": ("share", "pct"), "cost_per_call": ("per call", "usd4"),
        "usd_per_1k_tokens": ("per 1k tokens", "usd4"), "unpriced_calls": ("unpriced", "int"),
    }))
    if "project" in df.columns:
        body.append("<h2>By project</h2>")
        body.append(_table(_sp.by(df, "project"), {
            "project": ("project", "s"), "calls": ("calls", "int"), "cost_usd": ("spend", "usd"),
            "share": ("share", "pct"), "cost_per_call": ("per call", "usd4"),
        }))

    if "latency_ms" in df.columns:
        body.append("<h2>Latency</h2>")
        body.append(chart("latency distribution", lambda: _charts.latency_chart(df)))
        body.append(_table(_sp.latency(df), {
            "model": ("model", "s"), "calls": ("calls", "int"), "p50_ms": ("p50 ms", "ms"),
            "p95_ms": ("p95 ms", "ms"), "p99_ms": ("p99 ms", "ms"), "ttft_p50_ms": ("TTFT p50 ms", "ms"),
        }))

    body.append("<h2>Errors, retries and blocked calls</h2>")
    body.append(_table(_sp.error_rates(df), {
        "model": ("model", "s"), "calls": ("calls", "int"), "error": ("errors", "int"),
        "blocked": ("blocked", "int"), "error_rate": ("error rate", "pct"),
        "retry_rate": ("retried", "pct"), "mean_attempts": ("mean attempts", "f1"),
    }))
    if "error" in df.columns and n:
        errs = df.loc[status == "error", "error"].astype("object").fillna("(no message)")
        top = errs.value_counts().head(10).rename_axis("error").reset_index(name="calls")
        body.append(_table(top, {"error": ("error", "s"), "calls": ("calls", "int")}))

    if "conversation_id" in df.columns and "input_tokens" in df.columns:
        body.append("<h2>Context growth</h2>")
        cg = _sp.context_growth(df)
        if len(cg):
            body.append(chart("context growth", lambda: _charts.context_growth_chart(df)))
        body.append(_table(cg, {
            "conversation_id": ("conversation", "s"), "project": ("project", "s"), "model": ("model", "s"),
            "calls": ("calls", "int"), "first_input_tokens": ("first prompt", "int"),
            "last_input_tokens": ("last prompt", "int"), "growth": ("growth x", "f1"),
            "cost_usd": ("cost", "usd"), "first_ts": ("started", "ts"),
        }, max_rows=10))

    body.append("<h2>Forecast accuracy</h2>")
    try:
        bt = _backtest(df, tz=zone) if n else None
    except HolySheepError as exc:
        bt = None
        body.append(f'<p class="note">{_e(exc)}</p>')
    if bt is not None:
        body.append('<p class="note">Rolling-origin backtest, 14-day horizon, against two naive baselines.</p>')
        body.append(_table(bt, {"method": ("method", "s"), "origins": ("origins", "int"), "mae": ("MAE", "usd"),
                                "mape": ("MAPE %", "f1"), "total_ape": ("14-day total error %", "f1")}))

    scripts = "".join(
        f'<script type="application/json" data-chart="{cid}">{_spec_json(c)}</script>' for cid, c in charts
    )
    js = vega_bundle().replace("</script", "<\\/script") if charts else ""
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + scripts
        + (f"<script>{js}</script><script>{_EMBED}</script>" if charts else "")
        + "</body></html>\n"
    )
    return Report(html=page, title=title)
