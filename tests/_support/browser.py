"""Headless Chromium (Debian's package) for page checks: the DOM after scripts ran, and the log."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def dump_dom(tmp_path: Path, url: str, *, budget_ms: int = 10_000) -> tuple[str, str]:
    """(DOM after `budget_ms` of virtual time, Chromium's stderr with console lines)."""
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout, out.stderr
