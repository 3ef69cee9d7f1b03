"""A batch's progress bar: answered, refused and failed calls and their cost, as they finish.

In a Jupyter kernel it is an ipywidgets bar (a runtime dependency already, for the meters) with a
static HTML twin, so a saved notebook shows the last state where the widget cannot be restored;
elsewhere a line on stderr, redrawn at most a few times a second. Our own bar rather than tqdm:
no extra dependency for the default `chat_many(progress=True)`, the money rule of every other
view, and a colour that says when failures dominate (tqdm's notebook bar turns red only on error).
Widget traits are set from the loop thread that runs the batch (thread-safe in ipywidgets); the
widget itself is made and displayed by the caller's thread.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections import Counter
from typing import Any, TextIO

from holysheep_lab.client.results import ChatResult
from holysheep_lab.core.display import NO_MATH, format_usd
from holysheep_lab.errors import BudgetExceededError

__all__ = ["FAILING_COLOUR", "MIXED_COLOUR", "OK_COLOUR", "BatchProgress"]

OK_COLOUR = "#2ecc71"
MIXED_COLOUR = "#e67e22"  # some calls refused or failed
FAILING_COLOUR = "#e74c3c"  # refusals and failures outnumber answers

_TEXT_EVERY = 0.2  # seconds between stderr redraws


class BatchProgress:
    """Counts and shows a batch's outcomes. `update(result)` once per finished prompt."""

    def __init__(self, total: int, *, title: str = "holysheep", widget: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.title = title
        self.answered = 0
        self.refused = 0
        self.failed = 0
        self.cost = 0.0
        self.errors: Counter[str] = Counter()  # "UnknownModelError: ..." -> count
        self._lock = threading.Lock()
        self._stream = stream
        self._last_text = 0.0
        self._closed = False
        self._box: Any = None
        self._handle: Any = None
        if widget is None:
            from holysheep_lab.notebook.widgets import in_kernel

            widget = in_kernel()
        if widget:
            self._make_widget()

    # -- counting ------------------------------------------------------------------------------

    @property
    def done(self) -> int:
        return self.answered + self.refused + self.failed

    @property
    def colour(self) -> str:
        bad = self.refused + self.failed
        if bad == 0:
            return OK_COLOUR
        return FAILING_COLOUR if bad > self.answered else MIXED_COLOUR

    def update(self, result: object) -> None:
        with self._lock:
            if isinstance(result, ChatResult):
                self.answered += 1
                self.cost += result.cost_usd or 0.0
            elif isinstance(result, BudgetExceededError):
                self.refused += 1
            else:
                self.failed += 1
                self.errors[_first_line(result)] += 1
        self._show()

    def summary(self) -> str:
        """'12/20 · 9 answered · 2 refused · 1 failed · $0.01480' (and the commonest error)."""
        parts = [f"{self.title} {self.done}/{self.total}", f"{self.answered} answered"]
        if self.refused:
            parts.append(f"{self.refused} refused")
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(format_usd(self.cost))
        text = " · ".join(parts)
        if self.errors:
            ((error, n),) = self.errors.most_common(1)
            text += f" · {error}" + (f" (x{n})" if n > 1 else "")
        return text

    # -- showing -------------------------------------------------------------------------------

    def _make_widget(self) -> None:
        from holysheep_lab.notebook.widgets import require_ipywidgets

        w = require_ipywidgets()
        self._bar = w.FloatProgress(min=0.0, max=float(max(self.total, 1)), layout=w.Layout(width="260px"))
        self._bar.style.bar_color = OK_COLOUR
        self._label = w.HTML()
        self._box = w.HBox([self._bar, self._label])
        self._set_widget()
        from IPython.display import display

        bundle = dict(self._box._repr_mimebundle_() or {})
        bundle["text/html"] = self.html()
        bundle["text/plain"] = self.summary()
        # IPython's display() is unannotated.
        self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]

    def _set_widget(self) -> None:
        with self._bar.hold_sync():
            self._bar.value = float(self.done)
            self._bar.style.bar_color = self.colour
        self._label.value = f"<span class='{NO_MATH}' style='font-size:90%'>{html.escape(self.summary())}</span>"

    def html(self) -> str:
        """A static twin of the widget, for viewers without the widget's state."""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"<div class='hs-batch-progress {NO_MATH}' data-done='{self.done}' data-total='{self.total}' "
                f"data-colour='{self.colour}' style='display:flex;align-items:center;gap:8px;font-family:sans-serif'>"
                f"<span style='width:260px;height:12px;background:#eee;border-radius:3px;overflow:hidden'>"
                f"<span style='display:block;height:100%;width:{pct:.1f}%;background:{self.colour}'></span></span>"
                f"<span style='font-size:90%'>{html.escape(self.summary())}</span></div>")

    def _show(self, final: bool = False) -> None:
        if self._box is not None:
            self._set_widget()
            return
        if self._stream is None and sys.stderr is None:
            return
        now = time.monotonic()
        if not final and (now - self._last_text < _TEXT_EVERY or self.done >= self.total):
            return  # the last line is close()'s
        self._last_text = now
        out = self._stream or sys.stderr
        out.write(f"\r{self.summary()}" + ("\n" if final else ""))
        out.flush()

    def close(self) -> None:
        """Show the final state. In a notebook a finished bar no longer changes, so its output
        becomes the static twin alone: a saved notebook then shows it, not "model not found"."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._show(final=True)
        if self._handle is not None:
            self._handle.update({"text/html": self.html(), "text/plain": self.summary()}, raw=True)
            for widget in (self._box, self._bar, self._label):
                widget.close()  # their comms too: nothing in the kernel refers to the bar any more


def _first_line(exc: object) -> str:
    text = str(exc).split("\n", 1)[0]
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}"
