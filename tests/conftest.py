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


def _fail_skips_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    # Under CI=true nothing may be skipped (a missing dev package, tool or service is a failure).
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())
