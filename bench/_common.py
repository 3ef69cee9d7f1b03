"""Shared bench helpers: a simulator in its own process (no GIL sharing), medians, results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def simulator_process(**options: Any) -> Iterator[str]:
    """Run `holysheep_lab.sim.serve` in a child process; yield its base URL."""
    port = free_port()
    code = (
        "import sys, json; from holysheep_lab.sim import serve; "
        f"serve(host='127.0.0.1', port={port}, **json.loads(sys.argv[1]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(options)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 20
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            break
        time.sleep(0.05)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
