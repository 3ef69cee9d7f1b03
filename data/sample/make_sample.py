"""Make the sample call log in data/sample/calls/ (seeded: the same files every run).

    python data/sample/make_sample.py [--out DIR] [--seed N]

About 120 days ending 2026-11-27 of a team in Europe/Berlin calling LLMs through the relay:
a weekday/weekend cycle, ~30 %/month growth, a model mix drifting from gpt-4.1 towards
cheaper models, five projects (and some calls with none), errors, retries, blocked calls on
a few budget-tight days, a few unpriced calls of a local model, latency that depends on model
and output size, and one "context explosion": a support-bot conversation whose prompt grows
call after call on 2026-10-14. Rows are written with the project's own LogWriter.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from holysheep_lab.core.pricing import PriceTable, Usage
from holysheep_lab.log.schema import CallRecord

__all__ = ["END", "START", "generate", "main"]

START = date(2026, 7, 31)
END = date(2026, 11, 27)  # inclusive: 120 days
TZ = ZoneInfo("Europe/Berlin")
UNPRICED = "llama-3.3-70b-local"

# model -> (share at START, share at END, base latency ms, ms per output token, reasoning share)
MODELS = {
    "gpt-4.1": (0.34, 0.14, 700, 18, 0.0),
    "claude-sonnet-4.5": (0.16, 0.22, 900, 22, 0.0),
    "gemini-2.5-flash": (0.14, 0.22, 350, 6, 0.35),
    "deepseek-v3.2": (0.04, 0.22, 1100, 30, 0.0),
    "gpt-4.1-mini": (0.20, 0.10, 400, 9, 0.0),
    "gpt-4o-mini": (0.12, 0.10, 380, 8, 0.0),
}
# project -> (share, median input tokens, median output tokens)
PROJECTS = {
    "support-bot": (0.34, 1_800, 260),
    "research": (0.20, 7_000, 900),
    "eval-harness": (0.22, 3_200, 400),
    "marketing-copy": (0.12, 900, 700),
    "data-extraction": (0.07, 5_000, 350),
    None: (0.05, 1_200, 300),
}
ERRORS = [(429, "rate limited (429) after retries"), (500, "server error (500)"),
          (503, "service unavailable (503)"), (None, "timeout after 60s")]


def _ulid(rng: np.random.Generator, ts: datetime) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(ts.timestamp() * 1000) << 80) | int(rng.integers(0, 2**63)) << 17 | int(rng.integers(0, 2**17))
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _calls_per_day(rng: np.random.Generator, day: date, i: int) -> int:
    base = 260 * 1.3 ** (i / 30)  # ~30 % a month
    weekend = 0.28 if day.weekday() >= 5 else 1.0
    return int(rng.poisson(base * weekend * rng.lognormal(0, 0.12)))


def generate(seed: int = 7) -> Iterator[CallRecord]:
    """Yield the sample's call records in time order (pure: only the seeded generator)."""
    rng = np.random.default_rng(seed)
    prices = PriceTable.default()
    n_days = (END - START).days + 1
    models = list(MODELS)
    projects = list(PROJECTS)
    p_proj = np.array([v[0] for v in PROJECTS.values()])
    p_proj /= p_proj.sum()
    tight_days = {START + timedelta(days=int(k)) for k in rng.choice(np.arange(60, n_days), 4, replace=False)}
    for i in range(n_days):
        day = START + timedelta(days=i)
        frac = i / (n_days - 1)
        mix = np.array([a + (b - a) * frac for a, b, *_ in MODELS.values()])
        mix /= mix.sum()
        n = _calls_per_day(rng, day, i)
        # Local working hours, mostly 8-19 in Berlin, as UTC instants.
        hours = np.clip(rng.normal(13.5, 3.2, n), 0, 23.999)
        local0 = datetime(day.year, day.month, day.day, tzinfo=TZ)
        stamps = sorted(local0 + timedelta(hours=float(h)) for h in hours)
        blocked_after = int(n * rng.uniform(0.8, 0.95)) if day in tight_days else n + 1
        for k, local_ts in enumerate(stamps):
            ts = local_ts.astimezone(UTC)
            project = projects[int(rng.choice(len(projects), p=p_proj))]
            model = models[int(rng.choice(len(models), p=mix))]
            if rng.random() < 0.004:
                model = UNPRICED
            yield _record(rng, prices, ts, model, project, blocked=k >= blocked_after)
        if day == date(2026, 10, 14):
            yield from _explosion(rng, prices, local0)


def _record(rng: np.random.Generator, prices: PriceTable, ts: datetime, model: str,
            project: str | None, blocked: bool = False, input_tokens: int | None = None,
            conversation_id: str | None = None) -> CallRecord:
    _, med_in, med_out = PROJECTS[project]
    tin = int(input_tokens if input_tokens is not None else max(20, rng.lognormal(np.log(med_in), 0.6)))
    tout = int(max(5, rng.lognormal(np.log(med_out), 0.5)))
    max_tokens = int(2 ** np.ceil(np.log2(tout * 2)))
    base_ms, per_tok, reasoning_share = MODELS.get(model, (0, 0, 600, 15, 0.0))[2:]
    priced = prices.resolve(model) is not None
    est = prices.price(model).worst_case_nanos(tin, max_tokens) / 1e9 if priced else None
    if conversation_id is None and project == "support-bot" and rng.random() < 0.5:
        conversation_id = f"conv-{int(rng.integers(0, 16**10)):010x}"
    common = dict(call_id=_ulid(rng, ts), ts=ts, model=model, project=project,
                  price_version=prices.version, max_tokens=max_tokens, endpoint="chat.completions",
                  input_bytes=tin * 4, conversation_id=conversation_id, estimated_cost_usd=est)
    if blocked:
        return CallRecord(status="blocked", input_tokens=0, output_tokens=0, cost_usd=0.0,
                          cost_nanos=0, attempts=0, error="refused: daily budget block threshold", **common)
    stream = bool(rng.random() < 0.3)
    latency = (base_ms + per_tok * tout + tin * 0.02) * rng.lognormal(0, 0.25)
    attempts = 1
    if rng.random() < 0.05:  # retried after a 429/5xx, then answered
        attempts = int(rng.choice([2, 3], p=[0.8, 0.2]))
        latency += sum(500 * 2**a * rng.uniform(0.5, 1.5) for a in range(attempts - 1))
    if rng.random() < 0.018:  # failed for good
        status, err = ERRORS[int(rng.integers(0, len(ERRORS)))]
        return CallRecord(status="error", input_tokens=0, output_tokens=0, cost_usd=0.0, cost_nanos=0,
                          attempts=3, http_status=status, error=err,
                          latency_ms=float(latency + (60_000 if status is None else 3_000)), stream=stream, **common)
    cached = int(tin * rng.uniform(0.3, 0.8)) if rng.random() < 0.35 else 0
    reasoning = int(tout * rng.uniform(0.2, 0.6)) if rng.random() < reasoning_share else 0
    usage = Usage(tin, tout, cached, reasoning)
    nanos = prices.cost_nanos(model, usage) if priced else None
    return CallRecord(
        status="ok" if priced else "unpriced", input_tokens=tin, output_tokens=tout,
        cached_input_tokens=cached, reasoning_tokens=reasoning,
        cost_usd=None if nanos is None else round(nanos / 1e9, 9), cost_nanos=nanos,
        latency_ms=float(round(latency, 1)), attempts=attempts, http_status=200, stream=stream,
        ttft_ms=float(round(latency * rng.uniform(0.08, 0.2), 1)) if stream else None, **common,
    )


def _explosion(rng: np.random.Generator, prices: PriceTable, local0: datetime) -> Iterator[CallRecord]:
    """A support conversation that resends its whole, ever longer history: 70 calls, 2k -> 120k."""
    conv = "conv-explosion-7f3a9c"
    ts = local0 + timedelta(hours=14, minutes=5)
    tokens = 2_000.0
    for _ in range(70):
        yield _record(rng, prices, ts.astimezone(UTC), "claude-sonnet-4.5", "support-bot",
                      input_tokens=int(tokens), conversation_id=conv)
        tokens *= 1.06
        ts += timedelta(seconds=float(rng.uniform(20, 90)))


def main(argv: list[str] | None = None) -> None:
    """Write the sample log with the project's LogWriter (replacing DIR)."""
    try:
        from holysheep_lab.log import LogWriter
    except ImportError:  # before the log package re-exports it
        from holysheep_lab.log.writer import LogWriter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("calls"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    # One roll at close: one Parquet file per UTC date instead of many small ones.
    writer = LogWriter(args.out, roll_rows=10**9, roll_interval=None)
    n = 0
    try:
        for rec in generate(args.seed):
            writer.append(rec)
            n += 1
    finally:
        writer.close()
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {n} calls to {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
