from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import holysheep_lab as hs
from holysheep_lab.core.money import nanos_to_usd
from holysheep_lab.core.pricing import Price, PriceTable, Usage
from holysheep_lab.errors import ConfigError, UnknownModelError

prices = st.decimals(min_value=0, max_value=200, places=3)
counts = st.integers(min_value=0, max_value=5_000_000)


def test_seed_prices_are_built_in():
    t = PriceTable.default()
    assert (t["gpt-4.1"].input, t["gpt-4.1"].output) == (Decimal(8), Decimal(8))
    assert (t["claude-sonnet-4.5"].input, t["claude-sonnet-4.5"].output) == (Decimal(15), Decimal(15))
    assert t["gemini-2.5-flash"].output == Decimal("2.50")
    assert t["deepseek-v3.2"].input == Decimal("0.42")
    assert {t.source(m) for m in ("gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2")} == {"relay"}
    # The version names the list data (source, version, content sha) and the relay's price list.
    info = t.list_info
    assert info is not None
    assert t.version == f"{info['source']}-{info['source_version']}-{info['sha']}+relay-2026.11"


def test_cached_tokens_charged_once_at_cached_rate():
    p = Price("2.50", "10", "1.25")
    u = Usage(input_tokens=1000, output_tokens=500, cached_input_tokens=400, reasoning_tokens=200)
    # 600 x 2.50 + 400 x 1.25 + 500 x 10 (reasoning is inside the 500) = 7000 per 1M
    assert p.cost_nanos(u) == 7_000_000
    assert nanos_to_usd(p.cost_nanos(u)) == 0.007


def test_cached_rate_falls_back_to_input_rate():
    p = Price("8", "8")
    assert p.cost_nanos(Usage(1000, 0, 1000)) == p.cost_nanos(Usage(1000, 0, 0)) == 8_000_000


@given(prices, prices, st.one_of(st.none(), prices), counts, counts, st.data())
def test_cost_is_exact_and_never_double_counts(pin, pout, pcache, prompt, completion, data):
    cached = data.draw(st.integers(0, prompt))
    reasoning = data.draw(st.integers(0, completion))
    if pcache is not None:
        pcache = min(pcache, pin)  # a cache read above the input is refused (test_config_errors)
    p = Price(pin, pout, pcache)
    u = Usage(prompt, completion, cached, reasoning)
    rate_cache = pcache if pcache is not None else pin
    exact = ((prompt - cached) * pin + cached * rate_cache + completion * pout) * 1000
    assert p.cost_nanos(u) == int(exact.to_integral_value(rounding="ROUND_HALF_EVEN"))
    # reasoning tokens never change the bill: they are part of completion_tokens
    assert p.cost_nanos(Usage(prompt, completion, cached, 0)) == p.cost_nanos(u)
    # the worst case for these token counts bounds the actual cost
    assert p.worst_case_nanos(prompt, completion) >= p.cost_nanos(u)


@given(counts, counts, counts)
def test_costs_add_up_exactly_across_calls(a, b, c):
    p = Price("0.42", "0.42")
    total = sum(p.cost_nanos(Usage(n, 0)) for n in (a, b, c))
    assert total == p.cost_nanos(Usage(a + b + c, 0))  # 420 nanos per token: no rounding dust


def test_lookup_tolerates_prefix_and_date_suffix():
    t = PriceTable.default()
    assert t.price("openai/gpt-4o-2024-08-06") is t["gpt-4o"]


def test_unknown_model_names_model_and_fix():
    with pytest.raises(UnknownModelError) as info:
        PriceTable.default().price("gpt-9-turbo")
    msg = str(info.value)
    assert "gpt-9-turbo" in msg and "hs.Price" in msg and "allow_unpriced" in msg
    assert isinstance(info.value, hs.HolySheepError)


@pytest.mark.parametrize("bad", [-1, "abc", float("nan"), float("inf")])
def test_invalid_prices_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Price(bad, 1)


def test_extend_from_dict_and_files(tmp_path):
    t = PriceTable.coerce({"my-model": {"input": 1, "output": 2}})
    assert t["my-model"].output == Decimal(2) and "gpt-4.1" in t
    assert t.version.startswith("sha-") and t.version != PriceTable.default().version
    toml = tmp_path / "p.toml"
    toml.write_text('[models."local-llm"]\ninput = 0.1\noutput = 0.2\ncached_input = 0.05\n')
    assert PriceTable.coerce(toml)["local-llm"].cached_input == Decimal("0.05")
    js = tmp_path / "p.json"
    js.write_text('{"x": {"input": 3, "output": 4}}')
    assert PriceTable.coerce(str(js))["x"].input == Decimal(3)
    js.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid"):
        PriceTable.coerce(js)
    with pytest.raises(ConfigError, match="needs 'input' and 'output'"):
        PriceTable.coerce({"y": {"in": 1}})


@given(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
def test_nanos_to_usd_rounds_exactly_once(n):
    assert nanos_to_usd(n) == float(Decimal(n) / 1_000_000_000)
