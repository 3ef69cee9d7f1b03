"""The IPython extension: ``%load_ext holysheep_lab``. Spend, cell by cell.

Loaded, it makes every notebook cell a call scope (`holysheep_lab.core.scopes`) of every client
in the kernel:

* the rows of the calls a cell makes carry ``notebook_cell`` (its execution count) and, where
  the kernel knows it (JupyterLab / Jupyter Server, VS Code), ``notebook_path``, so
  ``df.hs.by("notebook_cell")`` answers "which cell burned the money";
* after a cell that made calls, one line: calls, tokens, dollars, refusals;
* ``%hs_budget 0.25`` caps the next cell at $0.25 (its calls are reserved against it before they
  are sent, like an experiment's); ``%%hs_budget 0.25`` at the top of a cell caps that cell;
  ``%hs_budget off`` disarms, ``%hs_budget`` says what is armed.

A thread a cell started makes calls for the cell that is running when it calls.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from holysheep_lab.client.experiment import check_budget
from holysheep_lab.core.display import format_usd
from holysheep_lab.core.money import nanos_to_usd
from holysheep_lab.core.scopes import CallScope, cell_scope, set_cell
from holysheep_lab.errors import ConfigError

__all__ = ["CellMeter", "load_ipython_extension", "summary_line", "unload_ipython_extension"]

_loaded: weakref.WeakKeyDictionary[Any, CellMeter] = weakref.WeakKeyDictionary()


def summary_line(scope: CallScope) -> str:
    """The line shown after a cell: '[12] 30 calls, 12,345 tokens, $0.0123, 2 refused'."""
    s = scope.snapshot()
    parts = [f"{s.calls:,} call{'s' if s.calls != 1 else ''}", f"{s.input_tokens + s.output_tokens:,} tokens",
             format_usd(nanos_to_usd(s.spent_nanos))]
    if s.limit_nanos is not None:
        parts[-1] += f" of {format_usd(nanos_to_usd(s.limit_nanos))} budget"
    parts.append(f"{s.refused:,} refused")
    if s.errors:
        parts.append(f"{s.errors:,} failed")
    return f"holysheep: cell [{s.name}] " + ", ".join(parts)


class CellMeter:
    """The extension's state in one shell: the budget armed for the next cell, the cell's scope."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.armed: int | None = None  # nanos the next cell may spend
        self.current: CallScope | None = None

    def notebook_path(self) -> str | None:
        """The notebook's path: VS Code sets __vsc_ipynb_file__, Jupyter Server JPY_SESSION_NAME
        (ipykernel copies it into __session__)."""
        ns = self.shell.user_ns
        for value in (ns.get("__vsc_ipynb_file__"), ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
            if isinstance(value, str) and value:
                return value
        return None

    def pre_run_cell(self, info: Any) -> None:
        if not getattr(info, "store_history", True):
            return  # a silent or nested run (%%capture, %%hs_budget): part of the cell that runs
        # IPython counts the cell before announcing it: its number is the one just taken.
        count = self.shell.execution_count - 1
        cap, self.armed = self.armed, None
        self.current = CallScope("cell", str(count), None, cap, cell=count, path=self.notebook_path())
        set_cell(self.current)

    def post_run_cell(self, result: Any) -> None:
        info = getattr(result, "info", None)
        if info is not None and not getattr(info, "store_history", True):
            return
        scope, self.current = self.current, None
        if cell_scope() is scope:
            set_cell(None)
        if scope is None:
            return
        s = scope.snapshot()
        if s.calls or s.refused:
            print(summary_line(scope))

    def hs_budget(self, line: str, cell: str | None = None) -> None:
        """%hs_budget USD: cap the next cell; %%hs_budget USD: cap this cell; off; no argument: show."""
        arg = line.strip()
        if cell is not None:
            self._cap_this_cell(arg, cell)
            return
        if not arg:
            armed = f"{format_usd(nanos_to_usd(self.armed))}" if self.armed is not None else "no budget"
            print(f"holysheep: the next cell has {armed}")
            return
        if arg.lower() in ("off", "none", "0"):
            self.armed = None
            print("holysheep: the next cell has no budget")
            return
        self.armed = self._budget(arg)
        print(f"holysheep: the next cell may spend up to {format_usd(nanos_to_usd(self.armed))}")

    def _cap_this_cell(self, arg: str, cell: str) -> None:
        limit = self._budget(arg)
        scope = self.current
        if scope is None:  # run outside a notebook cell (a script calling run_cell_magic)
            scope = CallScope("cell", "magic", None, limit)
            set_cell(scope)
        else:
            scope.limit_nanos = limit
        try:
            self.shell.run_cell(cell, store_history=False)
        finally:
            if self.current is None:
                set_cell(None)
                print(summary_line(scope))

    def _budget(self, arg: str) -> int:
        from IPython.core.error import UsageError

        try:
            limit = check_budget(arg.lstrip("$"), "%hs_budget")
        except ConfigError as exc:
            raise UsageError(f"{exc} Use %hs_budget 0.25 (USD), or %hs_budget off.") from None
        assert limit is not None
        return limit


def load_ipython_extension(ipython: Any) -> None:
    """Register the cell hooks and ``%hs_budget`` (once per shell)."""
    if ipython in _loaded:
        return
    meter = _loaded[ipython] = CellMeter(ipython)
    ipython.events.register("pre_run_cell", meter.pre_run_cell)
    ipython.events.register("post_run_cell", meter.post_run_cell)
    ipython.register_magic_function(meter.hs_budget, magic_kind="line_cell", magic_name="hs_budget")


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the hooks and the magic; calls are no longer tagged with cells."""
    meter = _loaded.pop(ipython, None)
    if meter is None:
        return
    ipython.events.unregister("pre_run_cell", meter.pre_run_cell)
    ipython.events.unregister("post_run_cell", meter.post_run_cell)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("hs_budget", None)
    if cell_scope() is meter.current:
        set_cell(None)
