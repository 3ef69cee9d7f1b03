"""Pricing: load time of `PriceTable.default()` (goal <= 0.25 s) in fresh interpreters, and the
per-call cost of `Price.cost_nanos` and of a table lookup plus cost.
Run: .venv/bin/python bench/bench_pricing.py

Baselines in the same run: the previous flat formula (Decimal maths, as before issue 11) and,
when installed (dev group), genai-prices' own `calc_price` and its import.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import interleaved, median, save

from holysheep_lab.core.pricing import PriceTable, Usage

RUNS = 15
LOAD = (
    "import time; from holysheep_lab.core.pricing import PriceTable; t0 = time.perf_counter(); "
    "t = PriceTable.default(); t.price('gpt-4o'); print(time.perf_counter() - t0)"
)
GENAI_LOAD = (
    "import time; t0 = time.perf_counter(); import genai_prices; "
    "genai_prices.calc_price(genai_prices.Usage(input_tokens=1), 'gpt-4o'); print(time.perf_counter() - t0)"
)


def _fresh(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


def _flat_decimal(inp: Decimal, out: Decimal, cached: Decimal, usage: Usage) -> int:
    """The formula before issue 11 (no tiers, no cache writes), for comparison."""
    per_m = ((usage.input_tokens - usage.cached_input_tokens) * inp + usage.cached_input_tokens * cached
             + usage.output_tokens * out)
    return int((per_m * Decimal(1000)).to_integral_value(ROUND_HALF_EVEN))


def main() -> None:
    try:
        import genai_prices
    except ImportError:
        genai_prices = None

    loads = {"holysheep_default_table": [], **({"genai_prices_import_and_first_calc": []} if genai_prices else {})}
    for _ in range(RUNS):
        loads["holysheep_default_table"].append(_fresh(LOAD))
        if genai_prices:
            loads["genai_prices_import_and_first_calc"].append(_fresh(GENAI_LOAD))

    table = PriceTable.default()
    relay = table.price("gpt-4.1")  # integer nanos per token
    # fractional nanos per token: deepseek-v3.2's list price is $0.2288 / $0.3432
    fractional = PriceTable.default(relay=False).price("deepseek-v3.2")
    tiered = table.price("gemini-2.5-pro")
    usage = Usage(1234, 567, 200)
    big = Usage(250_000, 4000, 10_000, 0, None, 5000, 1000)
    now = datetime.now(UTC)
    variants = {
        "cost_nanos_relay_flat": lambda: relay.cost_nanos(usage),
        "cost_nanos_fractional_rates": lambda: fractional.cost_nanos(usage),
        "cost_nanos_tiered_cache_writes": lambda: tiered.cost_nanos(big),
        "table_price_and_cost": lambda: table.price("gpt-4o").cost_nanos(usage),
        "table_price_at_and_cost_dated_model": lambda: table.price("o3", at=now).cost_nanos(usage),
        "worst_case_tiered": lambda: tiered.worst_case_nanos(250_000, 8192),
        "previous_flat_decimal_formula": lambda: _flat_decimal(Decimal("2.5"), Decimal(10), Decimal("1.25"), usage),
    }
    if genai_prices:
        gp_usage = genai_prices.Usage(input_tokens=1234, output_tokens=567, cache_read_tokens=200)
        variants["genai_prices_calc_price"] = lambda: genai_prices.calc_price(gp_usage, "gpt-4o",
                                                                              genai_request_timestamp=now)
    wall, _cpu = interleaved(variants, rounds=9, calls=2000)

    out = {
        "load_seconds_median_fresh_interpreter": {k: round(median(v), 4) for k, v in loads.items()},
        "load_goal_seconds": 0.25,
        "per_call_us_median": {k: round(median(v), 3) for k, v in wall.items()},
        "models_in_default_table": len(table),
        "price_version": table.version,
        "runs": RUNS,
    }
    print(out)
    save("pricing", out)


if __name__ == "__main__":
    main()
