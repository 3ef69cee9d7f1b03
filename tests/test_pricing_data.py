"""The list-price database (core/prices.json) against the installed genai-prices, the relay's
prices on top of it, strict name resolution and the table as a read-only Mapping."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import genai_prices
import pytest

from holysheep_lab.core.pricing import Price, PriceTable, Usage
from holysheep_lab.errors import ConfigError, UnknownModelError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "holysheep_lab" / "core" / "prices.json"


def _generator():
    spec = importlib.util.spec_from_file_location("make_prices", ROOT / "tools" / "make_prices.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed():
    return json.loads(DATA.read_text())


@pytest.fixture(scope="module")
def lst():
    return PriceTable.default(relay=False)


def test_committed_file_is_what_the_installed_genai_prices_generates(committed):
    # Stale data fails here: run `make prices` after upgrading genai-prices, and commit.
    fresh = _generator().build()
    assert committed["source"] == "genai-prices"
    assert committed["source_version"] == fresh["source_version"] == genai_prices.__version__
    assert committed["sha"] == fresh["sha"]
    assert committed["histories"] == fresh["histories"] and committed["models"] == fresh["models"]
    datetime.strptime(committed["generated"], "%Y-%m-%d")


def _genai_nanos(name: str, provider: str, usage: Usage, ts: datetime) -> int:
    gp_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens)
    if name.startswith(provider + "/"):
        calc = genai_prices.calc_price(gp_usage, name[len(provider) + 1:], provider_id=provider,
                                       genai_request_timestamp=ts)
    else:
        calc = genai_prices.calc_price(gp_usage, name, genai_request_timestamp=ts)
    return int((calc.total_price * 1_000_000_000).to_integral_value(ROUND_HALF_EVEN))


def _usage(rng: random.Random, tier_edge: int | None) -> Usage:
    prompt = rng.choice([0, 1, 999, 123_457, 1_000_003]) if tier_edge is None else \
        rng.choice([tier_edge, tier_edge + 1, tier_edge * 2 + 7])
    cached = rng.randint(0, prompt)
    write = rng.randint(0, prompt - cached)
    output = rng.choice([0, 1, 7_777, 65_536])
    return Usage(prompt, output, cached, rng.randint(0, output), None, write, rng.randint(0, write))


def test_costs_match_genai_prices_calc_price_on_a_sample(committed, lst):
    rng = random.Random(11)
    names = sorted(lst)
    # Every 9th name, plus the seed's models and the examples, at list price.
    sample = set(names[::9]) | {"gpt-4.1", "claude-sonnet-4.5", "claude-sonnet-4-5", "gemini-2.5-flash",
                                "deepseek-v3.2", "gemini-2.5-pro", "gpt-4o", "gpt-4o-2024-05-13",
                                "deepseek-v4-flash", "o3", "azure/gpt-4.1"}
    starts = sorted({h[0] for hist in committed["histories"] for h in hist if h[0]})
    times = [datetime(2026, 12, 1, 12, tzinfo=UTC), datetime(2024, 3, 1, 2, 30, tzinfo=UTC),
             datetime(2026, 1, 1, 8, tzinfo=UTC)]
    times += [datetime.fromisoformat(s).replace(tzinfo=UTC) + d for s in starts[::7]
              for d in (timedelta(0), -timedelta(microseconds=1))]
    checked = 0
    for name in sorted(sample):
        entry = lst.entry(name)
        edge = next((t.above for p in entry.history for t in p.tiers), None)
        for ts in rng.sample(times, 4):
            usage = _usage(rng, edge)
            ours = lst.price(name, at=ts).cost_nanos(usage)
            assert ours == _genai_nanos(name, entry.provider or "", usage, ts), (name, ts, usage)
            checked += 1
    assert checked >= 4 * 450


def test_every_dated_or_peak_history_matches_genai_prices_at_its_switch(committed, lst):
    # Each model whose price changes over time, just before and at each change.
    rng = random.Random(3)
    rows = [m for m in committed["models"] if len(committed["histories"][m[2]]) > 1]
    assert len(rows) > 200
    for provider, _model, hidx, names, *_ in rows:
        name = names[0]
        for start, window, _rates in committed["histories"][hidx][1:]:
            if start:
                t0 = datetime.fromisoformat(start).replace(tzinfo=UTC)
                moments = [t0 - timedelta(microseconds=1), t0]
            else:  # a daily window: both of its edges
                moments = []
                for edge in window:
                    h, m, s = (int(x) for x in edge.split(":"))
                    t0 = datetime(2026, 6, 1, h, m, s, tzinfo=UTC)
                    moments += [t0 - timedelta(microseconds=1), t0]
            for ts in moments:
                usage = _usage(rng, None)
                assert lst.cost_nanos(name, usage, at=ts) == _genai_nanos(name, provider, usage, ts), (name, ts)


def test_the_seeds_four_relay_prices_are_unchanged_and_on_top():
    t = PriceTable.default()
    seed = {"gpt-4.1": ("8", "8"), "claude-sonnet-4.5": ("15", "15"), "gemini-2.5-flash": ("2.50", "2.50"),
            "deepseek-v3.2": ("0.42", "0.42")}
    one_m = Usage(1_000_000, 1_000_000)
    for model, (pin, pout) in seed.items():
        p = t.price(model)
        assert (p.input, p.output, p.cached_input) == (Decimal(pin), Decimal(pout), None)
        assert t.source(model) == "relay" and t[model] is p
        assert p.cost_nanos(one_m) == int((Decimal(pin) + Decimal(pout)) * 10**9)
        # ... and cached reads are not discounted: the relay bills a flat rate
        assert p.cost_nanos(Usage(1000, 0, 1000)) == p.cost_nanos(Usage(1000, 0, 0))
        # the list price of the same model is there underneath, and differs
        assert PriceTable.default(relay=False).source(model).startswith("genai-prices ")
        assert PriceTable.default(relay=False).price(model) != p


def test_relay_prices_cover_the_same_models_other_names_not_other_sellers():
    t = PriceTable.default()
    relay = t.price("gpt-4.1")
    # genai-prices: gpt-4.1-2025-04-14 is the same model as gpt-4.1; openai/ names its vendor
    for name in ("gpt-4.1-2025-04-14", "openai/gpt-4.1", "openai/gpt-4.1-2025-04-14", "GPT-4.1"):
        assert t.price(name) is relay and t.source(name) == "relay"
    assert t.price("claude-sonnet-4-5-20250929") is t.price("claude-sonnet-4.5")
    # Azure sells gpt-4.1 at its own (list) price: not the relay's
    assert t.source("azure/gpt-4.1").startswith("genai-prices ")
    assert t.price("azure/gpt-4.1").input == Decimal(2)


def test_dated_snapshots_get_their_own_price_or_are_refused(lst):
    # The example: gpt-4o-2024-05-13 is $5/$15, not gpt-4o's $2.50/$10.
    old = lst.price("gpt-4o-2024-05-13")
    assert (old.input, old.output) == (Decimal(5), Decimal(15))
    assert lst.price("gpt-4o").input == Decimal("2.5")
    assert lst.price("gpt-4o-2024-08-06") is lst.price("gpt-4o")  # the data says: same model
    assert lst.resolve("gpt-4o-20240806") == "gpt-4o-2024-08-06"  # compact spelling of that id
    for unknown in ("gpt-4o-2025-01-01", "gpt-4o-20991231", "deepseek-v3.2-2025-01-01"):
        with pytest.raises(UnknownModelError):
            lst.price(unknown)
    # A base whose dated ids genai-prices prices as the same model (a prefix rule) takes any date.
    assert lst.resolve("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert lst.resolve("claude-sonnet-4-5-2026-01-01") == "claude-sonnet-4-5"


def test_provider_prefixes_resolve_only_to_that_providers_price(lst):
    assert lst.resolve("openai/gpt-4o") == "openai/gpt-4o"
    assert lst.price("openai/gpt-4o") is lst.price("gpt-4o")
    assert lst.resolve("gemini/gemini-2.5-pro") == "gemini-2.5-pro"  # LiteLLM's spelling of google
    for borrowed in ("myrelay/gpt-4o", "anthropic/gpt-4o", "deepseek/gemini-2.5-pro"):
        assert lst.resolve(borrowed) is None
        with pytest.raises(UnknownModelError):
            lst.price(borrowed)
    # a user's own model has no provider: its name must be exact
    t = lst.extend({"my-model": {"input": 1, "output": 2}})
    assert t.resolve("my-model") == "my-model" and t.resolve("vendor/my-model") is None
    assert t.resolve("my-model-2025-01-01") is None


def test_user_prices_on_top_follow_the_models_names_but_not_explicit_ones():
    mine = {"gpt-4o": {"input": 1, "output": 1}, "claude-sonnet-4-5": {"input": 2, "output": 2}}
    t = PriceTable.default().extend(mine)
    assert t.source("gpt-4o") == t.source("gpt-4o-2024-11-20") == t.source("openai/gpt-4o") == "user"
    assert t.price("gpt-4o-2024-11-20").input == Decimal(1)
    assert t.source("gpt-4o-2024-05-13").startswith("genai-prices ")  # another model: untouched
    # the relay's explicitly named claude-sonnet-4.5 stays the relay's
    assert t.source("claude-sonnet-4.5") == "relay" and t.price("claude-sonnet-4-5").input == Decimal(2)
    assert t.price("openai/gpt-4o").input == Decimal(1)  # user entry inherits the list's provider
    assert t.version.startswith("sha-") and t.version != PriceTable.default().version
    assert t.version == PriceTable.default().extend(dict(mine)).version  # a digest: same prices, same version


def test_table_is_a_read_only_mapping(lst):
    t = PriceTable.default()
    names = list(t)
    assert len(names) == len(set(names)) == len(t) > 2000
    assert "gpt-4.1" in t and "gpt-4o-2024-05-13" in t and "gpt-9-turbo" not in t and 42 not in t
    assert isinstance(t["gpt-4o"], Price)
    with pytest.raises(KeyError):
        t["openai/gpt-9"]
    with pytest.raises(KeyError):
        t["GPT-4o"]  # indexing is exact; price() resolves
    with pytest.raises(TypeError):
        t["x"] = Price(1, 1)  # type: ignore[index]
    assert not hasattr(t, "__setitem__") and not hasattr(t, "update")
    assert len(lst) <= len(t) and set(lst) <= set(t)
    assert dict(t.items())["gpt-4.1"] is t["gpt-4.1"]


def test_lookup_times_must_be_aware(lst):
    with pytest.raises(ConfigError, match="timezone-aware"):
        lst.price("gpt-4o", at=datetime(2026, 1, 1))


def test_default_table_loads_lazily_without_pydantic():
    code = (
        "import sys, time; import holysheep_lab as hs; from holysheep_lab.core import pricing; "
        "assert not pricing._DEFAULTS, 'loaded at import'; "
        "t0 = time.perf_counter(); t = hs.PriceTable.default(); dt = time.perf_counter() - t0; "
        "t.price('gpt-4o'); t.price('claude-sonnet-4-5-20250929'); "
        "assert 'pydantic' not in sys.modules and 'genai_prices' not in sys.modules, 'runtime import'; "
        "print(dt)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # The bench measures it (goal <= 0.25 s); here only a gross regression fails on a loaded machine.
    assert float(out.stdout) < 2.0
