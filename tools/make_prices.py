"""Generate holysheep_lab/core/prices.json, the list-price database, from pydantic's genai-prices.

Run `make prices` (or `.venv/bin/python tools/make_prices.py`) after upgrading genai-prices in
the dev group; commit the result. genai-prices is a dev dependency only: the runtime reads the
JSON this writes and never imports it (nor pydantic).

What is kept, per provider and model of genai-prices:
- its exact names, bare and as "provider/name", each checked against genai-prices' own lookup
  (a name is kept only where genai-prices resolves it to that very model);
- "dated" names: a name whose date-suffixed forms genai-prices matches to the same model (a
  starts-with or contains rule), so "claude-sonnet-4-5-20250929" resolves like its base name;
- its price history: start-date and time-of-day conditions in genai-prices' order (the last one
  in effect wins, else the first), with context tiers per price key merged into whole-request tiers;
- the per-token prices we meter: input, output, cache read, cache write (default/5m) and 1h cache
  write. Tool and modality extras (web searches, input audio/image...) are named under "unmetered".
Dropped: models charged by something we cannot count from token usage (per request, per
character, audio hours, or a distinct output modality/reasoning rate), and request variants
(batch, priority/flex service tiers): the table prices the standard tier.

Format 1: {"format", "source", "source_version", "generated", "sha", "histories": [...],
"models": [[provider, model_id, history_index, names, dated_names, unmetered, max_output], ...]}.
A history is [[start_date | null, [from, to] | null, rates], ...] and rates is
[input, output, cache_read, cache_write, cache_write_1h, tiers] (decimal strings, null = not
priced; trailing nulls dropped), tiers being [[above_tokens, same five rates], ...].
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
from genai_prices import data, types
from genai_prices.data_snapshot import get_snapshot

OUT = Path(__file__).resolve().parent.parent / "holysheep_lab" / "core" / "prices.json"
FORMAT = 1

METERED = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok")
# Extras that do not change what a text prompt or completion costs; shown, not charged.
UNMETERED = frozenset({
    "web_searches_kcount", "storage_searches_kcount", "input_audio_mtok", "cache_audio_read_mtok",
    "input_image_mtok", "cache_image_read_mtok", "input_video_mtok", "input_document_kpages",
    "input_annotated_document_kpages",
})
# Output caps (tokens) from the vendors' model pages: genai-prices has no output cap, and the
# guard's worst case for a call without max_tokens needs one. Keyed by bare name.
MAX_OUTPUT = {
    "gpt-4.1": 32_768, "gpt-4.1-mini": 32_768, "gpt-4.1-nano": 32_768, "gpt-4o": 16_384,
    "gpt-4o-mini": 16_384, "gpt-5": 128_000, "gpt-5-mini": 128_000, "o3": 100_000, "o4-mini": 100_000,
    "claude-opus-4-1": 32_000, "claude-sonnet-4-5": 64_000, "claude-haiku-4-5": 64_000,
    "gemini-2.5-pro": 65_536, "gemini-2.5-flash": 65_536, "deepseek-v3.2": 8_192,
}
DATE_PROBES = ("-20250101", "-2025-01-01")  # both date forms must reach the same model


def _dec(value: Decimal) -> str:
    # Plain notation, no exponent, no trailing zeros: "2.5", "0.0375", "15".
    return format(value.normalize(), "f")


def _clauses(match: Any) -> list[str]:
    """Every literal in an equals / starts-with / contains clause (through or-clauses)."""
    if isinstance(match, types.ClauseEquals):
        return [match.equals]
    if isinstance(match, types.ClauseStartsWith):
        return [match.starts_with]
    if isinstance(match, types.ClauseContains):
        return [match.contains]
    if isinstance(match, types.ClauseOr):
        return [lit for clause in match.or_ for lit in _clauses(clause)]
    return []  # regex / and-clauses: no literal name to offer (the model id may still match)


def _rates(price: types.ModelPrice) -> list[Any] | None:
    """The metered rates of one genai-prices ModelPrice, or None if it cannot be metered."""
    values = {k: v for k, v in price.__dict__.items() if not k.startswith("_") and v is not None}
    if not set(values) <= set(METERED) | UNMETERED:
        return None
    if "input_mtok" not in values and "output_mtok" not in values:
        return None
    starts = sorted({t.start for v in values.values() if isinstance(v, types.TieredPrices) for t in v.tiers})

    def at(key: str, tokens: int | None) -> Decimal | None:
        v = values.get(key)
        if v is None:
            return None
        if not isinstance(v, types.TieredPrices):
            return v if tokens is None else None  # untiered: the base rate holds in every tier
        if tokens is None:
            return v.base
        rate = v.base
        for tier in sorted(v.tiers, key=lambda t: t.start):
            if tokens > tier.start:
                rate = tier.price
        return rate

    def row(tokens: int | None) -> list[Any]:
        out = [_dec(r) if (r := at(k, tokens)) is not None else None for k in METERED]
        if tokens is None:  # a missing input/output price costs nothing in genai-prices
            out[0] = out[0] or "0"
            out[1] = out[1] or "0"
        return out

    base = row(None)
    if starts:
        return [*base, [_trim([s, *row(s + 1)]) for s in starts]]
    return _trim(base)


def _trim(values: list[Any]) -> list[Any]:
    while values and values[-1] is None:
        values.pop()
    return values


def _utc_time(t: time) -> str:
    if t.tzinfo is not None:
        t = datetime.combine(date(1970, 1, 1), t).astimezone(UTC).time()
    return t.isoformat(timespec="seconds")


def _history(model: types.ModelInfo) -> list[list[Any]] | None:
    prices = model.prices if isinstance(model.prices, list) else [types.ConditionalPrice(prices=model.prices)]
    history: list[list[Any]] = []
    for cp in prices:
        rates = _rates(cp.prices)
        if rates is None:
            return None
        c = cp.constraint
        if isinstance(c, types.StartDateConstraint):
            history.append([c.start_date.isoformat(), None, rates])
        elif isinstance(c, types.TimeOfDateConstraint):
            history.append([None, [_utc_time(c.start_time), _utc_time(c.end_time)], rates])
        else:
            history.append([None, None, rates])
    return history


def _unmetered(model: types.ModelInfo) -> list[str]:
    prices = model.prices if isinstance(model.prices, list) else [types.ConditionalPrice(prices=model.prices)]
    keys = {k for cp in prices for k, v in cp.prices.__dict__.items() if v is not None and k in UNMETERED}
    return sorted(keys)


def _resolves(ref: str, provider_id: str | None) -> tuple[str, int] | None:
    """(provider id, id(model)) that genai-prices resolves `ref` to, or None."""
    try:
        provider, model = get_snapshot().find_provider_model(ref, None, provider_id, None)
    except LookupError:
        return None
    return provider.id, id(model)


def build() -> dict[str, Any]:
    providers = {p.id: p for p in data.providers}
    histories: list[list[Any]] = []
    history_index: dict[str, int] = {}
    models: dict[tuple[str, int], list[Any]] = {}  # (routing provider, id(model)) -> row
    skipped: list[str] = []

    def row_for(provider: types.Provider, model: types.ModelInfo) -> list[Any] | None:
        key = (provider.id, id(model))
        if key in models:
            return models[key]
        history = _history(model)
        if history is None:
            skipped.append(f"{provider.id}/{model.id}")
            return None
        text = json.dumps(history, separators=(",", ":"))
        if text not in history_index:
            history_index[text] = len(histories)
            histories.append(history)
        models[key] = row = [provider.id, model.id, history_index[text], [], [], _unmetered(model), None]
        return row

    for provider in data.providers:
        # A provider's own models, then those it falls back to (Azure sells OpenAI's models...).
        offered = [(provider, m) for m in provider.models]
        for fallback in provider.fallback_model_providers or ():
            offered += [(provider, m) for m in providers[fallback].models]
        for routing, model in offered:
            literals = {lit.lower() for lit in [model.id, *_clauses(model.match)]}
            for lit in sorted(literals):
                for ref, pid in ((f"{routing.id}/{lit}", routing.id), (lit, None)):
                    if _resolves(lit, pid) != (routing.id, id(model)):
                        continue
                    row = row_for(routing, model)
                    if row is None:
                        continue
                    if ref not in row[3]:
                        row[3].append(ref)
                    # Dated forms of this name reach the same model: the name may carry a date.
                    if all(_resolves(lit + probe, pid) == (routing.id, id(model)) for probe in DATE_PROBES) \
                            and ref not in row[4]:
                        row[4].append(ref)

    rows = [r for r in models.values() if r[3]]
    seen: dict[str, str] = {}
    for r in rows:
        r[3].sort()
        r[4].sort()
        for name in r[3]:
            assert name not in seen, f"{name} claimed by {seen[name]} and {r[0]}/{r[1]}"
            seen[name] = f"{r[0]}/{r[1]}"
            cap = MAX_OUTPUT.get(name)
            if cap and "/" not in name:
                r[6] = cap
    # Caps follow the model: the provider-prefixed names of a capped model share its cap.
    caps = {(r[0], r[1]): r[6] for r in rows if r[6]}
    for r in rows:
        if r[6] is None and (r[0], r[1]) in caps:
            r[6] = caps[(r[0], r[1])]
    rows.sort(key=lambda r: (r[0], r[1]))
    body = {"histories": histories, "models": [_trim(list(r)) if r[6] is None else r for r in rows]}
    sha = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]
    print(f"{len(rows)} models, {len(seen)} names, {len(histories)} histories; skipped {len(skipped)} "
          "models not priced per token (free, per request/character/hour, or another output modality)", file=sys.stderr)
    return {
        "format": FORMAT,
        "source": "genai-prices",
        "source_version": genai_prices.__version__,
        "generated": date.today().isoformat(),
        "sha": sha,
        **body,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    doc = build()
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if old.get("sha") == doc["sha"] and old.get("source_version") == doc["source_version"]:
        doc["generated"] = old.get("generated", doc["generated"])  # same data: keep the file unchanged
    # One model per line: compact to load, readable in a diff.
    lines = [json.dumps({k: v for k, v in doc.items() if k not in ("histories", "models")})[:-1] + ","]
    for key in ("histories", "models"):
        items = doc[key]
        lines.append(f' "{key}": [')
        lines += ["  " + json.dumps(item, separators=(",", ":")) + ("," if i < len(items) - 1 else "")
                  for i, item in enumerate(items)]
        lines.append(" ]," if key == "histories" else " ]")
    lines.append("}")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} (genai-prices {doc['source_version']}, sha {doc['sha']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
