"""Experiments: ``with client.experiment("rag-v2", budget=0.50) as exp:`` caps, tags and tallies
the calls made inside the block.

Every call of the client made inside it (sync, async, `chat_many`, an SDK on the client's
metered transport) is reserved against the experiment's budget before it is sent, together with
the client's budget lines, so the experiment's calls can never together spend more than its
budget, however many run at once: a call whose worst case would pass it is refused
(`BudgetExceededError`, scope ``experiment:NAME``, nothing sent). Their rows carry
``experiment=NAME`` (``df.hs.by("experiment")``); `exp.cost_usd`, `exp.calls` and
`exp.summary()` give this run's numbers, live while it runs and after.

Each ``with`` block is one run with its own budget: running the cell again starts afresh (the log
keeps every run under the same name). Asyncio tasks created inside the block, and `chat_many`'s
private loop thread, are in the experiment; a thread you start is when it runs
``exp.bind(fn)``. See `holysheep_lab.core.scopes`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ParamSpec, TypeVar

from holysheep_lab.core.display import format_usd
from holysheep_lab.core.money import nanos_to_usd, usd_to_nanos
from holysheep_lab.core.scopes import CallScope, ModelTally, enter, leave
from holysheep_lab.errors import ConfigError, HolySheepError

__all__ = ["Experiment", "ExperimentSummary", "check_budget"]

P = ParamSpec("P")
R = TypeVar("R")


def check_budget(budget: Any, what: str) -> int | None:
    """A budget in USD (a positive number, or None for none) as nanos; ConfigError otherwise."""
    if budget is None:
        return None
    if isinstance(budget, bool):
        raise ConfigError(f"{what} must be a positive number of USD such as 0.50, not {budget!r}.")
    try:
        dec = Decimal(str(budget))
    except (InvalidOperation, ValueError) as exc:
        raise ConfigError(f"{what} must be a positive number of USD such as 0.50, not {budget!r}.") from exc
    if not dec.is_finite() or dec <= 0:
        raise ConfigError(f"{what} must be a positive number of USD such as 0.50, not {budget!r}.")
    return usd_to_nanos(dec)


@dataclass(frozen=True, slots=True, repr=False)
class ExperimentSummary:
    """One experiment run's numbers: `calls` (requests logged; refusals apart), `refused`,
    `errors`, tokens, `cost_usd`, the budget and what is left of it, and per-model tallies."""

    name: str
    calls: int
    refused: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    budget_usd: float | None
    remaining_usd: float | None
    started_at: datetime | None
    ended_at: datetime | None
    models: dict[str, ModelTally]

    def __str__(self) -> str:
        budget = f" of {format_usd(self.budget_usd)} budget" if self.budget_usd is not None else ""
        refused = f", {self.refused:,} refused" if self.refused else ""
        errors = f", {self.errors:,} failed" if self.errors else ""
        return (f"experiment {self.name!r}: {self.calls:,} calls, {self.input_tokens + self.output_tokens:,} tokens, "
                f"{format_usd(self.cost_usd)}{budget}{refused}{errors}")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{html.escape(model)}</td><td>{t.calls:,}</td><td>{t.input_tokens + t.output_tokens:,}</td>"
            f"<td>{html.escape(format_usd(nanos_to_usd(t.cost_nanos)))}</td></tr>"
            for model, t in sorted(self.models.items(), key=lambda kv: -kv[1].cost_nanos)
        )
        # Dollar signs as entities: notebook MathJax would read "$0.01 ... $0.50" as TeX.
        head = html.escape(str(self)).replace("$", "&#36;")
        table = (f"<table><thead><tr><th>model</th><th>calls</th><th>tokens</th><th>cost</th></tr></thead>"
                 f"<tbody>{rows.replace('$', '&#36;')}</tbody></table>") if rows else ""
        return f'<div class="hs-experiment tex2jax_ignore mathjax_ignore"><b>{head}</b>{table}</div>'


class Experiment:
    """A named, optionally budgeted run of calls of one client; use it as a (async) context manager.

    Made by `client.experiment(name, budget=...)`; see the module docstring."""

    def __init__(self, metering: object, name: str, budget: float | Decimal | str | None = None) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
            raise ConfigError(f"An experiment needs a short printable name such as 'rag-v2', not {name!r}.")
        self._scope = CallScope("experiment", name.strip(), owner=metering,
                                limit_nanos=check_budget(budget, "experiment budget"))
        self._token: Token[tuple[CallScope, ...]] | None = None
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None

    # -- the block -------------------------------------------------------------------------------

    def __enter__(self) -> Experiment:
        if self._token is not None or self.ended_at is not None:
            raise HolySheepError(f"Experiment {self.name!r} was already run; make a new one with client.experiment(...).")
        self._token = enter(self._scope)
        self.started_at = datetime.now(UTC)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            leave(self._token)
            self._token = None
            self.ended_at = datetime.now(UTC)

    async def __aenter__(self) -> Experiment:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def bind(self, fn: Callable[P, R]) -> Callable[P, R]:
        """`fn` made to run inside this experiment wherever it is called (a thread, an executor):
        ``pool.map(exp.bind(work), items)``. Only while the experiment is open."""

        @functools.wraps(fn)
        def bound(*args: P.args, **kwargs: P.kwargs) -> R:
            if self._token is None:
                raise HolySheepError(f"Experiment {self.name!r} is not open: call bound functions inside its with block.")
            token = enter(self._scope)
            try:
                return fn(*args, **kwargs)
            finally:
                leave(token)

        return bound

    # -- the numbers -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._scope.name

    @property
    def active(self) -> bool:
        """True inside the with block."""
        return self._token is not None

    @property
    def budget_usd(self) -> float | None:
        limit = self._scope.limit_nanos
        return nanos_to_usd(limit) if limit is not None else None

    @property
    def cost_usd(self) -> float:
        """What the calls of this run cost so far (settled; calls in flight are in `in_flight_usd`)."""
        return nanos_to_usd(self._scope.snapshot().spent_nanos)

    @property
    def in_flight_usd(self) -> float:
        """The worst cases held for calls still running."""
        return nanos_to_usd(self._scope.snapshot().reserved_nanos)

    @property
    def remaining_usd(self) -> float | None:
        """Budget minus spent and in flight (None without a budget)."""
        s = self._scope.snapshot()
        if s.limit_nanos is None:
            return None
        return nanos_to_usd(max(0, s.limit_nanos - s.spent_nanos - s.reserved_nanos))

    @property
    def calls(self) -> int:
        """Requests logged inside the run (refused ones are counted in `refused`)."""
        return self._scope.snapshot().calls

    @property
    def refused(self) -> int:
        return self._scope.snapshot().refused

    @property
    def scope(self) -> CallScope:
        """The live scope (for meters: `scope.snapshot()` gives consistent numbers)."""
        return self._scope

    def summary(self) -> ExperimentSummary:
        """This run's numbers now (final after the block)."""
        s = self._scope.snapshot()
        remaining = None if s.limit_nanos is None else nanos_to_usd(max(0, s.limit_nanos - s.spent_nanos - s.reserved_nanos))
        return ExperimentSummary(
            name=s.name, calls=s.calls, refused=s.refused, errors=s.errors, input_tokens=s.input_tokens,
            output_tokens=s.output_tokens, cost_usd=nanos_to_usd(s.spent_nanos), budget_usd=self.budget_usd,
            remaining_usd=remaining, started_at=self.started_at, ended_at=self.ended_at, models=s.models,
        )

    def __repr__(self) -> str:
        state = "open" if self.active else ("done" if self.ended_at else "not started")
        s = self._scope.snapshot()
        budget = f" of {format_usd(nanos_to_usd(s.limit_nanos))}" if s.limit_nanos is not None else ""
        used = f" ({s.spent_nanos / s.limit_nanos:.0%})" if s.limit_nanos else ""
        return (f"<Experiment {self.name!r}: {s.calls:,} calls, {format_usd(nanos_to_usd(s.spent_nanos))}{budget}{used}, "
                f"{s.refused:,} refused, {state}>")

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

