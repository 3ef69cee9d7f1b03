"""The tested install is the plain one: the wheel, built from this tree, in a bare venv with its
runtime dependencies only (no dev group, no extras), runs the README's first example and the
four notebooks (in a kernel of that venv). Takes about a minute; never skipped under CI=true."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_notebooks import KERNEL, NAMES, NOTEBOOKS, execute

ROOT = Path(__file__).resolve().parents[1]
DEV_ONLY = ["pytest", "tqdm", "openai", "nbclient", "hypothesis", "duckdb", "mypy"]


def _uv() -> str:
    found = ROOT / ".tools" / "bin" / "uv"  # what `make env` bootstraps
    if found.exists():
        return str(found)
    exe = shutil.which("uv")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("uv is required under CI=true; `make test` bootstraps it in .tools/")
        pytest.skip("uv not installed (make env bootstraps it)")
    return exe


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT", "PYTHONPATH"))}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**env, **kw.pop("env", {})}, **kw)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _uv_online_or_cached(args: list[str]) -> None:
    """A uv command that needs packages: from the index, or from uv's cache alone when the index
    cannot be reached (a machine offline after one online run)."""
    try:
        _run([_uv(), *args])
    except AssertionError:
        _run([_uv(), *args, "--offline"])


def readme_example() -> str:
    """The README's first Python block, as a user would paste it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("plain")
    uv = _uv()
    _uv_online_or_cached(["build", "--wheel", "--quiet", "--out-dir", str(tmp / "dist"), str(ROOT)])
    (wheel,) = (tmp / "dist").glob("holysheep_lab-*.whl")
    venv = tmp / "venv"
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    _uv_online_or_cached(["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel)])
    return venv


def test_wheel_holds_no_dev_tools(plain_venv):
    py = str(plain_venv / "bin" / "python")
    code = ("import importlib.util, json, sys; "
            f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {DEV_ONLY!r}}}))")
    found = json.loads(_run([py, "-c", code]).stdout)
    assert not any(found.values()), found  # a dev tool in the venv would hide a missing dependency
    # The package comes from the venv (the wheel), not from this source tree.
    where = _run([py, "-c", "import holysheep_lab; print(holysheep_lab.__file__)"], cwd=plain_venv).stdout
    assert str(plain_venv) in where


def test_readme_first_example_runs_on_a_plain_install(plain_venv, tmp_path):
    script = tmp_path / "readme.py"
    script.write_text(readme_example(), encoding="utf-8")
    out = _run([str(plain_venv / "bin" / "python"), str(script)], cwd=tmp_path)
    assert "BatchEstimate (nothing sent)" in out.stdout and "BudgetStatus:" in out.stdout
    assert "holysheep 20/20 · 20 answered · $" in out.stderr  # the default progress bar, no tqdm
    assert "Traceback" not in out.stderr


def test_notebooks_run_on_a_plain_install(plain_venv, tmp_path):
    # Jupyter hosts the notebooks: its kernel (ipykernel) joins the venv as it would a user's.
    py = plain_venv / "bin" / "python"
    _uv_online_or_cached(["pip", "install", "--quiet", "--python", str(py), "ipykernel"])
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "holysheep-lab (plain install)", "language": "python"}))
    old = os.environ.get("JUPYTER_PATH")
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = {n: pool.submit(execute, NOTEBOOKS / f"{n}.ipynb", str(tmp_path / "jupyter"), 240) for n in NAMES}
            executed = {n: f.result() for n, f in futures.items()}
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
    for name, nb in executed.items():
        outs = [o for c in nb.cells for o in c.get("outputs", [])]
        assert not [o for o in outs if o.output_type == "error"], name
        printed = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
        assert f"KERNEL-PYTHON {py}" in printed, (name, printed[-500:])
    quick = "".join(o.get("text", "") for c in executed["01-quickstart"].cells for o in c.get("outputs", [])
                    if o.output_type == "stream")
    assert "the openai SDK is not installed" in quick  # the optional cell says so, and the rest runs
