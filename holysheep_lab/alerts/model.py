"""Alert value objects: Level, Alert, Delivery (pure: no I/O, no clock).

An `Alert` says one budget line (a scope in one window) crossed one level. It renders
itself as a one-line `title`, a human `text`, a plain `to_dict()` (ISO times, floats) and
an HTML banner; channels build their target's format from these, so every channel says
the same thing.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, ClassVar

from holysheep_lab.core.display import NO_MATH, format_usd  # one money rule for every channel (re-exported)
from holysheep_lab.errors import ConfigError

__all__ = [
    "DEFAULT_LEVELS",
    "Alert",
    "Delivery",
    "Level",
    "format_time",
    "format_usd",
    "parse_levels",
]

# Level names go into dedup keys, mail subjects and chat headers: keep them plain words.
_LEVEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")

# Colour by severity band (Discord embed colour ints, also the HTML banner's accent).
_BLUE, _AMBER, _ORANGE, _RED = 0x3498DB, 0xF1C40F, 0xE67E22, 0xE74C3C
_NAMED_COLOURS = {"INFO": _BLUE, "WARNING": _AMBER, "CRITICAL": _ORANGE, "EMERGENCY": _RED}


def _colour_for(name: str, threshold: float) -> int:
    if name.upper() in _NAMED_COLOURS:
        return _NAMED_COLOURS[name.upper()]
    if threshold < 0.75:
        return _BLUE
    if threshold < 0.9:
        return _AMBER
    return _ORANGE if threshold < 0.98 else _RED


@dataclass(frozen=True, slots=True)
class Level:
    """An alert level: fires when a window's spend / limit reaches `threshold`.

    `colour` is an RGB int (Discord's embed colour); it defaults by
    name (INFO blue, WARNING amber, CRITICAL orange, EMERGENCY red) or by threshold band.
    The four defaults are `Level.INFO`, `Level.WARNING`, `Level.CRITICAL`, `Level.EMERGENCY`.
    """

    name: str
    threshold: float
    colour: int = -1  # -1: pick by name or threshold band

    INFO: ClassVar[Level]
    WARNING: ClassVar[Level]
    CRITICAL: ClassVar[Level]
    EMERGENCY: ClassVar[Level]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _LEVEL_NAME.match(self.name):
            raise ConfigError(
                f"Alert level name {self.name!r} is not allowed: use a word of letters, digits, "
                "'_' or '-' (up to 32 characters), such as 'WARNING'."
            )
        t = self.threshold
        numeric = isinstance(t, (int, float)) and not isinstance(t, bool)
        if not numeric or not math.isfinite(t) or not 0 < t <= 1.5:
            raise ConfigError(
                f"Alert level {self.name} threshold must be a fraction of the limit in (0, 1.5], "
                f"such as 0.75 for 75 %; got {t!r}."
            )
        object.__setattr__(self, "threshold", float(t))
        if self.colour == -1:
            object.__setattr__(self, "colour", _colour_for(self.name, self.threshold))
        elif type(self.colour) is not int or not 0 <= self.colour <= 0xFFFFFF:
            raise ConfigError(
                f"Alert level colour must be an RGB int 0..0xFFFFFF, got {self.colour!r}."
            )

    @property
    def percent(self) -> str:
        """The threshold as a short percentage: '75%', '97.5%'."""
        return f"{self.threshold * 100:.1f}".rstrip("0").rstrip(".") + "%"

    def __repr__(self) -> str:
        return f"Level({self.name} {self.percent})"


Level.INFO = Level("INFO", 0.50)
Level.WARNING = Level("WARNING", 0.75)
Level.CRITICAL = Level("CRITICAL", 0.90)
Level.EMERGENCY = Level("EMERGENCY", 0.98)

DEFAULT_LEVELS: tuple[Level, ...] = (Level.INFO, Level.WARNING, Level.CRITICAL, Level.EMERGENCY)


def parse_levels(
    levels: Mapping[str, float] | Iterable[Level | tuple[str, float]] | None,
) -> tuple[Level, ...]:
    """Normalise a levels setting to Levels sorted by threshold; ConfigError if invalid.

    Accepts None (the defaults), ``{"INFO": 0.5, ...}``, ``[("INFO", 0.5), ...]`` or Levels.
    Names and thresholds must be unique: two levels at one threshold would share one
    crossing, and a shared name would share one dedup key (LiteLLM's bug).
    """
    if levels is None:
        return DEFAULT_LEVELS
    if isinstance(levels, (str, bytes)):
        raise ConfigError("levels must be a mapping {name: ratio} or a list of (name, ratio) pairs.")
    items: Iterable[Any] = levels.items() if isinstance(levels, Mapping) else levels
    out: list[Level] = []
    for item in items:
        if isinstance(item, Level):
            out.append(item)
            continue
        if not isinstance(item, tuple) or len(item) != 2:
            raise ConfigError(
                f"Each alert level must be a (name, ratio) pair such as ('WARNING', 0.75); got {item!r}."
            )
        name, ratio = item
        out.append(Level(name, ratio))
    if not out:
        raise ConfigError("levels must name at least one level, e.g. {'WARNING': 0.75}.")
    names = [lv.name.upper() for lv in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"Alert level names must be unique (case-insensitive); got {names}.")
    ratios = [lv.threshold for lv in out]
    if len(set(ratios)) != len(ratios):
        raise ConfigError(f"Alert level thresholds must be unique; got {sorted(ratios)}.")
    return tuple(sorted(out, key=lambda lv: lv.threshold))


def _zone_label(dt: datetime) -> str:
    tz: tzinfo | None = dt.tzinfo
    key = getattr(tz, "key", None)
    if key:
        return str(key)
    if tz is UTC or (dt.utcoffset() is not None and not dt.utcoffset()):
        return "UTC"
    return dt.strftime("%z") or "UTC"


def format_time(dt: datetime) -> str:
    """'2026-11-29 00:00 Europe/Berlin': local wall time plus the zone that defines it."""
    return f"{dt:%Y-%m-%d %H:%M} {_zone_label(dt)}"


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


@dataclass(frozen=True, slots=True)
class Alert:
    """One level crossed by one budget line (`scope` in `window`, instance `window_key`).

    `spent`, `limit`, `reserved` are USD (Decimal); `ratio` is spent / limit.
    `resets_at` is when the window ends (aware; shown in its own zone, so the manager
    converts it to the budget's zone); `ts` when the crossing call settled. `refused`: the
    level fired because the line refused a call at its block line (a level the spend cannot
    reach, such as EMERGENCY 98 % over block_at 0.95), not because spend crossed it.
    """

    level: Level
    scope: str
    window: str
    window_key: str
    spent: Decimal
    limit: Decimal
    ratio: float
    reserved: Decimal = Decimal(0)
    resets_at: datetime | None = None
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    project: str | None = None
    model: str | None = None
    refused: bool = False

    @property
    def title(self) -> str:
        """'WARNING: daily budget (global) at 76.2%'; '..., refusing calls' when `refused`."""
        refusing = ", refusing calls" if self.refused else ""
        return f"{self.level.name}: {self.window} budget ({self.scope}) at {self.ratio * 100:.1f}%{refusing}"

    @property
    def text(self) -> str:
        """The title plus amounts and reset time, on one line."""
        out = f"{self.title} — {format_usd(self.spent)} of {format_usd(self.limit)}"
        if self.resets_at is not None:
            out += f"; resets {format_time(self.resets_at)}"
        return out

    def _amounts(self) -> str:
        return f"{format_usd(self.spent)} of {format_usd(self.limit)}"

    @property
    def dedup_key(self) -> str:
        """'global|day:2026-11-28|WARNING': one firing per level per window."""
        return f"{self.scope}|{self.window_key}|{self.level.name}"

    def details(self) -> list[tuple[str, str]]:
        """(label, value) pairs every channel shows, in order (model/project only if known)."""
        rows = [
            ("Spent", f"{self._amounts()} ({self.ratio * 100:.1f}%)"),
            ("In flight", format_usd(self.reserved)),
            ("Level", f"{self.level.name} (at {self.level.percent})" if not self.refused
             else f"{self.level.name} (a call was refused at the block line)"),
            ("Scope", self.scope),
            ("Window", self.window_key),
        ]
        if self.resets_at is not None:
            rows.append(("Resets", format_time(self.resets_at)))
        if self.project is not None:
            rows.append(("Project", self.project))
        if self.model is not None:
            rows.append(("Model", self.model))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields: floats for money, ISO 8601 for times."""
        return {
            "level": self.level.name,
            "threshold": self.level.threshold,
            "scope": self.scope,
            "window": self.window,
            "window_key": self.window_key,
            "spent": float(self.spent),
            "limit": float(self.limit),
            "ratio": self.ratio,
            "reserved": float(self.reserved),
            "resets_at": _iso(self.resets_at),
            "ts": _iso(self.ts),
            "project": self.project,
            "model": self.model,
            "title": self.title,
            "text": self.text,
            "refused": self.refused,
        }

    def _repr_html_(self) -> str:
        colour = f"#{self.level.colour:06x}"
        rows = "".join(
            f"<span style='margin-right:1.2em'><b>{html.escape(k)}</b> {html.escape(v)}</span>"
            for k, v in self.details()
        )
        return (
            f"<div class='holysheep-alert {NO_MATH}' style='border-left:6px solid {colour};"
            "background:rgba(127,127,127,.08);padding:.5em .8em;margin:.3em 0;"
            "font-family:system-ui,sans-serif'>"
            f"<div style='font-weight:600'>{html.escape(self.title)}</div>"
            f"<div style='font-size:.9em'>{rows}</div></div>"
        )

    def __repr__(self) -> str:
        return f"Alert({self.title!r}, window_key={self.window_key!r})"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of delivering one alert to one channel (`error` never holds a secret)."""

    alert: Alert
    channel: str
    ok: bool
    attempts: int
    error: str | None
    at: datetime
