"""ReadableFrame: a DataFrame that shows money, shares and milliseconds the way people read them.

The values stay exact floats (sum them, filter them, write them to Parquet); only the display
(`repr` and the notebook's HTML) goes through `core.display`: `cost_usd 0.003336` shows as
`$0.003336`, `share 0.561406` as `56.1%`, `latency_ms 1234.5` as `1,234 ms`. Which columns are
which follows their names (`core.display.column_kind`), or `column_kinds` for the columns whose
names do not say (a forecast's `yhat`). A thin subclass, not a Styler, so it
needs no jinja2 and every pandas operation still works (and keeps the display).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import pandas as pd

from holysheep_lab.core.display import NO_MATH, column_kind, format_ms, format_share, format_tokens, format_usd
from holysheep_lab.errors import ConfigError

__all__ = ["ReadableFrame", "readable"]

_FORMATS: dict[str, Callable[[Any], str]] = {
    "usd": format_usd,
    "share": format_share,
    "ms": format_ms,
    "tokens": format_tokens,
}


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _safe(fmt: Callable[[Any], str]) -> Callable[[Any], str]:
    def show(value: Any) -> str:
        try:
            return fmt(None if pd.isna(value) else float(value))
        except (TypeError, ValueError):
            return str(value)

    return show


class ReadableFrame(pd.DataFrame):
    """A DataFrame whose repr formats money ($), shares (%) and milliseconds; values unchanged."""

    _metadata = ["column_kinds"]  # noqa: RUF012  (pandas carries these through slicing and copies)
    #: Kinds ('usd', 'share', 'ms', 'tokens') of columns whose names do not say; the rest go by name.
    column_kinds: Mapping[str, str] | None = MappingProxyType({})

    @property
    def _constructor(self) -> Callable[..., ReadableFrame]:
        return ReadableFrame

    def display_formatters(self) -> dict[Any, Callable[[Any], str]]:
        """Column -> how its cells are shown (the columns whose name or `column_kinds` says what they hold)."""
        out: dict[Any, Callable[[Any], str]] = {}
        kinds = self.column_kinds or {}  # pandas sets None when it copies from a plain frame
        for col in self.columns:
            kind = kinds.get(str(col)) or column_kind(str(col))
            if kind is not None and _numeric(self[col]):
                out[col] = _safe(_FORMATS[kind])
        return out

    def _limits(self) -> dict[str, Any]:
        max_rows = pd.get_option("display.max_rows")
        if max_rows is not None and len(self) > max_rows:
            max_rows = pd.get_option("display.min_rows") or max_rows  # pandas shows a short head/tail then
        return {"max_rows": max_rows, "max_cols": pd.get_option("display.max_columns"),
                "show_dimensions": pd.get_option("display.show_dimensions")}

    def _repr_html_(self) -> str:
        table = self.to_html(formatters=self.display_formatters(), notebook=True, na_rep="", **self._limits())
        return f"<div class='{NO_MATH}'>{table}</div>"  # '$' in cells is not math

    def __repr__(self) -> str:
        text = self.to_string(formatters=self.display_formatters(), na_rep="", **self._limits())
        return text if text is not None else ""


def readable(df: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> ReadableFrame:
    """`df` as a ReadableFrame (the same values, no copy; its `.attrs` kept), with `kinds` for the
    columns whose names do not say what they hold."""
    unknown = sorted(set((kinds or {}).values()) - set(_FORMATS))
    if unknown:
        raise ConfigError(f"Unknown column kind(s) {unknown}; use one of {sorted(_FORMATS)}.")
    if isinstance(df, ReadableFrame) and not kinds:
        return df
    out = ReadableFrame(df)
    out.attrs = copy.deepcopy(df.attrs)  # the constructor drops them (a forecast's month-end figures)
    inherited = df.column_kinds if isinstance(df, ReadableFrame) else None
    if kinds or inherited:
        out.column_kinds = MappingProxyType({**(inherited or {}), **(kinds or {})})
    return out
