"""Wire formats the metering core understands, one module each (see `base.py` for the seam).

`find_endpoint(method, path)` picks the adapter of a request, or None.
"""

from __future__ import annotations

from holysheep_lab.endpoints.base import Endpoint, EventReader, RequestFacts, StreamEvent, normalise_path
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS

__all__ = ["ENDPOINTS", "Endpoint", "EventReader", "RequestFacts", "StreamEvent", "find_endpoint", "normalise_path"]

#: Every adapter, in matching order.
ENDPOINTS: tuple[Endpoint, ...] = (CHAT_COMPLETIONS,)


def find_endpoint(method: str, path: str) -> Endpoint | None:
    """The adapter for a request (None: no billable format of ours)."""
    if method.upper() != "POST":
        return None
    normal = normalise_path(path)
    for endpoint in ENDPOINTS:
        if endpoint.match(normal):
            return endpoint
    return None
