"""UN/CEFACT CII (Factur-X / ZUGFeRD, profile EN 16931) from the neutral view (model.py),
built with drafthorse, whose serializer checks the Factur-X schema as it writes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from drafthorse.models.accounting import ApplicableTradeTax
from drafthorse.models.document import Document
from drafthorse.models.note import IncludedNote
from drafthorse.models.party import TaxRegistration
from drafthorse.models.payment import PaymentMeans, PaymentTerms
from drafthorse.models.tradelines import LineItem

from squak_pipelines.invoicing.einvoice.model import EInvoice, Party, in_minor_units

GUIDELINE = "urn:cen.eu:en16931:2017"
SCHEMA = "FACTUR-X_EN16931"


def _money(value: Decimal, doc: EInvoice) -> Decimal:
    return in_minor_units(value, doc.decimals)


def _party(target, p: Party, seller: bool) -> None:
    target.name = p.name
    if not seller and p.identifier:
        target.id = p.identifier
    if p.legal_id:
        target.legal_organization.id = p.legal_id
    target.address.line_one = p.street
    target.address.city_name = p.city
    target.address.postcode = p.postal_code
    if p.state:
        target.address.country_subdivision = p.state
    target.address.country_id = p.country
    if p.email:
        target.electronic_address.uri_ID = ("EM", p.email)
    if p.vat_id:
        target.tax_registrations.add(TaxRegistration(id=("VA", p.vat_id)))
    if seller and p.tax_registration:
        target.tax_registrations.add(TaxRegistration(id=("FC", p.tax_registration)))


def to_cii(doc: EInvoice) -> bytes:
    """The CII document (schema-checked by drafthorse as it serializes)."""
    d = Document()
    d.context.guideline_parameter.id = GUIDELINE
    d.header.id = doc.number
    d.header.type_code = doc.type_code
    d.header.issue_date_time = date.fromisoformat(doc.issue_date)
    for text in doc.notes:
        if text:
            d.header.notes.add(IncludedNote(content=text))
    d.trade.agreement.buyer_reference = doc.buyer_reference
    _party(d.trade.agreement.seller, doc.seller, True)
    _party(d.trade.agreement.buyer, doc.buyer, False)
    for x in doc.lines:
        item = LineItem()
        item.document.line_id = str(x.number)
        item.document.notes.add(IncludedNote(content=x.note))
        item.product.name = x.name
        item.agreement.net.amount = _money(x.price, doc)
        item.agreement.net.basis_quantity = (x.base_quantity, x.unit)
        item.delivery.billed_quantity = (x.quantity, x.unit)
        item.settlement.trade_tax.type_code = "VAT"
        item.settlement.trade_tax.category_code = x.category
        if x.category != "O":
            item.settlement.trade_tax.rate_applicable_percent = x.rate
        item.settlement.monetary_summation.total_amount = _money(x.amount, doc)
        d.trade.items.add(item)
    s = d.trade.settlement
    s.currency_code = doc.currency
    s.payment_reference = doc.payment_reference
    means = PaymentMeans()
    means.type_code = doc.payment_code
    means.payee_account.iban = doc.iban
    means.payee_institution.bic = doc.bic
    s.payment_means.add(means)
    for b in doc.breakdown:
        tax = ApplicableTradeTax()
        tax.calculated_amount = _money(b.tax, doc)
        tax.type_code = "VAT"
        if b.reason:
            tax.exemption_reason = b.reason
        tax.basis_amount = _money(b.taxable, doc)
        tax.category_code = b.category
        tax.rate_applicable_percent = b.rate
        s.trade_tax.add(tax)
    terms = PaymentTerms()
    terms.description = f"Due {doc.due_date}"
    terms.due = date.fromisoformat(doc.due_date)
    s.terms.add(terms)
    if doc.corrects:
        s.invoice_referenced_document.issuer_assigned_id = doc.corrects
    m = s.monetary_summation
    m.line_total = _money(doc.line_total, doc)
    m.charge_total = _money(Decimal(0), doc)
    m.allowance_total = _money(Decimal(0), doc)
    m.tax_basis_total = _money(doc.line_total, doc)
    m.tax_total = (_money(doc.tax_total, doc), doc.currency)
    m.grand_total = _money(doc.grand_total, doc)
    m.due_amount = _money(doc.due_amount, doc)
    return d.serialize(schema=SCHEMA)
