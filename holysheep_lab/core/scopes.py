"""Call scopes: an experiment or a notebook cell that every call made inside it joins.

A call made while a scope is active carries its tags into its log row (`experiment`,
`notebook_cell`, `notebook_path`), adds to its tally (calls, tokens, cost, refusals), and, if
the scope has a budget, is capped by it: the guard holds the call's worst case in every active
scope before sending, all or nothing, together with its budget lines, so the calls of a scope
can never together pass its budget, however many run at once.

Where a scope is active:

* an experiment (`client.experiment(...)`) in a contextvar (`enter` / `leave`): the code inside
  its `with` block, the asyncio tasks created there, and the private loop thread of
  `chat_many` (`client/loop.py` hands it the caller's context). A thread started inside sees it
  when run through `Experiment.bind`. It takes only the calls of its own Metering (`owner`).
* a notebook cell (`%load_ext holysheep_lab`) process-wide (`set_cell`): the kernel runs one
  cell at a time, and a thread the cell started calls on the cell's behalf. It takes the calls
  of every Metering in the process.

A scope's spend is counted here, in the process (a scope lives in one process), not in the
ledger: the budget of an experiment holds whatever ledger its client uses.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from holysheep_lab.log.schema import CallRecord

__all__ = [
    "NO_CONTEXT",
    "CallContext",
    "CallScope",
    "ModelTally",
    "ScopeRefusal",
    "cell_scope",
    "context_for",
    "enter",
    "hold",
    "leave",
    "open_scopes",
    "release",
    "set_cell",
    "settle",
]

# One lock for every scope: a call's holds in nested scopes (a cell and an experiment in it) are
# all-or-nothing, and a tally is never read half-updated. Held for a few additions only.
_LOCK = threading.Lock()


@dataclass(slots=True)
class ModelTally:
    """One model's calls inside a scope."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0


@dataclass(eq=False, slots=True)
class CallScope:
    """One experiment run or one notebook cell: its tags, budget, in-flight holds and tally.

    `kind` is 'experiment' or 'cell'; `name` the experiment's name or the cell's execution count;
    `owner` the Metering whose calls it takes (None: every Metering's); `limit_nanos` its budget
    (None: count only). Read the numbers with `snapshot()` (a consistent copy).
    """

    kind: str
    name: str
    owner: object | None = None
    limit_nanos: int | None = None
    cell: int | None = None  # a cell scope: its execution count
    path: str | None = None  # a cell scope: the notebook's path, where the kernel knows it
    spent_nanos: int = 0
    reserved_nanos: int = 0
    calls: int = 0
    refused: int = 0
    errors: int = 0
    unpriced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    models: dict[str, ModelTally] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def scope(self) -> str:
        """How errors and meters name it: 'experiment:rag-v2', 'cell:12'."""
        return f"{self.kind}:{self.name}"

    def observe(self, record: CallRecord) -> None:
        """Count one logged row made inside this scope (its spend was settled by the guard)."""
        with _LOCK:
            if record.status == "blocked":
                self.refused += 1
                return
            self.calls += 1
            if record.status in ("error", "unknown"):
                self.errors += 1
            elif record.status in ("unpriced", "unmetered"):
                self.unpriced += 1
            tin, tout, cost = record.input_tokens or 0, record.output_tokens or 0, record.cost_nanos or 0
            self.input_tokens += tin
            self.output_tokens += tout
            tally = self.models.get(record.model)
            if tally is None:
                tally = self.models[record.model] = ModelTally()
            tally.calls += 1
            tally.input_tokens += tin
            tally.output_tokens += tout
            tally.cost_nanos += cost

    def snapshot(self) -> CallScope:
        """A copy of the numbers as they are now (no holds), safe to read field by field."""
        with _LOCK:
            return CallScope(
                self.kind, self.name, None, self.limit_nanos, self.cell, self.path, self.spent_nanos,
                self.reserved_nanos, self.calls, self.refused, self.errors, self.unpriced, self.input_tokens,
                self.output_tokens, {m: ModelTally(t.calls, t.input_tokens, t.output_tokens, t.cost_nanos)
                                     for m, t in self.models.items()},
            )


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the active scopes add to one call: the scopes (outermost first) and the row's tags."""

    scopes: tuple[CallScope, ...] = ()
    experiment: str | None = None
    notebook_cell: int | None = None
    notebook_path: str | None = None


NO_CONTEXT = CallContext()

_experiments: ContextVar[tuple[CallScope, ...]] = ContextVar("holysheep_experiments", default=())
_cell: CallScope | None = None  # the notebook cell running now (process-wide; see the docstring)
# Entered scopes, by how many contexts have them active: what a meter on another thread can list.
_open: dict[int, tuple[CallScope, int]] = {}


def enter(scope: CallScope) -> Token[tuple[CallScope, ...]]:
    """Make `scope` active in the current context (inside the ones already active)."""
    with _LOCK:
        _, n = _open.get(id(scope), (scope, 0))
        _open[id(scope)] = (scope, n + 1)
    return _experiments.set((*_experiments.get(), scope))


def leave(token: Token[tuple[CallScope, ...]]) -> None:
    """Undo the matching `enter` (in the context that entered)."""
    scopes = _experiments.get()
    _experiments.reset(token)
    if scopes:
        scope = scopes[-1]
        with _LOCK:
            _, n = _open.get(id(scope), (scope, 1))
            if n <= 1:
                _open.pop(id(scope), None)
            else:
                _open[id(scope)] = (scope, n - 1)


def open_scopes(owner: object) -> list[CallScope]:
    """The scopes a call through Metering `owner` could join now, from any thread: the open
    experiments of that Metering (in the order they were entered) and the running notebook cell.
    Read each one's numbers with `snapshot()`; for live meters."""
    with _LOCK:
        mine = [s for s, _ in _open.values() if s.owner is None or s.owner is owner]
    cell = _cell
    return [cell, *mine] if cell is not None else mine


def set_cell(scope: CallScope | None) -> None:
    """The notebook cell that runs now (None: between cells)."""
    global _cell  # noqa: PLW0603  (one kernel, one running cell: a process-wide fact)
    _cell = scope


def cell_scope() -> CallScope | None:
    """The notebook cell that runs now, if the extension is loaded and a cell runs."""
    return _cell


def context_for(owner: object) -> CallContext:
    """The scopes a call through Metering `owner` joins now, and its row's tags."""
    cell = _cell
    experiments = _experiments.get()
    if cell is None and not experiments:
        return NO_CONTEXT
    mine = tuple(s for s in experiments if s.owner is None or s.owner is owner)
    scopes = (cell, *mine) if cell is not None else mine
    if not scopes:
        return NO_CONTEXT
    return CallContext(scopes, mine[-1].name if mine else None,
                       cell.cell if cell is not None else None, cell.path if cell is not None else None)


# -- holds: the guard reserves a call's worst case in its scopes before sending -----------------


@dataclass(frozen=True, slots=True)
class ScopeRefusal:
    """Why `hold` refused: the first scope whose budget the call's worst case would pass."""

    scope: CallScope
    spent: int
    reserved: int
    limit: int


def hold(scopes: Sequence[CallScope], hold_id: str, amount: int) -> ScopeRefusal | None:
    """Hold `amount` nanos in every scope, or in none and return the first refusal: refused if
    spent + held + amount would pass a scope's budget."""
    with _LOCK:
        for s in scopes:
            if s.limit_nanos is not None and s.spent_nanos + s.reserved_nanos + amount > s.limit_nanos:
                return ScopeRefusal(s, s.spent_nanos, s.reserved_nanos, s.limit_nanos)
        for s in scopes:
            s.reserved_nanos += amount
            s._held[hold_id] = amount
    return None


def settle(scopes: Sequence[CallScope], hold_id: str, actual: int) -> None:
    """Turn the hold into spend of `actual` nanos (spent even where nothing was held)."""
    with _LOCK:
        for s in scopes:
            s.reserved_nanos -= s._held.pop(hold_id, 0)
            s.spent_nanos += actual


def release(scopes: Sequence[CallScope], hold_id: str) -> None:
    """Give the hold back: nothing was spent."""
    with _LOCK:
        for s in scopes:
            s.reserved_nanos -= s._held.pop(hold_id, 0)
