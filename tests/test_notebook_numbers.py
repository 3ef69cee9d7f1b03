"""The one money rule (core.display) and the other number formats every view uses."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from holysheep_lab.alerts import model as alert_model
from holysheep_lab.core.display import column_kind, format_ms, format_share, format_usd, no_math


@pytest.mark.parametrize(("amount", "shown"), [
    (0, "$0.00"), (0.0, "$0.00"),
    (0.0148, "$0.01480"), (0.015, "$0.01500"), (0.146, "$0.1460"),  # the same precision: no drift
    (0.0033363999999999998, "$0.003336"), (0.0000021, "$0.000002100"),
    (0.099996, "$0.1000"), (0.999996, "$1.00"), (1, "$1.00"), (7.62, "$7.62"),
    (587.579385, "$587.58"), (1234.5, "$1,234.50"), (-0.5, "-$0.5000"), (-3.2, "-$3.20"),
    (Decimal("0.0375"), "$0.03750"), (None, ""), (math.nan, ""),
])
def test_money_rule(amount, shown):
    assert format_usd(amount) == shown


def test_alerts_use_the_same_rule():
    assert alert_model.format_usd is format_usd


def test_shares_ms_and_column_kinds():
    assert format_share(0.561406) == "56.1%" and format_share(None) == ""
    assert format_ms(1234.5) == "1,234 ms" and format_ms(0.42) == "0.42 ms"
    kinds = {c: column_kind(c) for c in ("cost_usd", "spent_usd", "share", "used", "error_rate", "latency_ms",
                                        "input_tokens", "model", "calls")}
    assert kinds == {"cost_usd": "usd", "spent_usd": "usd", "share": "share", "used": "share",
                     "error_rate": "share", "latency_ms": "ms", "input_tokens": "tokens", "model": None,
                     "calls": None}


def test_no_math_wraps_in_mathjaxs_ignore_classes():
    out = no_math("$1 of $2")
    assert out.startswith("<div class='tex2jax_ignore mathjax_ignore'>") and "$1 of $2" in out
