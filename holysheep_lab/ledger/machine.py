"""The machine-wide default ledger of a log folder: which file, and which kind.

Every client logging to one folder (two kernels, a kernel and a script) must share one budget,
so they must all pick the same ledger: the folder's mapped file, or its SQLite file where one
already exists (folders from before the mapped file was the default keep theirs).
"""

from __future__ import annotations

import os
from pathlib import Path

from holysheep_lab.errors import LedgerError
from holysheep_lab.ledger.base import Ledger
from holysheep_lab.ledger.mapped import AVAILABLE, MAPPED_FILE, MappedLedger
from holysheep_lab.ledger.sqlite import LEDGER_FILE, SQLiteLedger

__all__ = ["machine_ledger"]


def machine_ledger(log_dir: str | os.PathLike[str]) -> Ledger:
    """The default ledger: one file in the log folder (hidden from the log's readers), so two
    kernels, or a kernel and a script, logging to one folder share one budget with no
    configuration. `ledger=hs.MemoryLedger()` opts out (one budget per process).

    A mapped file (`MappedLedger`, `.ledger.mmap`) unless the folder already has a SQLite ledger
    (`.ledger.sqlite`, the default before): then that one, so every process of a folder keeps
    sharing one budget; also where there is no `flock` (Windows). A folder with both is refused:
    two ledgers would split its budget."""
    folder = Path(log_dir)
    old, new = folder / LEDGER_FILE, folder / MAPPED_FILE
    try:
        if old.exists():
            if new.exists():
                raise LedgerError(
                    f"The log folder {folder} has two budget ledgers, {LEDGER_FILE} and {MAPPED_FILE}; "
                    "clients using one would not see the other's spend, so calls are refused. Stop the "
                    f"processes using the folder and delete one ({MAPPED_FILE} is the newer default)."
                )
            return SQLiteLedger(old)
        return MappedLedger(new) if AVAILABLE else SQLiteLedger(old)
    except LedgerError as exc:
        raise type(exc)(
            f"{exc} The log folder's machine-wide budget ledger lives there; pass a writable log_dir=, "
            "or ledger=hs.MemoryLedger() for a budget of this process alone."
        ) from None
