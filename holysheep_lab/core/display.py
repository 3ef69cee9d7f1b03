"""How numbers read: one rule for money, shares and milliseconds wherever we show them.

Meters, progress bars, alerts, results and frames format through these functions, so the same
amount reads the same everywhere. Pure text rules (no pandas, no widgets); values themselves
stay exact floats, only what is shown is rounded.

`NO_MATH` is the class that keeps notebook typesetters off our HTML: JupyterLab and the classic
notebook run MathJax over HTML outputs, which reads "$0.01 of $0.02" as math. MathJax works on
the page's text, so an entity (`&#36;`) would not help; its ignore class does (MathJax 2 and
JupyterLab use `tex2jax_ignore`, MathJax 3's default is `mathjax_ignore`).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = [
    "NO_MATH",
    "MONEY_DIGITS",
    "column_kind",
    "format_ms",
    "format_share",
    "format_tokens",
    "format_usd",
    "no_math",
]

NO_MATH = "tex2jax_ignore mathjax_ignore"

MONEY_DIGITS = 4  # significant digits under $1: $0.01480, $0.1460 (never $0.015 next to $0.0148)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_usd(amount: Decimal | float | int | None) -> str:
    """'$1,234.50' from $1 up (cents); under $1 four significant digits ('$0.01480', '$0.1460',
    '$0.000002100'); '$0.00' for zero; '' for None or NaN. Negative amounts lead with '-'."""
    if _missing(amount):
        return ""
    assert amount is not None
    if isinstance(amount, float) and math.isinf(amount):
        return "-$∞" if amount < 0 else "$∞"
    d = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    sign = "-" if d < 0 else ""
    d = abs(d)
    if d == 0:
        return "$0.00"
    if d >= 1:
        return f"{sign}${d.quantize(Decimal('0.01'), ROUND_HALF_EVEN):,.2f}"
    exponent = d.adjusted()  # 0.0148 -> -2
    places = MONEY_DIGITS - 1 - exponent
    rounded = d.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
    if rounded.adjusted() > exponent:  # 0.099996 rounds up to 0.1000: one place fewer
        places -= 1
        rounded = d.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
    if rounded >= 1:
        return f"{sign}${rounded:,.2f}"
    return f"{sign}${rounded:.{places}f}"


def format_share(ratio: float | None, digits: int = 1) -> str:
    """0.561406 -> '56.1%'; '' for None or NaN."""
    if _missing(ratio):
        return ""
    assert ratio is not None
    return f"{ratio * 100:.{digits}f}%"


def format_ms(ms: float | None) -> str:
    """1234.5 -> '1,234 ms', 0.42 -> '0.42 ms'; '' for None or NaN."""
    if _missing(ms):
        return ""
    assert ms is not None
    return f"{ms:.2f} ms" if abs(ms) < 10 else f"{ms:,.0f} ms"


def format_tokens(n: float | None) -> str:
    """12345 -> '12,345'; '' for None or NaN."""
    if _missing(n):
        return ""
    assert n is not None
    return f"{n:,.0f}"


_MONEY_NAMES = ("cost", "spent", "budget", "limit", "price")
_SHARE_NAMES = ("share", "ratio", "used", "rate", "pct", "percent")


def column_kind(name: str) -> str | None:
    """How a column of ours reads, by its name: 'usd', 'share', 'ms', 'tokens' or None (as is).

    `cost_usd`, `spent_usd`, `*_usd` are money; `share`, `ratio`, `used`, `*_share`, `*_rate`
    shares; `*_ms` milliseconds; `*_tokens` counts."""
    low = name.lower()
    if low.endswith("_usd") or low in _MONEY_NAMES or low.startswith("usd"):
        return "usd"
    if low.endswith("_ms") or low == "ms":
        return "ms"
    if low.endswith("_tokens") or low == "tokens":
        return "tokens"
    if low in _SHARE_NAMES or low.endswith(tuple(f"_{s}" for s in _SHARE_NAMES)):
        return "share"
    return None


def no_math(fragment: str, tag: str = "div") -> str:
    """`fragment` inside an element MathJax leaves alone (see the module doc)."""
    return f"<{tag} class='{NO_MATH}'>{fragment}</{tag}>"
