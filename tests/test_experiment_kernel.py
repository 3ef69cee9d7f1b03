"""Experiments in a real kernel (nbclient): a `with` block around chat_many and sync calls, a
top-level `async with` around awaited tasks; each capped by its budget, its rows tagged, its
summary shown; `df.hs.by("experiment")` groups the history."""

from __future__ import annotations

import re

import nbformat
import pytest
from test_notebooks import execute, venv_kernel

import holysheep_lab as hs


def cells(log_dir: str) -> list[str]:
    return [
        "import asyncio\nimport holysheep_lab as hs\n"
        f"sim = hs.Simulator(latency=0.01).start()\nclient = hs.Client(base_url=sim.base_url, log_dir={log_dir!r})",
        "with client.experiment('rag-v2', budget=0.004) as exp:\n"
        "    batch = client.chat_many([f'Question {i}' for i in range(20)], 'gpt-4.1', max_tokens=100, progress=False)\n"
        "    for i in range(5):\n        try:\n            client.chat('gpt-4.1', f'Follow-up {i}', max_tokens=100)\n"
        "        except hs.BudgetExceededError:\n            pass\n"
        "print('LIVE', exp.calls, exp.refused, exp.cost_usd)\nexp",
        "async with client.experiment('async-v1', budget=0.003) as aexp:\n"
        "    got = await asyncio.gather(*(client.achat('gpt-4.1', f'Ask {i}', max_tokens=100) for i in range(15)),\n"
        "                               return_exceptions=True)\n"
        "print('ASYNC', sum(isinstance(g, hs.BudgetExceededError) for g in got))\naexp.summary()",
        "client.chat('gpt-4.1', 'outside any experiment', max_tokens=20)\nclient.close(); sim.stop()\n"
        "df = hs.read_log(client.metering.log_dir)\n"
        "print(df.hs.by('experiment')[['experiment', 'calls', 'cost_usd']].to_string())",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment-kernel")
    log_dir = root / "logs"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells(str(log_dir))]
    path = root / "exp.ipynb"
    nbformat.write(nb, path)
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", "")  # remembers the old value: execute() points it at the venv kernel
    try:
        return execute(path, venv_kernel(root / "jupyter"), timeout=180), log_dir
    finally:
        mp.undo()


def _outputs(cell) -> tuple[str, dict]:
    text, data = [], {}
    for o in cell.outputs:
        if o.output_type == "stream":
            text.append(o.text)
        data.update(o.get("data", {}))
    return "".join(text), data


def test_experiments_cap_tag_and_summarise_in_a_kernel(run):
    nb, log_dir = run
    df = hs.read_log(log_dir)
    caps = {"rag-v2": 4_000_000, "async-v1": 3_000_000}
    for name, cap in caps.items():
        rows = df[df["experiment"] == name]
        assert rows["cost_nanos"].fillna(0).sum() <= cap, name  # zero overshoot
        assert (rows["status"] == "blocked").any() and (rows["status"] == "ok").any(), name
    assert len(df[df["experiment"] == "rag-v2"]) == 25 and len(df[df["experiment"] == "async-v1"]) == 15
    assert df["experiment"].isna().sum() == 1

    text, data = _outputs(nb.cells[1])
    calls, refused, cost = re.search(r"LIVE (\d+) (\d+) ([\d.e-]+)", text).groups()
    rag = df[df["experiment"] == "rag-v2"]
    assert int(calls) == (rag["status"] != "blocked").sum() and int(refused) == (rag["status"] == "blocked").sum()
    assert float(cost) == pytest.approx(rag["cost_usd"].sum(), abs=1e-9)
    assert re.search(r"<Experiment 'rag-v2': \d+ calls, \$0\.0*[1-9]\d{3} of \$0\.004000 \(\d+%\), \d+ refused, done>",
                     data["text/plain"])

    text, data = _outputs(nb.cells[2])
    assert int(re.search(r"ASYNC (\d+)", text).group(1)) == (df[df["experiment"] == "async-v1"]["status"] == "blocked").sum()
    assert "experiment 'async-v1':" in data["text/plain"]
    assert "&#36;" in data["text/html"] and "$" not in data["text/html"]  # MathJax-proof
    assert "gpt-4.1" in data["text/html"]

    by, _ = _outputs(nb.cells[3])
    for name in ("rag-v2", "async-v1", "(none)"):
        assert re.search(rf"^\s*\d+\s+{re.escape(name)}\s+\d+\s+[\d.e-]+\s*$", by, re.M), by
