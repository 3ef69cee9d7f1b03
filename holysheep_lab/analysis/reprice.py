"""Repricing a call log: what its calls cost under another price table, or on another model.

`reprice(df, table)` recomputes each spending row's cost from its logged tokens (input, output,
cached reads, reasoning, cache writes) at the price `table` had in effect at the row's `ts`:
"what did last month cost at today's prices". `what_if(df, model)` prices the same tokens as if
the calls had gone to `model`, and `compare_models(df, [...])` totals that for several models
("what if this project had used deepseek"). Same token counts: another model's tokenizer and
answer lengths differ, so a what-if is a first-order estimate, not a quote.

Which rows are repriced: those whose status is spend (ok, error, unknown) and whose model the
table prices at the row's time. Blocked, unpriced and unmetered rows, rows of models the table
does not know and rows without a timestamp keep their logged cost; the `repriced` column says
which rows were recomputed (True even where the new cost equals the old). A row charged at its
bound (`usage_missing`: no usable usage, or no answer) is repriced at its bound, the worst case
of its logged token counts, exactly as it was charged. Repriced rows get the table's
`price_version`. Costs are exact (integer nanos per row, `cost_nanos` if the frame has it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from holysheep_lab.analysis.frames import NAT_MICROS, cost_usd, group_codes, require_columns, utc_micros
from holysheep_lab.core.clock import micros_to_datetime
from holysheep_lab.core.money import nanos_to_usd
from holysheep_lab.core.pricing import Price, PriceEntry, PriceTable, Usage
from holysheep_lab.errors import ConfigError, ResponseFormatError, UnknownModelError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["REPRICED_STATUSES", "TOKEN_COLUMNS", "as_table", "compare_models", "reprice", "what_if"]

#: Statuses whose cost is spend, and so is recomputed.
REPRICED_STATUSES = frozenset({"ok", "error", "unknown"})
#: The token counts a cost is made of, in `Usage` order; the first two are required.
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "cache_write_tokens",
                 "cache_write_1h_tokens")
_REQUIRED = ("ts", "model", "status", "cost_usd", "input_tokens", "output_tokens")
AS_LOGGED = "(as logged)"

Prices = PriceTable | Mapping[str, Any]


def as_table(prices: Prices) -> PriceTable:
    """A PriceTable as given, or exactly the models of a dict ({name: hs.Price | history}):
    not layered over the default table, so a dict reprices only the rows of its models."""
    if isinstance(prices, PriceTable):
        return prices
    if isinstance(prices, Mapping):
        return PriceTable(prices)
    raise ConfigError(f"Reprice with a PriceTable or a dict of hs.Price, not {type(prices).__name__}.")


def reprice(df: pd.DataFrame, table: Prices) -> pd.DataFrame:
    """A copy of the call log `df` with `cost_usd` (and `cost_nanos`, `price_version`)
    recomputed under `table` at each row's time, plus a bool `repriced` column (see the module
    doc for which rows). `table`: a PriceTable, or a dict of hs.Price (only those models)."""
    require_columns(df, _REQUIRED, "reprice")
    return _priced(df, as_table(table), None, None)


def what_if(df: pd.DataFrame, model: str, table: Prices | None = None, *,
            instead_of: str | Sequence[str] | None = None) -> pd.DataFrame:
    """A copy of `df` as if its calls (those of the models `instead_of`, default all) had been
    sent to `model` with the same tokens: repriced rows carry `model` and its cost under
    `table` (default: the default table); `logged_model` keeps what was sent."""
    require_columns(df, _REQUIRED, "what_if")
    prices = PriceTable.default() if table is None else as_table(table)
    prices.entry(model)  # UnknownModelError now, naming the model, rather than nothing repriced
    return _priced(df, prices, model, _chosen(df, instead_of))


def compare_models(df: pd.DataFrame, models: Sequence[str] | Mapping[str, Any], table: Prices | None = None, *,
                   instead_of: str | Sequence[str] | None = None) -> pd.DataFrame:
    """What the log would have cost on each of `models`: one row for the log as logged, then one
    per model. `models`: names priced by `table` (default: the default table), or a dict
    {name: hs.Price} of prices to try (then `table` must be None).

    Columns: ``model``, ``calls`` (rows of the log), ``repriced`` (rows the model priced),
    ``cost_usd`` (the whole log's total: rows not repriced count at their logged cost),
    ``delta_usd`` (against the log as logged), ``ratio`` (cost / logged; NaN if logged is 0).
    """
    import pandas as pd

    require_columns(df, _REQUIRED, "compare_models")
    if isinstance(models, Mapping):
        if table is not None:
            raise ConfigError("compare_models: give prices in `models` or a `table`, not both.")
        prices = as_table(models)
        names = list(models)
    elif isinstance(models, str) or not isinstance(models, Sequence):
        raise ConfigError("compare_models needs a list of model names or a dict {name: hs.Price}.")
    else:
        prices = PriceTable.default() if table is None else as_table(table)
        names = list(models)
    logged = float(cost_usd(df)[0].sum())
    rows: list[tuple[str, int, int, float]] = [(AS_LOGGED, len(df), 0, logged)]
    chosen = _chosen(df, instead_of)
    for name in names:
        prices.entry(name)
        alt = _priced(df, prices, name, chosen)
        rows.append((name, len(df), int(alt["repriced"].sum()), float(cost_usd(alt)[0].sum())))
    out = pd.DataFrame(rows, columns=["model", "calls", "repriced", "cost_usd"])
    out["delta_usd"] = out["cost_usd"] - logged
    out["ratio"] = out["cost_usd"] / logged if logged else np.nan
    return out


# -- the one loop ----------------------------------------------------------------------------


def _chosen(df: pd.DataFrame, instead_of: str | Sequence[str] | None) -> np.ndarray | None:
    if instead_of is None:
        return None
    names = [instead_of] if isinstance(instead_of, str) else list(instead_of)
    return np.asarray(df["model"].astype(object).isin(names), dtype=bool)


def _ints(df: pd.DataFrame, name: str) -> np.ndarray:
    """A token column as Python-int-ready int64 (nulls and absent columns: 0)."""
    if name not in df.columns:
        return np.zeros(len(df), dtype=np.int64)
    try:
        return np.asarray(df[name].fillna(0), dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"reprice: column {name} must hold token counts: {exc}") from exc


def _priced(df: pd.DataFrame, table: PriceTable, as_model: str | None, chosen: np.ndarray | None) -> pd.DataFrame:
    """`df` repriced under `table`, every chosen row (all if None) as `as_model` (None: its own)."""
    import pandas as pd

    n = len(df)
    codes, labels = group_codes(df["model"])
    status = np.asarray(df["status"].astype(object).isin(REPRICED_STATUSES), dtype=bool)
    eligible = status if chosen is None else status & chosen
    us = utc_micros(df["ts"]) if n else np.zeros(0, dtype=np.int64)
    at_bound = (np.asarray(df["usage_missing"].astype("boolean").fillna(False), dtype=bool)
                if "usage_missing" in df.columns else np.zeros(n, dtype=bool))
    tokens = [_ints(df, c) for c in TOKEN_COLUMNS]
    ids = df["call_id"].astype(object).to_numpy() if "call_id" in df.columns else None

    # Per model: its entry in `table` (None: not priced) and its one price if it has no dates.
    found: dict[str, tuple[PriceEntry | None, Price | None]] = {}

    def lookup(name: str) -> tuple[PriceEntry | None, Price | None]:
        hit = found.get(name)
        if hit is None:
            try:
                entry = table.entry(name)
            except UnknownModelError:
                hit = (None, None)
            else:
                hit = (entry, _static(entry))
            found[name] = hit
        return hit

    nanos = np.zeros(n, dtype=object)
    repriced = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(eligible).tolist():
        entry, price = lookup(as_model if as_model is not None else labels[codes[i]])
        if entry is None or us[i] == NAT_MICROS:
            continue
        if price is None:
            price = entry.price(micros_to_datetime(us[i]))
        if price is None:
            continue  # the table has this model, but no price in effect then
        counts = [int(t[i]) for t in tokens]
        try:
            cost = price.worst_case_nanos(counts[0], counts[1]) if at_bound[i] else price.cost_nanos(Usage(
                counts[0], counts[1], counts[2], counts[3], None, counts[4], counts[5]))
        except ResponseFormatError as exc:
            where = f"call {ids[i]}" if ids is not None else f"row {i}"
            raise ConfigError(f"reprice: {where} has impossible token counts ({exc})") from exc
        nanos[i] = cost
        repriced[i] = True

    out = df.copy()
    costs = df["cost_usd"].to_numpy(dtype="float64", na_value=np.nan, copy=True)
    hit = np.flatnonzero(repriced)
    costs[hit] = [nanos_to_usd(v) for v in nanos[hit]]
    out["cost_usd"] = costs
    if "cost_nanos" in df.columns:
        values = df["cost_nanos"].astype("Int64").astype(object).to_numpy(copy=True)
        values[hit] = nanos[hit]
        exact = pd.Series(values, index=df.index, dtype="Int64")
        out["cost_nanos"] = exact if exact.hasnans else exact.astype("int64")
    if "price_version" in df.columns:
        out["price_version"] = _replace(df, "price_version", repriced, table.version)
    if as_model is not None:
        out["logged_model"] = df["model"]
        out["model"] = _replace(df, "model", repriced, as_model)
    out["repriced"] = pd.Series(repriced, index=df.index)
    return out


def _static(entry: PriceEntry) -> Price | None:
    """The entry's one price when it has no dates or hours (no per-row time lookup needed)."""
    only = entry.history[0]
    if len(entry.history) == 1 and only.effective_from is None and only.time_of_day is None:
        return only
    return None


def _replace(df: pd.DataFrame, column: str, where: np.ndarray, value: str) -> pd.Series:
    """`df[column]` with `value` where `where`, keeping its dtype (a categorical stays one)."""
    import pandas as pd

    old = df[column]
    values = old.astype(object).to_numpy(copy=True)
    values[where] = value
    new = pd.Series(values, index=df.index, name=column)
    if isinstance(old.dtype, pd.CategoricalDtype):
        return new.astype("category")
    return new.astype(old.dtype) if old.dtype != object else new
