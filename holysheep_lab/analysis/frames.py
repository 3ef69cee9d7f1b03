"""Call-log frame conventions shared by the analysis modules: columns, instants, days, groups.

Every analysis function reads a call log as a DataFrame through these helpers, so the rules of
`holysheep_lab.analysis.spend` (naive `ts` is UTC, null cost counts 0, null labels are
``"(none)"``, missing columns raise `ConfigError` naming them) hold in one place. Instants are
int64 microseconds since the epoch (`holysheep_lab.core.clock`); days are days since 1970-01-01.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from holysheep_lab.core.clock import to_micros
from holysheep_lab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NAT_MICROS",
    "NONE_LABEL",
    "US_PER_DAY",
    "US_PER_HOUR",
    "as_of_micros",
    "cost_usd",
    "day_dates",
    "empty_frame",
    "group_codes",
    "is_utc",
    "local_date",
    "local_day_bounds",
    "local_days",
    "numbers",
    "require_columns",
    "utc_micros",
    "valid_micros",
]

NONE_LABEL = "(none)"
US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
#: What `utc_micros` gives a missing timestamp (NaT).
NAT_MICROS = int(np.iinfo(np.int64).min)
_QUARTER_US = 900_000_000  # all modern UTC offsets and DST switches fall on 15-minute marks
_UNIT_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}


def require_columns(df: Any, columns: Sequence[str], what: str) -> None:
    """Raise ConfigError naming every column of `columns` missing from `df`."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"{what} needs a pandas DataFrame of the call log, not {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{what} needs the call-log column(s) {', '.join(missing)}, missing from this "
            f"DataFrame (it has: {', '.join(map(str, df.columns[:12]))}"
            f"{', ...' if len(df.columns) > 12 else ''}). Read the log with hs.read_log()."
        )


def utc_micros(ts: pd.Series) -> np.ndarray:
    """`ts` as int64 microseconds since the epoch, UTC; NaT becomes NAT_MICROS.

    Aware timestamps are converted, naive ones are taken as UTC, strings/objects are parsed
    (mixed offsets allowed). Zero-copy for the log's own `datetime64[us, UTC]` column.
    """
    import pandas as pd

    dtype = ts.dtype
    if not isinstance(dtype, pd.DatetimeTZDtype) and not (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        try:
            ts = pd.to_datetime(ts, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"Column ts must hold timestamps; could not parse it: {exc}") from exc
        dtype = ts.dtype
    arr = ts.array
    i8 = np.asarray(arr.asi8 if hasattr(arr, "asi8") else ts.to_numpy().view("i8"))
    unit = dtype.unit if isinstance(dtype, pd.DatetimeTZDtype) else np.datetime_data(cast("np.dtype[Any]", dtype))[0]
    nat = i8 == NAT_MICROS
    scale = _UNIT_SCALE[unit]
    if scale is None:
        out = i8 // 1_000
    elif scale == 1:
        out = i8
    else:
        out = i8 * scale
    if nat.any():
        out = out.copy() if out is i8 else out
        out[nat] = NAT_MICROS
    return out


def valid_micros(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """(microseconds of `ts`, mask of the rows with a timestamp, or None when all have one)."""
    us = utc_micros(df["ts"])
    bad = us == NAT_MICROS
    return us, (~bad if bad.any() else None)


def as_of_micros(us: np.ndarray, now: datetime | None) -> int:
    """The instant a log is read as of: `now` (naive = UTC, as for ts), else just after its last call."""
    if now is not None:
        return to_micros(now)
    return int(us.max()) + 1


def is_utc(tz: tzinfo) -> bool:
    """Whether local days in `tz` are UTC days."""
    return getattr(tz, "key", None) in ("UTC", "Etc/UTC") or tz is UTC


def local_days(us: np.ndarray, tz: tzinfo) -> np.ndarray:
    """Local calendar day (days since 1970-01-01 in `tz`) of each UTC microsecond instant.

    Offsets are looked up once per distinct UTC quarter-hour in the range instead of
    converting every row (10M rows: ~0.1 s instead of seconds).
    """
    import pandas as pd

    if len(us) == 0:
        return np.zeros(0, dtype=np.int64)
    if is_utc(tz):
        return us // US_PER_DAY
    q = us // _QUARTER_US
    q0, q1 = int(q.min()), int(q.max())
    if q1 - q0 > 4_000_000:  # > ~100 years: build the table per row instead
        local = pd.DatetimeIndex(us.astype("datetime64[us]"), tz="UTC").tz_convert(tz)
        return np.asarray(local.tz_localize(None).asi8 // US_PER_DAY)
    starts = pd.DatetimeIndex(
        (np.arange(q0, q1 + 1, dtype=np.int64) * _QUARTER_US).astype("datetime64[us]"), tz="UTC"
    ).tz_convert(tz)
    table = starts.tz_localize(None).as_unit("us").asi8 // US_PER_DAY
    return np.asarray(table[q - q0])


def day_dates(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 as naive datetime64[s] midnights (the `date` column of `daily`)."""
    return days.astype("datetime64[D]").astype("datetime64[s]")


def local_date(value: date | datetime | str, zone: tzinfo) -> date:
    """The local date in `zone` of a date, an instant (naive = UTC) or an ISO string's first 10 characters."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone).date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise ConfigError(f"Expected a date like '2026-11-01', got {value!r}.") from exc


def local_day_bounds(start: date | datetime | str | None, end: date | datetime | str | None,
                     zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """UTC [lo, hi) of the local days `start` to `end` (inclusive) in `zone`; None: unbounded."""
    lo = hi = None
    if start is not None:
        d = local_date(start, zone)
        lo = datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
    if end is not None:
        d = local_date(end, zone) + timedelta(days=1)
        hi = datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
    return lo, hi


def group_codes(col: pd.Series, *, narrow: bool = False) -> tuple[np.ndarray, list[str]]:
    """Integer group codes (no -1) and their labels; nulls become NONE_LABEL. Codes are int64,
    or with `narrow` a categorical's own (int8 for few labels: no copy when none is null)."""
    import pandas as pd

    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        labels = [str(c) for c in col.cat.categories]
        if not narrow or len(labels) >= np.iinfo(codes.dtype).max:  # room for NONE_LABEL's code
            codes = codes.astype(np.int64)
    else:
        raw, uniques = pd.factorize(col, use_na_sentinel=True)
        codes = raw.astype(np.int64, copy=False)
        labels = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels = [*labels, NONE_LABEL]
    return codes, labels


def numbers(col: pd.Series) -> np.ndarray:
    """Numbers as a numpy array with nulls as 0 (no copy for plain numpy integer columns)."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return col.to_numpy()
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        arr = col.to_numpy()
        return np.nan_to_num(arr, nan=0.0) if np.isnan(arr).any() else arr
    return col.to_numpy(dtype="float64", na_value=0.0)


def cost_usd(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(`cost_usd` with nulls as 0, mask of the null (unpriced) rows)."""
    col = df["cost_usd"]
    if col.dtype == np.float64:  # the log's own column: its NaNs are the nulls, no copy
        cost = col.to_numpy()
    else:
        cost = col.to_numpy(dtype="float64", na_value=np.nan)
    null = np.isnan(cost)
    return (np.where(null, 0.0, cost) if null.any() else cost), null


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    """An empty frame with these {column: dtype}: what an analysis of an empty log returns."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
