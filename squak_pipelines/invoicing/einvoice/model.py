"""An invoice or credit note seen as EN 16931 sees it: VAT categories, breakdown and totals.

One neutral view feeds both syntaxes (UBL 2.1 in ubl.py, UN/CEFACT CII in cii.py), so they
always carry the same figures as the PDF. How Squak's lines map (written in the README):
- a VAT (a tax the tax table marks as one, `reference.files.is_vat`) makes every line of its
  base standard rated (`S`) at its rate; the breakdown's tax is the invoice's tax line, so the
  e-invoice's VAT equals the PDF's to the cent;
- a VAT reverse charged to a business customer makes the lines of its base `AE` (0%, the
  reverse-charge note as exemption reason);
- an invoice with no VAT (the United States) is `O`, not subject to VAT: no VAT ids (BR-O-02),
  and its sales taxes and regulatory fees (E911) are lines of their own, as they are charges;
- beside a VAT, a non-VAT tax or fee (an excise such as Mexico's IEPS) is a line outside the
  VAT base: `E`, with that as exemption reason;
- a negative line (discount, promotion, credit) has quantity -1 at a positive price (BR-27);
  a usage line's quantity is its minutes or messages, priced per that whole quantity
  (base quantity = quantity), so net = quantity x price / base quantity exactly;
- a credit note (381) states the credited amounts as positive figures and names the invoice
  it corrects (BT-25); an invoice's amount due (BT-115) is its own total: balances carried
  from earlier invoices are stated in a note, as EN 16931 has no field for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from squak_pipelines.invoicing.compose import Invoice, Line, taxable
from squak_pipelines.operator_identity import Operator
from squak_pipelines.tax_ids import with_prefix

ZERO = Decimal(0)
UNIT_CODES = {"min": "MIN", "msg": "C62", "month": "MON", "number": "C62", "each": "C62"}
REASONS = {
    "O": "Not subject to VAT",
    "AE": "Reverse charge",
    "E": "Outside the VAT base",
}
SECTIONS = {"recurring": "Service", "one_time": "One-time charge", "usage": "Usage",
            "late_usage": "Late usage", "adjustment": "Adjustment", "discount": "Discount",
            "promotion": "Promotion", "tax": "Tax or fee"}


class EInvoiceError(ValueError):
    """An invoice that cannot be stated in EN 16931 (names the invoice and the reason)."""


@dataclass(frozen=True)
class Party:
    name: str
    street: str
    city: str
    postal_code: str
    state: str
    country: str
    vat_id: str = ""
    tax_registration: str = ""  # BT-32 (seller only)
    legal_id: str = ""  # BT-30 (seller) / BT-47 (buyer)
    email: str = ""
    identifier: str = ""  # the buyer's account (BT-46)


@dataclass(frozen=True)
class ELine:
    number: int
    name: str
    note: str
    quantity: Decimal
    unit: str
    price: Decimal  # positive; for the whole base quantity
    base_quantity: Decimal
    amount: Decimal  # net amount (BT-131)
    category: str
    rate: Decimal


@dataclass(frozen=True)
class Breakdown:
    category: str
    rate: Decimal
    taxable: Decimal
    tax: Decimal
    reason: str = ""


@dataclass
class EInvoice:
    number: str
    type_code: str  # 380 invoice, 381 credit note
    issue_date: str
    due_date: str
    currency: str
    decimals: int
    seller: Party
    buyer: Party
    lines: list[ELine]
    breakdown: list[Breakdown]
    line_total: Decimal
    tax_total: Decimal
    grand_total: Decimal
    due_amount: Decimal
    period: str
    corrects: str = ""
    notes: list[str] = field(default_factory=list)
    iban: str = ""
    bic: str = ""
    payment_code: str = "30"  # 30 credit transfer, 58 SEPA credit transfer
    payment_reference: str = ""
    buyer_reference: str = ""


def plain(value: Decimal) -> Decimal:
    """The same number without trailing zeros or an exponent (`20`, `12.3`, never `2E+1`)."""
    return Decimal(format(value.normalize(), "f"))


def in_minor_units(amount: Decimal, decimals: int) -> Decimal:
    """An amount with exactly the currency's decimals (lines and totals are already rounded)."""
    return amount.quantize(Decimal(1).scaleb(-decimals))


def money_text(amount: Decimal, decimals: int) -> str:
    return f"{in_minor_units(amount, decimals):f}"


def _vat_rows(taxes: dict[str, dict]) -> dict[str, dict]:
    return {tid: t for tid, t in taxes.items() if t.get("vat") and t["kind"] == "percent"}


def _category(line: Line, invoice: Invoice, vats: dict[str, dict],
              charged: set[str]) -> tuple[str, Decimal]:
    """The VAT category and rate of a non-tax line."""
    reverse = vats.get(invoice.reverse_charge)
    if reverse is not None and taxable(line, reverse["applies_to"]):
        return "AE", ZERO
    found = [t for tid, t in vats.items() if tid in charged and taxable(line, t["applies_to"])]
    if len(found) > 1:
        raise EInvoiceError(f"invoice {invoice.number}: line {line.description!r} is in the base of two "
                            f"VATs ({', '.join(t['tax_id'] for t in found)})")
    if found:
        return "S", plain(Decimal(found[0]["rate_percent"]))
    return ("E" if charged or invoice.reverse_charge else "O"), ZERO


def _quantity(line: Line, amount: Decimal) -> tuple[Decimal, str, Decimal]:
    """(quantity, unit code, base quantity) of a line of net amount `amount`."""
    if amount < 0 or line.kind in ("tax", "discount", "promotion", "adjustment"):
        return Decimal(-1) if amount < 0 else Decimal(1), "C62", Decimal(1)
    quantity = Decimal(line.quantity)
    if quantity <= 0:
        return Decimal(1), "C62", Decimal(1)
    quantity = plain(quantity.quantize(Decimal("0.0001")))
    return quantity, UNIT_CODES.get(line.unit, "C62"), quantity


def seller_party(operator: Operator, with_vat: bool) -> Party:
    return Party(operator.legal_name, operator.street, operator.city, operator.postal_code,
                 operator.state, operator.country, operator.vat_id if with_vat else "",
                 operator.tax_registration, operator.company_registration, operator.email)


def buyer_party(invoice: Invoice, with_vat: bool) -> Party:
    c = invoice.customer
    vat = c.get("vat_id") or ""
    shown = vat and with_vat and c.get("segment") == "business"
    vat = with_prefix(vat, c.get("country") or "") if shown else ""
    return Party(c.get("name") or invoice.account_id, c.get("street") or "", c.get("city") or "",
                 c.get("postal_code") or "", c.get("state") or "", c.get("country") or "", vat,
                 email=c.get("email") or "", identifier=invoice.account_id)


def build(invoice: Invoice, operator: Operator, taxes: dict[str, dict], decimals: int) -> EInvoice:
    """The EN 16931 view of a final invoice or credit note (`taxes`: the tax table by id)."""
    if not invoice.number:
        raise EInvoiceError("only a final (numbered) invoice is an e-invoice")
    credit = invoice.document_type == "credit_note"
    sign = Decimal(-1) if credit else Decimal(1)
    vats = _vat_rows(taxes)
    charged = {x.tax_id for x in invoice.lines if x.kind == "tax" and x.tax_id in vats}
    lines: list[ELine] = []
    for line in invoice.lines:
        if line.kind == "tax" and line.tax_id in vats:
            continue  # a VAT is the breakdown, not a line
        amount = Decimal(line.amount) * sign
        if line.kind == "tax":
            category, rate = ("E" if charged or invoice.reverse_charge else "O"), ZERO
        else:
            category, rate = _category(line, invoice, vats, charged)
        quantity, unit, base = _quantity(line, amount)
        lines.append(ELine(len(lines) + 1, line.description[:200], SECTIONS.get(line.kind, line.kind),
                           quantity, unit, abs(amount), base, amount, category, rate))
    if not lines:
        raise EInvoiceError(f"invoice {invoice.number}: no lines")
    breakdown = _breakdown(invoice, lines, vats, sign)
    line_total = sum((x.amount for x in lines), ZERO)
    tax_total = sum((b.tax for b in breakdown), ZERO)
    grand = line_total + tax_total
    if grand != Decimal(invoice.total) * sign:
        raise EInvoiceError(f"invoice {invoice.number}: e-invoice total {grand} differs from the invoice's "
                            f"{Decimal(invoice.total) * sign}")
    with_vat = any(b.category != "O" for b in breakdown)
    notes = [f"Billing period {invoice.cycle}."]
    if credit:
        notes.append(f"Credit note correcting invoice {invoice.corrects}: {invoice.reason}.")
    elif invoice.previous_balance or invoice.payments or invoice.credits:
        notes.append(
            f"Account statement: previous balance {money_text(Decimal(invoice.previous_balance), decimals)}, "
            f"payments {money_text(Decimal(invoice.payments), decimals)}, credits "
            f"{money_text(Decimal(invoice.credits), decimals)}, total amount due with this invoice "
            f"{money_text(Decimal(invoice.amount_due), decimals)} {invoice.currency}.")
    if invoice.reverse_charge:
        notes.append("Reverse charge: VAT is to be accounted for by the recipient (Article 196, "
                     "Council Directive 2006/112/EC).")
    notes.append(operator.footer)
    return EInvoice(
        number=invoice.number, type_code="381" if credit else "380", issue_date=invoice.issue_date,
        due_date=invoice.due_date, currency=invoice.currency, decimals=decimals,
        seller=seller_party(operator, with_vat), buyer=buyer_party(invoice, with_vat), lines=lines,
        breakdown=breakdown, line_total=line_total, tax_total=tax_total, grand_total=grand,
        due_amount=grand, period=invoice.cycle, corrects=invoice.corrects, notes=notes,
        iban=operator.iban, bic=operator.bic, payment_code="58" if invoice.currency == "EUR" else "30",
        payment_reference=invoice.number, buyer_reference=invoice.account_id,
    )


def _breakdown(invoice: Invoice, lines: list[ELine], vats: dict[str, dict],
               sign: Decimal) -> list[Breakdown]:
    groups: dict[tuple[str, Decimal], Decimal] = {}
    for x in lines:
        groups[(x.category, x.rate)] = groups.get((x.category, x.rate), ZERO) + x.amount
    taxes: dict[Decimal, Decimal] = {}
    for t in (x for x in invoice.lines if x.kind == "tax" and x.tax_id in vats):
        rate = plain(Decimal(vats[t.tax_id]["rate_percent"]))
        taxes[rate] = taxes.get(rate, ZERO) + Decimal(t.amount) * sign
    out = []
    for (category, rate), base in sorted(groups.items()):
        tax = taxes.pop(rate, ZERO) if category == "S" else ZERO
        out.append(Breakdown(category, rate, base, tax, REASONS.get(category, "")))
    if taxes:
        raise EInvoiceError(f"invoice {invoice.number}: a VAT at {', '.join(map(str, taxes))}% has no lines "
                            "in its base")
    return out
