"""The call log's one Arrow schema and the record that fills it.

Columns keep their names and meaning forever; new columns are added at the end with a new
`SCHEMA_VERSION`, and readers fill missing columns with nulls so old files still read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CALL_SCHEMA", "COLUMNS", "COLUMN_KINDS", "COLUMN_NAMES", "REQUIRED_COLUMNS",
           "SCHEMA_VERSION", "STATUSES", "CallRecord", "call_schema"]

SCHEMA_VERSION = 3

#: `ok` answered; `error` sent but failed; `blocked` refused by the guard, nothing sent;
#: `unpriced` answered, but the model had no price (opt-in), so cost_usd is null, never 0;
#: `unmetered` a POST no adapter meters, let through by `passthrough=[...]`: cost unknown (null);
#: `unknown` sent, but no answer came (connection dropped after sending, read timeout, process
#: exit with the call in flight): the relay may have billed it, so cost is its worst-case bound.
STATUSES = ("ok", "error", "blocked", "unpriced", "unmetered", "unknown")

#: The columns as (name, kind, nullable), in order. Kinds: str | ts (UTC microseconds) | int
#: (int64) | float (float64) | bool. Plain Python, so appending to the log never needs pyarrow;
#: `CALL_SCHEMA` (the Arrow schema) is built from it on first use.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("call_id", "str", False),
    ("ts", "ts", False),
    ("model", "str", False),
    ("status", "str", False),
    ("input_tokens", "int", True),
    ("output_tokens", "int", True),
    ("cached_input_tokens", "int", True),
    ("reasoning_tokens", "int", True),
    ("cost_usd", "float", True),
    ("estimated_cost_usd", "float", True),
    ("latency_ms", "float", True),
    ("attempts", "int", True),
    ("http_status", "int", True),
    ("error", "str", True),
    ("project", "str", True),
    ("price_version", "str", True),
    ("schema_version", "int", True),
    # -- beyond the core: added in version 1 too --
    ("cost_nanos", "int", True),  # exact cost in nano-dollars; cost_usd rounds it
    ("relay_cost_usd", "float", True),  # the relay's own figure (usage.cost), if any
    ("ttft_ms", "float", True),  # time to first token (streaming)
    ("stream", "bool", True),
    ("partial", "bool", True),  # a stream cut or abandoned: settled on what arrived
    ("endpoint", "str", True),  # e.g. "chat.completions"
    ("input_bytes", "int", True),  # UTF-8 size of the messages: calibrates estimates
    ("max_tokens", "int", True),
    ("conversation_id", "str", True),  # hash of the opening messages: chains, no text
    ("prompt", "str", True),  # only when the user asked to log content
    ("completion", "str", True),  # only when the user asked to log content
    ("input_non_ascii_bytes", "int", True),  # script class of the prompt (calibration)
    ("input_messages", "int", True),
    # -- added in version 2 --
    ("usage_missing", "bool", True),  # no usable usage (missing, null, implausible, no answer): cost is the bound
    # -- added in version 3 --
    ("cache_write_tokens", "int", True),  # prompt tokens written to a cache (part of input_tokens)
    ("cache_write_1h_tokens", "int", True),  # the 1-hour-TTL part of cache_write_tokens
    ("input_words", "int", True),  # prose words in the prompt (core/tokens.py): calibrates the input bound
    ("experiment", "str", True),  # the innermost `client.experiment(name)` the call was made in
    ("notebook_cell", "int", True),  # the execution count of the notebook cell that made it (%load_ext holysheep_lab)
    ("notebook_path", "str", True),  # that notebook's path, where the kernel knows it
)

COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in COLUMNS)
COLUMN_KINDS: tuple[str, ...] = tuple(kind for _, kind, _ in COLUMNS)
REQUIRED_COLUMNS: frozenset[str] = frozenset(name for name, _, nullable in COLUMNS if not nullable)


@cache
def call_schema() -> pa.Schema:
    """The Arrow schema of the call log (imports pyarrow; built once)."""
    import pyarrow as pa

    types = {"str": pa.string(), "ts": pa.timestamp("us", tz="UTC"), "int": pa.int64(),
             "float": pa.float64(), "bool": pa.bool_()}
    return pa.schema([pa.field(name, types[kind], nullable=nullable) for name, kind, nullable in COLUMNS])


def __getattr__(name: str) -> Any:
    # `CALL_SCHEMA` stays importable as a module constant, built (with pyarrow) on first access.
    if name == "CALL_SCHEMA":
        return call_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"CALL_SCHEMA"})


if TYPE_CHECKING:
    CALL_SCHEMA: pa.Schema


@dataclass(slots=True)
class CallRecord:
    """One call, as one log row. `ts` must be timezone-aware (UTC is stored)."""

    call_id: str
    ts: datetime
    model: str
    status: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = 0.0
    estimated_cost_usd: float | None = 0.0
    latency_ms: float | None = None
    attempts: int = 0
    http_status: int | None = None
    error: str | None = None
    project: str | None = None
    price_version: str | None = None
    schema_version: int = SCHEMA_VERSION
    cost_nanos: int | None = 0
    relay_cost_usd: float | None = None
    ttft_ms: float | None = None
    stream: bool = False
    partial: bool = False
    endpoint: str | None = "chat.completions"
    input_bytes: int | None = None
    max_tokens: int | None = None
    conversation_id: str | None = None
    prompt: str | None = None
    completion: str | None = None
    input_non_ascii_bytes: int | None = None
    input_messages: int | None = None
    usage_missing: bool = False
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    input_words: int | None = None
    experiment: str | None = None
    notebook_cell: int | None = None
    notebook_path: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The record as a dict of schema columns."""
        return asdict(self)


