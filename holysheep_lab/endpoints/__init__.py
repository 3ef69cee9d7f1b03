"""Wire formats the metering core understands, one module each (see `base.py` for the seam).

`find_endpoint(method, path)` picks the adapter of a request, or None. A POST that finds none is
refused by the metering core unless `passthrough.py` lets it through.
"""

from __future__ import annotations

from holysheep_lab.endpoints.anthropic import ANTHROPIC_MESSAGES
from holysheep_lab.endpoints.base import Endpoint, EventReader, RequestFacts, StreamEvent, normalise_path
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from holysheep_lab.endpoints.completions import COMPLETIONS
from holysheep_lab.endpoints.embeddings import EMBEDDINGS
from holysheep_lab.endpoints.responses import RESPONSES

__all__ = ["ENDPOINTS", "Endpoint", "EventReader", "RequestFacts", "StreamEvent", "find_endpoint", "normalise_path"]

#: Every adapter, in matching order (the most used first: matching runs once per request).
ENDPOINTS: tuple[Endpoint, ...] = (CHAT_COMPLETIONS, RESPONSES, EMBEDDINGS, COMPLETIONS, ANTHROPIC_MESSAGES)


def find_endpoint(method: str, path: str) -> Endpoint | None:
    """The adapter for a request (None: no billable format of ours)."""
    if method.upper() != "POST":
        return None
    normal = normalise_path(path)
    for endpoint in ENDPOINTS:
        if endpoint.match(normal):
            return endpoint
    return None
