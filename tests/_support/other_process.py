"""One metered call made by another Python process on the same log folder (another kernel, a
script). It prints "SENT" or "BLOCKED <window>"."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

__all__ = ["call_from_another_process"]


def call_from_another_process(base_url: str, log_dir: Path, *, daily: float, model: str, prompt: str,
                              max_tokens: int) -> subprocess.CompletedProcess[str]:
    """Run one `hs.Client.chat` with `Budget(daily=daily, monthly=None)` in a fresh interpreter."""
    code = textwrap.dedent(f"""
        import holysheep_lab as hs
        c = hs.Client(base_url={base_url!r}, log_dir={str(log_dir)!r}, budget=hs.Budget(daily={daily}, monthly=None))
        try:
            c.chat({model!r}, {prompt!r}, max_tokens={max_tokens})
            print("SENT")
        except hs.BudgetExceededError as e:
            print("BLOCKED", e.window)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
