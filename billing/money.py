"""Decimal money: amounts to the cent (half up, as invoices round), rates in $/h."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# Exact enough for a per-second rate ($/h ÷ 3600) before the one rounding to the cent.
EXACT = Decimal("0.000001")


def to_decimal(value) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def cents(value) -> Decimal:
    return to_decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def cost_exact(seconds: float | int, rate_per_hour: Decimal) -> Decimal:
    """Unrounded cost of `seconds` at `rate_per_hour` (kept to 1e-6 $)."""
    return (to_decimal(seconds) * to_decimal(rate_per_hour) / Decimal(3600)).quantize(EXACT, rounding=ROUND_HALF_UP)


def usd(value) -> str:
    amount = cents(value)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def rate_text(rate) -> str:
    """$/h for people: 4.7600 → "$4.76/h", 0.0035 → "$0.0035/h"."""
    value = to_decimal(rate)
    text = f"{value.normalize():f}"
    whole, _, frac = text.partition(".")
    return f"${whole}.{(frac + '00')[:max(2, len(frac))]}/h"
