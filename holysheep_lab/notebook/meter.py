"""hs.BudgetMeter: a live ipywidgets view of every budget line.

One daemon thread per meter refreshes the widgets: the Metering's subscribe callback only sets
an Event (cheap, on the calling thread), the refresher wakes on it, reads in-memory totals
(ledger snapshot, never Parquet), sets widget traits, then sleeps `interval` seconds so a
burst of calls costs a few updates a second. Nothing is printed from the thread (ipykernel
7.0 and the Output widget lose thread output); only traits are set. Idle, it wakes once per
`idle` seconds to notice a closed client, a window roll-over, a decaying last-minute count or an
experiment that opened or ended. An experiment's line appears when it opens (or its first call
ends), moves with its calls, and stays with its final figures, marked done, after its block.
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from holysheep_lab.core.display import NO_MATH
from holysheep_lab.errors import ConfigError, HolySheepError
from holysheep_lab.notebook.view import (
    EXPERIMENT_WINDOW,
    LineState,
    MeterState,
    SeenExperiments,
    describe,
    meter_state,
    render_html,
)
from holysheep_lab.notebook.widgets import forget, freeze_at_exit, require_ipywidgets

if TYPE_CHECKING:
    from types import ModuleType

    from holysheep_lab.core.metering import Metered, Metering

__all__ = ["BudgetMeter", "MeterRow"]

_SHARED_LEDGER_REFRESH = 5.0  # seconds: other processes may spend on a SQLite/Redis ledger


def _metering_of(source: Metered | Metering) -> Metering:
    from holysheep_lab.core.metering import Metered, Metering

    metering = source.metering if isinstance(source, Metered) else source
    if not isinstance(metering, Metering):
        raise ConfigError(f"BudgetMeter needs an hs.Client or its .metering, not {type(source).__name__}.")
    return metering


class MeterRow:
    """One budget line: name, a progress bar coloured by level, and a line of figures."""

    def __init__(self, w: ModuleType, line: LineState) -> None:
        self.label = w.Label(line.label, layout=w.Layout(width="10em"))
        self.bar = w.FloatProgress(min=0.0, max=100.0, layout=w.Layout(width="220px"))
        self.detail = w.HTML()
        self.box = w.HBox([self.label, self.bar, self.detail])
        self.update(line)

    def update(self, line: LineState) -> None:
        with self.bar.hold_sync():
            self.bar.value = line.percent
            self.bar.style.bar_color = line.colour
        self.detail.value = f"<span class='{NO_MATH}' style='font-size:90%'>{html.escape(line.detail)}</span>"


class BudgetMeter:
    """Live budget meters for a client (or its Metering): spent, in flight, limit, remaining,
    per cent coloured by alert level, reset time, last minute's calls and cost, last alert.

    Display it (`client.meter()` as the last line of a cell). It stops refreshing when the
    client closes or on `close()`.
    """

    def __init__(self, client_or_metering: Metered | Metering, *, interval: float = 0.25, idle: float = 1.0,
                 title: str = "holysheep budget") -> None:
        if not (0 < interval <= 10 and 0 < idle <= 60):
            raise ConfigError("BudgetMeter interval must be in (0, 10] s and idle in (0, 60] s.")
        w = require_ipywidgets()
        self._metering = _metering_of(client_or_metering)
        self.title = title
        self._lock = threading.Lock()  # refresh() may be called by hand while the thread runs
        self._experiments = SeenExperiments(self._metering)
        self._state: MeterState = meter_state(self._metering, self._experiments)
        self._rows = {ln.key: MeterRow(w, ln) for ln in self._state.lines}
        self.footer = w.HTML()
        self.box = w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), *(r.box for r in self._rows.values()), self.footer])
        self._set_footer(self._state.footer)
        self.updates = 0  # refreshes done (tests and benchmarks read it)
        self._handles: list[Any] = []  # the notebook outputs showing this meter (display ids)
        self._on_refresh: list[Callable[[MeterState], None]] = []
        self._frozen = False
        self._last_refresh = time.monotonic()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        dirty, seen = self._dirty, self._experiments  # callbacks never hold the widget (no reference cycle)

        def called(_record: object, _events: object) -> None:
            seen.note_call()  # on the calling thread, in the call's context: its experiment
            dirty.set()

        self._unsubscribe: list[Callable[[], None]] = [self._metering.subscribe(called)]
        if self._metering.alerts is not None:
            self._unsubscribe.append(self._metering.alerts.subscribe(lambda _a: dirty.set()))
        ref = weakref.ref(self)
        # Not among the refresher's subscriptions: it may stop (seeing `closed`) before close() calls this.
        self._unfreeze = self._metering.on_close(lambda: _freeze(ref))
        self._thread = threading.Thread(
            target=_refresh_loop, args=(weakref.ref(self), self._dirty, self._stop, self._metering, interval, idle),
            name="holysheep-meter", daemon=True)
        self._thread.start()

    # -- reading -------------------------------------------------------------------------------

    @property
    def metering(self) -> Metering:
        """The Metering whose totals this meter shows."""
        return self._metering

    @property
    def state(self) -> MeterState:
        """What the widgets show now."""
        return self._state

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def rows(self) -> dict[tuple[str, str], MeterRow]:
        """The widgets of each line, keyed by (scope, window)."""
        return dict(self._rows)

    # -- updating ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the totals now and update the widgets (the refresher calls this)."""
        with self._lock:
            try:
                state = meter_state(self._metering, self._experiments)
            except HolySheepError as exc:  # a shared ledger went away: say so, keep the last figures
                self._set_footer(f"{self._state.footer} · not updating: {type(exc).__name__}")
                return
            w = None
            for line in state.lines:
                row = self._rows.get(line.key)
                if row is None:  # a line that appeared later (e.g. a project's first call)
                    w = w or require_ipywidgets()
                    row = self._rows[line.key] = MeterRow(w, line)
                    self.box.children = (*self.box.children[:-1], row.box, self.footer)
                else:
                    row.update(line)
            self._set_footer(state.footer)
            self._state = state
            self.updates += 1
            self._last_refresh = time.monotonic()
            listeners = list(self._on_refresh)
        for fn in listeners:  # e.g. the dashboard's alerts and status: one refresher for all
            fn(state)

    def on_refresh(self, fn: Callable[[MeterState], None]) -> Callable[[], None]:
        """Call `fn(state)` after every refresh (on the refresher's thread); returns an unsubscribe."""
        self._on_refresh.append(fn)
        return lambda: self._on_refresh.remove(fn) if fn in self._on_refresh else None

    def _set_footer(self, text: str) -> None:
        self.footer.value = f"<span class='{NO_MATH}' style='color:#555;font-size:90%'>{html.escape(text)}</span>"

    def _wants_tick(self, shared: bool) -> bool:
        """On an idle wake-up: is there anything that changes without a call?"""
        st = self._state
        if st.recent_calls:  # the last-minute figures decay
            return True
        if shared and time.monotonic() - self._last_refresh >= _SHARED_LEDGER_REFRESH:
            return True
        running = {s.scope for s in self._experiments.note_open()}
        if running != {ln.scope for ln in st.lines if ln.window == EXPERIMENT_WINDOW and not ln.done}:
            return True  # an experiment opened or ended
        now = self._metering.clock()
        return any(ln.resets_at is not None and now >= ln.resets_at for ln in st.lines)

    def close(self) -> None:
        """Stop refreshing. The widgets keep their last values, and the notebook outputs that
        show this meter become its static snapshot (see `freeze`)."""
        self._stop.set()
        self._dirty.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        self._detach()
        self.freeze()

    def freeze(self) -> None:
        """Replace every output showing this meter by its static HTML snapshot (final figures).

        A stopped meter no longer changes, so nothing is lost; and a saved notebook then holds
        the snapshot alone. JupyterLab renders a widget view whenever one is in the output,
        even when its model cannot be restored ("Error displaying widget: model not found"):
        the HTML beside it is never used there. Runs when the client closes (on the closing
        thread, so the update belongs to that cell) and on `close()`.
        """
        if self._frozen:
            return
        self._frozen = True
        forget(self)
        self._unfreeze()
        self.refresh()  # the last calls show (a ledger error leaves the last figures)
        snapshot = {"text/html": render_html(self._state, self.title), "text/plain": describe(self._state)}
        for handle in self._handles:
            handle.update(snapshot, raw=True)

    def _detach(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # -- display -------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if not self._metering.closed:
            self.refresh()  # the snapshot below must not lag behind the throttled refresher
        snapshot = {"text/html": render_html(self._state, self.title), "text/plain": describe(self._state)}
        if self._frozen:
            return snapshot
        bundle = dict(self.box._repr_mimebundle_(**kwargs) or {})
        # Viewers without a widget manager (GitHub, a plain HTML export, VS Code when the kernel
        # is gone) show this snapshot.
        bundle.update(snapshot)
        return bundle

    def _ipython_display_(self) -> None:
        """Shown with a display id, so the output can turn into the snapshot when the meter stops."""
        from IPython.display import display

        show: Callable[..., Any] = display  # IPython leaves display() unannotated
        self._handles.append(show(self._repr_mimebundle_(), raw=True, display_id=True))
        freeze_at_exit(self)  # a kernel shutdown or restart leaves the snapshot, not a dead widget

    def __repr__(self) -> str:
        return f"<BudgetMeter {len(self._rows)} lines, {'live' if self.running else 'stopped'}>"


def _freeze(ref: weakref.ref[BudgetMeter]) -> None:
    meter = ref()
    if meter is not None:
        meter.freeze()


def _refresh_loop(ref: weakref.ref[BudgetMeter], dirty: threading.Event, stop: threading.Event,
                  metering: Metering, interval: float, idle: float) -> None:
    shared = metering.ledger.shared
    while not stop.is_set():
        woke = dirty.wait(idle)  # blocks: no CPU while nothing happens
        if stop.is_set():
            break
        view = ref()
        if view is None:  # the widget was garbage-collected
            return
        dirty.clear()
        if woke or metering.closed or view._wants_tick(shared):
            view.refresh()  # once more after the client closed: its last calls show
        del view
        if metering.closed:
            break
        stop.wait(interval)  # throttle: calls arriving meanwhile are shown by the next pass
    view = ref()
    if view is not None:
        view._detach()
