"""How a customer reads an invoice's figures: quantities in customer units and the payment QR.

- voice usage: charged time as whole minutes when it is a whole number of minutes (a plan
  billing 60/60), else as m:ss (`12:06`); allowance used the same way;
- messages, numbers and one-time fees: whole numbers;
- a recurring fee: `1 month`, or `prorated` (the days are in its description);
- the payment QR code: an EPC (SEPA credit transfer) QR for EUR, naming the operator's IBAN
  and BIC, the amount due and the invoice's ISO 11649 creditor reference; for any other
  currency, a QR of the payment link. Drawn by segno as inline SVG (no file, no network).
"""

from __future__ import annotations

from decimal import Decimal

import segno
import segno.helpers

from squak_pipelines.operator_identity import Operator
from squak_pipelines.payments.references import creditor_reference

EPC_MAX = Decimal("999999999.99")


def clock_minutes(seconds: int) -> str:
    """`5 min` for whole minutes, else `m:ss` (`0:18`, `12:06`)."""
    if seconds % 60 == 0:
        return f"{seconds // 60:,} min"
    return f"{seconds // 60:,}:{seconds % 60:02d}"


def quantity_text(line: dict) -> str:
    unit, quantity = line["unit"], Decimal(line["quantity"])
    if unit == "min":
        return clock_minutes(int(line.get("seconds") or round(quantity * 60)))
    if unit == "msg":
        return f"{int(quantity):,} msg"
    if unit == "month":
        return "1 month" if quantity == 1 else "prorated"
    if unit == "number":
        return f"{int(quantity):,} number{'s' if quantity != 1 else ''}"
    if unit == "each":
        return f"{int(quantity):,}"
    return ""


def allowance_text(line: dict) -> str:
    used = Decimal(line["allowance_used"])
    if used <= 0 or line["kind"] not in ("usage", "late_usage"):
        return ""
    if line["unit"] == "min":
        return clock_minutes(int((used * 60).to_integral_value()))
    return f"{int(used):,} {line['unit']}"


def payment_qr(operator: Operator, number: str, amount_due: Decimal, currency: str, link: str) -> str:
    """The payment QR as an SVG data URI ('' when nothing is due)."""
    if amount_due <= 0:
        return ""
    if currency == "EUR" and Decimal("0.01") <= amount_due <= EPC_MAX:
        code = segno.helpers.make_epc_qr(
            name=operator.legal_name[:70], iban=operator.iban, bic=operator.bic, amount=amount_due,
            reference=creditor_reference(number))
    elif link:
        code = segno.make_qr(link, error="m")
    else:
        return ""
    return code.svg_data_uri(scale=3, border=2)
