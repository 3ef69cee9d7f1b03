"""Shared fixtures: every test gets its own log folder and no user-level config or key."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    # No test may pick up a real key, relay or log folder from the developer's machine.
    for var in ("HOLYSHEEP_API_KEY", "HOLYSHEEP_BASE_URL", "HOLYSHEEP_LOG_DIR", "HOLYSHEEP_SERVE_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def log_dir(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_ci_tool(name: str) -> None:
    """Skip locally when a real component is missing; under CI=true fail instead."""
    import shutil

    if shutil.which(name) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true; .ci/run installs it")
        pytest.skip(f"{name} not installed")
