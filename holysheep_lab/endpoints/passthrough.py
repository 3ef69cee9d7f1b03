"""The paths a user lets through unmetered (`passthrough=[...]`): everything else that POSTs to
the relay without an adapter is refused before sending.

An entry matches a request path equal to it or ending with it, both normalised, so
`/images/generations` also lets `/v1/images/generations` and Azure's deployment path through.
A path that has an adapter cannot be named: what is metered stays metered.
"""

from __future__ import annotations

from collections.abc import Iterable

from holysheep_lab.endpoints import ENDPOINTS, find_endpoint, normalise_path
from holysheep_lab.errors import ConfigError

__all__ = ["Passthrough", "metered_names"]


def metered_names() -> list[str]:
    """The names of the formats that are metered."""
    return [endpoint.name for endpoint in ENDPOINTS]


class Passthrough:
    """A validated set of normalised paths; `allows(path)` for a normalised request path."""

    __slots__ = ("paths",)

    def __init__(self, paths: Iterable[str] | None = None) -> None:
        if paths is None:
            paths = ()
        if isinstance(paths, (str, bytes)) or not isinstance(paths, (list, tuple, set, frozenset)):
            raise ConfigError(
                f"passthrough takes a list of paths, e.g. passthrough=['/v1/images/generations'], not {paths!r}."
            )
        normal: list[str] = []
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/") or normalise_path(path) == "/":
                raise ConfigError(f"passthrough paths look like '/v1/images/generations', not {path!r}.")
            metered = find_endpoint("POST", path)
            if metered is not None:
                raise ConfigError(
                    f"passthrough cannot name {path!r}: it is metered (as {metered.name!r}), and what is metered "
                    "stays metered."
                )
            normal.append(normalise_path(path))
        self.paths: tuple[str, ...] = tuple(dict.fromkeys(normal))

    def allows(self, path: str) -> bool:
        return any(path == p or path.endswith(p) for p in self.paths)

    def __repr__(self) -> str:
        return f"Passthrough({list(self.paths)!r})"
