"""What ties a payment to an invoice: invoice numbers in free text, and ISO 11649 creditor
references (`RF` + two check digits + up to 21 characters).

Each final invoice has a creditor reference built from its number (`SQK-2026-000123` ->
`RF..SQK2026000123`), printed for the payer to quote. A reference is trusted only when its
check digits are right (python-stdnum's ISO 11649 / ISO 7064 mod 97-10): a mistyped one is
kept in the remittance text but never matched as a reference.
"""

from __future__ import annotations

import re

from stdnum import iso11649
from stdnum.iso7064 import mod_97_10

INVOICE_NUMBER = re.compile(r"\bSQK[\s\-_./]*(\d{4})[\s\-_./]*(\d{6})\b", re.IGNORECASE)
_IN_REFERENCE = re.compile(r"SQK(\d{4})(\d{6})")
ISO11649 = "ISO 11649"
ISO11649_INVALID = "ISO 11649 (wrong check digits)"


def invoice_numbers_in(text: str | None) -> list[str]:
    """Invoice numbers written in free text, normalized (`SQK-2026-000011`)."""
    return [f"SQK-{year}-{seq}" for year, seq in INVOICE_NUMBER.findall(text or "")]


def creditor_reference(invoice_number: str) -> str:
    """The ISO 11649 reference of an invoice (`RF74SQK2026000123`)."""
    body = re.sub(r"[^0-9A-Za-z]", "", invoice_number).upper()
    return f"RF{mod_97_10.calc_check_digits(body + 'RF')}{body}"


def reference_type(reference: str, stated_type: str = "") -> str:
    """How a structured creditor reference reads: ISO 11649 (valid or not, by its check
    digits), else the type the bank stated (e.g. `ISR Reference`), else `proprietary`."""
    compact = iso11649.compact(reference)
    if compact.startswith("RF") or stated_type.upper() == "SCOR":
        return ISO11649 if iso11649.is_valid(compact) else ISO11649_INVALID
    return stated_type or "proprietary"


def invoice_of_reference(reference: str | None) -> str | None:
    """The invoice number a valid ISO 11649 reference of ours carries, else None."""
    if not reference or not iso11649.is_valid(reference):
        return None
    found = _IN_REFERENCE.fullmatch(iso11649.compact(reference)[4:])
    return f"SQK-{found.group(1)}-{found.group(2)}" if found else None
