"""`holysheep-lab prices list | search | show`: what a terminal shows of the price table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from holysheep_lab.cli import main
from holysheep_lab.core.pricing import PriceTable

SEED = {"gpt-4.1": ("8", "8"), "claude-sonnet-4.5": ("15", "15"), "gemini-2.5-flash": ("2.5", "2.5"),
        "deepseek-v3.2": ("0.42", "0.42")}


def rows(out: str) -> list[list[str]]:
    """The table's data lines, split on runs of 2+ spaces (the column gaps)."""
    import re

    lines = out.splitlines()
    assert lines[0].split()[:3] == ["MODEL", "PROVIDER", "SOURCE"], out
    body = lines[1: lines.index("")]
    return [re.split(r"\s{2,}", line.strip()) for line in body]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["prices", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_relay_shows_the_seeds_four_prices(capsys):
    code, out, _ = run(capsys, "list", "--source", "relay")
    assert code == 0
    got = {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows(out)}
    assert set(got) == set(SEED)
    providers = {"gpt-4.1": "openai", "claude-sonnet-4.5": "anthropic", "gemini-2.5-flash": "google",
                 "deepseek-v3.2": "deepseek"}
    for model, (inp, outp) in SEED.items():
        # No cached or cache-write rate: both billed (and shown) as input.
        assert got[model] == (providers[model], "relay", inp, outp, inp)
    info = PriceTable.default().list_info
    assert "4 models" in out and f"{info['source']} {info['source_version']} of {info['generated']}" in out
    assert PriceTable.default().version in out


def test_list_filters_by_provider_and_by_list_source(capsys):
    _, out, _ = run(capsys, "list", "--provider", "Anthropic")
    listed = rows(out)
    assert listed and {r[1] for r in listed} == {"anthropic"}
    assert listed[0][:3] == ["claude-sonnet-4.5", "anthropic", "relay"]  # the relay's price first
    models = [r[0] for r in listed]
    assert "claude-3-7-sonnet" in models or "claude-3-7-sonnet-latest" in models
    _, out, _ = run(capsys, "list", "--source", "list")
    listed = rows(out)
    assert "relay" not in {r[2] for r in listed} and len(listed) > 1000
    assert "gpt-4.1" not in [r[0] for r in listed]  # priced by the relay, on top of its list price
    names = sum(1 for n in PriceTable.default() if PriceTable.default().source(n) != "relay")
    assert f"({names} names)" in out


def test_search_matches_any_name_of_a_model(capsys):
    code, out, _ = run(capsys, "search", "SONNET-4-5")
    assert code == 0
    listed = rows(out)
    models = [r[0] for r in listed]
    # claude-sonnet-4.5 is also named claude-sonnet-4-5: found through that name.
    assert models[0] == "claude-sonnet-4.5" and "gpt-4.1" not in models
    table = PriceTable.default()
    for model in (m for m in models if not m.endswith("…")):
        entry = table.entry(model)
        assert any("sonnet-4-5" in n.lower() for n in table if table.entry(n) is entry), model
    code, out, err = run(capsys, "search", "no-model-is-called-this")
    assert code == 1 and out == "" and "no model matches" in err


def test_show_gives_tiers_cache_rates_and_source(capsys):
    code, out, _ = run(capsys, "show", "gemini-2.5-pro")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "gemini-2.5-pro"
    assert any(line.split() == ["source", "genai-prices", "0.2.3", "(list", "prices,", "data", "of",
                                f"{PriceTable.default().list_info['generated']})"] for line in lines)
    base = next(line for line in lines if line.split()[:2] == ["*", "always"])
    assert base.split()[2:] == ["1.25", "10", "0.125", "1.25", "65,536"]
    tier = next(line for line in lines if "prompt >200k" in line)
    assert tier.split()[2:] == ["2.5", "15", "0.25", "2.5"]  # the whole request at the tier's rates
    assert "whole request" in out

    _, out, _ = run(capsys, "show", "openai/gpt-4.1")
    assert out.splitlines()[0] == "openai/gpt-4.1  (priced as gpt-4.1)"
    assert "relay (the HolySheep relay's own price list" in out and "gpt-4.1-2025-04-14" in out
    list_price = next(line for line in out.splitlines() if line.split()[:2] == ["list", "price"])
    assert "input 2, output 8" in list_price  # the list price beneath the relay's 8 / 8


def test_show_a_price_history_from_a_price_file(tmp_path, capsys):
    file = tmp_path / "team-prices.toml"
    file.write_text('"team-model" = [\n'
                    '  {input = 1, output = 2, effective_from = 2026-01-01},\n'
                    '  {input = 3, output = 4, cache_write = 3.75, cache_write_1h = 6, effective_from = 2099-01-01},\n'
                    ']\n')
    code, out, _ = run(capsys, "show", "team-model", "--prices", str(file))
    assert code == 0
    lines = out.splitlines()
    assert "file team-prices.toml" in out
    first = next(line for line in lines if "from 2026-01-01" in line)
    later = next(line for line in lines if "from 2099-01-01" in line)
    assert first.split()[:3] == ["*", "from", "2026-01-01"] and first.split()[3:7] == ["1", "2", "1", "1"]
    assert later.split()[:2] == ["from", "2099-01-01"] and later.split()[2:6] == ["3", "4", "3", "3.75/6"]
    code, out, _ = run(capsys, "list", "--source", "user", "--prices", str(file))
    (only,) = rows(out)
    assert only[:3] == ["team-model", "-", "file team-prices.toml"] and "2 prices" in only[-1]


def test_show_an_unknown_model_says_how_to_find_one(capsys):
    code, out, err = run(capsys, "show", "sonnet")
    assert code == 2 and out == ""
    assert err.startswith("holysheep-lab: no price for 'sonnet'") and "claude-sonnet-4.5" in err
    code, _, err = run(capsys, "show", "zzz-model")
    assert code == 2 and "prices search zzz" in err


def test_the_installed_command_prints_to_a_terminal():
    done = subprocess.run([sys.executable, "-m", "holysheep_lab.cli", "prices", "show", "deepseek-v3.2"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "deepseek-v3.2" and "0.42" in done.stdout


@pytest.mark.parametrize("argv", [["prices"], ["prices", "list", "--source", "elsewhere"]])
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "usage:" in capsys.readouterr().err
