"""The simulator's options: one immutable, validated snapshot, and the faults it can inject."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any

__all__ = ["BODY_FAULTS", "DEFAULT_FAULT_MIX", "DEFAULT_MODELS", "FAULTS", "OPTION_NAMES", "SimConfig", "SimPrice",
           "configure"]

FAULTS: frozenset[str] = frozenset(
    {
        "rate_limit",  # 429 + Retry-After, retry-after-ms and x-ratelimit-* headers
        "server_error",  # 500
        "unavailable",  # 503
        "timeout",  # no answer for `hang` seconds (or until the client gives up), then 504
        "malformed",  # 200 with a truncated JSON body (streaming: a truncated data line)
        "html",  # 502 with an nginx-style HTML error page
        "html_200",  # 200 with an HTML page (a captive portal or a proxy's login page)
        "no_usage",  # a valid answer without `usage` (streaming: no usage in any event)
        "negative_usage",  # a valid answer whose output (embeddings: input) count is negative
        "cut_stream",  # the connection closes mid-body: no usage, no end marker
        "disconnect",  # the connection closes before any response
    }
)
#: What `fault_rate` draws from when no `fault` is named: the faults a client should retry.
DEFAULT_FAULT_MIX = ("rate_limit", "server_error", "unavailable")
#: Faults that still produce an answer body (mangled or not); the rest answer without one.
BODY_FAULTS = frozenset({"no_usage", "negative_usage", "malformed", "cut_stream"})
DEFAULT_MODELS = (
    "gpt-4.1",
    "claude-sonnet-4.5",
    "gemini-2.5-flash",
    "deepseek-v3.2",
    "gpt-4.1-mini",
    "gpt-4o-mini",
    "o4-mini",
)
# The relay's own price list for `report_cost=True` (USD per 1M tokens: input, output, cached).
# It is deliberately the simulator's own: a real relay's figure is independent of the client's.
_DEFAULT_PRICES = {
    "gpt-4.1": (8, 8),
    "claude-sonnet-4.5": (15, 15),
    "gemini-2.5-flash": (2.5, 2.5),
    "deepseek-v3.2": (0.42, 0.42),
}

#: (input, output, cached input) in USD per 1M tokens.
SimPrice = tuple[Decimal, Decimal, Decimal]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One immutable snapshot; `Simulator.configure` swaps it whole, so handlers never see a mix."""

    api_key: str | None = None
    latency: float = 0.0
    jitter: float = 0.0
    stream_delay: float = 0.0
    stream_chunk_words: int = 4
    hang: float = 30.0
    retry_after: float = 1.0
    fault: tuple[str, ...] = ()
    fail_first: int | None = None
    fault_rate: float | None = None
    seed: int = 0
    cached_ratio: float = 0.0
    cache_write_ratio: float = 0.0
    reasoning_ratio: float = 0.0
    report_cost: bool = False
    prices: Mapping[str, SimPrice] = field(default_factory=dict)
    cost_factor: float = 1.0
    models: tuple[str, ...] = DEFAULT_MODELS

    def cache_writes(self, prompt: int, cached: int) -> int:
        """The prompt-cache writes of a prompt of `prompt` tokens, `cached` of them read from the
        cache: ``floor(prompt * cache_write_ratio)``, at most the uncached rest."""
        return min(prompt - cached, math.floor(prompt * self.cache_write_ratio))

    def relay_cost(self, model: str, uncached: int, cached: int, output: int) -> float | None:
        """The relay's own figure for `usage.cost` (USD), when `report_cost` prices the model."""
        price = self.prices.get(model) if self.report_cost else None
        if price is None:
            return None
        inp, out, cached_rate = price
        cost = (uncached * inp + cached * cached_rate + output * out) / Decimal(1_000_000)
        return float(cost * Decimal(str(self.cost_factor)))


OPTION_NAMES = frozenset(f.name for f in fields(SimConfig))


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _ratio(name: str, value: Any) -> float:
    number = _non_negative(name, value)
    if number > 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number


def _fault_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    names = () if value is None else (value,) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r}; choose from {', '.join(sorted(FAULTS))}")
    return names


def _price(model: str, value: Any) -> SimPrice:
    """Accept (input, output[, cached]), a mapping with those keys, or an hs.Price-like object."""
    if isinstance(value, Mapping):
        parts = (value.get("input"), value.get("output"), value.get("cached_input"))
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 3):
        parts = (value[0], value[1], value[2] if len(value) == 3 else None)
    else:
        inp, out, cached = (getattr(value, a, None) for a in ("input", "output", "cached_input"))
        parts = (inp, out, cached)
    if parts[0] is None or parts[1] is None:
        raise ValueError(f"price for {model!r} needs input and output (USD per 1M tokens)")
    inp, out = Decimal(str(parts[0])), Decimal(str(parts[1]))
    return inp, out, inp if parts[2] is None else Decimal(str(parts[2]))


def configure(base: SimConfig, options: Mapping[str, Any]) -> SimConfig:
    """Validate `options` and return `base` with them applied (ValueError names the bad one)."""
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown simulator option(s): {', '.join(sorted(unknown))}")
    o = dict(options)
    for name in ("latency", "jitter", "stream_delay", "hang", "retry_after", "cost_factor"):
        if name in o:
            o[name] = _non_negative(name, o[name])
    for name in ("cached_ratio", "cache_write_ratio", "reasoning_ratio"):
        if name in o:
            o[name] = _ratio(name, o[name])
    if o.get("fault_rate") is not None:
        o["fault_rate"] = _ratio("fault_rate", o["fault_rate"])
    if "fault" in o:
        o["fault"] = _fault_names(o["fault"])
    for name, low in (("fail_first", 0), ("stream_chunk_words", 1), ("seed", None)):
        value = o.get(name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (low is not None and value < low)
        ):
            raise ValueError(f"{name} must be an int{'' if low is None else f' >= {low}'}")
    if "prices" in o:
        o["prices"] = {m: _price(m, p) for m, p in (o["prices"] or {}).items()}
    if "models" in o:
        o["models"] = tuple(o["models"] or ())
    if o.get("api_key") == "":
        raise ValueError("api_key must be a non-empty string or None")
    cfg = replace(base, **o)
    if cfg.report_cost and not cfg.prices:
        cfg = replace(cfg, prices={m: _price(m, p) for m, p in _DEFAULT_PRICES.items()})
    return cfg
