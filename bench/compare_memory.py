"""read_log's peak memory on two trees, alternating rounds, on the same log (bench_analysis's log).

    git worktree add /tmp/base <commit>
    .venv/bin/python bench/compare_memory.py /tmp/base [--log /tmp/hs_bench_log] [--rounds 3]

Each measurement is a fresh process (`bench_analysis.MEM_CODE`) importing holysheep_lab from one
tree; the figure is read_log's RSS high-water mark over the Arrow table's size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_analysis import MEM_CODE

HERE = Path(__file__).resolve().parents[1]


def ratio(tree: Path, log: Path) -> float:
    sizes = {}
    for what in ("arrow_dataset", "read_log"):
        # -P: the folder this runs from must not come before `tree` on the import path.
        out = subprocess.run([sys.executable, "-P", "-c", MEM_CODE, str(log), what], capture_output=True, text=True,
                             check=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
        sizes[what] = tuple(map(int, out.stdout.split()))
    return sizes["read_log"][0] / sizes["arrow_dataset"][1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base", type=Path)
    ap.add_argument("--log", type=Path, default=Path("/tmp/hs_bench_log"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for n in range(args.rounds):
        for name, tree in (("base", args.base), ("this", HERE)):
            print(f"round {n} {name}: read_log peak {ratio(tree, args.log):.2f}x the Arrow table", flush=True)


if __name__ == "__main__":
    main()
