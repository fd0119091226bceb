"""UBL 2.1 Invoice and CreditNote (EN 16931 core, `urn:cen.eu:en16931:2017`) from the neutral
view (model.py), built as an element tree with lxml, never as text."""

from __future__ import annotations

from decimal import Decimal

from lxml import etree
from lxml.builder import ElementMaker

from squak_pipelines.invoicing.einvoice.model import EInvoice, Party, money_text

CUSTOMIZATION = "urn:cen.eu:en16931:2017"
NS = {
    "Invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "CreditNote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
cac = ElementMaker(namespace=CAC, nsmap={"cac": CAC})
cbc = ElementMaker(namespace=CBC, nsmap={"cbc": CBC})


def _amount(tag: str, value: Decimal, doc: EInvoice):
    return getattr(cbc, tag)(money_text(value, doc.decimals), currencyID=doc.currency)


def _party(p: Party, seller: bool):
    address = [x for x in (
        cbc.StreetName(p.street) if p.street else None,
        cbc.CityName(p.city) if p.city else None,
        cbc.PostalZone(p.postal_code) if p.postal_code else None,
        cbc.CountrySubentity(p.state) if p.state else None,
        cac.Country(cbc.IdentificationCode(p.country)),
    ) if x is not None]
    parts = []
    if not seller and p.identifier:
        parts.append(cac.PartyIdentification(cbc.ID(p.identifier)))
    parts.append(cac.PartyName(cbc.Name(p.name)))
    parts.append(cac.PostalAddress(*address))
    if p.vat_id:
        parts.append(cac.PartyTaxScheme(cbc.CompanyID(p.vat_id), cac.TaxScheme(cbc.ID("VAT"))))
    if seller and p.tax_registration:
        parts.append(cac.PartyTaxScheme(cbc.CompanyID(p.tax_registration), cac.TaxScheme(cbc.ID("FC"))))
    legal = [cbc.RegistrationName(p.name)]
    if p.legal_id:
        legal.append(cbc.CompanyID(p.legal_id))
    parts.append(cac.PartyLegalEntity(*legal))
    if p.email:
        parts.append(cac.Contact(cbc.ElectronicMail(p.email)))
    return cac.Party(*parts)


def _tax_category(tag: str, category: str, rate: Decimal, reason: str = ""):
    children = [cbc.ID(category)]
    if category != "O":
        children.append(cbc.Percent(f"{rate:f}"))
    if reason:
        children.append(cbc.TaxExemptionReason(reason))
    children.append(cac.TaxScheme(cbc.ID("VAT")))
    return getattr(cac, tag)(*children)


def to_ubl(doc: EInvoice) -> bytes:
    """The UBL document, canonical bytes (the same invoice gives the same bytes)."""
    kind = "CreditNote" if doc.type_code == "381" else "Invoice"
    root = etree.Element(f"{{{NS[kind]}}}{kind}", nsmap={None: NS[kind], "cac": CAC, "cbc": CBC})
    head = [
        cbc.CustomizationID(CUSTOMIZATION),
        cbc.ID(doc.number),
        cbc.IssueDate(doc.issue_date),
    ]
    if kind == "Invoice":
        head += [cbc.DueDate(doc.due_date), cbc.InvoiceTypeCode(doc.type_code)]
    else:
        head += [cbc.CreditNoteTypeCode(doc.type_code)]
    head += [cbc.Note(n) for n in doc.notes if n]
    head += [cbc.DocumentCurrencyCode(doc.currency), cbc.BuyerReference(doc.buyer_reference)]
    if doc.corrects:
        head.append(cac.BillingReference(cac.InvoiceDocumentReference(cbc.ID(doc.corrects))))
    head += [
        cac.AccountingSupplierParty(_party(doc.seller, True)),
        cac.AccountingCustomerParty(_party(doc.buyer, False)),
    ]
    means = [cbc.PaymentMeansCode(doc.payment_code)]
    if kind == "CreditNote":
        means.append(cbc.PaymentDueDate(doc.due_date))
    means.append(cbc.PaymentID(doc.payment_reference))
    means.append(cac.PayeeFinancialAccount(cbc.ID(doc.iban),
                                           cac.FinancialInstitutionBranch(cbc.ID(doc.bic))))
    head.append(cac.PaymentMeans(*means))
    head.append(cac.PaymentTerms(cbc.Note(f"Due {doc.due_date}")))
    subtotals = [
        cac.TaxSubtotal(_amount("TaxableAmount", b.taxable, doc), _amount("TaxAmount", b.tax, doc),
                        _tax_category("TaxCategory", b.category, b.rate, b.reason))
        for b in doc.breakdown
    ]
    head.append(cac.TaxTotal(_amount("TaxAmount", doc.tax_total, doc), *subtotals))
    head.append(cac.LegalMonetaryTotal(
        _amount("LineExtensionAmount", doc.line_total, doc),
        _amount("TaxExclusiveAmount", doc.line_total, doc),
        _amount("TaxInclusiveAmount", doc.grand_total, doc),
        _amount("PayableAmount", doc.due_amount, doc),
    ))
    line_tag, quantity_tag = ("CreditNoteLine", "CreditedQuantity") if kind == "CreditNote" \
        else ("InvoiceLine", "InvoicedQuantity")
    for x in doc.lines:
        head.append(getattr(cac, line_tag)(
            cbc.ID(str(x.number)),
            cbc.Note(x.note),
            getattr(cbc, quantity_tag)(f"{x.quantity:f}", unitCode=x.unit),
            _amount("LineExtensionAmount", x.amount, doc),
            cac.Item(cbc.Name(x.name), _tax_category("ClassifiedTaxCategory", x.category, x.rate)),
            cac.Price(_amount("PriceAmount", x.price, doc),
                      cbc.BaseQuantity(f"{x.base_quantity:f}", unitCode=x.unit)),
        ))
    root.extend(head)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
