"""Invoices: hand-computed lines (proration, activation, plan change, usage and late usage,
discounts, taxes rounded once), and the billing cycle on the warehouse (DuckDB and
PostgreSQL): preview, gapless numbering (also under concurrent finalizations), immutability
and byte-identical re-runs, escaping in templates."""

from __future__ import annotations

import csv
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from squak_pipelines.invoicing.compose import (
    Cycle,
    DraftError,
    ServicePeriod,
    compose,
    number_fee_lines,
    tax_lines,
    usage_lines,
)
from squak_pipelines.invoicing.render import render_html
from squak_pipelines.invoicing.stage import bill_cycle, cycles_to_bill
from squak_pipelines.rating.stage import rate_days
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from tests.rating_helpers import plan_at
from tests.stage_helpers import copy_demo, rated

OCT = Cycle.parse("2026-10")
ACCOUNT = {"account_id": "ACC-1", "name": "Ada's Bakery", "country": "US", "state": "NY"}
FEES = {
    "recurring": [{"product": "LINE", "description": "Phone line", "amount": "30.00"}],
    "one_time": [{"code": "ACTIVATION", "description": "Activation fee", "amount": "25.00"}],
}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _period(
    start: str, end: str | None = None, plan: str = "T", period: int = 1, number: str = "+12125550100"
):
    return ServicePeriod("SVC-1", "LINE", plan, number, period, _utc(start), _utc(end) if end else None)


@pytest.fixture
def plans(tmp_path: Path):
    return {
        "T": plan_at(tmp_path / "t", fees=FEES),
        "Q": plan_at(
            tmp_path / "q",
            plan_id="Q",
            name="Premium",
            fees={"recurring": [{"product": "LINE", "description": "Phone line", "amount": "45.00"}]},
        ),
        "G": plan_at(tmp_path / "g", plan_id="G", currency="GBP", timezone="Europe/London", fees=FEES),
    }


def _amounts(invoice, kind: str) -> list[Decimal]:
    return [line.amount for line in invoice.lines if line.kind == kind]


@pytest.mark.parametrize(
    ("periods", "recurring", "one_time"),
    [
        ([_period("2026-09-15T04:00:00")], ["30.00"], []),
        # Activated 11 Oct 00:00 New York time: 21 of 31 days (30 x 21 / 31 = 20.3225..) and the fee.
        ([_period("2026-10-11T04:00:00")], ["20.32"], ["25.00"]),
        # Disconnected 21 Oct 00:00 local: 1-20 Oct, 20 days (19.3548..).
        ([_period("2026-09-01T04:00:00", "2026-10-21T04:00:00")], ["19.35"], []),
        # Plan change on 16 Oct: 15 days at 30.00 (14.5161..) and 16 days at 45.00 (23.2258..), no new fee.
        (
            [
                _period("2026-09-01T04:00:00", "2026-10-16T04:00:00"),
                _period("2026-10-16T04:00:00", plan="Q", period=2),
            ],
            ["14.52", "23.23"],
            [],
        ),
    ],
)
def test_recurring_proration_activation_and_plan_change(plans, periods, recurring, one_time) -> None:
    invoice = compose(ACCOUNT, OCT, "USD", periods, plans, [], [])
    assert _amounts(invoice, "recurring") == [Decimal(x) for x in recurring]
    assert _amounts(invoice, "one_time") == [Decimal(x) for x in one_time]
    assert invoice.subtotal == sum(_amounts(invoice, "recurring") + _amounts(invoice, "one_time"), Decimal(0))


def test_usage_discount_and_late_usage_lines() -> None:
    usage = [
        {
            "cycle": "2026-10",
            "service": "voice",
            "call_type": "international",
            "destination": "UK",
            "calls": 3,
            "units": 600,
            "allowance_used": 0,
            "charge": "1.23456",
            "discount": "0.12345",
            "discount_name": "10% off international",
        },
        {
            "cycle": "2026-10",
            "service": "voice",
            "call_type": "national",
            "destination": "US",
            "calls": 10,
            "units": 3000,
            "allowance_used": 2400,
            "charge": "0.605",
            "discount": "0",
            "discount_name": None,
        },
        {
            "cycle": "2026-09",
            "service": "sms",
            "call_type": "national",
            "destination": "US",
            "calls": 4,
            "units": 4,
            "allowance_used": 0,
            "charge": "0.04",
            "discount": "0",
            "discount_name": None,
        },
    ]
    lines = usage_lines(usage, OCT, "USD")
    by_kind = {(line.kind, line.destination or line.description): line for line in lines}
    late = by_kind[("late_usage", "US")]
    assert late.description.startswith("Late usage from 2026-09") and late.amount == Decimal("0.04")
    intl = by_kind[("usage", "UK")]
    assert (intl.amount, intl.quantity, intl.calls) == (Decimal("1.23"), Decimal("10.00"), 3)
    national = by_kind[("usage", "US")]
    assert national.amount == Decimal("0.61") and national.allowance_used == Decimal("40.00")
    discount = [line for line in lines if line.kind == "discount"]
    assert [d.amount for d in discount] == [Decimal("-0.12")] and discount[0].call_type == "international"


def test_taxes_are_computed_once_on_the_whole_base() -> None:
    from squak_pipelines.invoicing.compose import Line

    lines = [Line("usage", f"call {i}", Decimal("0.05"), call_type="national") for i in range(3)]
    lines.append(Line("recurring", "line", Decimal("10.00")))
    taxes = [
        {
            "tax_id": "ALL",
            "name": "Sales tax",
            "applies_to": "all",
            "kind": "percent",
            "rate_percent": "10",
            "currency": "USD",
            "amount": None,
        },
        {
            "tax_id": "USE",
            "name": "Excise",
            "applies_to": "usage",
            "kind": "percent",
            "rate_percent": "10",
            "currency": "USD",
            "amount": None,
        },
        {
            "tax_id": "E911",
            "name": "E911 fee",
            "applies_to": "per_number",
            "kind": "fixed",
            "rate_percent": None,
            "currency": "USD",
            "amount": "0.75",
        },
        {
            "tax_id": "GBP",
            "name": "Other currency fee",
            "applies_to": "per_number",
            "kind": "fixed",
            "rate_percent": None,
            "currency": "GBP",
            "amount": "1.00",
        },
    ]
    numbers = ["+12125550100", "+12125550101", "+12125550102"]
    out = {t.tax_id: t for t in tax_lines(lines, taxes, currency="USD")
           + number_fee_lines("ACC-1", taxes[:3], numbers, "USD")}
    assert out["ALL"].amount == Decimal("1.02") and out["ALL"].base == Decimal("10.15")  # 1.015 -> 1.02
    assert out["USE"].amount == Decimal("0.02"), "0.15 x 10% = 0.015 rounds once to 0.02 (per line: 0.03)"
    assert out["E911"].amount == Decimal("2.25") and "GBP" not in out
    # A fee due on these numbers with no amount in the invoice's currency stops the draft.
    with pytest.raises(DraftError, match=r"'Other currency fee' \(GBP\) is due on 3 number.*only in GBP"):
        number_fee_lines("ACC-1", taxes, numbers, "USD")


def test_invoice_totals_and_currencies(plans) -> None:
    taxes = [
        {
            "tax_id": "ALL",
            "name": "Sales tax",
            "applies_to": "all",
            "kind": "percent",
            "rate_percent": "8.875",
            "currency": "USD",
            "amount": None,
        }
    ]
    periods = [
        _period("2026-10-11T04:00:00"),
        ServicePeriod("SVC-2", "LINE", "G", "+442071234567", 1, _utc("2026-09-01T00:00:00"), None),
    ]
    usd = compose(ACCOUNT, OCT, "USD", periods, plans, [], taxes, previous_balance=Decimal("12.00"))
    assert usd.subtotal == Decimal("45.32")  # 20.32 + 25.00; the GBP service is not on it
    assert usd.tax_total == Decimal("4.02")  # 45.32 x 8.875% = 4.022..
    assert (usd.total, usd.amount_due) == (Decimal("49.34"), Decimal("61.34"))
    gbp = compose(ACCOUNT, OCT, "GBP", periods, plans, [], taxes)
    # Percentage taxes follow the jurisdiction (the address), whatever the currency: 30 x 8.875%.
    assert _amounts(gbp, "recurring") == [Decimal("30.00")] and gbp.tax_total == Decimal("2.66")
    assert (usd.issue_date, usd.due_date) == ("2026-11-01", "2026-11-16")


def _promo(pid: str, kind: str, value: str, scope: str, duration: str, cycles: int | None = None):
    from squak_pipelines.invoicing.promotions import Promotion

    currency = "USD" if kind == "fixed" else ""
    return Promotion(pid, pid.title(), kind, Decimal(value), currency, scope, duration, cycles)


def test_coupon_for_n_cycles_percent_fixed_and_taxes(plans) -> None:
    from squak_pipelines.invoicing.promotions import Coupon

    welcome = Coupon("ACC-1", _promo("welcome", "percent", "20", "recurring", "cycles", 3), "2026-09")
    credit = Coupon("ACC-1", _promo("credit", "fixed", "50.00", "all", "once"), "2026-10")
    usage = [
        {"cycle": "2026-10", "service": "voice", "call_type": "national", "destination": "US",
         "calls": 3, "units": 600, "allowance_used": 0, "charge": "4.1000", "discount": "0",
         "discount_name": None}
    ]
    taxes = [
        {"tax_id": "REC", "name": "Line tax", "applies_to": "recurring", "kind": "percent",
         "rate_percent": "10", "currency": "USD", "amount": None},
        {"tax_id": "ALL", "name": "Sales tax", "applies_to": "all", "kind": "percent",
         "rate_percent": "5", "currency": "USD", "amount": None},
    ]
    periods = [_period("2026-08-01T04:00:00")]  # active all month: 30.00 recurring, no activation
    cycles = {label: Cycle.parse(label) for label in ("2026-08", "2026-09", "2026-10", "2026-11", "2026-12")}
    invoices = {
        label: compose(ACCOUNT, cycle, "USD", periods, plans, usage if label == "2026-10" else [], taxes,
                       coupons=[welcome, credit])
        for label, cycle in cycles.items()
    }
    promos = {label: _amounts(inv, "promotion") for label, inv in invoices.items()}
    # 20% off 30.00 for three cycles from September; nothing before, nothing after.
    assert promos["2026-08"] == [] and promos["2026-12"] == []
    assert promos["2026-09"] == [Decimal("-6.00")] and promos["2026-11"] == [Decimal("-6.00")]
    # October: 20% off, then a 50.00 credit capped at what is left (30.00 + 4.10 - 6.00 = 28.10).
    assert promos["2026-10"] == [Decimal("-6.00"), Decimal("-28.10")]
    october = invoices["2026-10"]
    assert october.subtotal == Decimal("0.00")
    labels = [line.description for line in october.lines if line.kind == "promotion"]
    assert labels[0] == "Welcome (20% off recurring charges, cycle 2 of 3)"
    taxes_out = {line.tax_id: line for line in october.lines if line.kind == "tax"}
    assert taxes_out["REC"].base == Decimal("24.00") and taxes_out["REC"].amount == Decimal("2.40")
    assert "ALL" not in taxes_out, "nothing left to tax once the credit took the rest"
    november = invoices["2026-11"]
    assert november.subtotal == Decimal("24.00") and november.tax_total == Decimal("3.60")  # 2.40 + 1.20


def test_promotion_files_are_validated(tmp_path: Path) -> None:
    from squak_pipelines.invoicing.promotions import load_coupons
    from squak_pipelines.reference.files import ReferenceFileError

    header = "promotion_id,description,kind,value,currency,applies_to,duration,cycles\n"
    (tmp_path / "promotions.csv").write_text(header + "P1,Spring,percent,10,,all,cycles,0\n")
    (tmp_path / "coupons.csv").write_text("account_id,promotion_id,first_cycle\nA,P1,2026-10\n")
    with pytest.raises(ReferenceFileError, match=r"promotions.csv:2: field 'cycles'"):
        load_coupons(tmp_path)
    (tmp_path / "promotions.csv").write_text(header + "P1,Spring,percent,10,,all,cycles,2\n")
    (tmp_path / "coupons.csv").write_text("account_id,promotion_id,first_cycle\nA,P2,2026-10\n")
    with pytest.raises(ReferenceFileError, match=r"coupons.csv:2: field 'promotion_id'"):
        load_coupons(tmp_path)
    (tmp_path / "coupons.csv").write_text("account_id,promotion_id,first_cycle\nA,P1,2026-13\n")
    with pytest.raises(ReferenceFileError, match=r"coupons.csv:2: field 'first_cycle'"):
        load_coupons(tmp_path)


def test_template_escapes_customer_text(plans, tmp_path: Path) -> None:
    from squak_pipelines.demo.generate import OPERATOR_YAML

    (tmp_path / "operator.yaml").write_text(OPERATOR_YAML, encoding="utf-8")
    account = {
        **ACCOUNT,
        "name": '<script>alert("x")</script> & Sons',
        "brand_primary_color": "red;}</style>",
    }
    invoice = compose(account, OCT, "USD", [_period("2026-09-01T00:00:00")], plans, [], [])
    html = render_html(invoice, tmp_path)
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html and "&amp; Sons" in html
    assert "red;}</style>" not in html, "colours must be #RRGGBB"
    assert "DRAFT" in html


@pytest.fixture
def no_pdf(monkeypatch) -> None:
    """PDF rendering off, for tests about something else (it is tested once, on DuckDB)."""
    monkeypatch.setenv("SQUAK_INVOICE_PDF", "off")


@pytest.fixture(params=["duckdb", "postgres"])
def billed(request: pytest.FixtureRequest, tmp_path: Path, demo):
    settings = copy_demo(demo, tmp_path / "squak")
    if request.param == "duckdb":
        warehouse: Warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    else:
        warehouse = PostgresWarehouse(request.getfixturevalue("fresh_pg_url"))
        request.getfixturevalue("no_pdf")
    rated(warehouse, settings)
    return warehouse, settings


def test_billing_cycle_preview_finalize_and_rerun(billed, monkeypatch, tmp_path: Path) -> None:
    warehouse, settings = billed
    assert cycles_to_bill(warehouse, settings, date(2026, 11, 25)) == ["2026-10"]
    preview = bill_cycle(warehouse, settings, "2026-10", finalize=False)
    assert preview.drafts > 0 and preview.finalized == 0
    assert (
        warehouse.count("invoicing.invoices") == 0 and warehouse.count("invoicing.drafts") == preview.drafts
    )
    final = bill_cycle(warehouse, settings, "2026-10", finalize=True)
    assert final.finalized == preview.drafts and final.totals == preview.totals
    numbers = sorted(warehouse.query_df("select number from invoicing.invoices")["number"])
    assert numbers == [f"SQK-2026-{n:06d}" for n in range(1, len(numbers) + 1)], "gapless from 1"
    folder = settings.data_dir / "invoices" / "2026-10"
    before = {p.name: p.read_bytes() for p in folder.glob("SQK-*")}
    pdfs = warehouse.kind == "duckdb"  # PDFs are the same whatever the warehouse: rendered once
    documents = 4 if pdfs else 3  # HTML, JSON, the UBL e-invoice (.xml) and the PDF
    assert len([n for n in before if not n.endswith("-calls.csv")]) == documents * len(numbers)
    # Every demo invoice passes EN 16931 (XSD and CEN schematron): UBL for all, CII for EUR.
    e = warehouse.query_df("select number, currency, ubl, cii, einvoice_errors from invoicing.invoices")
    assert (e["einvoice_errors"] == "").all(), e[e["einvoice_errors"] != ""].head().to_dict("records")
    assert final.einvoices == len(numbers) and not final.einvoice_blocked
    assert ((e["cii"].str.len() > 0) == (e["currency"] == "EUR")).all()
    euro = sorted(e[e["currency"] == "EUR"]["number"])
    if pdfs:
        from facturx import get_xml_from_pdf

        name, xml = get_xml_from_pdf((folder / f"{euro[0]}.pdf").read_bytes(), check_xsd=True)
        assert name == "factur-x.xml" and xml.decode() == e[e["number"] == euro[0]]["cii"].iloc[0]
    if pdfs:
        first_pdf = folder / f"{numbers[0]}.pdf"
        assert before[first_pdf.name].startswith(b"%PDF-")
        reader = PdfReader(first_pdf)
        assert reader.metadata.title == "Invoice SQK-2026-000001"
        assert "SQK-2026-000001" in reader.pages[0].extract_text()
    assert 0 < final.call_detail_files <= len(numbers)
    # Call detail is read a few invoices at a time: the same files whatever the part size.
    from squak_pipelines.invoicing import call_detail

    monkeypatch.setattr(call_detail, "PART_INVOICES", 7)
    parts = tmp_path / "calls-in-parts"
    assert call_detail.write_call_detail(warehouse, "2026-10", parts) == final.call_detail_files
    assert {p.name: p.read_bytes() for p in parts.iterdir()} == {
        n: b for n, b in before.items() if n.endswith("-calls.csv")}
    private = warehouse.query_df(
        "select i.number from invoicing.invoices i join orders.accounts a using (account_id) "
        "where a.privacy_mask = 'true' order by 1"
    )["number"]
    shown = [n for n in private if f"{n}-calls.csv" in before]
    assert shown, "the demo has accounts that asked for privacy"
    detail = (folder / f"{shown[0]}-calls.csv").read_text().splitlines()
    called = detail[0].split(",").index('"called_number"')
    assert all(row.split(",")[called].strip('"').endswith("XXXX") for row in detail[1:])
    # Customers who asked for it get the itemized calls as appendix pages, masked like the CSV.
    itemized = warehouse.query_df(
        "select i.number, a.privacy_mask from invoicing.invoices i join orders.accounts a using (account_id) "
        "where a.call_detail = 'appendix' order by 1"
    )
    with_calls = [n for n in itemized["number"] if f"{n}-calls.csv" in before]
    assert with_calls, "the demo has customers with an itemized appendix"
    for number in with_calls[:3]:
        html = before[f"{number}.html"].decode()
        csv_rows = before[f"{number}-calls.csv"].decode().splitlines()[1:]
        assert '<section class="appendix">' in html
        assert html.split('<section class="appendix">')[1].count("<tr><td>") == len(csv_rows)
    plain = warehouse.scalar(
        "select i.number from invoicing.invoices i join orders.accounts a using (account_id) "
        "where coalesce(a.call_detail, '') = '' order by 1 limit 1"
    )
    assert '<section class="appendix">' not in before[f"{plain}.html"].decode()
    # A template dropped in later changes new documents, never a final invoice's.
    (settings.reference_dir / "templates").mkdir(exist_ok=True)
    (settings.reference_dir / "templates" / "invoice.html.j2").write_text("changed {{ invoice.total }}")
    billed_keys = warehouse.count("invoicing.billed_events")
    usage = warehouse.scalar(
        "select count(*) from rating.rated_events where answered and substr(cycle, 1, 7) <= '2026-10' "
        "and account_id is not null"
    )
    assert billed_keys == usage, "every answered rated event is billed once"
    gone = [*sorted(folder.glob("SQK-*.pdf"))[:2], folder / f"{euro[0]}.pdf"]
    for pdf in [p for p in gone if p.exists()]:
        pdf.unlink()  # rendered again from the stored HTML (and CII): the same bytes
    for xml in sorted(folder.glob("SQK-*.xml"))[:2]:
        xml.unlink()
    again = bill_cycle(warehouse, settings, "2026-10", finalize=True)
    assert (again.drafts, again.finalized, again.already_final) == (0, 0, len(numbers))
    assert again.pdfs_rendered == (3 if pdfs else 0)
    assert {p.name: p.read_bytes() for p in folder.glob("SQK-*")} == before, "byte-identical documents"
    lines_ok = warehouse.scalar(
        "select count(*) from invoicing.invoices i where i.subtotal <> (select sum(amount) from "
        "invoicing.invoice_lines l where l.invoice_key = i.invoice_key and l.kind <> 'tax')"
    )
    assert lines_ok == 0
    currencies = warehouse.query_df("select distinct currency from invoicing.invoices")["currency"]
    assert {"USD", "GBP", "EUR", "MXN"} <= set(currencies)


def test_concurrent_finalizations_keep_numbers_gapless(
    tmp_path: Path, demo, fresh_pg_url: str, no_pdf
) -> None:
    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = PostgresWarehouse(fresh_pg_url)
    rated(warehouse, settings)
    bill_cycle(warehouse, settings, "2026-10", finalize=False)
    errors: list[BaseException] = []

    def finalize() -> None:
        try:
            bill_cycle(PostgresWarehouse(fresh_pg_url), settings, "2026-10", finalize=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=finalize) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    numbers = sorted(warehouse.query_df("select number from invoicing.invoices")["number"])
    assert numbers == [f"SQK-2026-{n:06d}" for n in range(1, len(numbers) + 1)]
    assert len(numbers) == len(
        set(warehouse.query_df("select invoice_key from invoicing.invoices")["invoice_key"])
    )


def _double_rates(deck: Path) -> None:
    import csv

    with deck.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["rate"] = str(Decimal(row["rate"]) * 2)
    with deck.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_rerating_a_closed_cycle_becomes_an_adjustment_on_the_next_invoice(
    billed, no_pdf, monkeypatch
) -> None:
    warehouse, settings = billed
    bill_cycle(warehouse, settings, "2026-10", finalize=True)
    prices = ("select cast(sum(final_charge) as varchar) from rating.rated_events "
              "where substr(cycle, 1, 7) = '2026-10'")
    before = warehouse.scalar(prices)
    _double_rates(settings.reference_dir / "decks" / "usd_voice.csv")
    day = date(2026, 10, 14)
    rate_days(warehouse, settings, [day])
    assert warehouse.scalar(prices) == before, "invoiced events keep the price they were billed at"
    pending = warehouse.scalar("select sum(difference) from rating.adjustments where invoice_number is null")
    assert pending is not None and pending > 0
    rate_days(warehouse, settings, [day])  # re-rating again replaces, never doubles, the adjustment
    assert (
        warehouse.scalar("select sum(difference) from rating.adjustments where invoice_number is null")
        == pending
    )
    # The re-rated events' account bills from day 28: its next cycle (28 Nov - 27 Dec) must end.
    monkeypatch.setenv("SQUAK_TODAY", "2026-12-28")
    november = bill_cycle(warehouse, settings, "2026-11", finalize=True)
    assert november.finalized > 0
    lines = warehouse.query_df("select amount from invoicing.invoice_lines where kind = 'adjustment'")
    assert len(lines) > 0 and lines["amount"].sum() > 0
    assert warehouse.scalar("select count(*) from rating.adjustments where invoice_number is null") == 0
    rate_days(warehouse, settings, [day])
    assert warehouse.scalar("select count(*) from rating.adjustments where invoice_number is null") == 0, (
        "a difference already invoiced is not charged again"
    )


def test_delivery_by_email_portal_and_post_once(tmp_path: Path, demo, monkeypatch) -> None:
    import socket

    from aiosmtpd.controller import Controller

    from squak_pipelines.invoicing.delivery import deliver_cycle

    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    rated(warehouse, settings)
    bill_cycle(warehouse, settings, "2026-10", finalize=True)
    methods = warehouse.query_df(
        "select a.delivery_method, count(*) as n from invoicing.invoices i "
        "join orders.accounts a using (account_id) group by 1"
    )
    expected = dict(zip(methods["delivery_method"], methods["n"], strict=True))
    assert expected.get("email") and expected.get("post")

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    dead_port = free_port()  # nothing listens there: every send fails
    monkeypatch.setenv("SQUAK_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SQUAK_SMTP_PORT", str(dead_port))
    failed = deliver_cycle(warehouse, settings, "2026-10")
    assert failed.failed == expected["email"] and failed.sent == 0
    assert failed.printed == expected["post"]

    received, sessions = [], []

    class Collect:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            sessions.append(hostname)
            session.host_name = hostname
            return responses

        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setenv("SQUAK_SMTP_PORT", str(port))
        retried = deliver_cycle(warehouse, settings, "2026-10")
        again = deliver_cycle(warehouse, settings, "2026-10")
    finally:
        controller.stop()
    assert retried.sent == expected["email"] == len(received), "failed sends are retried"
    assert len(sessions) == 1, "one SMTP connection per batch of messages, not one per message"
    assert (again.sent, again.failed, again.printed) == (0, 0, 0), "nothing is sent or printed twice"
    import email

    message = email.message_from_bytes(received[0].content)
    assert message["Subject"].startswith("Your Squak invoice SQK-2026-")
    names = [part.get_filename() for part in message.walk() if part.get_filename()]
    assert any(n.endswith(".json") for n in names)
    attached = [p for p in message.walk() if (p.get_filename() or "").endswith(".pdf")]
    number = message["Subject"].split()[3].rstrip(":")
    documents = settings.data_dir / "invoices" / "2026-10"
    assert attached and attached[0].get_payload(decode=True) == (documents / f"{number}.pdf").read_bytes()
    portal = settings.data_dir / "portal"
    account = warehouse.scalar("select account_id from invoicing.invoices order by number limit 1")
    index = (portal / account / "index.html").read_text()
    assert "SQK-2026-000001" in index and "pay now" in index
    batch_dir = settings.data_dir / "print" / "2026-10"
    manifest = list(csv.DictReader((batch_dir / "manifest.csv").open()))
    assert len(manifest) == expected["post"]
    mailing = [(m["country"], m["postal_code"]) for m in manifest]
    assert mailing == sorted(mailing), "mailing order"
    batch = PdfReader(batch_dir / "batch-2026-10.pdf")
    pages = [len(PdfReader(documents / f"{m['invoice']}.pdf").pages) for m in manifest]
    assert len(batch.pages) == sum(pages)
    assert [int(m["first_page"]) for m in manifest] == [1 + sum(pages[:i]) for i in range(len(pages))]
    text = batch.pages[int(manifest[1]["first_page"]) - 1].extract_text()
    assert manifest[1]["invoice"] in text, "each invoice starts on its manifest page"


def test_credit_notes_correct_an_invoice_and_reach_the_next_one(billed, no_pdf, monkeypatch) -> None:
    from squak_pipelines.invoicing.credit_notes import CreditNoteError, issue_credit_note

    warehouse, settings = billed
    bill_cycle(warehouse, settings, "2026-10", finalize=True)
    monkeypatch.setenv("SQUAK_INVOICE_PDF", "on")  # for the credit notes' own PDFs
    # An invoice with several chargeable lines and a percentage tax.
    number = warehouse.scalar(
        "select l.invoice_key from invoicing.invoice_lines l join invoicing.invoices i using (invoice_key) "
        "where i.currency = 'USD' group by 1 having count(*) filter (where kind = 'tax') >= 2 "
        "and count(*) filter (where kind <> 'tax') >= 3 order by 1 limit 1"
    )
    invoice = warehouse.query_df(
        "select number, total, html_sha256 from invoicing.invoices where invoice_key = :k", {"k": number}
    ).iloc[0]
    lines = warehouse.query_df(
        "select line_no, kind, amount from invoicing.invoice_lines where invoice_key = :k order by line_no",
        {"k": number},
    )
    first = int(lines[lines["kind"] != "tax"]["line_no"].iloc[0])
    partial = issue_credit_note(
        warehouse, settings, invoice["number"], "Line <b>activated</b> late", [first], date(2026, 11, 20)
    )
    assert partial.number == "SQK-CN-2026-000001" and partial.corrects == invoice["number"]
    credited = -Decimal(lines.set_index("line_no").loc[first, "amount"])
    assert partial.subtotal == credited.quantize(Decimal("0.01"))
    with pytest.raises(CreditNoteError, match="was credited before"):
        issue_credit_note(warehouse, settings, invoice["number"], "again", [first])
    rest = issue_credit_note(
        warehouse, settings, invoice["number"], "Account closed", today=date(2026, 11, 21)
    )
    assert rest.number == "SQK-CN-2026-000002"
    assert partial.total + rest.total == -Decimal(invoice["total"]), "the credits add up to the invoice"
    with pytest.raises(CreditNoteError, match="every line is credited"):
        issue_credit_note(warehouse, settings, invoice["number"], "third time")
    folder = settings.data_dir / "invoices" / "2026-10"
    html = (folder / "SQK-CN-2026-000001.html").read_text()
    assert "Credit note SQK-CN-2026-000001" in html and invoice["number"] in html
    assert "&lt;b&gt;activated&lt;/b&gt;" in html, "the reason is escaped"
    assert (folder / "SQK-CN-2026-000001.pdf").read_bytes().startswith(b"%PDF-")
    # Credit notes are EN 16931 documents too: a UBL CreditNote (381) naming the invoice.
    notes = warehouse.query_df("select number, ubl, einvoice_errors from invoicing.credit_notes order by 1")
    assert (notes["einvoice_errors"] == "").all() and len(notes) == 2
    ubl = (folder / "SQK-CN-2026-000001.xml").read_text()
    assert ubl == notes["ubl"].iloc[0] and "<cbc:CreditNoteTypeCode>381</cbc:CreditNoteTypeCode>" in ubl
    assert f"<cbc:ID>{invoice['number']}</cbc:ID>" in ubl
    same = warehouse.scalar(
        "select html_sha256 from invoicing.invoices where number = :n", {"n": invoice["number"]}
    )
    assert same == invoice["html_sha256"], "the invoice itself never changes"
    # The next invoice of the account takes both credits.
    account = warehouse.scalar("select account_id from invoicing.invoices where number = :n",
                               {"n": invoice["number"]})
    monkeypatch.setenv("SQUAK_INVOICE_PDF", "off")
    november = bill_cycle(warehouse, settings, "2026-11", finalize=True)
    assert november.finalized > 0
    row = warehouse.query_df(
        "select number, total, previous_balance, amount_due from invoicing.invoices "
        "where account_id = :a and cycle = '2026-11' and currency = 'USD'", {"a": account}
    ).iloc[0]
    credits = partial.total + rest.total
    assert Decimal(row["amount_due"]) == Decimal(row["total"]) + Decimal(row["previous_balance"]) + credits
    applied = warehouse.query_df("select distinct applied_to from invoicing.credit_notes")["applied_to"]
    assert list(applied) == [row["number"]]


def test_revenue_assurance_gate_blocks_finalization_of_leaks(
    tmp_path: Path, demo, monkeypatch, no_pdf
) -> None:
    from squak_pipelines.assurance import invoice_gate
    from squak_pipelines.invoicing import stage

    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    rated(warehouse, settings)
    real_compose = stage.compose
    victims: dict[str, str] = {}

    def leaky(account, cycle, currency, periods, *args, **kwargs):
        invoice = real_compose(account, cycle, currency, periods, *args, **kwargs)
        kinds = [line.kind for line in invoice.lines]
        if len(victims) < 2 and "usage" in kinds and "recurring" in kinds:
            drop = "usage" if not victims else "recurring"  # a lost call group, then a lost fee
            victims[invoice.key] = drop
            invoice.lines.remove(next(line for line in invoice.lines if line.kind == drop))
            invoice.subtotal = sum((x.amount for x in invoice.lines if x.kind != "tax"), Decimal(0))
        return invoice

    monkeypatch.setattr(stage, "compose", leaky)
    with pytest.raises(invoice_gate.RevenueAssuranceError, match="rated_calls/drafted_calls") as failed:
        bill_cycle(warehouse, settings, "2026-10", finalize=True)
    assert "services_expected/services_charged" in str(failed.value)
    assert warehouse.count("invoicing.invoices") == 0, "nothing finalized"
    frame = invoice_gate.draft_controls(warehouse, settings, "2026-10").set_index("invoice_key")
    usage_key, fee_key = list(victims)
    assert frame.loc[usage_key, "rated_calls"] > frame.loc[usage_key, "drafted_calls"]
    assert frame.loc[fee_key, "services_expected"] == frame.loc[fee_key, "services_charged"] + 1
    others = frame.drop(index=[usage_key, fee_key])
    assert (others["rated_calls"] == others["drafted_calls"]).all()
    assert (others["services_expected"] == others["services_charged"]).all()
    monkeypatch.setattr(stage, "compose", real_compose)
    final = bill_cycle(warehouse, settings, "2026-10", finalize=True)
    assert final.gate.success and final.finalized == final.drafts


def test_a_month_in_chunks_gives_what_one_piece_gives(tmp_path: Path, demo, monkeypatch) -> None:
    """Drafts, final invoices, documents and e-mails made a few at a time (as at scale, where a
    month's pages do not fit in memory at once) are the same rows and bytes as in one piece."""
    import shutil

    from squak_pipelines.config import Settings
    from squak_pipelines.invoicing import delivery, stage
    from squak_pipelines.invoicing.delivery import deliver_cycle
    from squak_pipelines.invoicing.stage import write_documents
    from tests.stage_helpers import snapshot

    monkeypatch.setenv("SQUAK_PAYMENT_LINK_SECRET", "chunk-test-key")
    monkeypatch.setenv("SQUAK_INVOICE_PDF", "off")
    monkeypatch.delenv("SQUAK_SMTP_HOST", raising=False)
    settings = copy_demo(demo, tmp_path / "whole")
    rated(DuckDBWarehouse(tmp_path / "whole.duckdb"), settings)  # rated once, billed twice
    shutil.copytree(tmp_path / "whole", tmp_path / "chunked")
    shutil.copy(tmp_path / "whole.duckdb", tmp_path / "chunked.duckdb")
    outcomes = []
    for name, chunk in (("whole", stage.CHUNK), ("chunked", 7)):
        monkeypatch.setattr(stage, "CHUNK", chunk)
        monkeypatch.setattr(delivery, "EMAIL_BATCH", chunk if name == "chunked" else delivery.EMAIL_BATCH)
        settings = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path / name)})
        warehouse = DuckDBWarehouse(tmp_path / f"{name}.duckdb")
        bill_cycle(warehouse, settings, "2026-10", finalize=False)
        report = bill_cycle(warehouse, settings, "2026-10", finalize=True, documents=False)
        write_documents(warehouse, settings, "2026-10")
        deliver_cycle(warehouse, settings, "2026-10")
        outcomes.append((report.finalized, report.einvoices, snapshot(warehouse, settings.data_dir)))
    (whole_final, whole_valid, whole), (final, valid, chunked) = outcomes
    assert final == whole_final > 7 * 3 and valid == whole_valid, "several chunks"
    assert chunked.keys() == whole.keys()
    for name in whole:
        assert chunked[name] == whole[name], name
    assert whole["outbox"] and whole["portal"] and whole["invoices"]
