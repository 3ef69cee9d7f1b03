"""Import time of `import holysheep_lab` (goal <= 0.3 s) against `import httpx2` and `import pandas`,
each in a fresh interpreter, medians of 15 runs. Run: .venv/bin/python bench/bench_import.py

`holysheep_lab_client_constructed` also builds a client on a fresh, empty log folder (what a
notebook's first cell pays); `holysheep_lab_log_append` opens a LogWriter and appends one record
(no pyarrow needed until a roll).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, save

RUNS = 15
TARGETS = {
    "python_baseline": "pass",
    "holysheep_lab": "import holysheep_lab",
    "holysheep_lab_client_ready": "import holysheep_lab as hs; hs.Client",
    "holysheep_lab_client_constructed": (
        "import tempfile, holysheep_lab as hs; "
        "hs.Client(base_url='http://127.0.0.1:9/v1', log_dir=tempfile.mkdtemp())"),
    "holysheep_lab_log_append": (
        "import os, tempfile, datetime; from holysheep_lab.log import LogWriter; "
        "from holysheep_lab.log.schema import CallRecord; "
        "w = LogWriter(tempfile.mkdtemp(), roll_interval=None); "
        "w.append(CallRecord('c', datetime.datetime.now(datetime.timezone.utc), 'm', 'ok')); "
        "os._exit(0)"),  # no roll at exit: this measures the append path only
    "httpx2": "import httpx2",
    "pandas": "import pandas",
}


def main() -> None:
    times: dict[str, list[float]] = {k: [] for k in TARGETS}
    for _ in range(RUNS):
        for name, code in TARGETS.items():  # interleaved, so load swings hit all alike
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - t0)
    base = median(times["python_baseline"])
    out = {"seconds_median_including_interpreter": {k: round(median(v), 4) for k, v in times.items()},
           "seconds_median_import_only": {k: round(median(v) - base, 4) for k, v in times.items()},
           "runs": RUNS}
    print(out)
    save("import", out)


if __name__ == "__main__":
    main()
