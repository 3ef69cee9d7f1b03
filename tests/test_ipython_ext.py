"""`%load_ext holysheep_lab` in a real kernel (nbclient): a one-line summary after each cell
that made calls, rows tagged with the cell's execution count and the notebook's path, and
`%hs_budget` capping the next cell (or, as a cell magic, its own) before sending."""

from __future__ import annotations

import re

import nbformat
import pytest
from test_notebooks import execute, venv_kernel

import holysheep_lab as hs

NOTEBOOK_PATH = "work/rag-experiments.ipynb"


def cells(log_dir: str) -> list[str]:
    return [
        # 0: load the extension, start the simulator
        f"%load_ext holysheep_lab\nimport threading\nimport holysheep_lab as hs\n"
        f"sim = hs.Simulator(latency=0.01).start()\nclient = hs.Client(base_url=sim.base_url, log_dir={log_dir!r})",
        # 1: three calls
        "for i in range(3):\n    client.chat('gpt-4.1', f'Summarise ticket {i}.', max_tokens=60)",
        # 2: no calls: no summary
        "x = 1 + 1",
        # 3: arm the next cell
        "%hs_budget 0.002",
        # 4: the capped cell: sync calls until refused, then a batch
        "answered = refused = 0\nfor i in range(30):\n    try:\n"
        "        client.chat('gpt-4.1', f'Summarise ticket {i}.', max_tokens=100)\n        answered += 1\n"
        "    except hs.BudgetExceededError as exc:\n        refused += 1\n        last = exc\n"
        "batch = client.chat_many([f'Ticket {i}' for i in range(10)], 'gpt-4.1', max_tokens=100, progress=False)\n"
        "print('ANSWERED', answered, 'REFUSED', refused, 'SCOPE', last.scope)",
        # 5: not capped any more (this cell spends past the previous cell's budget)
        "for i in range(5):\n    client.chat('gpt-4.1', f'Summarise ticket {i}.', max_tokens=100)",
        # 6: a thread the cell starts, and top-level await
        "t = threading.Thread(target=client.chat, args=('gpt-4.1', 'from a thread'), kwargs={'max_tokens': 20})\n"
        "t.start(); t.join()\nawait client.achat('gpt-4.1', 'async', max_tokens=20)",
        # 7: the cell magic caps its own cell
        "%%hs_budget 0.0015\nfor i in range(10):\n    try:\n"
        "        client.chat('gpt-4.1', f'Summarise ticket {i}.', max_tokens=100)\n"
        "    except hs.BudgetExceededError:\n        pass",
        # 8: a bad budget is a usage error, not a traceback
        "%hs_budget lots",
        # 9: the answer to "which cell burned the money"
        "client.close(); sim.stop()\ndf = hs.read_log(client.metering.log_dir)\n"
        "print(df.hs.by('notebook_cell')[['notebook_cell', 'calls', 'cost_usd']].to_string())",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ipython-ext")
    log_dir = root / "logs"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells(str(log_dir))]
    nb.cells[8].metadata["tags"] = ["raises-exception"]  # nbclient carries on after it
    path = root / "ext.ipynb"
    nbformat.write(nb, path)
    mp = pytest.MonkeyPatch()
    mp.setenv("JPY_SESSION_NAME", NOTEBOOK_PATH)  # what Jupyter Server sets for a notebook's kernel
    mp.setenv("JUPYTER_PATH", "")  # remembers the old value: execute() points it at the venv kernel
    try:
        executed = execute(path, venv_kernel(root / "jupyter"), timeout=180)
    finally:
        mp.undo()
    return executed, log_dir


def _text(cell) -> str:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type == "error":
            out.append(f"{o.ename}: {o.evalue}")
        else:
            out.append(o.get("data", {}).get("text/plain", ""))
    return "".join(out)


SUMMARY = re.compile(r"holysheep: cell \[(\d+)\] (\d+) calls?, ([\d,]+) tokens, \$([\d.,]+)(?: of \$([\d.]+) budget)?, "
                     r"(\d+) refused")


def test_a_summary_line_after_each_cell_that_made_calls(run):
    nb, log_dir = run
    texts = [_text(c) for c in nb.cells]
    errors = [o for c in nb.cells[:8] for o in c.outputs if o.output_type == "error"]
    assert errors == [], texts
    summaries = {i: SUMMARY.findall(t) for i, t in enumerate(texts)}
    for i in (0, 2, 3):
        assert summaries[i] == [], (i, texts[i])
    for i in (1, 4, 5, 6, 7):
        assert len(summaries[i]) == 1, (i, texts[i])
        cell, _calls, _tokens, _usd, _budget, _refused = summaries[i][0]
        assert int(cell) == nb.cells[i].execution_count
    assert summaries[1][0][1] == "3" and summaries[1][0][5] == "0"
    df = hs.read_log(log_dir)
    # The line's numbers are the log's numbers for that cell.
    for i in (1, 4, 5, 6, 7):
        cell, calls, tokens, usd, _budget, refused = summaries[i][0]
        rows = df[df["notebook_cell"] == int(cell)]
        assert int(calls) == int((rows["status"] != "blocked").sum())
        assert int(refused) == int((rows["status"] == "blocked").sum())
        assert int(tokens.replace(",", "")) == int(rows["input_tokens"].sum() + rows["output_tokens"].sum())
        assert float(usd.replace(",", "")) == pytest.approx(rows["cost_usd"].fillna(0).sum(), abs=5e-5)


def test_rows_carry_the_cell_and_the_notebook_path(run):
    nb, log_dir = run
    df = hs.read_log(log_dir)
    counts = {i: nb.cells[i].execution_count for i in range(len(nb.cells))}
    tagged = df["notebook_cell"].dropna().astype(int)
    assert set(tagged) == {counts[i] for i in (1, 4, 5, 6, 7)}
    assert len(tagged) == len(df)  # every call was made in a cell
    assert set(df["notebook_path"]) == {NOTEBOOK_PATH}
    # The thread and the awaited call of cell 6 are that cell's.
    assert len(df[df["notebook_cell"] == counts[6]]) == 2
    by = _text(nb.cells[9])
    for i in (1, 4, 5, 6, 7):
        assert re.search(rf"^\s*\d+\s+{counts[i]}\s+\d+\s+[\d.e-]+\s*$", by, re.M), by


def test_hs_budget_caps_the_next_cell_only(run):
    nb, log_dir = run
    assert "the next cell may spend up to $0.0020" in _text(nb.cells[3])
    out = _text(nb.cells[4])
    answered, refused, scope = re.search(r"ANSWERED (\d+) REFUSED (\d+) SCOPE (\S+)", out).groups()
    cell4 = nb.cells[4].execution_count
    assert int(answered) >= 1 and int(refused) >= 1 and scope == f"cell:{cell4}"
    assert "of $0.002000 budget" in out  # the one money rule: four significant digits under $1
    df = hs.read_log(log_dir)
    capped = df[df["notebook_cell"] == cell4]
    assert capped["cost_nanos"].fillna(0).sum() <= 2_000_000  # zero overshoot, batch included
    assert (capped["status"] == "blocked").sum() >= int(refused) + 1  # the batch was refused too
    # The next cell has no cap: it spends what the capped one could not.
    after = df[df["notebook_cell"] == nb.cells[5].execution_count]
    assert (after["status"] == "ok").sum() == 5
    magic = df[df["notebook_cell"] == nb.cells[7].execution_count]
    assert magic["cost_nanos"].fillna(0).sum() <= 1_500_000 and (magic["status"] == "blocked").any()
    assert "of $0.001500 budget" in _text(nb.cells[7])
    assert "UsageError" in _text(nb.cells[8]) and "%hs_budget 0.25" in _text(nb.cells[8])


def test_load_twice_and_unload_in_a_shell(tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    try:
        shell.run_line_magic("load_ext", "holysheep_lab")
        hs.load_ipython_extension(shell)  # a second load (say, as holysheep_lab.ipython) changes nothing
        assert len([cb for cb in shell.events.callbacks["post_run_cell"] if "CellMeter" in repr(cb)]) == 1
        with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=tmp_path / "logs") as client:
            shell.user_ns["client"] = client
            shell.run_cell("client.chat('gpt-4.1', 'hi', max_tokens=10)", store_history=True)
            assert re.search(r"holysheep: cell \[\d+\] 1 call, \d+ tokens, \$0\.0*[1-9]\d{3}, 0 refused", capsys.readouterr().out)
            shell.run_line_magic("unload_ext", "holysheep_lab")
            assert "hs_budget" not in shell.magics_manager.magics["line"]
            shell.run_cell("client.chat('gpt-4.1', 'hi again', max_tokens=10)", store_history=True)
            assert "holysheep:" not in capsys.readouterr().out
        cells = hs.read_log(tmp_path / "logs")["notebook_cell"]
        assert cells.iloc[0] == 1 and cells.isna().iloc[1]  # the call after unloading is untagged
    finally:
        shell.clear_instance()
