"""Durable call log: per-writer journals rolled into immutable, hive-partitioned Parquet.

    from holysheep_lab.log import LogWriter, read_log, read_table, compact

    with LogWriter("logs") as w:          # one journal per writer under logs/_journal/
        w.append(record)                  # durable against a kill when it returns
    read_log("logs", start="2026-11-01")  # DataFrame; read_table gives an Arrow table
    compact("logs")                       # roll dead writers' journals, merge small files

The folder reads unchanged with DuckDB (``read_parquet('logs/**/*.parquet',
hive_partitioning=true)``) and polars (``scan_parquet('logs/**/*.parquet')``), minus the rows
still in journals. pandas is imported only by `read_log`.
"""

from __future__ import annotations

from .compact import CompactSummary, compact
from .reader import LogReadWarning, read_log, read_table
from .schema import CALL_SCHEMA, SCHEMA_VERSION, CallRecord
from .writer import LogWriter, LogWriteWarning

__all__ = [
    "CALL_SCHEMA",
    "SCHEMA_VERSION",
    "CallRecord",
    "CompactSummary",
    "LogReadWarning",
    "LogWriteWarning",
    "LogWriter",
    "compact",
    "read_log",
    "read_table",
]
