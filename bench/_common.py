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
from collections.abc import Callable, Iterator
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
        "import sys, json; from holysheep_lab.sim.server import serve; "
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


def interleaved(variants: dict[str, Callable[[], Any]], rounds: int, calls: int,
                warmup: int = 50) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call wall and CPU (this process) microseconds of every variant, one sample per round.

    Rounds alternate the variants' order so neither always runs first or last; compare the
    samples pairwise (`paired_ratio`), which cancels load that shifts between rounds.
    """
    for fn in variants.values():  # connections, imports, caches
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(rounds):
        order = list(variants.items())
        if i % 2:
            order.reverse()
        for name, fn in order:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(calls):
                fn()
            wall[name].append((time.perf_counter() - t0) / calls * 1e6)
            cpu[name].append((time.process_time() - c0) / calls * 1e6)
    return wall, cpu


def paired_ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a / b."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
