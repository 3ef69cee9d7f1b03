"""The command line, run in-process against the built-in simulator: demo, report, compact, errors."""

from __future__ import annotations

import json
import re

import pyarrow.compute as pc

from holysheep_lab.cli import main
from holysheep_lab.log import read_table


def test_demo_answers_refuses_and_logs(tmp_path, capsys):
    log = tmp_path / "demo-logs"
    assert main(["demo", "--calls", "40", "--log-dir", str(log), "--budget", "0.02"]) == 0
    out = capsys.readouterr().out
    counts = re.search(r"(\d+) calls: (\d+) answered \((\d+) retries.*\), (\d+) refused before sending, "
                       r"(\d+) failed after retries", out)
    assert counts is not None, out
    total, answered, _retries, refused, failed = map(int, counts.groups())
    assert total == 40 and answered > 0 and refused > 0 and answered + refused + failed == total
    assert "alert: " in out  # the small project budget crosses its first level
    report = json.loads(out[out.index("{"):])
    assert report["total_requests"] == answered + 1  # the batch's answers and the streamed call
    table = read_table(log, columns=["status"])
    statuses = table["status"].to_pylist()
    assert statuses.count("blocked") == refused
    assert pc.sum(pc.equal(table["status"], "ok")).as_py() == answered + 1


def test_report_prints_the_model_table_or_writes_html(tmp_path, capsys):
    log = tmp_path / "logs"
    assert main(["demo", "--calls", "12", "--log-dir", str(log)]) == 0
    capsys.readouterr()
    assert main(["report", str(log)]) == 0
    table = capsys.readouterr().out
    assert table.split()[:3] == ["model", "calls", "cost_usd"] and "gpt-4.1" in table
    page = tmp_path / "spend.html"
    assert main(["report", str(log), "--html", str(page), "--title", "Demo <spend>"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {page}"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "Demo &lt;spend&gt;" in text


def test_compact_rolls_the_journals(tmp_path, capsys):
    log = tmp_path / "logs"
    assert main(["demo", "--calls", "8", "--log-dir", str(log)]) == 0
    rows = read_table(log).num_rows
    capsys.readouterr()
    assert main(["compact", str(log)]) == 0
    assert capsys.readouterr().out.strip()
    assert read_table(log).num_rows == rows


def test_a_library_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("holysheep-lab: ") and "does not exist" in err and "Traceback" not in err
