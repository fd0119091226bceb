"""Collecting by SEPA direct debit, bank returns, a processor's own report, and the bad input
of bank files: pain.008 out, camt in, the invoice reopened by a return and dunned again."""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import xmlschema

from squak_pipelines.payments.direct_debit import SCHEMA, creditor_id_problem, due_collections
from squak_pipelines.payments.intake import read_payment_bytes
from squak_pipelines.payments.stage import AssignError, assign, ledger_differences, run_payments

CREDITOR = """creditor_name: Squak Communications GmbH
creditor_iban: DE89370400440532013000
creditor_bic: COBADEFFXXX
creditor_id: DE98ZZZ09999999999
lead_days: 2
"""
MANDATE_IBAN = "DE02120300000000202051"
CAMT = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"  # a newer version than the corpus has


def _statement(stmt_id: str, entries: str, opening: str = "", closing: str = "") -> str:
    balances = "".join(
        f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{amount}</Amt>'
        f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-20</Dt></Dt></Bal>"
        for code, amount in (("OPBD", opening), ("CLBD", closing))
        if amount
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{CAMT}"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{stmt_id}</MsgId><CreDtTm>2026-11-20T18:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>{stmt_id}</Id><ElctrncSeqNb>1</ElctrncSeqNb><CreDtTm>2026-11-20T18:00:00</CreDtTm>"
        f"<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>{balances}{entries}</Stmt>"
        "</BkToCstmrStmt></Document>"
    )


def _tx(e2e: str, amount: str, mandate: str = "", extra: str = "") -> str:
    return (
        f"<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId>"
        + (f"<MndtId>{mandate}</MndtId>" if mandate else "")
        + f'</Refs><Amt Ccy="EUR">{amount}</Amt>'
        f"<RltdPties><Dbtr><Pty><Nm>Kunde</Nm></Pty></Dbtr><DbtrAcct><Id><IBAN>{MANDATE_IBAN}</IBAN></Id>"
        f"</DbtrAcct></RltdPties>{extra}</TxDtls>"
    )


def _entry(
    amount: str, direction: str, day: str, ref: str, txs: str, reversal: bool = False, status: str = "BOOK"
) -> str:
    return (
        f'<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{direction}</CdtDbtInd>'
        + ("<RvslInd>true</RvslInd>" if reversal else "")
        + f"<Sts><Cd>{status}</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt>"
        f"<AcctSvcrRef>{ref}</AcctSvcrRef><NtryDtls>{txs}</NtryDtls></Ntry>"
    )


def _mandate_accounts(warehouse, settings) -> list[dict]:
    """The EUR accounts of the demo pay by SEPA direct debit under a mandate signed in 2025."""
    (settings.reference_dir / "direct_debit.yaml").write_text(CREDITOR)
    warehouse.execute(
        "update orders.accounts set payment_method = 'ach', iban = :iban, bic = '', "
        "mandate_id = 'MNDT-' || account_id, mandate_date = '2025-06-01', billing_issue = null "
        "where currency = 'EUR'",
        {"iban": MANDATE_IBAN},
    )
    rows = warehouse.query_df(
        "select i.number, i.account_id, i.total, i.due_date from invoicing.invoices i "
        "join orders.accounts a using (account_id) where i.currency = 'EUR' and i.total > 0 order by 1"
    ).to_dict("records")
    assert len(rows) >= 2, "the demo bills some accounts in EUR"
    return rows


def test_direct_debit_collected_returned_reopened_and_dunned(invoiced, monkeypatch) -> None:
    from squak_pipelines import faults
    from squak_pipelines.faults import InjectedFault

    monkeypatch.setattr(faults, "_passed", {})  # count passes from this test on (one process, two params)
    warehouse, settings = invoiced
    eur = _mandate_accounts(warehouse, settings)
    # A run that dies before its commit sends nothing: its batch stays staged and is dropped.
    monkeypatch.setenv("SQUAK_FAULT", "payments.before_outgoing_commit=raise")
    with pytest.raises(InjectedFault):
        run_payments(warehouse, settings, date(2026, 11, 10))
    outgoing = settings.data_dir / "outgoing"
    assert [p.name for p in (outgoing / ".staged").glob("pain008-*")] == ["pain008-2026-11-10.xml"]
    assert not list(outgoing.glob("pain008-*")) and warehouse.count("payments.direct_debits") == 0
    monkeypatch.delenv("SQUAK_FAULT")
    first = run_payments(warehouse, settings, date(2026, 11, 10))
    assert not list((outgoing / ".staged").iterdir()), "the dead run's batch is gone, the new one is out"
    assert first.direct_debits == len(eur)
    [batch] = sorted((settings.data_dir / "outgoing").glob("pain008-*.xml"))
    schema = xmlschema.XMLSchema(
        Path(xmlschema.__file__).parents[1] / "sepaxml" / "schemas" / f"{SCHEMA}.xsd"
    )
    schema.validate(batch.read_text())  # the pain.008.001.02 schema sepaxml ships
    doc = schema.to_dict(batch.read_text())
    txs = [tx for info in doc["CstmrDrctDbtInitn"]["PmtInf"] for tx in info["DrctDbtTxInf"]]
    assert sorted(tx["PmtId"]["EndToEndId"] for tx in txs) == sorted(f"SQK-DD-{r['number']}" for r in eur)
    assert {info["PmtTpInf"]["SeqTp"] for info in doc["CstmrDrctDbtInitn"]["PmtInf"]} == {"FRST"}
    by_e2e = {tx["PmtId"]["EndToEndId"]: tx for tx in txs}
    for r in eur:
        tx = by_e2e[f"SQK-DD-{r['number']}"]
        assert Decimal(str(tx["InstdAmt"]["$"])) == Decimal(r["total"]).quantize(Decimal("0.01"))
        assert tx["DrctDbtTx"]["MndtRltdInf"]["MndtId"] == f"MNDT-{r['account_id']}"
        assert tx["DbtrAcct"]["Id"]["IBAN"] == MANDATE_IBAN
    header = doc["CstmrDrctDbtInitn"]["GrpHdr"]
    assert header["CreDtTm"].startswith("2026-11-25"), "stamped by the project's clock (SQUAK_TODAY)"
    assert header["MsgId"] == "SQK-pain008-2026-11-10" and header["NbOfTxs"] == str(len(eur))
    again = run_payments(warehouse, settings, date(2026, 11, 10))
    assert again.direct_debits == 0, "each invoice is collected once"

    # The bank credits the collections in one batch entry, then returns one of them (AM04).
    total = sum(Decimal(r["total"]) for r in eur).quantize(Decimal("0.01"))
    credits = "".join(
        _tx(f"SQK-DD-{r['number']}", f"{Decimal(r['total']):.2f}", f"MNDT-{r['account_id']}") for r in eur
    )
    drop = settings.payments_drop_dir
    drop.mkdir(parents=True, exist_ok=True)
    (drop / "statement-1.xml").write_text(
        _statement("ST-1", _entry(f"{total}", "CRDT", "2026-11-16", "B-1", credits))
    )
    collected = run_payments(warehouse, settings, date(2026, 11, 20))
    assert collected.new_payments == len(eur)
    hows = warehouse.query_df("select how, count(*) as n from payments.matches group by 1")
    assert dict(zip(hows["how"], hows["n"], strict=True)) == {"direct_debit": len(eur)}
    assert not set(warehouse.query_df("select invoice_number from payments.aging")["invoice_number"]) & {
        r["number"] for r in eur
    }, "collected invoices are paid"
    bounced = eur[0]
    amount = f"{Decimal(bounced['total']):.2f}"
    ret = _tx(
        f"SQK-DD-{bounced['number']}",
        amount,
        f"MNDT-{bounced['account_id']}",
        "<RtrInf><Rsn><Cd>AM04</Cd></Rsn></RtrInf>",
    )
    (drop / "statement-2.xml").write_text(
        _statement("ST-2", _entry(amount, "DBIT", "2026-11-21", "B-2", ret, reversal=True))
    )
    returned = run_payments(warehouse, settings, date(2026, 12, 1))
    assert (returned.reversals, returned.new_payments) == (1, 0)
    reopened = warehouse.scalar(
        "select open_amount from payments.aging where invoice_number = :n", {"n": bounced["number"]}
    )
    assert Decimal(reopened) == Decimal(bounced["total"]), "the return reopens it"
    kinds = set(
        warehouse.query_arrow(
            "select kind from payments.ledger where account_id = :a", {"a": bounced["account_id"]}
        )
        .column(0)
        .to_pylist()
    )
    assert {"invoice", "payment", "returned"} <= kinds
    assert ledger_differences(warehouse).empty
    dunned = warehouse.query_df("select account_id, invoices from payments.dunning")
    assert bounced["number"] in ",".join(dunned[dunned["account_id"] == bounced["account_id"]]["invoices"])
    assert (
        warehouse.scalar(
            "select how from payments.matches m join payments.payments p using (payment_id) "
            "where p.status = 'returned'"
        )
        == "reversal"
    )
    # Both statements again, zipped as banks deliver them: nothing is recorded twice.
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for name in ("statement-1.xml", "statement-2.xml"):
            archive.writestr(name, (drop / name).read_bytes())
    (drop / "statements-resent.zip").write_bytes(zipped.getvalue())
    resent = run_payments(warehouse, settings, date(2026, 12, 1))
    assert (resent.new_payments, resent.reversals, resent.duplicates) == (0, 0, len(eur) + 1)
    assert ledger_differences(warehouse).empty
    # Finance cannot hand the return to another invoice, nor a payment twice.
    with pytest.raises(AssignError, match="returned record, not a payment received"):
        pid = warehouse.scalar("select payment_id from payments.payments where status = 'returned'")
        assign(warehouse, pid, "test", invoice_number=bounced["number"])


def test_direct_debit_sequence_and_creditor_checks() -> None:
    mandates = {
        "A": {"iban": MANDATE_IBAN, "bic": "", "mandate_id": "M-1", "mandate_date": "2025-01-01", "name": "A"}
    }
    invoices = [
        {
            "number": f"SQK-2026-00000{n}",
            "account_id": "A",
            "currency": "EUR",
            "due_date": date(2026, 11, n),
            "open": Decimal("10.00"),
        }
        for n in (1, 2)
    ]
    due = due_collections(invoices, mandates, set(), set(), date(2026, 11, 1), 2)
    assert [(c["sequence_type"], c["collection_date"]) for c in due] == [
        ("FRST", date(2026, 11, 3)),
        ("RCUR", date(2026, 11, 3)),
    ]
    assert (
        due_collections(invoices, mandates, set(), {"M-1"}, date(2026, 11, 1), 2)[0]["sequence_type"]
        == "RCUR"
    )
    assert creditor_id_problem("DE98ZZZ09999999999") is None
    assert "check digits" in creditor_id_problem("DE97ZZZ09999999999")


def test_accounts_with_a_bad_mandate_are_refused_at_intake() -> None:
    import pandas as pd

    from squak_pipelines.orders.validation import validate_accounts

    base = {
        "account_id": "A",
        "payment_method": "ach",
        "card_token": "",
        "card_last4": "",
        "card_expiry": "",
        "country": "DE",
        "street": "s",
        "city": "c",
        "postal_code": "1",
        "bic": "",
    }
    rows = [
        {**base, "iban": MANDATE_IBAN, "mandate_id": "M-1", "mandate_date": "2025-01-01"},
        {**base, "iban": "DE02120300000000202052", "mandate_id": "M-2", "mandate_date": "2025-01-01"},
        {**base, "iban": MANDATE_IBAN, "mandate_id": "M-3", "mandate_date": "2027-01-01"},
        {**base, "iban": "", "mandate_id": "", "mandate_date": ""},
    ]
    issues = validate_accounts(pd.DataFrame(rows))["billing_issue"].tolist()
    assert pd.isna(issues[0]) and pd.isna(issues[3])
    assert issues[1].startswith("invalid_mandate: iban") and "checksum" in issues[1].lower()
    assert issues[2] == "invalid_mandate: mandate_date: 2027-01-01 is in the future"


STRIPE = (
    "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,source_id,"
    "description,customer_id,charge_id,payment_metadata[invoice_number]\n"
    "txn_1,2026-11-10 10:00:00,2026-11-12 00:00:00,{cur},{a},-0.59,{n},charge,ch_1,Squak invoice,"
    "cus_1,ch_1,{inv1}\n"
    "txn_2,2026-11-10 11:00:00,2026-11-12 00:00:00,{cur},{b},-0.60,{m},charge,ch_2,Squak invoice,"
    "cus_2,ch_2,{inv2}\n"
    "txn_3,2026-11-12 09:00:00,2026-11-14 00:00:00,{cur},-1.00,0.00,-1.00,refund,re_1,,cus_1,ch_1,{inv1}\n"
    "txn_4,2026-11-13 09:00:00,2026-11-15 00:00:00,{cur},-1.00,0.00,-1.00,refund,re_2,,cus_1,ch_1,{inv1}\n"
    "txn_5,2026-11-14 09:00:00,2026-11-16 00:00:00,{cur},-{b},-15.00,-{b},dispute,dp_1,,cus_2,ch_2,{inv2}\n"
    "txn_6,2026-11-15 09:00:00,2026-11-15 00:00:00,{cur},-50.00,0.00,-50.00,payout,po_1,,,,\n"
)


def test_stripe_itemized_report_matches_invoices_and_takes_refunds_back(invoiced) -> None:
    warehouse, settings = invoiced
    two = warehouse.query_df(
        "select number, total, currency from invoicing.invoices where currency = 'USD' "
        "and total > 5 order by number limit 2"
    ).to_dict("records")
    a, b = (Decimal(r["total"]).quantize(Decimal("0.01")) for r in two)
    text = STRIPE.format(
        cur="usd",
        a=a,
        b=b,
        n=a - Decimal("0.59"),
        m=b - Decimal("0.60"),
        inv1=two[0]["number"],
        inv2=two[1]["number"],
    )
    drop = settings.payments_drop_dir
    drop.mkdir(parents=True, exist_ok=True)
    (drop / "Itemized_balance_change_from_activity_USD_2026-11.csv").write_text(text)
    report = run_payments(warehouse, settings, date(2026, 11, 20))
    assert (report.new_payments, report.reversals, report.debits, report.rejected) == (2, 3, 1, 0)
    open_amount = dict(
        warehouse.query_df("select invoice_number, open_amount from payments.aging").itertuples(
            index=False, name=None
        )
    )
    assert Decimal(open_amount[two[0]["number"]]) == Decimal("2.00"), "two partial refunds, both taken back"
    assert Decimal(open_amount[two[1]["number"]]) == b, "the dispute reopens the whole invoice"
    assert ledger_differences(warehouse).empty
    (drop / "resent-balance.csv.gz").write_bytes(gzip.compress(text.encode()))  # known by its header
    again = run_payments(warehouse, settings, date(2026, 11, 20))
    assert (again.new_payments, again.reversals, again.duplicates, again.rejected) == (0, 0, 6, 0)


def test_bad_bank_files_name_file_path_and_reason() -> None:
    body = _entry("10.00", "CRDT", "2026-11-20", "R-1", _tx("E-1", "6.00") + _tx("E-2", "3.00"))
    read = read_payment_bytes(
        _statement("S-1", body + _entry("5.00", "CRDT", "2026-11-20", "R-2", "")).encode(), "st.xml"
    )
    [bad] = read.rejects
    assert (bad["location"], bad["field"]) == ("Stmt[1]/Ntry[1]/NtryDtls/TxDtls", "NtryDtls/TxDtls")
    assert "add up to 9.00 EUR, the entry is 10.00 EUR" in bad["reason"]
    assert [p["amount"] for p in read.payments] == [Decimal("5.00")], "the rest of the file is read"
    odd = _statement("S-2", _entry("1.00", "CRDT", "2026-11-20", "R-3", "").replace('Ccy="EUR"', 'Ccy="EUX"'))
    assert "not an ISO 4217 currency" in read_payment_bytes(odd.encode(), "odd.xml").rejects[0]["reason"]
    empty = '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt/></Document>'
    assert "has no Stmt" in read_payment_bytes(empty.encode(), "empty.xml").rejects[0]["reason"]
    old = empty.replace("001.02", "001.01")
    assert "versions 001.02 to 001.13" in read_payment_bytes(old.encode(), "old.xml").rejects[0]["reason"]
    external = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f'<Document xmlns="{CAMT}">&x;</Document>'
    )
    assert (
        read_payment_bytes(external.encode(), "xxe.xml").rejects[0]["reason"].startswith("not readable XML")
    )
    good = _statement("S-3", _entry("5.00", "CRDT", "2026-11-20", "R-4", ""), "100.00", "104.00").encode()
    assert "balances do not add up" in read_payment_bytes(good, "bal.xml").checks[0]
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.xml", good)
        archive.writestr("b.xml", good.replace(b"S-3", b"S-4"))
    truncated = zipped.getvalue()[: len(zipped.getvalue()) // 2]
    assert "not a readable ZIP archive" in read_payment_bytes(truncated, "day.zip").rejects[0]["reason"]
    assert len(read_payment_bytes(zipped.getvalue(), "day.zip").payments) == 2
    cut = gzip.compress(good)[:-20]
    assert "not a readable gzip file" in read_payment_bytes(cut, "day.xml.gz").rejects[0]["reason"]
    assert len(read_payment_bytes(gzip.compress(good), "day.xml.gz").payments) == 1


def test_pending_entry_then_booked_and_a_corrected_statement() -> None:
    pending = _statement("S-5", _entry("7.00", "CRDT", "2026-11-20", "R-7", "", status="PDNG")).encode()
    booked = _statement("S-6", _entry("7.00", "CRDT", "2026-11-21", "R-7", "")).encode()
    [p] = read_payment_bytes(pending, "p.xml").payments
    [b] = read_payment_bytes(booked, "b.xml").payments
    assert p["status"] == "pending" and b["status"] == "succeeded" and p["payment_id"] != b["payment_id"]
    # Without bank references, a corrected statement with an entry inserted keeps the others' ids.
    one = _entry("7.00", "CRDT", "2026-11-20", "", _tx("E-7", "7.00")).replace(
        "<AcctSvcrRef></AcctSvcrRef>", ""
    )
    two = _entry("8.00", "CRDT", "2026-11-20", "", _tx("E-8", "8.00")).replace(
        "<AcctSvcrRef></AcctSvcrRef>", ""
    )
    first = {r["payment_id"] for r in read_payment_bytes(_statement("S-7", one + one).encode(), "a").payments}
    again = {
        r["payment_id"] for r in read_payment_bytes(_statement("S-7", two + one + one).encode(), "b").payments
    }
    assert len(first) == 2 and first < again and len(again) == 3
    other = {r["payment_id"] for r in read_payment_bytes(_statement("S-8", one).encode(), "c").payments}
    assert not other & first, "a different statement never shares an id"


def test_every_iso_4217_currency_and_the_money_formatter() -> None:
    from squak_pipelines.money import format_money, minor_units

    assert (minor_units("RON"), minor_units("CZK"), minor_units("HUF"), minor_units("CLF")) == (2, 2, 2, 4)
    assert format_money("113.520000", "GBP") == "£113.52"
    assert format_money(Decimal("1234"), "JPY") == "¥1,234"
    assert format_money("5.1255", "BHD") == "BHD5.126"
    assert format_money("1234.5", "EUR", "de_DE") == "1.234,50\xa0€"


def test_finance_commands_refuse_with_one_line(invoiced, monkeypatch) -> None:
    warehouse, settings = invoiced
    drop = settings.payments_drop_dir
    drop.mkdir(parents=True, exist_ok=True)
    (drop / "manual-1.csv").write_text(
        "payment_id,account_id,invoice_number,amount,currency,received_at,method,note\n"
        "M-1,,,10.00,USD,2026-11-20,cheque,\nM-2,,,10.00,JPY,2026-11-20,cheque,\n"
    )
    run_payments(warehouse, settings, date(2026, 11, 20))
    usd = warehouse.scalar("select number from invoicing.invoices where currency = 'USD' order by 1 limit 1")
    account = warehouse.scalar("select account_id from invoicing.invoices where number = :n", {"n": usd})
    cases = [
        (("manual:M-9",), {"invoice_number": usd}, "no payment 'manual:M-9'"),
        (("manual:M-1",), {"account_id": "ACC-999999"}, "no account 'ACC-999999'"),
        (("manual:M-1",), {"invoice_number": "SQK-2026-999999"}, "no final invoice"),
        (("manual:M-2",), {"invoice_number": usd}, "currency mismatch: manual:M-2 is JPY"),
        (("manual:M-2",), {"account_id": account}, "currency mismatch"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(AssignError, match=message):
            assign(warehouse, *args, "test", **kwargs)
    (drop / "manual-1-resent.csv").write_bytes((drop / "manual-1.csv").read_bytes())
    resent = run_payments(warehouse, settings, date(2026, 11, 20))
    assert (resent.new_payments, resent.duplicates) == (0, 2), "finance's file again records nothing twice"
    assign(warehouse, "manual:M-1", "test", invoice_number=usd)
    with pytest.raises(AssignError, match="already assigned"):
        assign(warehouse, "manual:M-1", "test", account_id=account)
