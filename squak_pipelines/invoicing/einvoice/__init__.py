"""EN 16931 e-invoices: every final invoice and credit note as UBL 2.1, and for EUR accounts
as Factur-X (the PDF as PDF/A-3 with its CII embedded), each validated when it is made."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from squak_pipelines.invoicing.compose import Invoice
from squak_pipelines.invoicing.einvoice.cii import to_cii
from squak_pipelines.invoicing.einvoice.model import build
from squak_pipelines.invoicing.einvoice.ubl import to_ubl
from squak_pipelines.invoicing.einvoice.validation import validate
from squak_pipelines.money import minor_units
from squak_pipelines.operator_identity import Operator

FACTURX_CURRENCIES = ("EUR",)


@dataclass(frozen=True)
class EDocuments:
    ubl: str
    cii: str  # '' unless the account is billed in EUR
    errors: str  # '' when both are valid: else `RULE: message; ...` (delivery is blocked)


def einvoices_wanted() -> bool:
    """E-invoices are on unless SQUAK_EINVOICE is off (benchmarks, operators who opt out)."""
    return os.environ.get("SQUAK_EINVOICE", "on").lower() not in ("off", "0", "false", "no")


def make(invoice: Invoice, operator: Operator, taxes: dict[str, dict]) -> EDocuments:
    """The UBL (and, for EUR, CII) of a final invoice or credit note, validated."""
    if not einvoices_wanted():
        return EDocuments("", "", "")
    try:
        view = build(invoice, operator, taxes, minor_units(invoice.currency))
        ubl = to_ubl(view)
        cii = to_cii(view) if invoice.currency in FACTURX_CURRENCIES else b""
    except Exception as exc:  # whatever fails, the invoice is held (not delivered) with the reason
        return EDocuments("", "", f"EN16931: {type(exc).__name__}: {exc}")
    problems = [validate(ubl, "ubl")] + ([validate(cii, "cii")] if cii else [])
    errors = "; ".join(f"{v.syntax.upper()} {v.summary()}" for v in problems if not v.valid)
    return EDocuments(ubl.decode("utf-8"), cii.decode("utf-8"), errors)


def blocked_rules(errors: str) -> list[str]:
    """The rule ids named in stored validation errors (`BR-CO-10`, `XSD`, `EN16931`)."""
    return sorted(set(re.findall(r"\b(BR-[A-Z0-9-]+|PEPPOL-[A-Z0-9-]+|FX-[A-Z0-9-]+|XSD|EN16931)\b", errors)))
