"""Prices and the cost of a call: pure, exact (integer nano-dollars), never a silent $0.

Cost formula (OpenAI usage semantics, shared by most relays): cached prompt tokens are part of
`prompt_tokens` and reasoning tokens part of `completion_tokens`, so

    cost = (prompt - cached) x input + cached x cached_input + completion x output

with each price in USD per 1M tokens. Nothing is charged twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from holysheep_lab.errors import ConfigError, UnknownModelError

__all__ = ["Price", "PriceTable", "Usage"]

# USD per 1M tokens -> nano-dollars per token: x 1e9 / 1e6.
_NANOS_PER_TOKEN_PER_USD_PER_M = Decimal(1000)
_DATE_SUFFIX = re.compile(r"-\d{4}-?\d{2}-?\d{2}$")


def _price(name: str, value: Any, *, optional: bool = False) -> Decimal | None:
    if value is None and optional:
        return None
    try:
        dec = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"Price.{name} must be USD per 1M tokens (a number), not {value!r}.") from exc
    if not dec.is_finite() or dec < 0:
        raise ConfigError(f"Price.{name} must be a finite, non-negative USD per 1M tokens; got {value!r}.")
    return dec




@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. `cached_input` defaults to `input` (never free by accident).

    `max_output` is the model's output cap in tokens, used for the worst-case estimate
    of a call sent without max_tokens.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    max_output: int | None = None

    def __init__(
        self,
        input: float | str | Decimal,
        output: float | str | Decimal,
        cached_input: float | str | Decimal | None = None,
        max_output: int | None = None,
    ) -> None:
        object.__setattr__(self, "input", _price("input", input))
        object.__setattr__(self, "output", _price("output", output))
        object.__setattr__(self, "cached_input", _price("cached_input", cached_input, optional=True))
        if max_output is not None and (not isinstance(max_output, int) or max_output <= 0):
            raise ConfigError(f"Price.max_output must be a positive token count, not {max_output!r}.")
        object.__setattr__(self, "max_output", max_output)

    def cost_nanos(self, usage: Usage) -> int:
        """Exact cost of `usage` in nano-dollars (rounded half-even once, at the end)."""
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        uncached = usage.input_tokens - usage.cached_input_tokens
        per_m = uncached * self.input + usage.cached_input_tokens * cached_rate + usage.output_tokens * self.output
        return int((per_m * _NANOS_PER_TOKEN_PER_USD_PER_M).to_integral_value(ROUND_HALF_EVEN))

    def worst_case_nanos(self, input_tokens: int, output_tokens: int) -> int:
        """Upper bound: every input token uncached at the input rate (never below the cached one)."""
        rate = max(self.input, self.cached_input or Decimal(0))
        per_m = input_tokens * rate + output_tokens * self.output
        # Round up: an estimate must never be below what the call can cost.
        return int((per_m * _NANOS_PER_TOKEN_PER_USD_PER_M).to_integral_value(rounding="ROUND_CEILING"))

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input": str(self.input), "output": str(self.output)}
        if self.cached_input is not None:
            d["cached_input"] = str(self.cached_input)
        if self.max_output is not None:
            d["max_output"] = self.max_output
        return d


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call, validated. Cached and reasoning are parts, not extras."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    relay_cost_usd: float | None = None


def _builtin() -> dict[str, Price]:
    # The seed's four models at the relay's prices (HolySheep seed article), then list prices
    # as published on each vendor's pricing page (USD per 1M tokens; checked 2025-10).
    P = Price
    return {
        # seed (HolySheep relay prices)
        "gpt-4.1": P("8", "8", max_output=32_768),
        "claude-sonnet-4.5": P("15", "15", max_output=64_000),
        "gemini-2.5-flash": P("2.50", "2.50", max_output=65_536),
        "deepseek-v3.2": P("0.42", "0.42", max_output=8_192),
        # OpenAI list prices (openai.com/api/pricing)
        "gpt-4.1-mini": P("0.40", "1.60", "0.10", max_output=32_768),
        "gpt-4.1-nano": P("0.10", "0.40", "0.025", max_output=32_768),
        "gpt-4o": P("2.50", "10.00", "1.25", max_output=16_384),
        "gpt-4o-mini": P("0.15", "0.60", "0.075", max_output=16_384),
        "gpt-5": P("1.25", "10.00", "0.125", max_output=128_000),
        "gpt-5-mini": P("0.25", "2.00", "0.025", max_output=128_000),
        "o3": P("2.00", "8.00", "0.50", max_output=100_000),
        "o4-mini": P("1.10", "4.40", "0.275", max_output=100_000),
        # Anthropic list prices (anthropic.com/pricing; cached = cache read)
        "claude-opus-4.1": P("15", "75", "1.50", max_output=32_000),
        "claude-haiku-4.5": P("1", "5", "0.10", max_output=64_000),
        # Google list price (ai.google.dev/pricing, prompts <= 200k tokens)
        "gemini-2.5-pro": P("1.25", "10.00", "0.31", max_output=65_536),
    }


class PriceTable(Mapping[str, Price]):
    """An immutable model -> Price map with a version that is frozen onto every log row.

    Lookup tolerates a provider prefix ('openai/gpt-4o') and a date suffix
    ('gpt-4o-2024-08-06') when the exact name is absent.
    """

    __slots__ = ("_prices", "_version")

    def __init__(self, prices: Mapping[str, Price | Mapping[str, Any]] | None = None, *, version: str | None = None) -> None:
        table: dict[str, Price] = {}
        for name, p in (prices or {}).items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"Model names in a price table must be non-empty strings, not {name!r}.")
            table[name] = p if isinstance(p, Price) else _price_from_mapping(name, p)
        self._prices = table
        self._version = version or "sha-" + hashlib.sha256(
            json.dumps({k: v.as_dict() for k, v in sorted(table.items())}, sort_keys=True).encode()
        ).hexdigest()[:10]

    @classmethod
    def default(cls) -> PriceTable:
        """The built-in table (the seed's four models plus common list prices)."""
        return cls(_builtin(), version="builtin-2026.11")

    @classmethod
    def from_file(cls, path: str | Path, *, base: PriceTable | None = None) -> PriceTable:
        """Load a TOML or JSON file of `{model = {input=.., output=.., cached_input=..}}`,
        layered over `base` (default: the built-in table)."""
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
        return (base if base is not None else cls.default()).extend(data)

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

    def extend(self, prices: Mapping[str, Price | Mapping[str, Any]]) -> PriceTable:
        """A new table with these prices added or overriding."""
        merged: dict[str, Price | Mapping[str, Any]] = dict(self._prices)
        merged.update(prices)
        return PriceTable(merged)

    @property
    def version(self) -> str:
        return self._version

    def resolve(self, model: str) -> str | None:
        """The table's name for `model`, or None."""
        if model in self._prices:
            return model
        for candidate in (model.rsplit("/", 1)[-1], _DATE_SUFFIX.sub("", model.rsplit("/", 1)[-1])):
            if candidate in self._prices:
                return candidate
        return None

    def price(self, model: str) -> Price:
        """The price of `model`; UnknownModelError (naming how to add one) if absent."""
        name = self.resolve(model)
        if name is None:
            raise UnknownModelError(model, sorted(self._prices))
        return self._prices[name]

    def cost_nanos(self, model: str, usage: Usage) -> int:
        return self.price(model).cost_nanos(usage)

    def __getitem__(self, model: str) -> Price:
        return self._prices[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self)} models, version={self._version!r})"


def _price_from_mapping(model: str, spec: Mapping[str, Any]) -> Price:
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"Price for {model!r} must be hs.Price(...) or a mapping with input/output, not {spec!r}."
        )
    unknown = set(spec) - {"input", "output", "cached_input", "max_output"}
    if unknown or "input" not in spec or "output" not in spec:
        raise ConfigError(
            f"Price for {model!r} needs 'input' and 'output' (USD per 1M tokens), optionally "
            f"'cached_input' and 'max_output'; got keys {sorted(spec)}."
        )
    return Price(spec["input"], spec["output"], spec.get("cached_input"), spec.get("max_output"))
