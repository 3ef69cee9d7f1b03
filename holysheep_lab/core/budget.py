"""Budgets and their calendar windows (pure: no I/O, no clock of its own).

A window is a calendar day or month in an IANA time zone; timestamps are UTC. Bounds are
computed from local midnight, so a DST day is 23 or 25 hours long and "monthly" is the
calendar month, never 30 days.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from holysheep_lab.core.money import NANOS_PER_USD, usd_to_nanos
from holysheep_lab.errors import ConfigError

__all__ = [
    "Budget",
    "BudgetLine",
    "Window",
    "local_zone",
    "resolve_tz",
    "window_bounds",
    "window_key",
]



class Window(str, Enum):  # noqa: UP042  (StrEnum would change str() of members, which messages show)
    """A budget window: the calendar day or the calendar month."""

    DAY = "daily"
    MONTH = "monthly"


def local_zone() -> tzinfo:
    """The machine's local zone (an IANA ZoneInfo when it can be named, else a fixed offset)."""
    import os

    name = os.environ.get("TZ")
    if name:
        try:
            return ZoneInfo(name.lstrip(":"))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        link = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in link:
            return ZoneInfo(link.split("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    tz = datetime.now().astimezone().tzinfo
    return tz if tz is not None else UTC


def resolve_tz(tz: str | tzinfo | None) -> tzinfo:
    """Turn a zone name (or None: the local zone) into a tzinfo; ConfigError if unknown."""
    if tz is None:
        return local_zone()
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ConfigError(
            f"tz must be an IANA zone name such as 'Europe/Berlin' or 'UTC' (or a tzinfo), not "
            f"{type(tz).__name__} {tz!r}; a fixed offset is datetime.timezone(timedelta(hours=5))."
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"Unknown time zone {tz!r}: use an IANA name such as 'Europe/Berlin', "
            "'America/New_York' or 'UTC'."
        ) from exc


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    # Midnight may not exist on a DST day in some zones; fold=0 picks the first valid instant.
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def window_bounds(window: Window, ts: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """UTC [start, end) of the window that contains `ts` (aware) in zone `tz`."""
    local = ts.astimezone(tz).date()
    if window is Window.DAY:
        start, nxt = local, local + timedelta(days=1)
    else:
        start = local.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)
    return _local_midnight(start, tz), _local_midnight(nxt, tz)


def window_key(window: Window, ts: datetime, tz: tzinfo) -> str:
    """A stable name for the window containing `ts`: 'day:2026-11-28' or 'month:2026-11'."""
    local = ts.astimezone(tz).date()
    if window is Window.DAY:
        return f"day:{local.isoformat()}"
    return f"month:{local.year:04d}-{local.month:02d}"




_SMALLEST_LIMIT = Decimal(1) / NANOS_PER_USD


def _positive_limit(name: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        dec = Decimal(str(value))
    except Exception as exc:  # decimal raises InvalidOperation, a bare ArithmeticError
        raise ConfigError(f"{name} must be a number of USD or None, not {value!r}.") from exc
    if not dec.is_finite() or dec <= 0:
        raise ConfigError(f"{name} must be a positive number of USD (or None for no limit), not {value!r}.")
    if dec < _SMALLEST_LIMIT:
        # Money is whole nano-dollars: a smaller limit would round to $0 and refuse every call.
        raise ConfigError(f"{name} must be at least $0.000000001 (one nano-dollar, the unit of money "
                          f"here), not {value!r}.")
    return dec


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One limit the guard enforces: a scope ('global' or 'project:NAME') in one window."""

    scope: str
    window: Window
    limit: Decimal
    block_at: float
    alert_at: float
    # Derived once (the guard reads them on every call): the limit and the refusal point in nanos.
    limit_nanos: int = field(init=False, repr=False, compare=False)
    block_nanos: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit_nanos", usd_to_nanos(self.limit))
        # Floor so float dust can never let a call slip past the limit (nor block at exactly it).
        object.__setattr__(self, "block_nanos", math.floor(self.limit * Decimal(str(self.block_at)) * NANOS_PER_USD))


@dataclass(frozen=True)
class Budget:
    """Spending limits in USD for calendar windows.

    `alert_at` is the soft limit (meters turn to warning, `budget_status` flags it);
    `block_at` is the hard limit: a call whose worst case would pass it is refused.
    `projects` nests budgets for single projects under this (global) one.
    """

    daily: float | Decimal | None = 100.0
    monthly: float | Decimal | None = 1000.0
    alert_at: float = 0.8
    block_at: float = 0.95
    tz: str | tzinfo | None = None
    projects: Mapping[str, Budget] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "daily", _positive_limit("Budget.daily", self.daily))
        object.__setattr__(self, "monthly", _positive_limit("Budget.monthly", self.monthly))
        for name in ("alert_at", "block_at"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"Budget.{name} must be a fraction in (0, 1], such as 0.8; got {v!r}.")
        if self.alert_at > self.block_at:
            raise ConfigError(
                f"Budget.alert_at ({self.alert_at}) must not exceed block_at ({self.block_at}): "
                "the warning has to come before the block."
            )
        object.__setattr__(self, "_zone", resolve_tz(self.tz))
        if not isinstance(self.projects, Mapping):
            raise ConfigError(f"Budget.projects must map project names to hs.Budget(...), not "
                              f"{type(self.projects).__name__}.")
        for name, sub in self.projects.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"Budget.projects names must be non-empty strings, not {name!r}.")
            if not isinstance(sub, Budget):
                raise ConfigError(f"Budget.projects[{name!r}] must be a Budget, not {type(sub).__name__}.")
            if sub.projects:
                raise ConfigError("Project budgets cannot nest further projects.")
        object.__setattr__(self, "projects", dict(self.projects))

    @property
    def zone(self) -> tzinfo:
        """The resolved time zone of the windows."""
        return self._zone  # type: ignore[attr-defined, no-any-return]

    def lines(self, project: str | None = None) -> Iterator[BudgetLine]:
        """The limits a call in `project` touches: the global ones, then the project's."""
        scopes: list[tuple[str, Budget]] = [("global", self)]
        if project is not None and project in self.projects:
            scopes.append((f"project:{project}", self.projects[project]))
        for scope, b in scopes:
            for window, limit in ((Window.DAY, b.daily), (Window.MONTH, b.monthly)):
                if limit is not None:
                    yield BudgetLine(scope, window, limit, b.block_at, b.alert_at)  # type: ignore[arg-type]

    def all_lines(self) -> list[BudgetLine]:
        """Every limit, for meters and reports."""
        out = list(self.lines())
        for name in self.projects:
            out.extend(line for line in self.lines(name) if line.scope != "global")
        return out

    def resets_at(self, now: datetime | None = None) -> dict[str, datetime]:
        """When the current daily and monthly windows end (UTC)."""
        now = now or datetime.now(UTC)
        return {w.value: window_bounds(w, now, self.zone)[1] for w in Window}

    def __repr__(self) -> str:
        proj = f", projects={sorted(self.projects)}" if self.projects else ""
        return (
            f"Budget(daily={self.daily}, monthly={self.monthly}, alert_at={self.alert_at}, "
            f"block_at={self.block_at}, tz={getattr(self.zone, 'key', str(self.zone))!r}{proj})"
        )
