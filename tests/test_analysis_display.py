"""`df.hs` frames display money in $, shares in %, milliseconds and token counts, while their
values stay the exact floats the analysis functions return (compared against those functions)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import holysheep_lab as hs
from holysheep_lab import analysis
from holysheep_lab.client.frames import ReadableFrame, readable

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "calls"


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return hs.read_log(SAMPLE)


def _rows(text: str) -> list[str]:
    return text.splitlines()[1:]


def test_by_model_reads_as_money_and_shares_and_stays_exact(log):
    plain = analysis.by_model(log)
    shown = log.hs.by_model()
    assert isinstance(shown, ReadableFrame) and type(plain) is pd.DataFrame
    pd.testing.assert_frame_equal(shown, plain, check_frame_type=False)  # the same values, bit for bit
    assert (shown == plain).all().all() and shown.equals(plain)
    text = repr(shown)
    top = plain.iloc[0]
    assert f"${top['cost_usd']:,.2f}" in text and f"{top['share'] * 100:.1f}%" in text
    assert f"{top['input_tokens']:,}" in text
    assert not re.search(r"(?<![$\d.,])\d+\.\d{5,}", text), text  # no raw floats left
    assert hs.core.display.format_usd(top["cost_per_call"]) in text  # named by KINDS, not by its name
    html = shown._repr_html_()
    assert html.startswith("<div class='tex2jax_ignore mathjax_ignore'>") and f"${top['cost_usd']:,.2f}" in html
    # Arithmetic and filters work on the exact values and keep the display.
    assert shown["cost_usd"].sum() == plain["cost_usd"].sum()
    big = shown[shown["calls"] > 1000].sort_values("cost_usd").head(3)
    assert isinstance(big, ReadableFrame) and big.column_kinds == {"cost_per_call": "usd"}
    assert "$" in repr(big[["model", "cost_per_call"]])


def test_every_accessor_frame_is_readable_and_equal_to_its_function(log):
    budget = hs.Budget(daily=100, monthly=500, tz="UTC")
    pairs = {
        "daily": (log.hs.daily(tz="UTC"), analysis.daily(log, tz="UTC")),
        "by": (log.hs.by("project"), analysis.by(log, "project")),
        "latency": (log.hs.latency(), analysis.latency(log)),
        "tokens": (log.hs.tokens_per_call(), analysis.tokens_per_call(log)),
        "errors": (log.hs.error_rates(), analysis.error_rates(log)),
        "status": (log.hs.budget_status(budget), analysis.budget_status(log, budget)),
        "forecast": (log.hs.forecast(tz="UTC"), analysis.forecast(log, tz="UTC")),
        "compare": (log.hs.compare_models(["gpt-4.1", "gpt-4o-mini"]), analysis.compare_models(log, ["gpt-4.1", "gpt-4o-mini"])),
    }
    for name, (shown, plain) in pairs.items():
        assert isinstance(shown, ReadableFrame), name
        pd.testing.assert_frame_equal(shown, plain, check_frame_type=False, obj=name)
    fc, plain_fc = pairs["forecast"]
    assert fc.attrs.keys() == plain_fc.attrs.keys() and fc.attrs["month_end"] == plain_fc.attrs["month_end"]
    first = plain_fc.iloc[0]
    line = _rows(repr(fc))[0]
    for col in ("yhat", "lo", "hi"):
        assert hs.core.display.format_usd(first[col]) in line, line
    lat = _rows(repr(pairs["latency"][0]))[0]
    assert re.search(r"\d ms", lat) and f"{pairs['latency'][1].iloc[0]['p95_ms']:,.0f} ms" in lat
    status = repr(pairs["status"][0])
    assert "$100.00" in status and "$500.00" in status and "%" in status
    assert re.search(r"\d+\.\d%", _rows(repr(pairs["tokens"][0]))[0])  # cached_share


def test_to_parquet_and_back_is_the_plain_frame(log, tmp_path):
    shown = log.hs.by_model()
    shown.to_parquet(tmp_path / "m.parquet")
    back = pd.read_parquet(tmp_path / "m.parquet")
    assert type(back) is pd.DataFrame
    pd.testing.assert_frame_equal(back, analysis.by_model(log))
    assert shown.to_csv(index=False) == analysis.by_model(log).to_csv(index=False)  # data exports stay raw


def test_long_frames_truncate_like_pandas(log):
    daily = log.hs.daily(by="model", tz="UTC")
    assert len(daily) > pd.get_option("display.max_rows")
    text = repr(daily)
    assert "..." in text and len(text.splitlines()) < 30 and f"[{len(daily)} rows x" in text


def test_readable_refuses_an_unknown_kind():
    with pytest.raises(hs.ConfigError, match="Unknown column kind"):
        readable(pd.DataFrame({"x": [1.0]}), {"x": "euros"})
    assert readable(pd.DataFrame({"x": [0.25]}), {"x": "share"}).to_string() != repr(
        readable(pd.DataFrame({"x": [0.25]}), {"x": "share"}))  # to_string is pandas' own
    assert "25.0%" in repr(readable(pd.DataFrame({"x": [0.25]}), {"x": "share"}))
