"""What a Price can hold: context tiers, cache reads and writes (by TTL), effective dates and
daily windows; the worst case bounds every usage it admits."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from zoneinfo import ZoneInfo

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holysheep_lab.core.pricing import Price, PriceTable, Tier, Usage
from holysheep_lab.errors import ConfigError, ResponseFormatError, UnknownModelError

LIST = PriceTable.default(relay=False)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


# -- context tiers ----------------------------------------------------------------------------

def test_tier_boundary_is_above_not_at_the_threshold():
    p = LIST.price("gemini-2.5-pro", at=NOW)  # $1.25/$10 up to 200k prompt tokens, $2.50/$15 above
    assert p.tiers and p.tiers[0].above == 200_000
    assert p.cost_nanos(Usage(200_000, 1000)) == (200_000 * 1250 + 1000 * 10_000)
    # one token more: the whole request, output too, at the tier's rates
    assert p.cost_nanos(Usage(200_001, 1000)) == (200_001 * 2500 + 1000 * 15_000)
    # cached reads follow the tier too ($0.125 -> $0.25)
    assert p.cost_nanos(Usage(200_001, 0, 100_000)) == 100_001 * 2500 + 100_000 * 250
    assert p.worst_case_nanos(200_000, 1000) == p.cost_nanos(Usage(200_000, 1000))
    assert p.worst_case_nanos(200_001, 1000) == p.cost_nanos(Usage(200_001, 1000))


def test_the_issues_300k_prompt_costs_the_tier_price_and_the_guard_sees_it():
    p = LIST.price("gemini-2.5-pro", at=NOW)
    cost = p.cost_nanos(Usage(300_000, 1000))
    assert cost == 765_000_000  # $0.765, not the flat table's $0.385
    assert p.worst_case_nanos(300_000, 1000) >= cost
    assert p.worst_case_nanos(300_000, 1000) > Price("1.25", "10").worst_case_nanos(300_000, 1000)


def test_untiered_rates_hold_in_every_tier_and_unset_ones_fall_back():
    p = Price("1", "2", "0.5", cache_write="1.5", tiers=[Tier(100, input="10"), Tier(1000, output="40")])
    # above 100: input 10, output base 2, cached base 0.5, writes base 1.5
    assert p.cost_nanos(Usage(101, 1, 1, 0, None, 1)) == 99 * 10_000 + 1 * 500 + 1 * 1500 + 1 * 2000
    # above 1000: the highest tier crossed wins; its unset rates are the base's, not tier 1's
    assert p.cost_nanos(Usage(1001, 1)) == 1001 * 1000 + 40_000
    q = Price("1", "2", tiers=[{"above": 10, "input": "3"}])  # cached/writes unset: the active input rate
    assert q.cost_nanos(Usage(11, 0, 5, 0, None, 6)) == 11 * 3000
    assert q.tiers == (Tier(10, input="3"),)


# -- cache reads and writes, in the Anthropic shape ------------------------------------------

def _anthropic_body(inp: int, out: int, read: int, write_5m: int, write_1h: int) -> dict:
    return {"model": "claude-sonnet-4-5", "usage": {
        "input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h}}}


@pytest.mark.parametrize("counts", [(1000, 500, 2000, 2000, 1000), (1000, 10, 199_500, 0, 0),
                                    (1, 1, 0, 150_000, 50_000), (0, 0, 0, 0, 0)])
def test_anthropic_counts_exclude_cache_reads_and_writes(counts):
    inp, out, read, w5, w1 = counts
    u = Usage.from_anthropic(inp, out, read, w5 + w1, ephemeral_1h_input_tokens=w1)
    assert u.input_tokens == inp + read + w5 + w1  # here the input includes every prompt token
    assert (u.cached_input_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == (read, w5 + w1, w1)
    p = LIST.price("claude-sonnet-4-5", at=NOW)  # $3 in, $0.30 read, $3.75 5m write, $6 1h write, $15 out
    calc = genai_prices.extract_usage(_anthropic_body(*counts), provider_id="anthropic").calc_price(
        genai_request_timestamp=NOW)
    assert p.cost_nanos(u) == int((calc.total_price * 10**9).to_integral_value(ROUND_HALF_EVEN))


def test_cache_write_arithmetic_by_ttl():
    p = LIST.price("claude-sonnet-4-5", at=NOW)
    u = Usage.from_anthropic(1000, 500, 2000, 3000, ephemeral_1h_input_tokens=1000)
    # 1000 x 3 + 2000 x 0.30 + 2000 x 3.75 + 1000 x 6 + 500 x 15 = 24,600 per 1M
    assert p.cost_nanos(u) == 24_600_000
    # no write prices: writes cost the input rate; no 1h price: 1h writes cost the write rate
    assert Price("3", "15").cost_nanos(u) == Price("3", "15").cost_nanos(Usage(6000, 500))
    no_1h = Price("3", "15", "0.3", cache_write="3.75")
    assert no_1h.cost_nanos(u) == 1000 * 3000 + 2000 * 300 + 3000 * 3750 + 500 * 15_000
    # a prompt over 200k counting its cache reads crosses the long-context tier ($6 / $0.60 / $22.50)
    big = Usage.from_anthropic(1000, 10, 199_500)
    assert p.cost_nanos(big) == 1000 * 6000 + 199_500 * 600 + 10 * 22_500


@pytest.mark.parametrize("parts", [
    dict(input_tokens=10, cached_input_tokens=5, cache_write_tokens=6),
    dict(input_tokens=10, cache_write_tokens=5, cache_write_1h_tokens=6),
    dict(input_tokens=-1),
    dict(input_tokens=5, output_tokens=3, reasoning_tokens=4),
    dict(input_tokens=5, cached_input_tokens=-1),
])
def test_impossible_usage_is_refused(parts):
    with pytest.raises(ResponseFormatError, match="Impossible usage"):
        Usage(**parts)


# -- dated prices -------------------------------------------------------------------------------

def test_dated_price_switches_at_midnight_in_the_logs_zone():
    tokyo = ZoneInfo("Asia/Tokyo")
    t = PriceTable({"m": [Price("1", "2"), Price("3", "4", effective_from=datetime(2026, 1, 1, tzinfo=tokyo))]})
    u = Usage(1_000_000, 0)
    before = datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=tokyo)
    at = datetime(2026, 1, 1, tzinfo=tokyo)
    assert t.cost_nanos("m", u, at=before) == 1_000_000_000
    assert t.cost_nanos("m", u, at=at) == 3_000_000_000
    # the same instants in UTC (15:00 the day before)
    assert t.price("m", at=datetime(2025, 12, 31, 14, 59, 59, tzinfo=UTC)).input == 1
    assert t.price("m", at=datetime(2025, 12, 31, 15, tzinfo=UTC)).input == 3
    assert t.price("m").input == 3 and t["m"].input == 3  # now


def test_a_date_is_midnight_utc_and_the_last_price_in_effect_wins():
    t = PriceTable({"m": [Price(1, 1), Price(2, 2, effective_from=date(2026, 3, 1)),
                          Price(5, 5, effective_from="2026-02-01")]})  # listed out of order: order decides
    assert t.price("m", at=datetime(2026, 1, 31, 23, 59, tzinfo=UTC)).input == 1
    assert t.price("m", at=datetime(2026, 2, 1, tzinfo=UTC)).input == 5
    assert t.price("m", at=datetime(2026, 3, 1, tzinfo=UTC)).input == 5  # the later-listed one wins


def test_no_price_in_effect_is_refused():
    t = PriceTable({"later": Price(1, 1, effective_from=datetime.now(UTC) + timedelta(days=30))})
    with pytest.raises(UnknownModelError, match="later"):
        t.price("later")
    with pytest.raises(KeyError):
        t["later"]
    assert t.price("later", at=datetime.now(UTC) + timedelta(days=31)).input == 1


def test_list_prices_change_on_their_dates():
    # genai-prices: o3 went from $10/$40 to $2/$8 on 2025-06-10 (UTC)
    old = LIST.price("o3", at=datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC))
    new = LIST.price("o3", at=datetime(2025, 6, 10, tzinfo=UTC))
    assert (old.input, old.output) == (10, 40) and (new.input, new.output) == (2, 8)
    assert new.effective_from == datetime(2025, 6, 10, tzinfo=UTC)
    assert LIST.entry("o3").history == (old, new)


def test_peak_hours_are_a_daily_window():
    p = Price(1, 1, time_of_day=("22:00", "02:00"))
    assert [p.in_effect(datetime(2026, 1, 1, h, tzinfo=UTC)) for h in (21, 22, 23, 0, 1, 2)] == \
        [False, True, True, True, True, False]
    assert Price(1, 1, time_of_day=(time(9, tzinfo=ZoneInfo("Asia/Tokyo")), "01:00")).time_of_day == (time(0), time(1))
    t = PriceTable({"m": [Price(1, 1), Price(2, 2, time_of_day=("01:00", "04:00"))]})
    assert t.price("m", at=datetime(2026, 1, 1, 3, 59, 59, tzinfo=UTC)).input == 2
    assert t.price("m", at=datetime(2026, 1, 1, 4, tzinfo=UTC)).input == 1


# -- constructor, files --------------------------------------------------------------------------

def test_the_old_keywords_still_work_and_the_new_ones_are_validated():
    p = Price(input="2.50", output=10, cached_input="1.25", max_output=16_384)
    assert (p.input, p.output, p.cached_input, p.max_output) == (Decimal("2.5"), 10, Decimal("1.25"), 16_384)
    assert p == Price("2.5", "10", "1.25", 16_384) and hash(p) == hash(Price("2.5", "10", "1.25", 16_384))
    for bad in (
        dict(tiers=[Tier(10), Tier(10)]), dict(tiers={"above": 1}), dict(tiers=[{"above": 1, "inptu": 2}]),
        dict(effective_from=datetime(2026, 1, 1)),
        dict(effective_from="soon"), dict(time_of_day=("01:00",)), dict(time_of_day=("01:00", "01:00")),
        dict(time_of_day=("1am", "2am")), dict(cache_write=-1), dict(cache_write_1h="x"),
    ):
        with pytest.raises(ConfigError):
            Price(1, 1, **bad)
    for above in (-1, True, 1.5):
        with pytest.raises(ConfigError):
            Tier(above)


def test_as_dict_round_trips_through_a_price_file(tmp_path):
    p = Price("1.25", "10", "0.125", 65_536, cache_write="1.5", cache_write_1h="2",
              tiers=[Tier(200_000, "2.5", "15", "0.25")], effective_from=date(2026, 2, 1),
              time_of_day=("01:00", "04:00"))
    t = PriceTable().extend({"x": p.as_dict()})
    assert t.price("x", at=datetime(2026, 2, 2, 2, tzinfo=UTC)) == p
    with pytest.raises(UnknownModelError):
        t.price("x", at=datetime(2026, 2, 2, 5, tzinfo=UTC))  # outside its daily window: no price
    toml = tmp_path / "p.toml"
    toml.write_text(
        '[[models."m"]]\ninput = 1\noutput = 2\n'
        '[[models."m"]]\ninput = 3\noutput = 4\neffective_from = 2026-01-01\n'
        'tiers = [{above = 1000, input = 6}]\n'
    )
    t = PriceTable.from_file(toml)
    assert t.source("m") == "file p.toml"
    assert t.price("m", at=datetime(2025, 12, 31, tzinfo=UTC)).input == 1
    late = t.price("m", at=datetime(2026, 1, 1, tzinfo=UTC))
    assert late.input == 3 and late.tiers == (Tier(1000, input=6),)
    assert late.effective_from == datetime(2026, 1, 1, tzinfo=UTC)


# -- the worst case bounds every usage it admits --------------------------------------------------

rates = st.decimals(min_value=0, max_value=200, places=4)
maybe = st.one_of(st.none(), rates)


@st.composite
def prices(draw):
    # Any valid price: a cache read never dearer than the input it replaces (in every tier).
    base_in, base_cached = draw(rates), draw(maybe)
    if base_cached is not None:
        base_cached = min(base_cached, base_in)
    thresholds = draw(st.lists(st.integers(0, 2_000_000), max_size=3, unique=True))
    tiers = []
    for a in thresholds:
        t_in, t_cached = draw(maybe), draw(maybe)
        effective_in = t_in if t_in is not None else base_in
        effective_cached = t_cached if t_cached is not None else base_cached
        if effective_cached is not None and effective_cached > effective_in:
            t_cached = effective_in
        tiers.append(Tier(a, t_in, draw(maybe), t_cached, draw(maybe), draw(maybe)))
    return Price(base_in, draw(rates), base_cached, cache_write=draw(maybe), cache_write_1h=draw(maybe),
                 tiers=tiers)


@st.composite
def bounded_usage(draw):
    in_bound, out_bound = draw(st.integers(0, 3_000_000)), draw(st.integers(0, 200_000))
    prompt = draw(st.integers(0, in_bound))
    cached = draw(st.integers(0, prompt))
    write = draw(st.integers(0, prompt - cached))
    output = draw(st.integers(0, out_bound))
    usage = Usage(prompt, output, cached, draw(st.integers(0, output)), None, write, draw(st.integers(0, write)))
    return in_bound, out_bound, usage


def _reference_nanos(p: Price, u: Usage) -> int:
    """The formula written out in Decimal, independently of Price's integer maths."""
    active = None
    for t in sorted(p.tiers, key=lambda t: t.above):
        if u.input_tokens > t.above:
            active = t

    def rate(name):
        v = getattr(active, name) if active is not None else None
        return v if v is not None else getattr(p, name)

    inp, out = rate("input"), rate("output")
    cached = rate("cached_input") if rate("cached_input") is not None else inp
    write = rate("cache_write") if rate("cache_write") is not None else inp
    write_1h = rate("cache_write_1h") if rate("cache_write_1h") is not None else write
    with localcontext() as ctx:
        ctx.prec = 60
        per_m = ((u.input_tokens - u.cached_input_tokens - u.cache_write_tokens) * inp + u.cached_input_tokens * cached
                 + (u.cache_write_tokens - u.cache_write_1h_tokens) * write + u.cache_write_1h_tokens * write_1h
                 + u.output_tokens * out)
        return int((per_m * 1000).to_integral_value(ROUND_HALF_EVEN))


@settings(max_examples=400)
@given(prices(), bounded_usage())
def test_worst_case_is_never_below_the_cost_of_any_admitted_usage(p, bounds):
    in_bound, out_bound, usage = bounds
    cost = p.cost_nanos(usage)
    assert cost == _reference_nanos(p, usage)
    assert p.worst_case_nanos(in_bound, out_bound) >= cost


@settings(max_examples=300)
@given(st.sampled_from(sorted(LIST)), bounded_usage(), st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)))
def test_worst_case_bounds_the_cost_for_every_listed_model(name, bounds, at):
    in_bound, out_bound, usage = bounds
    p = LIST.price(name, at=at)
    assert p.worst_case_nanos(in_bound, out_bound) >= p.cost_nanos(usage) == _reference_nanos(p, usage)
