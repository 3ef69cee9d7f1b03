"""Helpers shared by the ledgers: input checks and the grace periods they agree on."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import ConfigError
from holysheep_lab.ledger.base import Charge

__all__ = [
    "SWEEP_EVERY",
    "ClosingContext",
    "check_id",
    "check_path",
    "check_ttl",
    "merge_charges",
    "seed_items",
]

# How often (seconds of the ledger's clock) memory/SQLite ledgers drop dead buckets and claims.
SWEEP_EVERY = 60.0


class ClosingContext:
    """`with ledger:` closes it at the end (every ledger defines `close()`)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


def _check_amount(charge: Charge) -> None:
    # bool is an int; a float would silently lose exactness. Both are bugs in the caller.
    if isinstance(charge.amount, bool) or not isinstance(charge.amount, int):
        raise ConfigError(f"Charge amount must be an int of nano-dollars, got {charge.amount!r}")
    if charge.amount < 0:
        raise ConfigError(f"Charge amount must be >= 0 nanos, got {charge.amount}")
    limit = charge.limit
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise ConfigError(f"Charge limit must be an int of nano-dollars or None, got {limit!r}")
    if not isinstance(charge.bucket, str) or not charge.bucket:
        raise ConfigError(f"Charge bucket must be a non-empty string, got {charge.bucket!r}")


def merge_charges(charges: Sequence[Charge]) -> list[Charge]:
    """Validate and merge charges naming the same bucket (amounts add up), first-seen order."""
    for charge in charges:
        # The common case inline (this runs twice per guarded call); anything else is checked
        # in full, and raises if it is wrong.
        if not (
            type(charge.amount) is int
            and charge.amount >= 0
            and (charge.limit is None or type(charge.limit) is int)
            and type(charge.bucket) is str
            and charge.bucket
        ):
            _check_amount(charge)
    if len(charges) == 2:  # the guard's usual pair (a day and a month)
        if charges[0].bucket != charges[1].bucket:
            return list(charges)
    elif len({charge.bucket for charge in charges}) == len(charges):  # no bucket twice: nothing to merge
        return list(charges)
    merged: dict[str, Charge] = {}
    for charge in charges:
        prev = merged.get(charge.bucket)
        if prev is None:
            merged[charge.bucket] = charge
            continue
        if prev.limit != charge.limit:
            raise ConfigError(
                f"Bucket {charge.bucket!r} appears twice with different limits "
                f"({prev.limit} and {charge.limit})"
            )
        merged[charge.bucket] = Charge(
            charge.bucket,
            prev.amount + charge.amount,
            prev.limit,
            max(prev.expires_at, charge.expires_at),
        )
    return list(merged.values())


def check_path(kind: str, path: str | os.PathLike[str], example: str) -> Path:
    """The file path a `kind` ledger keeps its state in; ConfigError for anything else."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ConfigError(f"{kind} path must be a file path such as {example!r}, not {path!r}.")
    return Path(path)


def check_ttl(ttl: float) -> float:
    # The common cases without a call; anything else (NaN, a bool, a string...) in full.
    if type(ttl) is float and 0.0 < ttl < math.inf:
        return ttl
    if type(ttl) is int and ttl > 0:
        return float(ttl)
    return positive_seconds("Reservation ttl", ttl)


def check_id(reservation_id: str) -> str:
    if not isinstance(reservation_id, str) or not reservation_id:
        raise ConfigError(f"Reservation id must be a non-empty string, got {reservation_id!r}")
    return reservation_id


def seed_items(
    spent: Mapping[str, int], expires_at: Mapping[str, float]
) -> list[tuple[str, int, float]]:
    """(bucket, spent, expires_at) triples; every seeded bucket needs its window's end."""
    items = []
    for bucket, value in spent.items():
        if bucket not in expires_at:
            raise ConfigError(f"seed: no expires_at given for bucket {bucket!r}")
        _check_amount(Charge(bucket, value, None, expires_at[bucket]))
        items.append((bucket, value, float(expires_at[bucket])))
    return items
