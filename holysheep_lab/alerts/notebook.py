"""NotebookChannel: the alert as a banner in the running notebook, printed elsewhere."""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any, TextIO

from holysheep_lab.alerts.model import Alert
from holysheep_lab.core.display import no_math
from holysheep_lab.core.validate import positive_int

__all__ = ["NotebookChannel"]


def _kernel_shell() -> Any:
    """The running IPython kernel shell, or None (a script, a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None  # IPython was never imported: we are not in a notebook; don't import it
    shell = ipython.get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


class NotebookChannel:
    """Show the alert as a banner in the running notebook; print it elsewhere.

    Create it in a notebook cell: it displays an (empty) output there at once, and the
    worker thread later updates that display handle, which is safe from threads on
    ipykernel >= 7.1 (plain `display()` from a thread may land in no cell). The banner
    holds the `keep` most recent alerts, newest first. Outside a kernel, `send` prints
    `alert.text` to `stream` (default: sys.stdout at send time).
    """

    def __init__(self, *, keep: int = 3, stream: TextIO | None = None) -> None:
        self.name = "notebook"
        self._recent: deque[Alert] = deque(maxlen=positive_int("NotebookChannel keep", keep, what="int"))
        self._lock = threading.Lock()
        self._stream = stream
        self._handle: Any = None
        if _kernel_shell() is not None:
            from IPython.display import HTML, display

            # IPython's display functions are unannotated.
            self._handle = display(HTML(""), display_id=True)  # type: ignore[no-untyped-call]

    @property
    def in_notebook(self) -> bool:
        """True when alerts go to a display handle in a notebook cell."""
        return self._handle is not None

    async def send(self, alert: Alert) -> None:
        with self._lock:
            self._recent.appendleft(alert)
            recent = list(self._recent)
        if self._handle is None:
            print(alert.text, file=self._stream or sys.stdout, flush=True)
            return
        from IPython.display import HTML

        # "$0.01 of $0.02" must not be typeset as math by the notebook's MathJax.
        self._handle.update(HTML(no_math("".join(a._repr_html_() for a in recent))))  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"NotebookChannel(in_notebook={self.in_notebook}, keep={self._recent.maxlen})"
