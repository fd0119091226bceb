from decimal import Decimal

import pytest

from squak_pipelines.money import (
    from_micros,
    minor_units,
    parse_amount,
    quantize,
    round_to_currency,
    to_micros,
)


@pytest.mark.parametrize(("currency", "places"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("BHD", 3)])
def test_iso_4217_minor_units(currency: str, places: int) -> None:
    assert minor_units(currency) == places


def test_unknown_currency_is_an_error() -> None:
    with pytest.raises(ValueError, match="XYZ"):
        minor_units("XYZ")


@pytest.mark.parametrize(("mode", "expected"), [("half_up", "0.1235"), ("up", "0.1235"), ("down", "0.1234")])
def test_rounding_modes(mode: str, expected: str) -> None:
    assert quantize(Decimal("0.12345"), 4, mode) == Decimal(expected)


def test_half_up_on_exact_half_and_negative() -> None:
    assert round_to_currency(Decimal("2.675"), "USD") == Decimal("2.68")  # a float would give 2.67
    assert round_to_currency(Decimal("-0.005"), "USD") == Decimal("-0.01")
    assert round_to_currency(Decimal("1.5"), "JPY") == Decimal("2")
    assert round_to_currency(Decimal("0.0005"), "BHD") == Decimal("0.001")


def test_amounts_refuse_floats_and_junk() -> None:
    with pytest.raises(TypeError):
        parse_amount(0.1)  # type: ignore[arg-type]
    for bad in ("1,000.00", "abc", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            parse_amount(bad)
    assert parse_amount(" 19.99 ") == Decimal("19.99")


def test_micro_units_are_exact() -> None:
    assert to_micros(Decimal("0.000001")) == 1
    assert from_micros(to_micros(Decimal("12.345678"))) == Decimal("12.345678")
    with pytest.raises(ValueError):
        to_micros(Decimal("0.0000001"))
