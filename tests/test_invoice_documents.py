"""What a customer and a tax auditor read: the operator's identity, page 1 of the PDF (summary,
payment link, QR code), customer units, money in minor units in e-mails and on the portal,
EN 16931 e-invoices (UBL and Factur-X) and the refusals that come before anything is final."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pypdf import PdfReader

from squak_pipelines.demo.generate import OPERATOR_YAML
from squak_pipelines.invoicing.compose import Invoice, Line
from squak_pipelines.invoicing.presentation import allowance_text, quantity_text
from squak_pipelines.invoicing.render import TemplateError, render_html
from squak_pipelines.operator_identity import OperatorFileError, load_operator

D = Decimal
TAXES = {"DE-UST": {"tax_id": "DE-UST", "kind": "percent", "applies_to": "all", "rate_percent": D("19"),
                    "vat": True, "reverse_charge": False}}


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "operator.yaml").write_text(OPERATOR_YAML, encoding="utf-8")
    return ref


def _invoice(currency: str = "EUR", number: str | None = "SQK-2026-000042") -> Invoice:
    customer = {"account_id": "ACC-7", "name": "Kunde GmbH", "street": "Hauptstr. 1", "city": "Berlin",
                "postal_code": "10115", "country": "DE", "segment": "business", "vat_id": "DE101126487",
                "state": "", "email": "ap@kunde.example"}
    lines = [
        Line("recurring", "Phone line (Business)", D("30.00"), D(1), "month", D("30.00")),
        Line("usage", "Voice national - Germany (14 calls)", D("4.13"), D("12.1"), "min", seconds=726),
        Line("usage", "SMS national - Germany (7 messages)", D("0.70"), D(7), "msg"),
        Line("promotion", "Welcome (10% off recurring charges)", D("-3.00"), applies_to="recurring"),
        Line("tax", "Umsatzsteuer 19%", D("6.04"), tax_id="DE-UST", base=D("31.83")),
    ]
    invoice = Invoice("ACC-7", "2026-11", currency, "2026-12-01", "2026-12-16", customer, lines,
                      subtotal=D("31.83"), tax_total=D("6.04"), total=D("37.87"),
                      previous_balance=D("12.00"), payments=D("-12.00"), amount_due=D("37.87"),
                      number=number)
    return invoice


def test_the_operator_file_is_checked_before_anything_is_final(reference: Path) -> None:
    operator = load_operator(reference)
    assert operator.legal_name == "Squak Communications Inc." and operator.vat_id == "DE314159262"
    assert operator.iban == "DE89370400440532013000" and operator.bic == "COBADEFFXXX"
    path = reference / "operator.yaml"
    cases = [
        ("legal_name: Squak Communications Inc.\n", "", "'legal_name': required legal field"),
        ("iban: DE89370400440532013000", "iban: DE89370400440532013001", "'bank.iban': schwifty IBAN check"),
        ("bic: COBADEFFXXX", "bic: COBAXX", "'bank.bic': schwifty BIC check"),
        ("vat_id: DE314159262", "vat_id: DE314159263", "'vat_id': python-stdnum check failed"),
        ("pay?token={token}", "pay", "'payment_link': must contain {token}"),
        ("  country: US", "  country: XX", "'address.country': 'XX' is not an ISO 3166"),
    ]
    for old, new, message in cases:
        path.write_text(OPERATOR_YAML.replace(old, new), encoding="utf-8")
        with pytest.raises(OperatorFileError, match=message) as caught:
            load_operator(reference)
        assert str(path) in str(caught.value)
    path.unlink()
    with pytest.raises(OperatorFileError, match="operator's identity file is missing"):
        load_operator(reference)


def test_customer_vat_ids_are_checked_at_intake() -> None:
    from squak_pipelines.orders.validation import validate_accounts

    base = {"account_id": "A", "name": "N", "segment": "business", "email": "a@b.example",
            "street": "1 St", "city": "Paris", "state": "", "postal_code": "75001", "country": "FR",
            "payment_method": "invoice", "card_token": "", "card_last4": "", "card_expiry": ""}
    accounts = pd.DataFrame([{**base, "vat_id": "FR21101126480"},
                             {**base, "account_id": "B", "vat_id": "FR21101126481"},
                             {**base, "account_id": "C", "vat_id": ""}])
    issues = list(validate_accounts(accounts)["billing_issue"])
    assert pd.isna(issues[0]) and pd.isna(issues[2])
    assert issues[1].startswith("invalid_vat_id: vat_id: 'FR21101126481' is not a valid FR VAT number")


def test_customer_units() -> None:
    voice = {"kind": "usage", "unit": "min", "quantity": "0.3000", "seconds": 18, "allowance_used": "0"}
    assert quantity_text(voice) == "0:18"
    assert quantity_text({**voice, "seconds": 300}) == "5 min"
    assert quantity_text({**voice, "seconds": 726}) == "12:06"
    assert quantity_text({"kind": "usage", "unit": "msg", "quantity": "7.0000"}) == "7 msg"
    assert quantity_text({"kind": "recurring", "unit": "month", "quantity": "1"}) == "1 month"
    assert quantity_text({"kind": "tax", "unit": "number", "quantity": "3"}) == "3 numbers"
    assert allowance_text({**voice, "allowance_used": "12.5000"}) == "12:30"


def test_page_one_has_the_summary_the_payment_link_and_a_qr_code(reference: Path, tmp_path: Path) -> None:
    from squak_pipelines.invoicing.pdf import render_pdf

    html = render_html(_invoice(), reference, data_dir=tmp_path)
    assert "Kunde GmbH" in html and "VAT DE101126487" in html, "a business customer's VAT id"
    assert "VAT DE314159262" in html and "EIN 12-3456789" in html and "Registered in New" in html
    assert 'alt="Payment QR code"' in html and "data:image/svg+xml" in html
    pdf = render_pdf(html, date(2026, 12, 1), "SQK-2026-000042")
    first = PdfReader(io.BytesIO(pdf)).pages[0]
    page = " ".join(first.extract_text().split())
    links = [a.get_object()["/A"]["/URI"] for a in first.get("/Annots", []) if "/A" in a.get_object()]
    assert "Amount due €37.87" in page
    assert "Due date 2026-12-16" in page
    assert "Previous balance €12.00" in page and "Payments since your last invoice -€12.00" in page
    assert "https://pay.squak.example/pay?token=" in "".join(page.split())
    assert any(link.startswith("https://pay.squak.example/pay?token=") for link in links), "a live link"
    assert "12:06" in page and "7 msg" in page and "1 month" in page, "customer units"
    assert "113.520000" not in page and "37.870000" not in page


def _decoded(code) -> bytes:
    import numpy as np
    import zxingcpp

    if hasattr(code, "matrix_iter"):  # segno's
        code = np.array([[0 if dark else 255 for dark in row] for row in code.matrix_iter(scale=4, border=4)],
                        dtype=np.uint8)
    else:
        code = code.to_image(scale=4)
    found = zxingcpp.read_barcode(code, text_mode=zxingcpp.TextMode.Plain)
    assert found is not None, "a reader finds the QR code"
    return found.bytes


def test_the_payment_qr_code_reads_back_as_a_sepa_transfer_or_the_link(reference: Path) -> None:
    import dataclasses

    import segno.helpers

    from squak_pipelines.invoicing.presentation import payment_code, payment_qr
    from squak_pipelines.payments.references import creditor_reference

    operator = dataclasses.replace(load_operator(reference), legal_name="Müller Telekom GmbH")
    epc = payment_code(operator, "SQK-2026-000042", D("37.87"), "EUR", "https://pay.example/x")
    lines = _decoded(epc).decode("latin-1").split("\n")
    assert lines[:4] == ["BCD", "002", "2", "SCT"], "version 002, ISO 8859-1 (the name's ü), SEPA transfer"
    assert lines[5:8] == ["Müller Telekom GmbH", operator.iban, "EUR37.87"]
    assert lines[9] == creditor_reference("SQK-2026-000042"), "the structured creditor reference"
    library = segno.helpers.make_epc_qr(name=operator.legal_name[:70], iban=operator.iban, bic=operator.bic,
                                        amount=D("37.87"), reference=creditor_reference("SQK-2026-000042"))
    assert _decoded(library) == _decoded(epc), "the same payload as segno's own EPC helper"
    assert epc.ec_level == "M"
    link = "https://pay.squak.example/pay?token=abc"
    assert _decoded(payment_code(operator, "SQK-2026-000043", D("5.00"), "USD", link)) == link.encode()
    assert payment_qr(operator, "SQK-2026-000044", D("0.00"), "USD", link) == "", "nothing due, no code"
    again = payment_qr(operator, "SQK-2026-000042", D("37.87"), "EUR", "")
    assert again == payment_qr(operator, "SQK-2026-000042", D("37.87"), "EUR", ""), "same bytes each time"
    assert again.startswith("data:image/svg+xml;base64,")


def test_a_template_without_the_amount_due_is_refused(reference: Path, tmp_path: Path) -> None:
    (reference / "templates").mkdir()
    (reference / "templates" / "invoice.html.j2").write_text("<p>Invoice {{ invoice.number }}</p>")
    with pytest.raises(TemplateError, match=r"invoice.html.j2: rule 'shows the amount due': invoice "
                                             r"SQK-2026-000042 renders without its amount due €37.87"):
        render_html(_invoice(), reference, data_dir=tmp_path)
    render_html(_invoice(number=None), reference)  # a draft is not refused: it is not sent


def test_e_invoices_validate_and_a_broken_total_is_refused(reference: Path) -> None:
    from lxml import etree

    from squak_pipelines.invoicing.einvoice import make
    from squak_pipelines.invoicing.einvoice.validation import validate

    operator = load_operator(reference)
    docs = make(_invoice(), operator, TAXES)
    assert docs.errors == "" and docs.ubl.startswith("<?xml") and "CrossIndustryInvoice" in docs.cii
    ubl = etree.fromstring(docs.ubl.encode())
    ns = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
          "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"}
    assert ubl.findtext("cbc:CustomizationID", namespaces=ns) == "urn:cen.eu:en16931:2017"
    assert ubl.findtext(".//cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=ns) == "37.87"
    assert ubl.findtext(".//cac:TaxTotal/cbc:TaxAmount", namespaces=ns) == "6.04"
    assert ubl.findtext(".//cac:AccountingCustomerParty//cac:PartyTaxScheme/cbc:CompanyID",
                        namespaces=ns) == "DE101126487"
    # A line amount that no longer adds up to the sum of lines: BR-CO-10.
    first = ubl.find(".//cac:InvoiceLine/cbc:LineExtensionAmount", namespaces=ns)
    first.text = "31.00"
    verdict = validate(etree.tostring(ubl), "ubl")
    assert not verdict.valid and "BR-CO-10" in verdict.rule_ids
    # A US invoice is not subject to VAT: category O, no VAT ids (BR-O-02).
    us = _invoice("USD")
    us.customer = {**us.customer, "country": "US", "state": "NY", "vat_id": ""}
    us.lines[-1] = Line("tax", "New York State Sales Tax 4%", D("6.04"), tax_id="US-NY-SALES",
                        base=D("31.83"))
    docs = make(us, operator, {"US-NY-SALES": {**TAXES["DE-UST"], "tax_id": "US-NY-SALES", "vat": False}})
    assert docs.errors == "" and docs.cii == "" and "<cbc:ID>O</cbc:ID>" in docs.ubl
    assert "<cbc:CompanyID>DE314159262</cbc:CompanyID>" not in docs.ubl
    assert "<cbc:CompanyID>12-3456789</cbc:CompanyID>" in docs.ubl


def test_factur_x_pdf_carries_its_cii_and_is_reproducible(reference: Path, tmp_path: Path) -> None:
    from facturx import get_xml_from_pdf

    from squak_pipelines.invoicing.einvoice import make
    from squak_pipelines.invoicing.pdf import render_pdf

    invoice = _invoice()
    docs = make(invoice, load_operator(reference), TAXES)
    html = render_html(invoice, reference, data_dir=tmp_path)
    first = render_pdf(html, date(2026, 12, 1), invoice.number, docs.cii)
    again = render_pdf(html, date(2026, 12, 1), invoice.number, docs.cii)
    assert first == again, "byte-identical on every run"
    name, xml = get_xml_from_pdf(first, check_xsd=True)
    assert name == "factur-x.xml" and xml.decode() == docs.cii


def test_emails_and_portal_show_the_currency_minor_units(reference: Path, tmp_path: Path) -> None:
    from squak_pipelines.config import Settings
    from squak_pipelines.invoicing.delivery import publish_portal
    from squak_pipelines.invoicing.mail import message
    from squak_pipelines.migrations import migrate
    from squak_pipelines.warehouse import DuckDBWarehouse

    inv = {"number": "SQK-2026-000001", "account_id": "A", "currency": "USD", "amount_due": D("31.760000"),
           "issue_date": date(2026, 12, 1), "due_date": date(2026, 12, 16), "html": "<p>x</p>",
           "document": "{}", "name": "Ada", "email": "ada@example.com"}
    usd = message(inv, tmp_path, "https://pay.example/x")
    assert usd["Subject"] == "Your Squak invoice SQK-2026-000001: $31.76 due 2026-12-16"
    assert "Amount due: $31.76 by 2026-12-16" in usd.get_body(("plain",)).get_content()
    jpy = message({**inv, "currency": "JPY", "amount_due": D("4521.000000")}, tmp_path,
                   "https://pay.example/x")
    assert "¥4,521 due" in jpy["Subject"] and "4521.0" not in jpy.as_string()

    settings = Settings.from_env({"SQUAK_DATA_DIR": str(reference.parent)})
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    migrate(warehouse)
    rows = pa.table({
        "number": ["SQK-2026-000001", "SQK-2026-000002"], "account_id": ["A", "B"], "cycle": ["2026-11"] * 2,
        "currency": ["USD", "JPY"],
        "amount_due": pa.array([D("31.760000"), D("4521.000000")], pa.decimal128(18, 6)),
        "issue_date": pa.array([date(2026, 12, 1)] * 2, pa.date32()),
        "due_date": pa.array([date(2026, 12, 16)] * 2, pa.date32()), "html": ["<p>x</p>"] * 2,
        "einvoice_errors": ["", ""]})
    warehouse.load("invoicing.invoices", rows, mode="append")
    warehouse.load("orders.accounts", pa.table({"account_id": ["A", "B"], "name": ["Ada", "Bo"]}),
                   mode="append")
    assert publish_portal(warehouse, settings) == 2
    portal = settings.data_dir / "portal"
    assert "$31.76 due 2026-12-16" in (portal / "A" / "index.html").read_text()
    assert "¥4,521 due 2026-12-16" in (portal / "B" / "index.html").read_text()

    # A month's delivery refreshes the accounts billed that month and copies only its documents.
    warehouse.load("invoicing.invoices", rows.slice(0, 1).set_column(
        0, "number", pa.array(["SQK-2026-000003"])).set_column(2, "cycle", pa.array(["2026-12"])),
        mode="append")
    (portal / "A" / "SQK-2026-000001.html").write_text("kept")
    (portal / "B" / "index.html").write_text("untouched")
    assert publish_portal(warehouse, settings, "2026-12") == 1
    index = (portal / "A" / "index.html").read_text()
    assert "SQK-2026-000003" in index and "SQK-2026-000001" in index, "the page lists every invoice"
    assert (portal / "A" / "SQK-2026-000003.html").read_text() == "<p>x</p>"
    assert (portal / "A" / "SQK-2026-000001.html").read_text() == "kept"
    assert (portal / "B" / "index.html").read_text() == "untouched"


def test_credit_notes_reverse_charge_and_zero_decimal_currencies_are_valid(reference: Path) -> None:
    from dataclasses import replace

    from squak_pipelines.invoicing.einvoice import make

    operator, invoice = load_operator(reference), _invoice()
    # An EUR credit note: a CreditNote (381) in UBL and in CII, positive amounts, naming the invoice.
    note = replace(invoice, lines=[replace(x, amount=-x.amount, description=f"Credit: {x.description}")
                                   for x in invoice.lines],
                   subtotal=-invoice.subtotal, tax_total=-invoice.tax_total, total=-invoice.total,
                   amount_due=-invoice.total, previous_balance=D(0), payments=D(0),
                   number="SQK-CN-2026-000001", document_type="credit_note", corrects=invoice.number,
                   reason="Account closed")
    docs = make(note, operator, TAXES)
    assert docs.errors == "" and "<cbc:CreditNoteTypeCode>381</cbc:CreditNoteTypeCode>" in docs.ubl
    assert "<ram:TypeCode>381</ram:TypeCode>" in docs.cii and "SQK-2026-000042" in docs.cii
    assert "<cbc:PayableAmount currencyID=\"EUR\">37.87</cbc:PayableAmount>" in docs.ubl
    # Reverse charge: the VAT's base is AE at 0% with the reason; no tax.
    reverse = replace(invoice, lines=invoice.lines[:-1], reverse_charge="DE-UST", tax_total=D(0),
                      total=invoice.subtotal, amount_due=invoice.subtotal)
    docs = make(reverse, operator, TAXES)
    assert docs.errors == "" and "<cbc:ID>AE</cbc:ID>" in docs.ubl and "Reverse charge" in docs.ubl
    # JPY has no minor unit: amounts without decimals.
    yen = replace(invoice, currency="JPY",
                  lines=[replace(x, amount=x.amount.quantize(D(1))) for x in invoice.lines[:-1]]
                  + [replace(invoice.lines[-1], amount=D(6))])
    yen.subtotal = sum((x.amount for x in yen.lines if x.kind != "tax"), D(0))
    yen.tax_total, yen.total = D(6), yen.subtotal + 6
    docs = make(yen, operator, TAXES)
    assert docs.errors == ""
    assert f'<cbc:PayableAmount currencyID="JPY">{yen.total}</cbc:PayableAmount>' in docs.ubl
