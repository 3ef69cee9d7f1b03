"""The call log's one Arrow schema and the record that fills it.

Columns keep their names and meaning forever; new columns are added at the end with a new
`SCHEMA_VERSION`, and readers fill missing columns with nulls so old files still read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import pyarrow as pa

__all__ = ["CALL_SCHEMA", "CORE_COLUMNS", "SCHEMA_VERSION", "STATUSES", "CallRecord"]

SCHEMA_VERSION = 1

#: `ok` answered; `error` sent but failed; `blocked` refused by the guard, nothing sent;
#: `unpriced` answered, but the model had no price (opt-in), so cost_usd is null, never 0.
STATUSES = ("ok", "error", "blocked", "unpriced")

CALL_SCHEMA = pa.schema(
    [
        pa.field("call_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("cached_input_tokens", pa.int64()),
        pa.field("reasoning_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("estimated_cost_usd", pa.float64()),
        pa.field("latency_ms", pa.float64()),
        pa.field("attempts", pa.int64()),
        pa.field("http_status", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("project", pa.string()),
        pa.field("price_version", pa.string()),
        pa.field("schema_version", pa.int64()),
        # -- beyond the core: added in version 1 too --
        pa.field("cost_nanos", pa.int64()),  # exact cost in nano-dollars; cost_usd rounds it
        pa.field("relay_cost_usd", pa.float64()),  # the relay's own figure (usage.cost), if any
        pa.field("ttft_ms", pa.float64()),  # time to first token (streaming)
        pa.field("stream", pa.bool_()),
        pa.field("partial", pa.bool_()),  # a stream cut or abandoned: settled on what arrived
        pa.field("endpoint", pa.string()),  # e.g. "chat.completions"
        pa.field("input_bytes", pa.int64()),  # UTF-8 size of the messages: calibrates estimates
        pa.field("max_tokens", pa.int64()),
        pa.field("conversation_id", pa.string()),  # hash of the opening messages: chains, no text
        pa.field("prompt", pa.string()),  # only when the user asked to log content
        pa.field("completion", pa.string()),  # only when the user asked to log content
        pa.field("input_non_ascii_bytes", pa.int64()),  # script class of the prompt (calibration)
        pa.field("input_messages", pa.int64()),
    ]
)

CORE_COLUMNS = tuple(CALL_SCHEMA.names[:17])


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
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def as_row(self) -> dict[str, Any]:
        """The record as a dict of schema columns (drops `extra`)."""
        row = asdict(self)
        row.pop("extra", None)
        return row


