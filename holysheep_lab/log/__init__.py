"""Durable call log: per-writer journals rolled into immutable, hive-partitioned Parquet.

    from holysheep_lab.log import LogWriter, read_log, read_table, compact

    with LogWriter("logs") as w:          # one journal per writer under logs/_journal/
        w.append(record)                  # durable against a kill when it returns
    read_log("logs", start="2026-11-01")  # DataFrame; read_table gives an Arrow table
    compact("logs")                       # roll dead writers' journals, merge small files

The folder reads unchanged with DuckDB (``read_parquet('logs/**/*.parquet',
hive_partitioning=true)``) and polars (``scan_parquet('logs/**/*.parquet')``), minus the rows
still in journals. pyarrow is imported only to roll journals into Parquet and to read (so appending
stays light); pandas only by `read_log`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from holysheep_lab.log.schema import SCHEMA_VERSION, CallRecord
from holysheep_lab.log.writer import LogWriter, LogWriteWarning, may_hold_rows

__all__ = [
    "CALL_SCHEMA",
    "SCHEMA_VERSION",
    "CallRecord",
    "CompactSummary",
    "LogReadWarning",
    "LogWriteWarning",
    "LogWriter",
    "compact",
    "may_hold_rows",
    "read_log",
    "read_table",
]

# Appending needs no pyarrow; these (reading, compacting, the Arrow schema) import it, so they
# load on first use. `import holysheep_lab.log` and a LogWriter's appends stay pyarrow-free.
_LAZY = {
    "CALL_SCHEMA": ".schema",
    "CompactSummary": ".compact",
    "compact": ".compact",
    "LogReadWarning": ".reader",
    "read_log": ".reader",
    "read_table": ".reader",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps `holysheep_lab.log.compact` the function, as when it was imported eagerly.

    Loading the submodule `holysheep_lab.log.compact` (however it is first imported) makes the
    import system set the package attribute `compact` to that module; this puts the function back.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "compact" and isinstance(value, types.ModuleType):
            value = value.compact
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from holysheep_lab.log.compact import CompactSummary, compact
    from holysheep_lab.log.reader import LogReadWarning, read_log, read_table
    from holysheep_lab.log.schema import CALL_SCHEMA
