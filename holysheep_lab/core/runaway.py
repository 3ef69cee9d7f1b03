"""Runaway spend while it happens: conversations whose prompt keeps growing, retry storms.

The same two rules `df.hs.anomalies()` applies to a log afterwards (`holysheep_lab.analysis`
uses the thresholds below), applied call by call to what this process logs, so a meter can
say "conversation 3f2a... resends its history: prompt 9.4x in 23 calls" while the loop still
runs. Pure and small: a dict per conversation (the most recent `MAX_CONVERSATIONS` kept) and
a counter per model and window; `observe` costs a few dictionary operations.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from holysheep_lab.log.schema import CallRecord

__all__ = [
    "GROWTH_MIN_CALLS",
    "GROWTH_MIN_FACTOR",
    "GROWTH_MIN_INCREASING",
    "GROWTH_MIN_TOKENS",
    "MAX_CONVERSATIONS",
    "STORM_MIN_EVENTS",
    "STORM_MIN_SHARE",
    "STORM_WINDOW_MINUTES",
    "Runaway",
    "RunawayWatch",
]

#: A growing conversation: at least this many answered calls, its last prompt this many times
#: its first, this share of its steps growing, and its largest prompt at least this many tokens.
GROWTH_MIN_CALLS = 5
GROWTH_MIN_FACTOR = 2.0
GROWTH_MIN_INCREASING = 0.8
GROWTH_MIN_TOKENS = 10_000
#: A retry storm: in one window of a model, at least this many events (attempts beyond the first,
#: failed calls) making up at least this share of its calls.
STORM_WINDOW_MINUTES = 10
STORM_MIN_EVENTS = 10
STORM_MIN_SHARE = 0.3
#: Conversations remembered, and runaways kept (the least recently active are forgotten past this).
MAX_CONVERSATIONS = 4096

_FAILED = frozenset({"error", "unknown"})


@dataclass(frozen=True, slots=True)
class Runaway:
    """One runaway found: `kind` ``context_growth`` (subject: the conversation_id) or
    ``retry_storm`` (subject: the model); `score` the prompt growth (x) or events per call."""

    kind: str
    subject: str
    calls: int
    cost_nanos: int
    score: float
    detail: str


@dataclass(slots=True)
class _Chain:
    calls: int
    first: int
    last: int
    largest: int
    grew: int
    cost: int

    def runaway(self, conversation: str) -> Runaway | None:
        growth = self.last / self.first
        if (self.calls < GROWTH_MIN_CALLS or growth < GROWTH_MIN_FACTOR or self.largest < GROWTH_MIN_TOKENS
                or self.grew < GROWTH_MIN_INCREASING * (self.calls - 1)):
            return None
        return Runaway("context_growth", conversation, self.calls, self.cost, growth,
                       f"conversation {conversation[:8]} resends a growing history: prompt {growth:.1f}x "
                       f"in {self.calls} calls ({self.last:,} tokens now)")


@dataclass(slots=True)
class _Window:
    index: int
    calls: int = 0
    events: int = 0
    cost: int = 0

    def runaway(self, model: str) -> Runaway | None:
        if self.events < STORM_MIN_EVENTS or self.events < STORM_MIN_SHARE * self.calls:
            return None
        share = self.events / self.calls
        return Runaway("retry_storm", model, self.calls, self.cost, share,
                       f"{model}: {self.events} retries or failures in {self.calls} calls "
                       f"within {STORM_WINDOW_MINUTES} minutes")


class RunawayWatch:
    """What this process's calls show now; thread-safe (calls settle on many threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chains: OrderedDict[str, _Chain] = OrderedDict()
        self._windows: dict[str, _Window] = {}
        self._found: dict[tuple[str, str], Runaway] = {}

    def observe(self, record: CallRecord) -> None:
        """Count one logged call."""
        cost = record.cost_nanos or 0
        window = int(record.ts.timestamp() // (STORM_WINDOW_MINUTES * 60))
        events = max(record.attempts - 1, 0) + (record.status in _FAILED)
        with self._lock:
            if record.status != "blocked":
                self._count_attempts(record.model, window, events, cost)
            conversation = record.conversation_id
            if conversation is not None and record.input_tokens > 0:
                self._count_step(conversation, record.input_tokens, cost)

    def _count_attempts(self, model: str, index: int, events: int, cost: int) -> None:
        w = self._windows.get(model)
        if w is None or w.index != index:
            w = self._windows[model] = _Window(index)
        w.calls += 1
        w.events += events
        w.cost += cost
        if (found := w.runaway(model)) is not None:
            self._keep(("retry_storm", model), found)

    def _count_step(self, conversation: str, tokens: int, cost: int) -> None:
        chain = self._chains.get(conversation)
        if chain is None:
            self._chains[conversation] = _Chain(1, tokens, tokens, tokens, 0, cost)
            if len(self._chains) > MAX_CONVERSATIONS:
                self._chains.popitem(last=False)
            return
        self._chains.move_to_end(conversation)
        chain.grew += tokens > chain.last
        chain.calls += 1
        chain.last = tokens
        chain.largest = max(chain.largest, tokens)
        chain.cost += cost
        if (found := chain.runaway(conversation)) is not None:
            self._keep(("context_growth", conversation), found)

    def _keep(self, key: tuple[str, str], found: Runaway) -> None:
        self._found.pop(key, None)  # re-inserted: the most recently updated last
        self._found[key] = found
        if len(self._found) > MAX_CONVERSATIONS:  # a long-lived process: forget the stalest
            del self._found[next(iter(self._found))]

    def findings(self) -> list[Runaway]:
        """Every runaway found so far, the most expensive first."""
        with self._lock:
            found = list(self._found.values())
        return sorted(found, key=lambda r: -r.cost_nanos)
