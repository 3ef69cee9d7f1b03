"""Prices and the cost of a call: pure, exact (integer nano-dollars), never a silent $0.

Cost formula (OpenAI usage semantics, shared by most relays): cached reads, cache writes and
reasoning are parts of the totals, not extras. With `input_tokens` = every prompt token (cached
reads and cache writes included) and `output_tokens` = every completion token (reasoning included):

    cost = (input - cache_read - cache_write) x input_rate + cache_read x cached_input
         + (cache_write - cache_write_1h) x cache_write + cache_write_1h x cache_write_1h_rate
         + output x output_rate

with each price in USD per 1M tokens, taken from the context tier the prompt falls in (a prompt
above a tier's threshold pays that tier's rates for the whole request, as providers bill). An
Anthropic-style usage, whose input excludes cache reads and writes, goes through
`Usage.from_anthropic`.

The default table is the list-price database generated from genai-prices (prices.json, loaded on
first use), with the HolySheep relay's own prices on top.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from holysheep_lab.errors import ConfigError, ResponseFormatError, UnknownModelError

__all__ = ["RELAY_COST_TOLERANCE", "Price", "PriceEntry", "PriceTable", "Tier", "Usage", "relay_drift"]

# USD per 1M tokens -> nano-dollars per token: x 1e9 / 1e6.
_NANOS_PER_TOKEN_PER_USD_PER_M = Decimal(1000)
_DATE_SUFFIX = re.compile(r"-\d{4}-?\d{2}-?\d{2}$")
#: The HolySheep relay's price list (the seed article); bump when a relay price changes.
RELAY_VERSION = "relay-2026.11"
#: How genai-prices names a vendor, for spellings of a provider prefix seen in the wild.
_VENDOR_SPELLINGS = {"gemini": "google", "xai": "x-ai", "mistralai": "mistral", "moonshot": "moonshotai",
                     "deepseek-ai": "deepseek"}
_RATE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")


def _rate(name: str, value: Any, *, optional: bool = False) -> Decimal | None:
    if value is None and optional:
        return None
    try:
        dec = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"Price.{name} must be USD per 1M tokens (a number), not {value!r}.") from exc
    if not dec.is_finite() or dec < 0:
        raise ConfigError(f"Price.{name} must be a finite, non-negative USD per 1M tokens; got {value!r}.")
    return dec


def _when(value: Any) -> datetime | None:
    """An effective-from instant: a date is midnight UTC (as genai-prices dates are); a datetime
    must say its zone (midnight in a log's zone is `datetime(..., tzinfo=ZoneInfo(zone))`)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"Price.effective_from must be an ISO date or datetime, not {value!r}.") from exc
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigError(f"Price.effective_from {value!r} needs a time zone (or give a date: midnight UTC).")
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ConfigError(f"Price.effective_from must be a date or an aware datetime, not {value!r}.")


def _utc_time(value: Any) -> time:
    if isinstance(value, str):
        try:
            value = time.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"Price.time_of_day bounds must be 'HH:MM[:SS]' (UTC), not {value!r}.") from exc
    if not isinstance(value, time):
        raise ConfigError(f"Price.time_of_day bounds must be times of day, not {value!r}.")
    t: time = value
    if t.tzinfo is not None:
        t = datetime.combine(date(2000, 1, 3), t).astimezone(UTC).time()
    return t.replace(tzinfo=None)


def _aware(at: datetime) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(f"A price lookup time must be a timezone-aware datetime, not {at!r}.")
    return at


@dataclass(frozen=True, slots=True)
class Tier:
    """Rates for a request whose prompt is above `above` tokens (all of its tokens, as providers
    bill: Gemini 2.5 Pro above 200k, Claude Sonnet 4.5 above 200k). A rate left None is the base
    price's."""

    above: int
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None

    def __init__(
        self,
        above: int,
        input: float | str | Decimal | None = None,
        output: float | str | Decimal | None = None,
        cached_input: float | str | Decimal | None = None,
        cache_write: float | str | Decimal | None = None,
        cache_write_1h: float | str | Decimal | None = None,
    ) -> None:
        if isinstance(above, bool) or not isinstance(above, int) or above < 0:
            raise ConfigError(f"Tier.above must be a prompt size in tokens (an int >= 0), not {above!r}.")
        object.__setattr__(self, "above", above)
        for name, value in zip(_RATE_FIELDS, (input, output, cached_input, cache_write, cache_write_1h), strict=True):
            object.__setattr__(self, name, _rate(name, value, optional=True))

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"above": self.above}
        for name in _RATE_FIELDS:
            if (v := getattr(self, name)) is not None:
                d[name] = str(v)
        return d


def _tier(value: Any) -> Tier:
    if isinstance(value, Tier):
        return value
    if isinstance(value, Mapping) and "above" in value and set(value) <= {"above", *_RATE_FIELDS}:
        return Tier(**value)
    raise ConfigError(f"A price tier must be hs.Tier(above=..., input=..., ...) or such a mapping, not {value!r}.")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. `cached_input` (cache read) and `cache_write` default to `input`, and
    `cache_write_1h` to `cache_write`: never free by accident.

    `max_output` is the model's output cap in tokens, used for the worst-case estimate of a call
    sent without max_tokens. `tiers` are context tiers by prompt size. `effective_from` is when
    this price starts (None: always); `time_of_day` a daily [start, end) window in UTC for
    peak/off-peak prices. In a table's history the last price in effect at a call's time wins.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    max_output: int | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    effective_from: datetime | None = None
    time_of_day: tuple[time, time] | None = None
    # (above, input, output, cached, write, write_1h) in nanos x 10^k per token, highest tier first.
    _levels: tuple[tuple[int, int, int, int, int, int], ...] = field(default=(), init=False, repr=False,
                                                                     compare=False)
    _scale: int = field(default=1, init=False, repr=False, compare=False)  # 10^k

    def __init__(
        self,
        input: float | str | Decimal,
        output: float | str | Decimal,
        cached_input: float | str | Decimal | None = None,
        max_output: int | None = None,
        *,
        cache_write: float | str | Decimal | None = None,
        cache_write_1h: float | str | Decimal | None = None,
        tiers: Iterable[Tier | Mapping[str, Any]] = (),
        effective_from: date | datetime | str | None = None,
        time_of_day: tuple[time | str, time | str] | None = None,
    ) -> None:
        self._build(input, output, cached_input, max_output, cache_write, cache_write_1h, tiers, effective_from,
                    time_of_day)
        self._check_cache_reads()

    def _build(
        self,
        input: float | str | Decimal,
        output: float | str | Decimal,
        cached_input: float | str | Decimal | None,
        max_output: int | None,
        cache_write: float | str | Decimal | None,
        cache_write_1h: float | str | Decimal | None,
        tiers: Iterable[Tier | Mapping[str, Any]],
        effective_from: date | datetime | str | None,
        time_of_day: tuple[time | str, time | str] | None,
    ) -> None:
        s = object.__setattr__
        s(self, "input", _rate("input", input))
        s(self, "output", _rate("output", output))
        s(self, "cached_input", _rate("cached_input", cached_input, optional=True))
        if max_output is not None and (isinstance(max_output, bool) or not isinstance(max_output, int)
                                       or max_output <= 0):
            raise ConfigError(f"Price.max_output must be a positive token count, not {max_output!r}.")
        s(self, "max_output", max_output)
        s(self, "cache_write", _rate("cache_write", cache_write, optional=True))
        s(self, "cache_write_1h", _rate("cache_write_1h", cache_write_1h, optional=True))
        if isinstance(tiers, (str, Mapping)):
            raise ConfigError("Price.tiers must be a list of tiers.")
        tier_list = tuple(sorted((_tier(t) for t in tiers), key=lambda t: t.above))
        if len({t.above for t in tier_list}) != len(tier_list):
            raise ConfigError("Price.tiers must have distinct thresholds (`above`).")
        s(self, "tiers", tier_list)
        s(self, "effective_from", _when(effective_from))
        if time_of_day is not None:
            if isinstance(time_of_day, str) or len(time_of_day) != 2:
                raise ConfigError(f"Price.time_of_day must be a (start, end) pair, not {time_of_day!r}.")
            start, end = _utc_time(time_of_day[0]), _utc_time(time_of_day[1])
            if start == end:
                raise ConfigError("Price.time_of_day must be a non-empty window (start != end).")
            s(self, "time_of_day", (start, end))
        else:
            s(self, "time_of_day", None)
        self._compile()

    def _check_cache_reads(self) -> None:
        """A cache read dearer than the input it replaces is a typo (swapped arguments), not a
        price: refused for prices given here. (List data is taken as published: see _compact_price.)"""
        for t in (None, *self.tiers):
            inp = t.input if t is not None and t.input is not None else self.input
            cached = t.cached_input if t is not None and t.cached_input is not None else self.cached_input
            if cached is not None and cached > inp:
                where = f" in the tier above {t.above} tokens" if t is not None else ""
                raise ConfigError(
                    f"Price.cached_input ({cached}) is above Price.input ({inp}){where}: a cached read "
                    "costs at most the input it replaces. Check the order: Price(input, output, cached_input)."
                )

    def _compile(self) -> None:
        """Each tier's effective rates as exact integers over one power of ten (int maths per call)."""
        levels: list[tuple[int, list[Decimal]]] = []
        for t in (None, *self.tiers):
            inp = t.input if t is not None and t.input is not None else self.input
            out = t.output if t is not None and t.output is not None else self.output
            cached = t.cached_input if t is not None and t.cached_input is not None else self.cached_input
            write = t.cache_write if t is not None and t.cache_write is not None else self.cache_write
            write_1h = t.cache_write_1h if t is not None and t.cache_write_1h is not None else self.cache_write_1h
            write = inp if write is None else write
            rates = [inp, out, inp if cached is None else cached, write, write if write_1h is None else write_1h]
            levels.append((-1 if t is None else t.above, [r * _NANOS_PER_TOKEN_PER_USD_PER_M for r in rates]))
        digits = max(0, *(-int(r.normalize().as_tuple().exponent) for _, rs in levels for r in rs))
        scale = 10**digits
        compiled = tuple((above, *(int(r.scaleb(digits)) for r in rs)) for above, rs in reversed(levels))
        object.__setattr__(self, "_levels", compiled)
        object.__setattr__(self, "_scale", scale)

    def cost_nanos(self, usage: Usage) -> int:
        """Exact cost of `usage` in nano-dollars (rounded half-even once, at the end)."""
        prompt = usage.input_tokens
        levels = self._levels
        level = levels[-1]  # the base price; tiers come first, highest threshold first
        if len(levels) > 1:
            for level in levels:
                if prompt > level[0]:
                    break
        _, inp, out, cached_rate, write_rate, write_1h_rate = level
        cached, write, write_1h = usage.cached_input_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens
        total = ((prompt - cached - write) * inp + cached * cached_rate + (write - write_1h) * write_rate
                 + write_1h * write_1h_rate + usage.output_tokens * out)
        scale = self._scale
        if scale == 1:
            return total
        q, r = divmod(total, scale)
        if 2 * r > scale or (2 * r == scale and q & 1):
            q += 1
        return q

    def worst_case_nanos(self, input_tokens: int, output_tokens: int) -> int:
        """Upper bound of any call with at most these token counts: every input token at the
        dearest input-side rate, in the dearest tier a prompt of up to `input_tokens` can reach."""
        worst = 0
        for above, inp, out, cached, write, write_1h in self._levels:
            if above < 0 or input_tokens > above:
                worst = max(worst, input_tokens * max(inp, cached, write, write_1h) + output_tokens * out)
        # Round up: an estimate must never be below what the call can cost.
        return -(-worst // self._scale)

    def in_effect(self, at: datetime) -> bool:
        """Whether this price applies at `at` (an aware datetime)."""
        if self.effective_from is not None and at < self.effective_from:
            return False
        if self.time_of_day is None:
            return True
        start, end = self.time_of_day
        now = at.astimezone(UTC).time().replace(tzinfo=None)
        return start <= now < end if start < end else (now >= start or now < end)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input": str(self.input), "output": str(self.output)}
        for name in ("cached_input", "cache_write", "cache_write_1h"):
            if (v := getattr(self, name)) is not None:
                d[name] = str(v)
        if self.max_output is not None:
            d["max_output"] = self.max_output
        if self.tiers:
            d["tiers"] = [t.as_dict() for t in self.tiers]
        if self.effective_from is not None:
            d["effective_from"] = self.effective_from.isoformat()
        if self.time_of_day is not None:
            d["time_of_day"] = [t.isoformat() for t in self.time_of_day]
        return d


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call, validated. Cached reads, cache writes and reasoning are parts of
    the totals, not extras: `input_tokens` includes `cached_input_tokens` and `cache_write_tokens`
    (which includes `cache_write_1h_tokens`), `output_tokens` includes `reasoning_tokens`."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    relay_cost_usd: float | None = None
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    def __post_init__(self) -> None:
        # A part above its total would bill a negative count: refuse rather than under-charge.
        if (self.cached_input_tokens + self.cache_write_tokens > self.input_tokens
                or self.reasoning_tokens > self.output_tokens or self.cache_write_1h_tokens > self.cache_write_tokens
                or min(self.cached_input_tokens, self.cache_write_1h_tokens, self.reasoning_tokens,
                       self.output_tokens) < 0):
            raise ResponseFormatError(
                f"Impossible usage: input {self.input_tokens} must include cached {self.cached_input_tokens} "
                f"+ cache writes {self.cache_write_tokens} (1h {self.cache_write_1h_tokens}), output "
                f"{self.output_tokens} its reasoning {self.reasoning_tokens}; counts are non-negative."
            )

    @classmethod
    def from_anthropic(
        cls,
        input_tokens: int,
        output_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
        *,
        ephemeral_1h_input_tokens: int = 0,
        reasoning_tokens: int = 0,
        relay_cost_usd: float | None = None,
    ) -> Usage:
        """From Anthropic Messages counts, whose `input_tokens` EXCLUDE cache reads and writes
        (here they are parts of the input). `ephemeral_1h_input_tokens` is the 1-hour share of
        `cache_creation_input_tokens` (usage.cache_creation); the rest is billed as 5-minute writes."""
        return cls(input_tokens + cache_read_input_tokens + cache_creation_input_tokens, output_tokens,
                   cache_read_input_tokens, reasoning_tokens, relay_cost_usd, cache_creation_input_tokens,
                   ephemeral_1h_input_tokens)


#: How far a relay's own figure for a call (`usage.cost`) may be from ours before it is flagged.
RELAY_COST_TOLERANCE = 0.05


def relay_drift(ours_usd: float, relay_usd: float) -> float:
    """The relay's figure against ours, relative to ours: relay / ours - 1 (0.2: the relay
    charged 20 % more). Where ours is 0, 0 if the relay's is too, else +-inf."""
    if ours_usd == 0:
        return 0.0 if relay_usd == 0 else math.copysign(math.inf, relay_usd)
    return (relay_usd - ours_usd) / ours_usd


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """What a table knows about one name: who priced it and its price history.

    `history` is in the source's order; the last price in effect at a call's time wins (an entry
    with none in effect has no price then). `provider` is whose price this is (a provider prefix
    naming it resolves to it), `model` the source's own name for the model, and `unmetered` the
    list-price extras this table does not charge (web searches, input audio...).
    """

    source: str
    history: tuple[Price, ...]
    provider: str | None = None
    model: str | None = None
    unmetered: tuple[str, ...] = ()
    _static: Price | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.history or not all(isinstance(p, Price) for p in self.history):
            raise ConfigError("A price entry needs at least one hs.Price.")
        only = self.history[0]
        if len(self.history) == 1 and only.effective_from is None and only.time_of_day is None:
            object.__setattr__(self, "_static", only)  # the common case: no clock needed

    def price(self, at: datetime | None = None) -> Price | None:
        """The price in effect at `at` (an aware datetime; None: now), or None."""
        if self._static is not None:
            return self._static
        when = datetime.now(UTC) if at is None else at
        for p in reversed(self.history):
            if p.in_effect(when):
                return p
        return None


class _ListData:
    """The generated list-price database (prices.json): names -> models -> price histories.
    Entries are built on first lookup; a table of thousands of models loads in milliseconds."""

    __slots__ = ("_entries", "_histories", "_models", "_prices", "dated", "info", "names", "source", "version")

    def __init__(self, doc: Mapping[str, Any]) -> None:
        if doc.get("format") != 1:
            raise ConfigError(f"The bundled price list has format {doc.get('format')!r}; this version reads 1.")
        self.info = {k: doc[k] for k in ("source", "source_version", "generated", "sha")}
        self.source = f"{doc['source']} {doc['source_version']}"
        self.version = f"{doc['source']}-{doc['source_version']}-{doc['sha']}"
        self._histories: list[Any] = doc["histories"]
        self._models: list[Any] = doc["models"]
        self.names: dict[str, int] = {name: i for i, m in enumerate(self._models) for name in m[3]}
        self.dated = frozenset(name for m in self._models if len(m) > 4 for name in m[4])
        self._entries: dict[int, PriceEntry] = {}
        self._prices: dict[tuple[int, int | None], tuple[Price, ...]] = {}

    @classmethod
    def bundled(cls) -> _ListData:
        from importlib.resources import files

        try:
            raw = files("holysheep_lab.core").joinpath("prices.json").read_bytes()
            return cls(json.loads(raw))
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise ConfigError(
                f"The bundled list-price database (holysheep_lab/core/prices.json) is unreadable ({exc!r}); "
                "reinstall holysheep-lab, or pass prices=hs.PriceTable({...}) with your own prices."
            ) from exc

    def model_names(self, idx: int) -> list[str]:
        names: list[str] = self._models[idx][3]
        return names

    def entry_at(self, idx: int) -> PriceEntry:
        entry = self._entries.get(idx)
        if entry is None:
            m = self._models[idx]
            cap = m[6] if len(m) > 6 else None
            entry = PriceEntry(self.source, self._history(m[2], cap), provider=m[0], model=m[1],
                               unmetered=tuple(m[5]) if len(m) > 5 else ())
            self._entries[idx] = entry
        return entry

    def _history(self, idx: int, cap: int | None) -> tuple[Price, ...]:
        key = (idx, cap)
        prices = self._prices.get(key)
        if prices is None:
            prices = self._prices[key] = tuple(
                _compact_price(rates, cap, start, window) for start, window, rates in self._histories[idx])
        return prices


def _compact_price(rates: Sequence[Any], cap: int | None, start: str | None, window: Sequence[str] | None) -> Price:
    tiers = [Tier(t[0], *t[1:]) for t in rates[5]] if len(rates) > 5 else ()
    rest = [*rates[:5], None, None, None][2:5]
    # Built without the cache-read check: a published list price is taken as published (one in
    # genai-prices reads cache above input); the worst case takes the dearest input-side rate.
    price = Price.__new__(Price)
    price._build(rates[0], rates[1], rest[0], cap, rest[1], rest[2], tiers, start,
                 (window[0], window[1]) if window else None)
    return price


def _relay_entries() -> dict[str, PriceEntry]:
    # The seed's four models at the HolySheep relay's prices (seed article), USD per 1M tokens.
    def relay(provider: str, price: Price) -> PriceEntry:
        return PriceEntry("relay", (price,), provider=provider)

    P = Price
    return {
        "gpt-4.1": relay("openai", P("8", "8", max_output=32_768)),
        "claude-sonnet-4.5": relay("anthropic", P("15", "15", max_output=64_000)),
        "gemini-2.5-flash": relay("google", P("2.50", "2.50", max_output=65_536)),
        "deepseek-v3.2": relay("deepseek", P("0.42", "0.42", max_output=8_192)),
    }


_DEFAULTS: dict[bool, PriceTable] = {}
_DEFAULTS_LOCK = threading.Lock()


class PriceTable(Mapping[str, Price]):
    """An immutable model -> Price map with a version that is frozen onto every log row.

    The default table is layered: list prices (genai-prices), the relay's prices on top, then
    whatever `extend`/`prices=` adds. An entry added on top also prices the names the list data
    says are the same model (its dated ids, its "provider/name" form), unless one of those is
    priced explicitly. `table[name]` is the price now of exactly that name; `price(model)`
    resolves, strictly:

    - the exact name, then its lower-case form (list names are lower-case);
    - a date suffix ('-2025-09-29', '-20250929') only where the list data prices every dated id of
      the base name as that same model (a prefix rule in genai-prices), or where the compact date
      spells an id the table has ('gpt-4o-20240806' is 'gpt-4o-2024-08-06'); any other dated id
      needs its own entry ('gpt-4o-2024-05-13' has one, at $5/$15);
    - a provider prefix ('openai/gpt-4o') only when it names the provider whose price the entry
      is, so 'azure/...' or an unknown relay's prefix never borrows another seller's price.
    Anything else is UnknownModelError: a wrong price is worse than none.
    """

    __slots__ = ("_len", "_list", "_over", "_version")

    _list: _ListData | None
    _over: dict[str, tuple[PriceEntry, bool]]  # name -> (entry, explicitly named)
    _version: str
    _len: int

    def __init__(self, prices: Mapping[str, Any] | None = None, *, version: str | None = None) -> None:
        entries = _entries(prices or {}, "user")
        self._setup(None, {name: (e, True) for name, e in entries.items()}, version or _digest(None, entries))

    def _setup(self, lst: _ListData | None, over: dict[str, tuple[PriceEntry, bool]], version: str) -> None:
        self._list = lst
        self._over = over
        self._version = version
        self._len = len(over) + (sum(1 for n in lst.names if n not in over) if lst is not None else 0)

    @classmethod
    def _make(cls, lst: _ListData | None, over: dict[str, tuple[PriceEntry, bool]], version: str) -> PriceTable:
        table = cls.__new__(cls)
        table._setup(lst, over, version)
        return table

    @classmethod
    def default(cls, *, relay: bool = True) -> PriceTable:
        """List prices from the bundled genai-prices data with the relay's prices on top
        (`relay=False`: list prices only). Loaded once, on first use."""
        table = _DEFAULTS.get(relay)
        if table is None:
            with _DEFAULTS_LOCK:
                table = _DEFAULTS.get(relay)
                if table is None:
                    lst = _ListData.bundled()
                    table = cls._make(lst, {}, lst.version)
                    if relay:
                        table = table._layered(_relay_entries(), f"{lst.version}+{RELAY_VERSION}")
                    _DEFAULTS[relay] = table
        return table

    @classmethod
    def from_file(cls, path: str | Path, *, base: PriceTable | None = None) -> PriceTable:
        """Load a TOML or JSON file of `{model = {input=.., output=.., cached_input=..}}` (or, for a
        price history, a list of such tables with effective_from), layered over `base` (default:
        the default table)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"Cannot read price file {path}: {exc.strerror}.") from exc
        try:
            if path.suffix.lower() == ".toml":
                import tomllib

                data = tomllib.loads(raw.decode())
            else:
                data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Price file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"Price file {path} must map model names to prices.")
        data = data.get("models", data)
        if not isinstance(data, dict):
            raise ConfigError(f"Price file {path} must map model names to prices.")
        return (base if base is not None else cls.default()).extend(data, source=f"file {path.name}")

    @classmethod
    def coerce(cls, prices: PriceTable | Mapping[str, Any] | str | Path | None) -> PriceTable:
        """What `Client(prices=...)` accepts: a table, a dict layered over the defaults, a file."""
        if prices is None:
            return cls.default()
        if isinstance(prices, PriceTable):
            return prices
        if isinstance(prices, (str, Path)):
            return cls.from_file(prices)
        if isinstance(prices, Mapping):
            return cls.default().extend(prices)
        raise ConfigError(f"prices must be a PriceTable, a dict or a file path, not {type(prices).__name__}.")

    def extend(self, prices: Mapping[str, Any], *, source: str = "user") -> PriceTable:
        """A new table with these prices on top: `{name: hs.Price | mapping | [history...]}`."""
        entries = _entries(prices, source)
        return self._layered(entries, _digest(self._version, entries))

    def _layered(self, entries: Mapping[str, PriceEntry], version: str) -> PriceTable:
        over = dict(self._over)
        lst = self._list
        for name, given in entries.items():
            # Whose model this is (from the list data), so its provider prefix resolves.
            idx = lst.names.get(name.lower()) if lst is not None and given.provider is None else None
            provider = lst.entry_at(idx).provider if lst is not None and idx is not None else given.provider
            over[name] = (PriceEntry(given.source, given.history, provider, given.model or name, given.unmetered), True)
        if lst is not None:
            # The same model's other names follow, unless priced explicitly (at any layer).
            for name in entries:
                idx = lst.names.get(name.lower())
                if idx is None:
                    continue
                for alias in lst.model_names(idx):
                    held = over.get(alias)
                    if alias not in entries and (held is None or not held[1]):
                        over[alias] = (over[name][0], False)
        return PriceTable._make(lst, over, version)

    @property
    def version(self) -> str:
        """Identifies the prices: list data version and sha, relay list, and a digest of additions."""
        return self._version

    @property
    def list_info(self) -> Mapping[str, str] | None:
        """Where the list prices come from: source, source_version, generated, sha (None: no list)."""
        return dict(self._list.info) if self._list is not None else None

    # -- lookup -------------------------------------------------------------------------------

    def _get(self, name: str) -> PriceEntry | None:
        hit = self._over.get(name)
        if hit is not None:
            return hit[0]
        lst = self._list
        if lst is not None:
            idx = lst.names.get(name)
            if idx is not None:
                return lst.entry_at(idx)
        return None

    def _plain(self, model: str) -> str | None:
        if self._get(model) is not None:
            return model
        low = model.lower()
        if low != model and self._get(low) is not None:
            return low
        m = _DATE_SUFFIX.search(low)
        if m is not None:
            base, digits = low[: m.start()], m.group()[1:].replace("-", "")
            if self._list is not None and base in self._list.dated and self._get(base) is not None:
                return base  # the list data prices every dated id of `base` as `base`
            dashed = f"{base}-{digits[:4]}-{digits[4:6]}-{digits[6:]}"
            if dashed != low and self._get(dashed) is not None:
                return dashed  # the same id, spelled with a compact date
        return None

    def resolve(self, model: str) -> str | None:
        """The table's name for `model` (see the class doc for the rules), or None."""
        if not isinstance(model, str) or not model:
            return None
        name = self._plain(model)
        if name is not None or "/" not in model:
            return name
        prefix, rest = model.split("/", 1)
        name = self._plain(rest)
        if name is None:
            return None
        vendor = prefix.lower()
        entry = self._get(name)
        return name if entry is not None and entry.provider == _VENDOR_SPELLINGS.get(vendor, vendor) else None

    def entry(self, model: str) -> PriceEntry:
        """The entry `model` resolves to: source, price history, provider; UnknownModelError if none."""
        name = self.resolve(model)
        entry = self._get(name) if name is not None else None
        if entry is None:
            raise UnknownModelError(model, sorted(self))
        return entry

    def source(self, model: str) -> str:
        """Who priced `model`: 'relay', 'genai-prices 0.2.3', 'user', 'file <name>'."""
        return self.entry(model).source

    def price(self, model: str, at: datetime | None = None) -> Price:
        """The price of `model` in effect at `at` (an aware datetime; default now);
        UnknownModelError (naming how to add one) if absent or not in effect then."""
        price = self.entry(model).price(None if at is None else _aware(at))
        if price is None:
            raise UnknownModelError(model)
        return price

    def cost_nanos(self, model: str, usage: Usage, at: datetime | None = None) -> int:
        return self.price(model, at).cost_nanos(usage)

    # -- Mapping ------------------------------------------------------------------------------

    def __getitem__(self, model: str) -> Price:
        entry = self._get(model) if isinstance(model, str) else None
        price = entry.price() if entry is not None else None
        if price is None:
            raise KeyError(model)
        return price

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self._get(model) is not None

    def __iter__(self) -> Iterator[str]:
        yield from self._over
        if self._list is not None:
            over = self._over
            yield from (name for name in self._list.names if name not in over)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"PriceTable({len(self)} models, version={self._version!r})"


def _digest(base: str | None, entries: Mapping[str, PriceEntry]) -> str:
    spec = {name: [p.as_dict() for p in e.history] for name, e in sorted(entries.items())}
    return "sha-" + hashlib.sha256(json.dumps([base, spec], sort_keys=True).encode()).hexdigest()[:10]


def _entries(prices: Mapping[str, Any], source: str) -> dict[str, PriceEntry]:
    if not isinstance(prices, Mapping):
        raise ConfigError(f"Prices must map model names to prices, not {type(prices).__name__}.")
    out: dict[str, PriceEntry] = {}
    folded: dict[str, str] = {}
    for name, spec in prices.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"Model names in a price table must be non-empty strings, not {name!r}.")
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            # Lookups fall back to the lower-case name: which of the two would price 'GPT-X'?
            raise ConfigError(
                f"Price names {other!r} and {name!r} differ only in case: a model gets one price. "
                "Keep one spelling (the one the relay uses)."
            )
        if isinstance(spec, PriceEntry):
            out[name] = spec
        elif isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
            if not spec:
                raise ConfigError(f"The price history of {name!r} is empty.")
            out[name] = PriceEntry(source, tuple(_one_price(name, s) for s in spec))
        else:
            out[name] = PriceEntry(source, (_one_price(name, spec),))
    return out


def _one_price(model: str, spec: Any) -> Price:
    return spec if isinstance(spec, Price) else _price_from_mapping(model, spec)


_PRICE_KEYS = frozenset({"input", "output", "cached_input", "max_output", "cache_write", "cache_write_1h", "tiers",
                         "effective_from", "time_of_day"})


def _price_from_mapping(model: str, spec: Mapping[str, Any]) -> Price:
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"Price for {model!r} must be hs.Price(...) or a mapping with input/output, not {spec!r}."
        )
    unknown = set(spec) - _PRICE_KEYS
    if unknown or "input" not in spec or "output" not in spec:
        raise ConfigError(
            f"Price for {model!r} needs 'input' and 'output' (USD per 1M tokens), optionally "
            f"'cached_input', 'cache_write', 'cache_write_1h', 'max_output', 'tiers', 'effective_from' "
            f"and 'time_of_day'; got keys {sorted(spec)}."
        )
    window = spec.get("time_of_day")
    return Price(spec["input"], spec["output"], spec.get("cached_input"), spec.get("max_output"),
                 cache_write=spec.get("cache_write"), cache_write_1h=spec.get("cache_write_1h"),
                 tiers=spec.get("tiers") or (), effective_from=spec.get("effective_from"),
                 time_of_day=(window[0], window[1]) if window is not None else None)
