"""VAT and tax identifiers checked with python-stdnum (check digits and formats per country).

A VAT id may carry its country prefix (`DE136695976`, `EL...` for Greece); without one, the
country given (the customer's or the operator's) says which rules apply.
"""

from __future__ import annotations

from stdnum import get_cc_module
from stdnum.exceptions import ValidationError

PREFIX_COUNTRY = {"EL": "GR", "XI": "GB"}  # VAT prefixes that are not the ISO country code


def vat_country(vat_id: str, country: str) -> str:
    """The ISO country whose rules a VAT id follows."""
    compact = compact_vat(vat_id)
    prefix = compact[:2]
    if prefix.isalpha():
        return PREFIX_COUNTRY.get(prefix, prefix)
    return country.upper()


def compact_vat(vat_id: str) -> str:
    return "".join(ch for ch in vat_id.upper() if ch.isalnum())


def vat_problem(vat_id: str, country: str) -> str:
    """Why a VAT id is not valid ('' when it is)."""
    cc = vat_country(vat_id, country)
    module = get_cc_module(cc.lower(), "vat")
    if module is None:
        return f"{vat_id!r}: no VAT number rules for country {cc!r}"
    try:
        module.validate(compact_vat(vat_id))
    except ValidationError as exc:
        return f"{vat_id!r} is not a valid {cc} VAT number ({exc.message})"
    return ""


def with_prefix(vat_id: str, country: str) -> str:
    """The VAT id as EN 16931 wants it (BT-31/BT-48): prefixed by its country code."""
    compact = compact_vat(vat_id)
    if compact[:2].isalpha():
        return compact
    return ("EL" if country.upper() == "GR" else country.upper()) + compact
