"""Ledgers: where reservations and spend are kept (memory, mapped file, SQLite file, Redis).

`MappedLedger`, `SQLiteLedger` and `RedisLedger` are imported on first use, so importing this package stays
cheap and never imports the optional `redis` client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from holysheep_lab.ledger.base import BucketState, Charge, Ledger, Refusal, bucket_name
from holysheep_lab.ledger.memory import MemoryLedger

if TYPE_CHECKING:
    from holysheep_lab.ledger.mapped import MappedLedger
    from holysheep_lab.ledger.redis import RedisLedger
    from holysheep_lab.ledger.sqlite import SQLiteLedger

__all__ = [
    "BucketState",
    "Charge",
    "Ledger",
    "MappedLedger",
    "MemoryLedger",
    "RedisLedger",
    "Refusal",
    "SQLiteLedger",
    "bucket_name",
]

_LAZY = {"MappedLedger": ".mapped", "RedisLedger": ".redis", "SQLiteLedger": ".sqlite"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
