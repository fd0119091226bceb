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
    assert first["payment_id"] == "bank:NWB-20261120-000017" and first["payer"] == "Olga Brown"
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
    assert [p["payment_id"] for p in read.payments] == ["card:ch_001:succeeded", "card:ch_002:failed",
                                                        "card:ch_001:refunded"]
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
