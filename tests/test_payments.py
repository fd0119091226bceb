"""Payments: signed payment links (tamper, expiry), intake of settlement, camt.053 and manual
files, matching, ledger and aging."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from squak_pipelines.payments.links import LinkError, expiry, link_secret, payment_url, sign, verify

SECRET = b"test-secret"


def test_payment_link_round_trip_tamper_and_expiry(monkeypatch) -> None:
    monkeypatch.delenv("SQUAK_PAYMENT_LINK_DAYS", raising=False)
    expires = expiry(date(2026, 11, 1))
    assert expires == datetime(2026, 12, 31, tzinfo=UTC)
    token = sign("SQK-2026-000001", Decimal("25.73"), "USD", expires, SECRET)
    claims = verify(token, SECRET, now=datetime(2026, 11, 20, tzinfo=UTC))
    assert (claims.invoice_number, claims.amount) == ("SQK-2026-000001", Decimal("25.73"))
    assert claims.currency == "USD"
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["amt"] = "0.01"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode() + "." + mac
    with pytest.raises(LinkError, match="tampered"):
        verify(forged, SECRET, now=datetime(2026, 11, 20, tzinfo=UTC))
    with pytest.raises(LinkError, match="tampered"):
        verify(token, b"another key", now=datetime(2026, 11, 20, tzinfo=UTC))
    with pytest.raises(LinkError, match="expired on 2026-12-31"):
        verify(token, SECRET, now=datetime(2026, 12, 31, tzinfo=UTC))
    for junk in ("", "abc", "a.b.c", "!!!.???"):
        with pytest.raises(LinkError, match=r"malformed|tampered"):
            verify(junk, SECRET)


def test_link_secret_from_environment_or_a_private_key_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SQUAK_PAYMENT_LINK_SECRET", raising=False)
    first = link_secret(tmp_path)
    key = tmp_path / "secrets" / "payment-link.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and link_secret(tmp_path) == first
    url = payment_url("SQK-2026-000002", Decimal("10.00"), "GBP", date(2026, 11, 1), tmp_path)
    assert url == payment_url("SQK-2026-000002", Decimal("10.00"), "GBP", date(2026, 11, 1), tmp_path)
    token = url.split("token=")[1]
    assert verify(token, first, now=datetime(2026, 11, 2, tzinfo=UTC)).currency == "GBP"
    monkeypatch.setenv("SQUAK_PAYMENT_LINK_SECRET", "from-env")
    assert link_secret(tmp_path) == b"from-env"


def test_processes_creating_the_link_key_at_once_all_get_the_same_complete_key(
        tmp_path: Path, monkeypatch) -> None:
    """Invoice renderers run in several processes; the first to need the key creates it.
    (Workers forked from a fork server: one forked from the test process itself can inherit a
    lock another thread of it held at the fork, and wait on it forever.)"""
    import multiprocessing

    monkeypatch.delenv("SQUAK_PAYMENT_LINK_SECRET", raising=False)
    context = multiprocessing.get_context("forkserver")
    for attempt in range(10):
        folder = tmp_path / str(attempt)
        with context.Pool(4) as pool:
            keys = pool.map(link_secret, [folder] * 16)
        assert len(set(keys)) == 1 and len(keys[0]) == 44, "one key, whole, for everyone"
        assert [p.name for p in (folder / "secrets").iterdir()] == ["payment-link.key"], "no leftovers"


CAMT053 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>STMT-20261120-01</MsgId><CreDtTm>2026-11-20T18:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-20261120-01-USD</Id>
      <CreDtTm>2026-11-20T18:00:00</CreDtTm>
      <Acct><Id><IBAN>GB29NWBK60161331926819</IBAN></Id><Ccy>USD</Ccy></Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">1000.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-19</Dt></Dt></Bal>
      <Ntry>
        <Amt Ccy="USD">25.73</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt><ValDt><Dt>2026-11-20</Dt></ValDt>
        <AcctSvcrRef>NWB-20261120-000017</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>E2E-4471</EndToEndId></Refs>
          <RltdPties><Dbtr><Nm>Olga Brown</Nm></Dbtr></RltdPties>
          <RmtInf><Ustrd>Invoice SQK-2026-000004 thank you</Ustrd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="GBP">10.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><DtTm>2026-11-20T09:30:00+01:00</DtTm></BookgDt>
        <AcctSvcrRef>NWB-20261120-000018</AcctSvcrRef>
        <NtryDtls><TxDtls>
          <RmtInf><Strd><CdtrRefInf><Ref>sqk 2026 000011</Ref></CdtrRefInf></Strd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="USD">1.50</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt><AcctSvcrRef>NWB-FEE-1120</AcctSvcrRef>
      </Ntry>
      <Ntry>
        <Amt Ccy="USD">12,50</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>2026-11-20</Dt></BookgDt><AcctSvcrRef>NWB-20261120-000019</AcctSvcrRef>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""


def test_camt053_statement_with_several_entries_and_a_malformed_one(tmp_path: Path) -> None:
    from squak_pipelines.payments.intake import read_payment_file

    path = tmp_path / "statement-20261120.xml"
    path.write_text(CAMT053, encoding="utf-8")
    read = read_payment_file(path)
    by_ref = {p["reference"]: p for p in read.payments}
    first = by_ref["NWB-20261120-000017"]
    assert (first["amount"], first["currency"], first["status"]) == (Decimal("25.73"), "USD", "succeeded")
    assert first["payment_id"] == "bank:GB29NWBK60161331926819:NWB-20261120-000017"
    assert first["payer"] == "Olga Brown"
    assert "SQK-2026-000004" in first["remittance"] and first["location"] == "Stmt[1]/Ntry[1]"
    second = by_ref["NWB-20261120-000018"]
    assert second["received_at"] == datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    assert second["remittance"] == "sqk 2026 000011"
    assert by_ref["NWB-FEE-1120"]["status"] == "not_a_payment", "debits are kept, not taken as payments"
    [bad] = read.rejects
    assert bad["location"] == "Stmt[1]/Ntry[4]/Amt" and "12,50" in bad["reason"]
    broken = tmp_path / "broken.xml"
    broken.write_text(CAMT053[:400], encoding="utf-8")
    assert read_payment_file(broken).rejects[0]["reason"].startswith("not readable XML")
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
                    "<Document>&b;</Document>")
    assert read_payment_file(bomb).rejects, "entity expansion is refused"


def test_settlement_and_manual_csv_with_rejects(tmp_path: Path) -> None:
    from squak_pipelines.payments.intake import read_payment_file

    settlement = tmp_path / "settlement-20261120.csv"
    settlement.write_text(
        "processor_reference,token,amount,currency,status,settled_at,description\n"
        "ch_001,tok_2f0ddac24097acb7,25.73,USD,succeeded,2026-11-20T10:00:00Z,SQK-2026-000004\n"
        "ch_002,tok_aa,19.99,usd,failed,2026-11-20T10:01:00Z,\n"
        "ch_001,tok_2f0ddac24097acb7,25.73,USD,refunded,2026-11-22T10:00:00Z,SQK-2026-000004\n"
        "ch_003,tok_bb,-5.00,USD,succeeded,2026-11-20T10:02:00Z,\n"
        "ch_004,tok_cc,5.00,USD,pending,2026-11-20T10:03:00Z,\n"
        "ch_005,tok_dd,5.00,XYZ,succeeded,2026-11-20T10:04:00Z,\n"
        "ch_006,tok_ee,5.00,USD,succeeded,yesterday,\n"
    )
    read = read_payment_file(settlement)
    assert [p["payment_id"] for p in read.payments] == [
        "card:ch_001:succeeded", "card:ch_002:failed:2026-11-20T10:01:00+00:00:19.99",
        "card:ch_001:refunded:2026-11-22T10:00:00+00:00:25.73"]  # each refund a record of its own
    assert read.payments[2]["reverses"] == "ch_001"
    assert read.payments[1]["currency"] == "USD"
    reasons = {(r["location"], r["field"]) for r in read.rejects}
    assert reasons == {("line 5", "amount"), ("line 6", "status"), ("line 7", "currency"),
                       ("line 8", "settled_at")}
    manual = tmp_path / "manual-payments.csv"
    manual.write_text(
        "payment_id,account_id,invoice_number,amount,currency,received_at,method,note\n"
        "MAN-1,ACC-000004,SQK-2026-000004,10.00,USD,2026-11-21,cheque,cheque 2211\n"
        "MAN-2,ACC-000005,,abc,USD,2026-11-21,cash,\n"
    )
    read = read_payment_file(manual)
    assert read.payments[0]["payment_id"] == "manual:MAN-1" and read.payments[0]["method"] == "cheque"
    assert read.payments[0]["received_at"] == datetime(2026, 11, 21, tzinfo=UTC)
    assert [(r["location"], r["field"]) for r in read.rejects] == [("line 3", "amount")]


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def _invoice(number: str, account: str, total: str, issued: str = "2026-11-01", due: str = "2026-11-16",
             currency: str = "USD") -> dict:
    return {"number": number, "account_id": account, "currency": currency, "issue_date": _at(issued),
            "due_date": _at(due), "total": Decimal(total)}


def _pay(pid: str, amount: str, day: str, *, method: str = "bank", status: str = "succeeded",
         remittance: str | None = None, token: str | None = None, account: str | None = None,
         currency: str = "USD", reference: str | None = None) -> dict:
    return {"payment_id": pid, "method": method, "status": status, "amount": Decimal(amount),
            "currency": currency, "received_at": _at(day), "token": token, "account_id": account,
            "invoice_hint": None, "remittance": remittance, "reference": reference or pid}


def test_matching_paths_partial_over_duplicate_refund_and_suspense() -> None:
    from squak_pipelines.payments.matching import match

    invoices = [
        _invoice("SQK-2026-000001", "A", "50.00"),
        _invoice("SQK-2026-000002", "B", "30.00"),
        _invoice("SQK-2026-000003", "C", "20.00"),
        _invoice("SQK-2026-000004", "D", "40.00"),
        _invoice("SQK-2026-000005", "A", "10.00", issued="2026-12-01", due="2026-12-16"),
    ]
    payments = [
        _pay("bank:1", "30.00", "2026-11-10", remittance="inv sqk 2026 000001 thanks"),  # partial
        _pay("bank:1", "30.00", "2026-11-10", remittance="inv sqk 2026 000001 thanks"),  # same, twice
        _pay("card:ch_9:succeeded", "30.00", "2026-11-11", method="card", token="tok_b"),  # token+amount
        _pay("card:ch_8:succeeded", "25.00", "2026-11-11", method="card", token="tok_c", reference="ch_8"),
        _pay("bank:2", "35.00", "2026-11-12", remittance="SQK-2026-000001"),  # 20 pays it, 15 credit
        _pay("bank:3", "99.00", "2026-11-12", remittance="no reference at all"),
        _pay("bank:4", "5.00", "2026-11-12", remittance="SQK-2026-999999"),
        _pay("manual:M1", "40.00", "2026-11-13", method="manual", account="D"),
        _pay("card:ch_7:succeeded", "20.00", "2026-11-14", method="card", token="tok_c", reference="ch_7"),
        _pay("card:ch_7:chargeback", "20.00", "2026-11-20", method="card", status="chargeback",
             token="tok_c", reference="ch_7"),
    ]
    out = match(invoices, [], payments, {"tok_b": "B", "tok_c": "C"}, {})
    open_amounts = {n: i.open for n, i in out.invoices.items()}
    assert open_amounts["SQK-2026-000001"] == Decimal("0.00")  # 30 + 20 of the 35
    assert open_amounts["SQK-2026-000002"] == Decimal("0.00"), "token and exact amount"
    assert open_amounts["SQK-2026-000003"] == Decimal("20.00"), "the chargeback reopened it"
    assert open_amounts["SQK-2026-000004"] == Decimal("0.00"), "manual payment to the account"
    assert open_amounts["SQK-2026-000005"] == Decimal("0.00"), "account credit (15) pays the next invoice"
    suspense = {s["payment_id"]: s["reason"] for s in out.suspense}
    assert suspense == {"card:ch_8:succeeded": "no_open_invoice_of_amount", "bank:3": "no_reference",
                        "bank:4": "unknown_invoice"}
    assert out.credit[("A", "USD")] == Decimal("5.00"), "15 over, 10 used by the next invoice"
    paid = {}
    for a in out.allocations:
        paid[a["payment_id"]] = paid.get(a["payment_id"], Decimal(0)) + a["amount"]
    assert paid["bank:1"] == Decimal("30.00"), "a payment delivered twice counts once"
    assert all(paid[p["payment_id"]] <= p["amount"] for p in payments if p["payment_id"] in paid)
    balance = {}
    for e in out.ledger:
        balance[e["account_id"]] = balance.get(e["account_id"], Decimal(0)) + e["amount"]
    assert balance == {"A": Decimal("-5.00"), "B": Decimal("0.00"), "C": Decimal("20.00"),
                       "D": Decimal("0.00")}


def test_manual_assignment_credit_notes_and_currency_mismatch() -> None:
    from squak_pipelines.payments.matching import match

    invoices = [_invoice("SQK-2026-000001", "A", "50.00"), _invoice("SQK-2026-000002", "B", "10.00",
                                                                    currency="GBP")]
    notes = [{"number": "SQK-CN-2026-000001", "invoice_number": "SQK-2026-000001", "account_id": "A",
              "currency": "USD", "issued_at": _at("2026-11-05"), "total": Decimal("-20.00")}]
    payments = [_pay("bank:9", "30.00", "2026-11-10", remittance="hello"),
                _pay("bank:10", "10.00", "2026-11-10", remittance="SQK-2026-000002")]  # USD for a GBP bill
    out = match(invoices, notes, payments, {}, {"bank:9": {"invoice_number": "SQK-2026-000001"}})
    assert out.invoices["SQK-2026-000001"].open == Decimal("0.00"), "credit note 20 + assigned 30"
    assert [s["reason"] for s in out.suspense] == ["currency_mismatch"]
    assert [m["how"] for m in out.matches] == ["assigned"]


@pytest.mark.parametrize(
    ("as_of", "bucket", "state"),
    [("2026-11-16", "current", None), ("2026-11-17", "1-30", "reminder"), ("2026-12-16", "1-30", "reminder"),
     ("2026-12-17", "31-60", "warning"), ("2027-01-15", "31-60", "warning"),
     ("2027-01-16", "61-90", "suspension_candidate"), ("2027-02-14", "61-90", "suspension_candidate"),
     ("2027-02-15", "90+", "suspension_candidate")],
)
def test_aging_bucket_and_dunning_boundaries(as_of: str, bucket: str, state: str | None, tmp_path) -> None:
    from squak_pipelines.payments.matching import match
    from squak_pipelines.payments.receivables import DunningRules, aging, dunning

    out = match([_invoice("SQK-2026-000001", "A", "50.00")], [], [], {}, {})
    [row] = aging(out, date.fromisoformat(as_of))
    assert row["bucket"] == bucket and row["open_amount"] == Decimal("50.00")
    rules = DunningRules.load(tmp_path / "missing.yaml")
    states = [d["state"] for d in dunning([row], rules)]
    assert states == ([state] if state else [])


def test_payments_stage_demo_files_matching_ledger_aging_and_reruns(invoiced, monkeypatch) -> None:
    import shutil

    from squak_pipelines.demo.payments import write_demo_payments
    from squak_pipelines.payments.stage import assign, ledger_differences, payments_paid_twice, run_payments

    warehouse, settings = invoiced
    files = write_demo_payments(warehouse, settings)
    assert {f.name.split("-")[0] for f in files} >= {"settlement", "camt053"}
    (settings.payments_drop_dir / "settlement-broken.csv").write_text(
        "processor_reference,token,amount,currency,status,settled_at\nch_x,tok,abc,USD,succeeded,2026-11-20\n"
    )
    as_of = date(2026, 11, 25)
    first = run_payments(warehouse, settings, as_of)
    assert first.new_payments > 0 and first.rejected == 1
    reject = warehouse.query_df("select * from payments.rejects").iloc[0]
    assert (reject["source_file"], reject["location"]) == ("settlement-broken.csv", "line 2")
    assert reject["field"] == "amount"
    for currency, invoiced_total in first.invoiced.items():
        assert Decimal(first.collected.get(currency, "0")) <= Decimal(invoiced_total)
    assert first.suspense.get("no_reference"), "payments without a usable reference wait in suspense"
    assert ledger_differences(warehouse).empty, "the ledger balances"
    assert payments_paid_twice(warehouse).empty
    hows = set(warehouse.query_df("select distinct how from payments.matches")["how"])
    assert {"reference", "reversal"} <= hows
    aging = warehouse.query_df("select bucket, count(*) as n from payments.aging group by 1")
    assert set(aging["bucket"]) <= {"current", "1-30"} and "1-30" in set(aging["bucket"])
    assert first.dunning.get("reminder") and first.notices == sum(first.dunning.values())
    # Re-running changes nothing; the same file under a new name adds no payment.
    assert first.charge_requests > 0, "the refunded and charged-back invoices are charged again"
    requests = sorted((settings.data_dir / "outgoing").glob("charge-requests-*.csv"))
    header = requests[0].read_text().splitlines()[0]
    assert header == "request_id,token,amount,currency,invoice_number,attempt"
    again = run_payments(warehouse, settings, as_of)
    assert (again.files, again.new_payments, again.notices, again.charge_requests) == (0, 0, 0, 0)
    assert again.collected == first.collected
    shutil.copy(files[0], settings.payments_drop_dir / files[0].name.replace("-", "-resent-", 1))
    resent = run_payments(warehouse, settings, as_of)
    assert resent.files == 1 and resent.new_payments == 0 and resent.duplicates > 0
    # Finance assigns a suspense payment by hand: it leaves suspense and pays the invoice.
    waiting = warehouse.query_df(
        "select s.payment_id, s.amount, s.currency from payments.suspense s where reason = 'no_reference' "
        "order by 1 limit 1"
    ).iloc[0]
    target = warehouse.scalar(
        "select invoice_number from payments.aging where currency = :c order by open_amount desc limit 1",
        {"c": waiting["currency"]},
    )
    assign(warehouse, waiting["payment_id"], "test", invoice_number=target)
    after = run_payments(warehouse, settings, as_of)
    assert after.suspense.get("no_reference", 0) == first.suspense["no_reference"] - 1
    how = warehouse.scalar(
        "select how from payments.matches where payment_id = :p", {"p": waiting["payment_id"]}
    )
    assert how == "assigned"
    assert ledger_differences(warehouse).empty
    # The next invoice shows what was paid: amount due = total + previous balance - payments.
    from squak_pipelines.invoicing.stage import bill_cycle

    monkeypatch.setenv("SQUAK_TODAY", "2026-12-01")  # November has ended
    bill_cycle(warehouse, settings, "2026-11", finalize=True)
    rows = warehouse.query_df(
        "select account_id, total, previous_balance, amount_due, document from invoicing.invoices "
        "where substr(cycle, 1, 7) = '2026-11' order by account_id"
    )
    paid = warehouse.query_df(
        "select m.account_id, p.currency, "
        "sum(case when p.status = 'succeeded' then p.amount else -p.amount end) as amount "
        "from payments.matches m join payments.payments p using (payment_id) group by 1, 2"
    )
    paid_by = {(r.account_id, r.currency): Decimal(r.amount) for r in paid.itertuples()}
    checked = 0
    for row in rows.itertuples():
        doc = json.loads(row.document)
        received = paid_by.get((row.account_id, doc["currency"]), Decimal(0))
        assert Decimal(doc["payments"]) == -received
        assert Decimal(row.amount_due) == Decimal(row.total) + Decimal(row.previous_balance) - received
        checked += received != 0
    assert checked > 0


def test_autopay_requests_first_charge_and_retries_on_schedule() -> None:
    from squak_pipelines.payments.autopay import RetrySchedule, due_requests
    from squak_pipelines.payments.matching import match

    invoices = [_invoice("SQK-2026-000001", "A", "50.00"), _invoice("SQK-2026-000002", "B", "20.00"),
                _invoice("SQK-2026-000003", "C", "10.00")]
    schedule = RetrySchedule((3, 7))
    tokens = {"A": "tok_a", "B": "tok_b"}  # C has no auto-pay

    def declined(n: int, day: str) -> dict:
        return _pay(f"card:d{n}:failed", "50.00", day, method="card", status="failed", token="tok_a",
                    remittance="SQK-2026-000001", reference=f"d{n}")

    paid_b = _pay("card:ok:succeeded", "20.00", "2026-11-02", method="card", token="tok_b",
                  remittance="SQK-2026-000002", reference="ok")
    first = due_requests(match(invoices, [], [], tokens, {}), tokens, [], set(), date(2026, 11, 1), schedule)
    assert [(r["request_id"], r["amount"], r["token"]) for r in first] == [
        ("SQK-2026-000001-A1", Decimal("50.00"), "tok_a"), ("SQK-2026-000002-A1", Decimal("20.00"), "tok_b")
    ]
    out = match(invoices, [], [paid_b], tokens, {})
    made = {"SQK-2026-000001-A1"}
    assert due_requests(out, tokens, [paid_b], made, date(2026, 11, 3), schedule) == [], "B paid, A asked"
    history = [paid_b, declined(1, "2026-11-02")]
    out = match(invoices, [], history, tokens, {})
    done = {"SQK-2026-000001-A1"}
    assert due_requests(out, tokens, history, done, date(2026, 11, 4), schedule) == [], "retry not due yet"
    [retry] = due_requests(out, tokens, history, done, date(2026, 11, 5), schedule)
    assert (retry["request_id"], retry["attempt"]) == ("SQK-2026-000001-A2", 2)
    assert retry["due_on"] == date(2026, 11, 5), "3 days after the first decline"
    history += [declined(2, "2026-11-05")]
    [third] = due_requests(match(invoices, [], history, tokens, {}), tokens, history,
                           done | {"SQK-2026-000001-A2"}, date(2026, 11, 9), schedule)
    assert third["due_on"] == date(2026, 11, 9), "7 days after the first decline"
    history += [declined(3, "2026-11-09")]
    done |= {"SQK-2026-000001-A2", "SQK-2026-000001-A3"}
    out = match(invoices, [], history, tokens, {})
    assert due_requests(out, tokens, history, done, date(2026, 12, 31), schedule) == [], "retries run out"
