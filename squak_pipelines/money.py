"""Exact money: Decimal amounts, ISO 4217 minor units, and micro-unit integers.

Never a binary float. Amounts cross file boundaries as decimal strings.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation
from functools import lru_cache

import pyarrow as pa
from babel import Locale
from babel.numbers import NumberPattern, parse_pattern
from iso4217 import Currency

# ISO 4217 minor units of every active currency, from the maintained ISO table (`iso4217`);
# codes without a minor unit (gold, SDR, test codes: XAU, XDR, XTS) are not money we bill.
MINOR_UNITS: dict[str, int] = {c.code: c.exponent for c in Currency if c.exponent is not None}

ROUNDING_MODES = {"half_up": ROUND_HALF_UP, "up": ROUND_UP, "down": ROUND_DOWN}

MICROS = 1_000_000
MONEY_TYPE = pa.decimal128(18, 6)  # how amounts are stored (SQL NUMERIC(18, 6))


def minor_units(currency: str) -> int:
    """Number of decimal places of a currency's minor unit (USD 2, JPY 0, BHD 3)."""
    try:
        return MINOR_UNITS[currency.upper()]
    except KeyError:
        raise ValueError(f"unknown ISO 4217 currency {currency!r}") from None


def parse_amount(text: str | int | Decimal, *, field: str = "amount") -> Decimal:
    """Parse a decimal string strictly (no floats, no thousands separators)."""
    if isinstance(text, float):
        raise TypeError(f"{field}: binary float {text!r} is not a money amount")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"{field}: {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"{field}: {text!r} is not a finite number")
    return value


def quantize(amount: Decimal, places: int, rounding: str = "half_up") -> Decimal:
    """Round to `places` decimals with a named rounding mode (half_up, up, down)."""
    try:
        mode = ROUNDING_MODES[rounding]
    except KeyError:
        raise ValueError(f"unknown rounding {rounding!r}; use one of {sorted(ROUNDING_MODES)}") from None
    return amount.quantize(Decimal(1).scaleb(-places), rounding=mode)


def round_to_currency(amount: Decimal, currency: str) -> Decimal:
    """Round half up to the currency's minor unit (invoice lines, taxes)."""
    return quantize(amount, minor_units(currency), "half_up")


def to_micros(amount: Decimal) -> int:
    """Exact integer micro-units; refuses amounts finer than a micro-unit."""
    scaled = amount * MICROS
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than 6 decimal places")
    return int(scaled)


def from_micros(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-6)


def money_array(values) -> pa.Array:
    """Amounts (Decimal, or decimal strings) as an Arrow column of MONEY_TYPE; None stays null."""
    return pa.array([None if v is None else Decimal(v) for v in values], MONEY_TYPE)


def format_money(amount: Decimal | str, currency: str, locale: str = "en") -> str:
    """Money as a customer reads it: the currency's minor units, locale-aware (babel), e.g.
    `£113.52`, `¥1,234`, `BHD 5.125`. The one formatter for invoices, e-mails, portal and
    notices; amounts are rounded half up to the minor unit first, never truncated."""
    code = currency.upper()
    rounded = round_to_currency(Decimal(amount), code)
    where, pattern = _money_pattern(locale, minor_units(code))
    return pattern.apply(rounded, where, currency=code, currency_digits=False)


@lru_cache(maxsize=64)
def _money_pattern(locale: str, places: int) -> tuple[Locale, NumberPattern]:
    """The locale and its currency pattern (where the symbol goes) with ISO 4217's minor
    unit, parsed once: babel's format_currency would parse both on every amount."""
    where = Locale.parse(locale)
    standard = where.currency_formats["standard"].pattern
    digits = "0" + ("." + "0" * places if places else "")  # ISO 4217's minor unit, not CLDR's
    return where, parse_pattern(re.sub(r"0\.0+|0(?![.0])", digits, standard))
