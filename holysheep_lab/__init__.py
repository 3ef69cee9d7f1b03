"""holysheep-lab: make LLM spend visible and bounded.

    import holysheep_lab as hs
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, budget=hs.Budget(daily=5)) as client:
        client.chat("gpt-4.1", "Hello")

Every public name is imported on first use, so `import holysheep_lab` stays fast and pandas,
altair and ipywidgets load only when analysis, charts or meters are used.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from holysheep_lab.errors import (
    AlertDeliveryError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    BudgetExceededError,
    ConfigError,
    HolySheepError,
    LedgerError,
    LedgerUnavailableError,
    LogError,
    MissingExtraError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    UnknownModelError,
    UnmeteredEndpointError,
)

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Alert": "holysheep_lab.alerts",
    "AlertManager": "holysheep_lab.alerts",
    "AsyncHttpxMeteredTransport": "holysheep_lab.transports.legacy",
    "AsyncMeteredTransport": "holysheep_lab.transports.metered",
    "BatchInterrupted": "holysheep_lab.client.batch",
    "Budget": "holysheep_lab.core.budget",
    "BudgetMeter": "holysheep_lab.notebook",
    "CallRecord": "holysheep_lab.log.schema",
    "CallbackChannel": "holysheep_lab.alerts",
    "ChatResult": "holysheep_lab.client.results",
    "ChatStream": "holysheep_lab.client.client",
    "Client": "holysheep_lab.client.client",
    "EmailChannel": "holysheep_lab.alerts",
    "Estimate": "holysheep_lab.client.results",
    "Experiment": "holysheep_lab.client.experiment",
    "HttpxMeteredTransport": "holysheep_lab.transports.legacy",
    "Ledger": "holysheep_lab.ledger",
    "Level": "holysheep_lab.alerts",
    "LineChannel": "holysheep_lab.alerts",
    "MappedLedger": "holysheep_lab.ledger",
    "MemoryLedger": "holysheep_lab.ledger",
    "MeteredTransport": "holysheep_lab.transports.metered",
    "NotebookChannel": "holysheep_lab.alerts",
    "Price": "holysheep_lab.core.pricing",
    "PriceEntry": "holysheep_lab.core.pricing",
    "PriceTable": "holysheep_lab.core.pricing",
    "RateLimit": "holysheep_lab.core.limits",
    "RedisLedger": "holysheep_lab.ledger",
    "Retry": "holysheep_lab.core.limits",
    "SQLiteLedger": "holysheep_lab.ledger",
    "Simulator": "holysheep_lab.sim.server",
    "TeamsChannel": "holysheep_lab.alerts",
    "Tier": "holysheep_lab.core.pricing",
    "Usage": "holysheep_lab.core.pricing",
    "WebhookChannel": "holysheep_lab.alerts",
    "dashboard": "holysheep_lab.notebook",
    "read_log": "holysheep_lab.log",
    "report": "holysheep_lab.reports.html",
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "Alert",
    "AlertDeliveryError",
    "AlertManager",
    "AsyncHttpxMeteredTransport",
    "AsyncMeteredTransport",
    "BatchInterrupted",
    "Budget",
    "BudgetExceededError",
    "BudgetMeter",
    "CallRecord",
    "CallbackChannel",
    "ChatResult",
    "ChatStream",
    "Client",
    "ConfigError",
    "EmailChannel",
    "Estimate",
    "Experiment",
    "HolySheepError",
    "HttpxMeteredTransport",
    "Ledger",
    "LedgerError",
    "LedgerUnavailableError",
    "Level",
    "LineChannel",
    "LogError",
    "MappedLedger",
    "MemoryLedger",
    "MeteredTransport",
    "MissingExtraError",
    "NotebookChannel",
    "Price",
    "PriceEntry",
    "PriceTable",
    "RateLimit",
    "RateLimitError",
    "RedisLedger",
    "ResponseFormatError",
    "Retry",
    "SQLiteLedger",
    "ServerError",
    "Simulator",
    "TeamsChannel",
    "Tier",
    "UnknownModelError",
    "UnmeteredEndpointError",
    "Usage",
    "WebhookChannel",
    "dashboard",
    "read_log",
    "report",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'holysheep_lab' has no attribute {name!r}")
    if name == "read_log":
        # `hs.read_log` registers the `df.hs` accessor, so analysts never import it by hand;
        # read_log itself is returned (no wrapper: its warnings then name the caller's line).
        importlib.import_module("holysheep_lab.analysis")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def _accessor_where_pandas_is() -> None:
    """Register `df.hs` now if pandas is already imported (a notebook that imported pandas
    first): frames from `pd.read_parquet` or DuckDB's `.df()` then have it at once. Without
    pandas nothing is imported (it loads on first use of `hs.read_log` or the analysis)."""
    pandas = sys.modules.get("pandas")
    if pandas is None or getattr(pandas, "DataFrame", None) is None:  # absent, or mid-import
        return
    try:
        importlib.import_module("holysheep_lab.analysis.accessor")
    except ImportError:  # an unusable pandas: the error comes, clearer, on first use
        return


_accessor_where_pandas_is()


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext holysheep_lab``: a one-line spend summary after each cell that made calls, rows
    tagged with the cell, ``%hs_budget 0.25`` to cap the next cell (see holysheep_lab.ipython)."""
    from holysheep_lab.ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext holysheep_lab``: stop tagging and summarising cells."""
    from holysheep_lab.ipython import unload_ipython_extension as unload

    unload(ipython)


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from holysheep_lab.alerts import (
        Alert,
        AlertManager,
        CallbackChannel,
        EmailChannel,
        Level,
        LineChannel,
        NotebookChannel,
        TeamsChannel,
        WebhookChannel,
    )
    from holysheep_lab.client.batch import BatchInterrupted
    from holysheep_lab.client.client import ChatStream, Client
    from holysheep_lab.client.experiment import Experiment
    from holysheep_lab.client.results import ChatResult, Estimate
    from holysheep_lab.core.budget import Budget
    from holysheep_lab.core.limits import RateLimit, Retry
    from holysheep_lab.core.pricing import Price, PriceEntry, PriceTable, Tier, Usage
    from holysheep_lab.ledger import Ledger, MappedLedger, MemoryLedger, RedisLedger, SQLiteLedger
    from holysheep_lab.log import read_log
    from holysheep_lab.log.schema import CallRecord
    from holysheep_lab.notebook import BudgetMeter, dashboard
    from holysheep_lab.reports.html import report
    from holysheep_lab.sim.server import Simulator
    from holysheep_lab.transports.legacy import AsyncHttpxMeteredTransport, HttpxMeteredTransport
    from holysheep_lab.transports.metered import AsyncMeteredTransport, MeteredTransport
