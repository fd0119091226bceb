"""The demo's customers pay their final invoices: payment files in the formats operators get.

Written once the demo month is invoiced (payments answer invoices, so they can only be
drawn after finalization): card customers with auto-pay appear in the processor's
settlement report (a few declined, one refunded, one charged back); EUR customers with a
SEPA mandate are collected by direct debit (nothing to write here); the others pay by bank
transfer, in one ISO 20022 camt.053 statement per currency (most in full, some partially,
some after the due date, some not at all, a few without a usable reference); and finance
records a few cheques by hand. Deterministic for a seed.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.warehouse import Warehouse

CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


def _invoices(warehouse: Warehouse) -> list[dict]:
    return warehouse.query_arrow(
        "select i.number, i.account_id, i.currency, i.total, i.issue_date, i.due_date, a.name, "
        "a.payment_method, a.card_token, a.autopay, a.mandate_id from invoicing.invoices i "
        "join orders.accounts a using (account_id) where i.total > 0 order by i.number"
    ).to_pylist()


def _when(due: date, rng: np.random.Generator, late: bool) -> datetime | None:
    """When a customer pays: before the due date, or a few days after it (`late`); never after
    the clock's today (a payment not made by then is not in the files: `None`)."""
    offset = int(rng.integers(1, 9)) if late else -int(rng.integers(0, 12))
    day = due + timedelta(days=offset)
    if day > clock.today():
        if late:
            return None
        day = clock.today()
    return datetime(
        day.year, day.month, day.day, int(rng.integers(8, 18)), int(rng.integers(0, 60)), tzinfo=UTC
    )


def write_demo_payments(warehouse: Warehouse, settings: Settings, seed: int = 11) -> list[Path]:
    """Write the demo's payment files into the payments drop folder; returns them."""
    rng = np.random.default_rng(seed)
    folder = settings.payments_drop_dir
    folder.mkdir(parents=True, exist_ok=True)
    card, bank, manual = [], {}, []
    for n, inv in enumerate(_invoices(warehouse)):
        total = Decimal(inv["total"])
        roll = float(rng.random())
        late = roll < 0.2
        if inv["mandate_id"] and inv["currency"] == "EUR":
            continue  # collected by SEPA direct debit (the payments run writes the pain.008)
        if inv["card_token"] and inv["autopay"] == "true":
            status = "failed" if roll > 0.94 else "succeeded"
            card.append((f"ch_{n:06d}", inv, total, status, _when(inv["due_date"], rng, False)))
        elif n % 37 == 5:
            if at := _when(inv["due_date"], rng, late):
                manual.append((f"CHQ-{n:05d}", inv, total, at))
        elif roll < 0.85:
            amount = (total * Decimal("0.6")).quantize(Decimal("0.01")) if roll > 0.78 else total
            if roll > 0.76 and roll <= 0.78:
                amount = total + Decimal("5.00")  # pays a little more: account credit
            text = _remittance(inv["number"], n)
            if at := _when(inv["due_date"], rng, late):
                bank.setdefault(inv["currency"], []).append((inv, amount, text, at))
        # else: does not pay (it ages and gets dunned)
    if len(card) > 2:  # a refund and a chargeback of earlier successful charges, by today
        last = datetime.combine(clock.today(), time(23, 0), UTC)
        card.append((card[0][0], card[0][1], card[0][2], "refunded",
                     min(card[0][4] + timedelta(days=3), last)))
        card.append((card[1][0], card[1][1], card[1][2], "chargeback",
                     min(card[1][4] + timedelta(days=6), last)))
    stamp = clock.today().strftime("%Y%m%d")
    written = []
    if card:
        path = folder / f"settlement-{stamp}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(
                ["processor_reference", "token", "amount", "currency", "status", "settled_at", "description"]
            )
            for ref, inv, amount, status, at in card:
                w.writerow(
                    [
                        ref,
                        inv["card_token"],
                        f"{amount:.2f}",
                        inv["currency"],
                        status,
                        at.isoformat().replace("+00:00", "Z"),
                        inv["number"],
                    ]
                )
        written.append(path)
    for currency, entries in sorted(bank.items()):
        path = folder / f"camt053-{currency.lower()}-{stamp}.xml"
        path.write_text(_camt053(currency, entries), encoding="utf-8")
        written.append(path)
    if manual:
        path = folder / f"manual-payments-{stamp}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(
                [
                    "payment_id",
                    "account_id",
                    "invoice_number",
                    "amount",
                    "currency",
                    "received_at",
                    "method",
                    "note",
                ]
            )
            for ref, inv, amount, at in manual:
                w.writerow(
                    [
                        ref,
                        inv["account_id"],
                        inv["number"],
                        f"{amount:.2f}",
                        inv["currency"],
                        at.date().isoformat(),
                        "cheque",
                        f"cheque {ref[4:]}",
                    ]
                )
        written.append(path)
    return written


def _remittance(number: str, n: int) -> str:
    """How customers really write references: exact, lower case with spaces, or nothing."""
    if n % 23 == 7:
        return "monthly phone bill"  # no usable reference: payment suspense
    if n % 3 == 1:
        return f"payment {number.lower().replace('-', ' ')}"
    return f"Invoice {number}"


def _camt053(currency: str, entries: list[tuple[dict, Decimal, str, datetime]]) -> str:
    rows = []
    for k, (inv, amount, text, at) in enumerate(sorted(entries, key=lambda e: (e[3], e[0]["number"])), 1):
        rows.append(
            f"""      <Ntry>
        <Amt Ccy="{currency}">{amount:.2f}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>{at.date().isoformat()}</Dt></BookgDt><ValDt><Dt>{at.date().isoformat()}</Dt></ValDt>
        <AcctSvcrRef>SQB-{currency}-{k:06d}</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>E2E-{currency}-{k:06d}</EndToEndId></Refs>
          <RltdPties><Dbtr><Nm>{escape(inv["name"] or "")}</Nm></Dbtr></RltdPties>
          <RmtInf><Ustrd>{escape(text)}</Ustrd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>"""
        )
    body = "\n".join(rows)
    stamp, created = f"{clock.today():%Y%m%d}", f"{clock.today().isoformat()}T18:00:00"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{CAMT_NS}">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>SQB-STMT-{stamp}-{currency}</MsgId><CreDtTm>{created}</CreDtTm></GrpHdr>
    <Stmt>
      <Id>SQB-STMT-{stamp}-{currency}</Id>
      <CreDtTm>{created}</CreDtTm>
      <Acct><Id><Othr><Id>SQUAK-COLLECTIONS-{currency}</Id></Othr></Id><Ccy>{currency}</Ccy></Acct>
{body}
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""
