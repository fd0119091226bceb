"""The adversarial month, on DuckDB and PostgreSQL: each fault found by the independent
recomputation of invoices, with amounts computed by hand from docs/billing-rules.md.

October 2026; plan T (USD, America/New_York): line 7.00 a month, activation 12.50, SMS option
3.00; plan P (EUR, Europe/Paris): line 20.00; plan Q (EUR, Europe/Paris): line 31.00.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import OPERATOR_YAML
from squak_pipelines.invoicing.compose import DraftError, Invoice
from squak_pipelines.invoicing.stage import draft_invoices
from squak_pipelines.migrations import migrate
from squak_pipelines.orders.provisioning import Provisioner
from squak_pipelines.schema import registry
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from tests.rating_helpers import write_plan

D = Decimal
LINE_FEES = {"recurring": [{"product": "LINE", "description": "Phone line", "amount": "7.00"},
                           {"product": "SMS-OPTION", "description": "SMS option", "amount": "3.00"}],
             "one_time": [{"product": "LINE", "description": "Activation fee", "amount": "12.50"}]}
TAXES = """tax_id,name,country,state,applies_to,kind,rate,amount,currency,effective_from
US-CA-SALES,California Sales Tax,US,CA,recurring,percent,7.25,,USD,2026-01-01
US-NY-E911,New York E911 Surcharge,US,NY,per_number,fixed,,1.00,USD,2026-01-01
US-NY-E911-EUR,New York E911 Surcharge,US,NY,per_number,fixed,,0.90,EUR,2026-01-01
FR-TVA,TVA,FR,,all,percent,20,,EUR,2026-01-01
"""
PROMOTIONS = """promotion_id,description,kind,value,currency,applies_to,duration,cycles
WELCOME3,Welcome,percent,30,,recurring,once,
LOYAL10,Loyalty,percent,10,,all,once,
CALLS5,Calls,percent,5,,usage,once,
BIG12,Big credit,fixed,12.00,USD,all,once,
REC10,Line credit,fixed,10.00,USD,recurring,once,
"""
COUPONS = """account_id,promotion_id,first_cycle
A-WELCOME,WELCOME3,2026-10
A-NEG,REC10,2026-10
A-STACK1,LOYAL10,2026-10
A-STACK1,CALLS5,2026-10
A-STACK1,WELCOME3,2026-10
A-STACK2,WELCOME3,2026-10
A-STACK2,CALLS5,2026-10
A-STACK2,LOYAL10,2026-10
A-CAP1,BIG12,2026-10
A-CAP1,WELCOME3,2026-10
A-CAP2,WELCOME3,2026-10
A-CAP2,BIG12,2026-10
"""
ACCOUNTS = {  # account: (country, state)
    "A-WELCOME": ("US", "CA"), "A-NEG": ("US", "CA"), "A-STACK1": ("US", "TX"), "A-STACK2": ("US", "TX"),
    "A-CAP1": ("US", "TX"), "A-CAP2": ("US", "TX"), "A-DST": ("FR", ""), "A-911": ("US", "NY"),
    "A-ADDON": ("US", "TX"), "A-BAND": ("US", "TX"),
}
SEP, OCT1 = "2026-09-01T04:00:00+00:00", "2026-10-01T04:00:00+00:00"  # local midnights in New York


def _ts(text: str | None) -> pd.Timestamp | None:
    return pd.Timestamp(text) if text else None


def _service(sid: str, account: str, product: str, plan: str, number: str | None, start: str,
             end: str | None = None, period: int = 1) -> dict:
    return {"service_id": sid, "period": period, "account_id": account, "order_id": sid, "line_no": "1",
            "product_id": product, "plan_id": plan, "number": number, "features": "voice",
            "active_from": _ts(start), "active_to": _ts(end), "parent_service_id": ""}


def _addon_services() -> list[dict]:
    """Provisioning sells a line with its SMS option in one order, then disconnects the line on
    21 Oct 00:00 New York: the option ends with it."""
    inventory = pd.DataFrame([{"number": "+15125550100", "country": "US", "area_code": "512", "state": "TX",
                               "block": "", "status": "available", "service_id": None,
                               "quarantine_until": pd.NaT}])
    empty = pd.DataFrame(columns=["service_id", "period", "account_id", "order_id", "line_no", "product_id",
                                  "plan_id", "number", "features", "active_from", "active_to",
                                  "parent_service_id"])
    p = Provisioner(inventory, empty, [], {"LINE": True, "SMS-OPTION": False},
                    {"LINE": "voice", "SMS-OPTION": "sms"})
    base = {"account_id": "A-ADDON", "plan_id": "T", "qty": 1, "features": "", "requested_number": "",
            "area_code": "512", "phone_number": "", "order_id": "O-1"}
    assert p.apply({**base, "line_no": "1", "kind": "new", "product_id": "LINE",
                    "effective_ts": pd.Timestamp(SEP)}).accepted
    assert p.apply({**base, "line_no": "2", "kind": "new", "product_id": "SMS-OPTION",
                    "effective_ts": pd.Timestamp(SEP)}).accepted
    done = p.apply({**base, "order_id": "O-2", "line_no": "1", "kind": "disconnect", "product_id": "LINE",
                    "phone_number": "+15125550100",
                    "effective_ts": pd.Timestamp("2026-10-21T04:00:00+00:00")})
    assert done.accepted and "add-ons ended with it" in done.history[0][2]
    frame = p.services_frame()
    option = frame[frame["product_id"] == "SMS-OPTION"].iloc[0]
    assert option["parent_service_id"] == "SVC-O-1-1-1"
    assert option["active_to"] == pd.Timestamp("2026-10-21T04:00:00+00:00")
    return [{k: (None if v is None or (not isinstance(v, str) and pd.isna(v)) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


SERVICES = [
    # Activated on the 1st: a full month 7.00 and the activation fee 12.50.
    _service("S-W", "A-WELCOME", "LINE", "T", "+13105550100", OCT1),
    _service("S-N", "A-NEG", "LINE", "T", "+13105550101", OCT1),
    *[_service(f"S-{a}", a, "LINE", "T", f"+1512555{n:04d}", SEP)
      for n, a in enumerate(("A-STACK1", "A-STACK2", "A-CAP1", "A-CAP2"))],
    # Plan change P -> Q at 00:30 Paris time on 25 Oct, the day clocks go back (CEST -> CET).
    _service("S-D", "A-DST", "LINE", "P", "+33142000001", SEP, "2026-10-24T22:30:00+00:00"),
    _service("S-D", "A-DST", "LINE", "Q", "+33142000001", "2026-10-24T22:30:00+00:00", period=2),
    # New York customer: one USD number all month, one USD number disconnected at 00:30 on the
    # 1st (New York), two French numbers billed in EUR.
    _service("S-9A", "A-911", "LINE", "T", "+12125550100", SEP),
    _service("S-9B", "A-911", "LINE", "T", "+12125550101", SEP, "2026-10-01T04:30:00+00:00"),
    _service("S-9C", "A-911", "LINE", "P", "+33142000002", SEP),
    _service("S-9D", "A-911", "LINE", "P", "+33142000003", SEP),
]


def _usage(key: str, account: str, charge: str, discount: str = "0", name: str | None = None,
           currency: str = "USD", destination: str = "United Kingdom - London", plan: str = "T",
           band: str = "offpeak") -> dict:
    return {"event_key": key, "account_id": account, "currency": currency, "cycle": "2026-10",
            "service": "voice", "call_type": "international", "destination": destination,
            "discount_name": name, "charged_units": 60, "allowance_used": 0, "charge": D(charge),
            "discount": D(discount), "answered": True, "plan_id": plan, "band": band}


USAGE = [
    # Two calls to London, one touched by the plan's discount: one usage line of 0.07, the
    # discount its own line.
    _usage("E1", "A-STACK1", "0.0350", band="peak"),
    _usage("E2", "A-STACK1", "0.0350", "0.0100", "International 10%"),
    _usage("E3", "A-STACK1", "4.9300", destination="France"),
    _usage("E4", "A-STACK2", "0.0350"), _usage("E5", "A-STACK2", "0.0350", "0.0100", "International 10%"),
    _usage("E6", "A-STACK2", "4.9300", destination="France"),
    # A plan that shows time bands on its invoices: a line per band.
    _usage("E7", "A-BAND", "0.1000", plan="B", band="peak"),
    _usage("E8", "A-BAND", "0.1000", plan="B", band="peak"),
    _usage("E9", "A-BAND", "0.0500", plan="B", band="offpeak"),
]


def _table(name: str, rows: list[dict]) -> pa.Table:
    schema = registry()[name].columns
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type)
                     for f in schema if any(f.name in r for r in rows)})


def _settings(root: Path) -> Settings:
    ref = root / "reference"
    plans = ref / "plans"
    write_plan(plans, plan_id="T", fees=LINE_FEES)
    write_plan(plans, plan_id="B", fees=LINE_FEES, show_bands=True)
    write_plan(plans, plan_id="P", currency="EUR", timezone="Europe/Paris",
               fees={"recurring": [{"product": "LINE", "description": "Phone line", "amount": "20.00"}]})
    write_plan(plans, plan_id="Q", currency="EUR", timezone="Europe/Paris",
               fees={"recurring": [{"product": "LINE", "description": "Phone line", "amount": "31.00"}]})
    (ref / "tax_rates.csv").write_text(TAXES, encoding="utf-8")
    (ref / "promotions.csv").write_text(PROMOTIONS, encoding="utf-8")
    (ref / "coupons.csv").write_text(COUPONS, encoding="utf-8")
    (ref / "operator.yaml").write_text(OPERATOR_YAML, encoding="utf-8")
    return Settings.from_env({"SQUAK_DATA_DIR": str(root)})


@pytest.fixture(params=["duckdb", "postgres"])
def month(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Warehouse, Settings]:
    warehouse: Warehouse = DuckDBWarehouse(tmp_path / "w.duckdb") if request.param == "duckdb" \
        else PostgresWarehouse(request.getfixturevalue("fresh_pg_url"))
    settings = _settings(tmp_path / "squak")
    migrate(warehouse)
    accounts = [{"account_id": a, "name": a, "segment": "residential", "country": c, "state": s,
                 "street": "1 Main St", "city": "Town", "postal_code": "10001", "bill_day": "",
                 "email": f"{a.lower()}@example.com", "delivery_method": "email"}
                for a, (c, s) in ACCOUNTS.items()]
    warehouse.load("orders.accounts", _table("orders.accounts", accounts), mode="append")
    services = SERVICES + _addon_services()
    warehouse.load("orders.services", _table("orders.services", services), mode="append")
    warehouse.load("rating.rated_events", _table("rating.rated_events", USAGE), mode="append")
    return warehouse, settings


def _drafts(warehouse: Warehouse, settings: Settings) -> dict[tuple[str, str], Invoice]:
    drafts = draft_invoices(warehouse, settings, "2026-10", finalize=True, today=date(2026, 11, 2))
    return {(i.account_id, i.currency): i for i in drafts}


def _lines(invoice: Invoice, kind: str) -> list[tuple[str, Decimal]]:
    return [(x.description, x.amount) for x in invoice.lines if x.kind == kind]


def _amounts(invoice: Invoice, kind: str) -> list[Decimal]:
    return [x.amount for x in invoice.lines if x.kind == kind]


def test_the_adversarial_month_by_hand(month) -> None:
    warehouse, settings = month
    inv = _drafts(warehouse, settings)

    # WELCOME3 is 30% of the recurring lines only: 30% x 7.00 = 2.10 (not of 7.00 + 12.50).
    welcome = inv[("A-WELCOME", "USD")]
    assert _amounts(welcome, "recurring") == [D("7.00")] and _amounts(welcome, "one_time") == [D("12.50")]
    assert _amounts(welcome, "promotion") == [D("-2.10")]
    # California sales tax on recurring: (7.00 - 2.10) x 7.25% = 0.35525 -> 0.36.
    [tax] = [x for x in welcome.lines if x.tax_id == "US-CA-SALES"]
    assert tax.base == D("4.90") and tax.amount == D("0.36")
    assert welcome.total == D("7.00") + D("12.50") - D("2.10") + D("0.36")

    # A 10.00 credit on recurring charges takes at most the 7.00 of recurring lines: no negative
    # base and no negative tax (the base is 0: no tax line at all).
    neg = inv[("A-NEG", "USD")]
    assert _amounts(neg, "promotion") == [D("-7.00")]
    assert not [x for x in neg.lines if x.tax_id == "US-CA-SALES"]
    assert all(x.amount >= 0 for x in neg.lines if x.kind == "tax")

    # Usage: one line per destination, whatever discount or band touched the calls:
    # 0.035 + 0.035 = 0.07; a plan with `show_bands` gets a line per band.
    stack1, stack2 = inv[("A-STACK1", "USD")], inv[("A-STACK2", "USD")]
    assert _lines(stack1, "usage") == [("Voice international - France (1 calls)", D("4.93")),
                                       ("Voice international - United Kingdom - London (2 calls)", D("0.07"))]
    assert _lines(stack1, "discount") == [("International 10% (international usage)", D("-0.01"))]
    # Stacked coupons, both orders: each a percentage of its own scope.
    # LOYAL10: 10% x (7.00 + 4.93 + 0.07 - 0.01) = 1.199 -> 1.20; CALLS5: 5% x 4.99 = 0.2495 -> 0.25;
    # WELCOME3: 30% x 7.00 = 2.10.
    assert _amounts(stack1, "promotion") == [D("-1.20"), D("-0.25"), D("-2.10")]
    assert sorted(_amounts(stack2, "promotion")) == sorted(_amounts(stack1, "promotion"))
    assert stack1.total == stack2.total

    # Where the cap bites, order matters and the total does not: 12.00 on everything (7.00) first
    # leaves nothing for WELCOME3; WELCOME3 first (2.10) leaves 4.90 for the credit.
    cap1, cap2 = inv[("A-CAP1", "USD")], inv[("A-CAP2", "USD")]
    assert _amounts(cap1, "promotion") == [D("-7.00")]
    assert _amounts(cap2, "promotion") == [D("-2.10"), D("-4.90")]
    assert cap1.subtotal == cap2.subtotal == D("0.00")

    # Plan change at 00:30 Paris time on 25 Oct (DST ends that night): 1-24 Oct on P, 25-31 on Q.
    # 20.00 x 24/31 = 15.4838 -> 15.48; 31.00 x 7/31 = 7.00; TVA 20% x 22.48 = 4.496 -> 4.50.
    dst = inv[("A-DST", "EUR")]
    assert _amounts(dst, "recurring") == [D("15.48"), D("7.00")]
    assert _amounts(dst, "tax") == [D("4.50")] and dst.total == D("26.98")

    # E911 per number on the invoice that carries the number's service: the USD invoice has the
    # number active all month and the one disconnected at 00:30 on the 1st (2 x 1.00); the EUR
    # invoice the two French numbers at the fee's EUR amount (2 x 0.90).
    usd, eur = inv[("A-911", "USD")], inv[("A-911", "EUR")]
    assert _lines(usd, "tax") == [("New York E911 Surcharge (2 numbers)", D("2.00"))]
    assert _lines(eur, "tax") == [("New York E911 Surcharge (2 numbers)", D("1.80"))]
    assert _amounts(usd, "recurring") == [D("7.00")], "the number gone at 00:30 on the 1st has no days"

    # The SMS option ends with its line on 21 Oct: 20 of 31 days each.
    # 7.00 x 20/31 = 4.5161 -> 4.52; 3.00 x 20/31 = 1.9354 -> 1.94.
    addon = inv[("A-ADDON", "USD")]
    assert _amounts(addon, "recurring") == [D("4.52"), D("1.94")]
    assert _lines(inv[("A-BAND", "USD")], "usage") == [
        ("Voice international - United Kingdom - London, offpeak (1 calls)", D("0.05")),
        ("Voice international - United Kingdom - London, peak (2 calls)", D("0.20"))]


def test_a_fee_without_an_amount_in_the_invoice_currency_stops_the_draft(month) -> None:
    warehouse, settings = month
    rows = (settings.reference_dir / "tax_rates.csv").read_text().splitlines()
    (settings.reference_dir / "tax_rates.csv").write_text(
        "\n".join(r for r in rows if not r.startswith("US-NY-E911-EUR")) + "\n")
    with pytest.raises(DraftError, match=r"account A-911: the per-number fee 'New York E911 Surcharge' "
                                         r"\(US-NY-E911\) is due on 2 number.*billed in EUR.*only in USD"):
        _drafts(warehouse, settings)


def test_an_unknown_promotion_scope_is_refused(tmp_path: Path) -> None:
    from squak_pipelines.invoicing.promotions import load_promotions
    from squak_pipelines.reference.files import ReferenceFileError

    path = tmp_path / "promotions.csv"
    path.write_text(PROMOTIONS.replace("WELCOME3,Welcome,percent,30,,recurring",
                                       "WELCOME3,Welcome,percent,30,,activation"), encoding="utf-8")
    with pytest.raises(ReferenceFileError, match=r"promotions.csv:2: field 'applies_to': 'activation'"):
        load_promotions(path)



def test_an_invalid_e_invoice_is_refused_by_the_rules_and_blocks_delivery(month, monkeypatch) -> None:
    """The CEN schematron refuses a line total that does not add up (BR-CO-10); such an invoice
    is finalized (numbers stay gapless) but delivered by no method."""
    from lxml import etree

    import squak_pipelines.invoicing.einvoice as einvoice
    from squak_pipelines.invoicing.delivery import deliver_cycle
    from squak_pipelines.invoicing.einvoice.validation import validate
    from squak_pipelines.invoicing.stage import bill_cycle

    warehouse, settings = month
    monkeypatch.setenv("SQUAK_INVOICE_PDF", "off")
    monkeypatch.setenv("SQUAK_TODAY", "2026-11-02")
    made = einvoice.to_ubl

    def broken(view) -> bytes:
        xml = made(view)
        if view.buyer.identifier != "A-DST":
            return xml
        root = etree.fromstring(xml)
        amount = root.find(".//{*}InvoiceLine/{*}LineExtensionAmount")
        amount.text = str(Decimal(amount.text) + 1)  # a line that no longer adds up to BT-106
        return etree.tostring(root)

    monkeypatch.setattr(einvoice, "to_ubl", broken)
    # The synthetic month's usage is not from its decks: the revenue-assurance gate (tested
    # elsewhere) would re-rate it, so it is passed here.
    monkeypatch.setattr("squak_pipelines.assurance.invoice_gate.run_gate",
                        lambda *a, **k: SimpleNamespace(success=True))
    report = bill_cycle(warehouse, settings, "2026-10", finalize=True)
    [(number, errors)] = report.einvoice_blocked.items()
    assert "BR-CO-10" in errors and errors.startswith("UBL")
    assert report.einvoices == report.finalized - 1
    assert validate(broken(einvoice.build(*_view_args(warehouse, settings, number))), "ubl").rule_ids \
        == ["BR-CO-10"]
    delivered = deliver_cycle(warehouse, settings, "2026-10")
    assert delivered.blocked == {number: "BR-CO-10"}
    rows = warehouse.query_df("select number, status, detail from invoicing.deliveries")
    mine = rows[rows["number"] == number]
    assert list(mine["status"]) == ["blocked"] and "BR-CO-10" in mine["detail"].iloc[0]
    assert not (settings.data_dir / "outbox" / f"{number}.eml").exists()
    # The e-mail and the invoice print the same signed payment link.
    import email
    import re

    sent = sorted((settings.data_dir / "outbox").glob("*.eml"))[0]
    body = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    link = re.search(r"Pay online: (\S+)", body.get_body(("plain",)).get_content()).group(1)
    page = warehouse.scalar("select html from invoicing.invoices where number = :n", {"n": sent.stem})
    assert f'href="{link}"' in page
    portal = (settings.data_dir / "portal" / "A-DST")
    assert not portal.exists() or number not in (portal / "index.html").read_text()
    # Every other invoice: valid UBL beside it, and for EUR a CII.
    valid = warehouse.query_df("select number, currency, ubl, cii, einvoice_errors from invoicing.invoices")
    valid = valid[valid["number"] != number]
    assert (valid["einvoice_errors"] == "").all() and (valid["ubl"].str.len() > 0).all()
    assert ((valid["cii"].str.len() > 0) == (valid["currency"] == "EUR")).all()


def _view_args(warehouse: Warehouse, settings: Settings, number: str):
    """What einvoice.build needs for a final invoice, read back as credit notes read it."""
    from squak_pipelines.invoicing.credit_notes import _invoice
    from squak_pipelines.invoicing.render import operator_of
    from squak_pipelines.invoicing.stage import tax_table

    _, invoice = _invoice(warehouse, number)
    return invoice, operator_of(settings.reference_dir), tax_table(settings), 2
