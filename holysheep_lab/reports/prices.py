"""Price tables as text for a terminal: what `holysheep-lab prices list | search | show` prints.

One line per model (a model's other names, its dated ids and "provider/name" forms, are listed
with it, not apart), rates in USD per 1M tokens as billed: a cached or cache-write rate the
source leaves out is the input rate, so no column reads as free. Pure functions from a
`PriceTable` to strings; the CLI only parses arguments and prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from holysheep_lab.core.pricing import Price, PriceEntry, PriceTable, Tier
from holysheep_lab.errors import UnknownModelError

__all__ = ["SOURCE_KINDS", "PriceLine", "list_text", "price_lines", "show_text", "source_kind"]

#: How `--source` names who priced a model: the relay, the list-price database, or the user.
SOURCE_KINDS = ("relay", "list", "user")
_MAX_NAME = 48
_MAX_ALIASES = 12


@dataclass(frozen=True, slots=True)
class PriceLine:
    """One model of a table: its display name, every name that resolves to it, its entry."""

    name: str
    names: tuple[str, ...]
    entry: PriceEntry


def source_kind(table: PriceTable, entry: PriceEntry) -> str:
    """'relay', 'list' (the list-price database) or 'user' (added prices and price files)."""
    if entry.source == "relay":
        return "relay"
    info = table.list_info
    if info is not None and entry.source == f"{info['source']} {info['source_version']}":
        return "list"
    return "user"


def price_lines(table: PriceTable, *, provider: str | None = None, source: str | None = None,
                text: str | None = None) -> list[PriceLine]:
    """The table's models (relay first, then by provider and name), filtered by `provider`, by
    source kind (see SOURCE_KINDS) and by `text` in any of a model's names (case-insensitive)."""
    groups: dict[int, tuple[PriceEntry, list[str]]] = {}
    for name in table:
        entry = table.entry(name)
        groups.setdefault(id(entry), (entry, []))[1].append(name)
    needle = text.lower() if text else None
    lines = []
    for entry, names in groups.values():
        if provider is not None and (entry.provider or "").lower() != provider.lower():
            continue
        if source is not None and source_kind(table, entry) != source:
            continue
        if needle is not None and not any(needle in n.lower() for n in names):
            continue
        lines.append(PriceLine(_display_name(entry, names), tuple(names), entry))
    order = {kind: i for i, kind in enumerate(SOURCE_KINDS)}
    lines.sort(key=lambda line: (order[source_kind(table, line.entry)], line.entry.provider or "", line.name))
    return lines


def _display_name(entry: PriceEntry, names: Sequence[str]) -> str:
    if entry.model is not None and entry.model in names:
        return entry.model
    plain = [n for n in names if "/" not in n] or list(names)
    return min(plain, key=lambda n: (len(n), n))


def _usd(rate: Decimal) -> str:
    return format(rate.normalize(), "f")  # 10, 2.5, 0.125: no exponent, no trailing zeros


def _rates(price: Price) -> tuple[str, str, str, str]:
    """(input, output, cached, cache write) as billed; a 1-hour write rate that differs follows
    the 5-minute one after a slash."""
    cached = price.cached_input if price.cached_input is not None else price.input
    write = price.cache_write if price.cache_write is not None else price.input
    hour = price.cache_write_1h if price.cache_write_1h is not None else write
    writes = _usd(write) if hour == write else f"{_usd(write)}/{_usd(hour)}"
    return _usd(price.input), _usd(price.output), _usd(cached), writes


def _tier_note(tiers: Iterable[Tier]) -> str:
    return ", ".join(f"tier >{_tokens(t.above)}" for t in tiers)


def _tokens(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def _notes(line: PriceLine, now: Price | None) -> str:
    notes = []
    if now is not None and now.tiers:
        notes.append(_tier_note(now.tiers))
    history = line.entry.history
    if any(p.time_of_day is not None for p in history):
        notes.append("time-of-day prices")
    if len(history) > 1:
        notes.append(f"{len(history)} prices")
    if now is None:
        notes.append("no price in effect now")
    if len(line.names) > 1:
        others = len(line.names) - 1
        notes.append(f"+{others} name{'s' if others > 1 else ''}")
    return "; ".join(notes)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)]


def _short(name: str) -> str:
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "…"


def list_text(table: PriceTable, lines: Sequence[PriceLine], *, now: datetime | None = None) -> str:
    """A table of `lines` (the price in effect at `now`, default now) and a footer saying where
    the prices come from."""
    at = now or datetime.now(UTC)
    rows = []
    for line in lines:
        price = line.entry.price(at)
        rates = _rates(price) if price is not None else ("-", "-", "-", "-")
        rows.append((_short(line.name), line.entry.provider or "-", line.entry.source, *rates, _notes(line, price)))
    out = _table(("MODEL", "PROVIDER", "SOURCE", "INPUT", "OUTPUT", "CACHED", "CACHE WRITE", "NOTES"), rows)
    names = sum(len(line.names) for line in lines)
    out.append("")
    out.append(f"{len(lines)} model{'s' if len(lines) != 1 else ''} ({names} names). USD per 1M tokens as billed; "
               "cache write: 5-minute/1-hour where they differ.")
    out.append(_provenance(table))
    return "\n".join(out)


def _provenance(table: PriceTable) -> str:
    info = table.list_info
    listed = f"List prices: {info['source']} {info['source_version']} of {info['generated']}. " if info else ""
    return f"{listed}Table version {table.version}."


def show_text(table: PriceTable, model: str, *, now: datetime | None = None) -> str:
    """A model's entry: its names, source, provider, and price history with effective dates,
    hours, tiers and cache rates (`*` marks the price in effect at `now`). UnknownModelError if
    the table cannot price `model`."""
    at = now or datetime.now(UTC)
    entry = table.entry(model)
    every = [n for n in table if table.entry(n) is entry]
    shown_as = _display_name(entry, every)
    names = [n for n in every if n not in (model, shown_as)]
    out = [model if shown_as == model else f"{model}  (priced as {shown_as})"]
    facts = [("provider", entry.provider or "-"), ("source", _source_text(table, entry))]
    if names:
        shown = ", ".join(sorted(names)[:_MAX_ALIASES])
        facts.append(("also named", shown + (f", … ({len(names)} in all)" if len(names) > _MAX_ALIASES else "")))
    if entry.unmetered:
        facts.append(("not metered", ", ".join(entry.unmetered) + " (extras this table does not charge)"))
    listed = _list_price(table, entry, shown_as)
    if listed is not None:
        facts.append(("list price", listed))
    out += [f"  {k.ljust(13)}{v}" for k, v in facts]
    out.append("")
    out.append("  prices, USD per 1M tokens (* in effect now):")
    current = entry.price(at)
    rows = []
    for price in entry.history:
        since = _in_effect(price)
        cap = f"{price.max_output:,}" if price.max_output is not None else "-"
        rows.append(("*" if price is current else " ", since, *_rates(price), cap))
        for tier in price.tiers:
            rows.append((" ", f"  prompt >{_tokens(tier.above)}", *_rates(_tiered(price, tier)), ""))
    out += ["  " + line for line in _table(("", "IN EFFECT", "INPUT", "OUTPUT", "CACHED", "CACHE WRITE", "MAX OUTPUT"),
                                           rows)]
    if any(p.tiers for p in entry.history):
        out.append("  A prompt above a tier's size pays that tier's rates for the whole request.")
    if current is None:
        out.append("  No price is in effect now: calls to this model are refused (or logged unpriced).")
    return "\n".join(out)


def _in_effect(price: Price) -> str:
    """When a price applies: 'always', 'from 2026-03-13', 'daily 01:00-04:00 UTC', or both."""
    parts = []
    start = price.effective_from
    if start is not None:
        midnight_utc = start.utcoffset() == UTC.utcoffset(None) and start.time() == datetime.min.time()
        parts.append(f"from {start.date().isoformat() if midnight_utc else start.isoformat(timespec='minutes')}")
    if price.time_of_day is not None:
        begin, end = price.time_of_day
        parts.append(f"daily {begin:%H:%M}-{end:%H:%M} UTC")
    return ", ".join(parts) or "always"


def _tiered(price: Price, tier: Tier) -> Price:
    """The base price with a tier's rates over it (unset tier rates are the base's)."""
    def pick(mine: Decimal | None, base: Decimal | None) -> Decimal | None:
        return mine if mine is not None else base

    return Price(price.input if tier.input is None else tier.input,
                 price.output if tier.output is None else tier.output,
                 pick(tier.cached_input, price.cached_input),
                 cache_write=pick(tier.cache_write, price.cache_write),
                 cache_write_1h=pick(tier.cache_write_1h, price.cache_write_1h))


def _source_text(table: PriceTable, entry: PriceEntry) -> str:
    kind = source_kind(table, entry)
    if kind == "relay":
        return "relay (the HolySheep relay's own price list, on top of list prices)"
    if kind == "list":
        info = table.list_info
        generated = f", data of {info['generated']}" if info else ""
        return f"{entry.source} (list prices{generated})"
    return entry.source


def _list_price(table: PriceTable, entry: PriceEntry, name: str) -> str | None:
    """The list price beneath a relay or user price, for comparison (None: none, or it is one)."""
    if source_kind(table, entry) == "list" or table.list_info is None:
        return None
    try:
        below = PriceTable.default(relay=False).entry(name)
    except UnknownModelError:
        return None
    price = below.price()
    if price is None:
        return None
    inp, out, cached, write = _rates(price)
    return f"input {inp}, output {out}, cached {cached}, cache write {write} ({below.source})"
