"""ISO 20022 bank-to-customer cash management messages, read as the ISO schemas define them.

Messages: camt.053 statements (`BkToCstmrStmt/Stmt`), camt.054 debit/credit notifications
(`BkToCstmrDbtCdtNtfctn/Ntfctn`) and camt.052 account reports (`BkToCstmrAcctRpt/Rpt`),
versions 001.02 to 001.13. Element names are matched by local name, so every version reads
the same way; the version is taken from the namespace and a message of another version or
kind is one reject naming it.

An entry (`Ntry`) is what the bank booked; its `NtryDtls/TxDtls` are the transactions it
carries. A batch entry (several TxDtls: a SEPA or Swiss QR/ISR batch booking) gives one
record per TxDtls with that transaction's own amount and references, and its amounts must
add up to the entry. An entry with one TxDtls, or none, is one record at the entry's amount.

What a record is (status):
- `Sts` PDNG/FUTR: `pending`; INFO: `information` (kept, never booked);
- CRDT: `succeeded` (a payment received); CRDT with `RvslInd`: `not_a_payment` (a debit of
  ours taken back);
- DBIT with `RvslInd=true` or a return (`RtrInf`): `returned`, a credit taken back (a SEPA
  direct debit returned, reason in `RtrInf/Rsn`); it reverses the payment it names;
- other DBIT: `not_a_payment`.

Identity (`payment_id`): an entry is known by the bank's `AcctSvcrRef` on its account; without
one, by its statement (`Id` and electronic or legal sequence number) and what it says (booking
date, direction, amount, currency, end-to-end ids, counterparty account) with its ordinal among
entries that say the same, so a statement delivered again, or corrected with an entry
inserted, gives the same ids, and a different statement never shares one. A transaction of a
batch entry adds its position in the entry. Pending and information entries have ids of their
own, so the booking that follows them is not taken for a repeat.

References: structured creditor references (`Strd/CdtrRefInf/Ref`) are typed (ISO 11649 by its
check digits, else the bank's stated type, e.g. `ISR Reference`); remittance text is taken from
every place camt puts it (`Ustrd`, `Strd` references and `AddtlRmtInf`, referred document
numbers, `AddtlTxInf`, `AddtlNtryInf`). Payer: `UltmtDbtr`, else `Dbtr`.

Checks of the file (stored on the file, the records still read): a statement whose opening
balance plus booked entries is not its closing balance; an account or counterparty IBAN whose
check digits are wrong (a bank's own booking is still recorded: refusing it would lose money).
"""

from __future__ import annotations

import re
from decimal import Decimal
from xml.etree.ElementTree import tostring  # serializing only; parsing goes through defusedxml

from defusedxml import ElementTree
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from squak_pipelines.limits import Limits
from squak_pipelines.payments.records import (
    DEFAULT_LIMITS,
    BadField,
    PaymentFile,
    amount,
    currency,
    moment,
    record,
    reject,
)
from squak_pipelines.payments.references import reference_type

NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.(05[234])\.001\.(\d\d)")
MESSAGES = {  # message element -> (camt number, report element)
    "BkToCstmrStmt": ("053", "Stmt"),
    "BkToCstmrDbtCdtNtfctn": ("054", "Ntfctn"),
    "BkToCstmrAcctRpt": ("052", "Rpt"),
}
VERSIONS = range(2, 14)  # 001.02 .. 001.13
NOT_PROVIDED = "NOTPROVIDED"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(element, *path: str):
    """The first descendant along `path` (local names), or None."""
    node = element
    for step in path:
        node = next((c for c in node if _local(c.tag) == step), None)
        if node is None:
            return None
    return node


def _children(element, name: str) -> list:
    return [c for c in element if _local(c.tag) == name] if element is not None else []


def _text(element, *path: str) -> str:
    node = _child(element, *path) if element is not None else None
    return (node.text or "").strip() if node is not None else ""


def _texts(element, name: str) -> list[str]:
    found = ((e.text or "").strip() for e in element.iter() if _local(e.tag) == name)
    return [t for t in found if t]


def _party_name(parties, role: str) -> str:
    """A party's name, in the 001.02-.07 shape (`Dbtr/Nm`) or the .08+ one (`Dbtr/Pty/Nm`)."""
    return _text(parties, role, "Nm") or _text(parties, role, "Pty", "Nm")


def _account_id(parties, role: str) -> str:
    return _text(parties, role, "Id", "IBAN") or _text(parties, role, "Id", "Othr", "Id")


def _iban_problem(value: str) -> str | None:
    if not value or not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{8,30}", value.replace(" ", "")):
        return None  # not an IBAN at all (Othr/Id): nothing to check
    try:
        IBAN(value, validate_bban=False)
    except SchwiftyException as exc:
        return f"IBAN {value} is not valid: {exc}"
    return None


def _signed_balance(balance) -> tuple[Decimal, str] | None:
    node = _child(balance, "Amt")
    if node is None:
        return None
    try:
        value = Decimal((node.text or "").strip())
    except ArithmeticError:
        return None
    return (-value if _text(balance, "CdtDbtInd") == "DBIT" else value), (node.get("Ccy") or "").upper()


def _balances(report) -> dict[str, tuple[Decimal, str]]:
    found = {}
    for bal in _children(report, "Bal"):
        code = _text(bal, "Tp", "CdOrPrtry", "Cd") or _text(bal, "Tp", "CdOrPrtry", "Prtry")
        value = _signed_balance(bal)
        if value is not None and code not in found:
            found[code] = value
    return found


def _status(entry) -> str:
    """BOOK, PDNG, INFO or FUTR, in the .02-.08 shape (`Sts` text) or the .09+ one (`Sts/Cd`)."""
    found = _text(entry, "Sts", "Cd") or _text(entry, "Sts", "Prtry") or _text(entry, "Sts")
    return (found or "BOOK").upper()


def _tx_amount(tx) -> tuple[str, str] | None:
    for path in (("Amt",), ("AmtDtls", "TxAmt", "Amt"), ("AmtDtls", "InstdAmt", "Amt")):
        node = _child(tx, *path)
        if node is not None and (node.text or "").strip():
            return (node.text or "").strip(), (node.get("Ccy") or "").upper()
    return None


def _remittance(entry, tx) -> str | None:
    parts: list[str] = []
    if tx is not None:
        rmt = _child(tx, "RmtInf")
        if rmt is not None:
            parts += _texts(rmt, "Ustrd")
            for strd in _children(rmt, "Strd"):
                parts += _texts(strd, "Ref") + _texts(strd, "AddtlRmtInf") + [
                    _text(d, "Nb") for d in _children(strd, "RfrdDocInf") if _text(d, "Nb")]
        parts += _texts(tx, "AddtlTxInf")
    parts += [t for t in (_text(entry, "AddtlNtryInf"),) if t]
    unique = list(dict.fromkeys(parts))
    return " | ".join(unique) or None


def _creditor_reference(tx) -> tuple[str | None, str | None]:
    if tx is None:
        return None, None
    for strd in _children(_child(tx, "RmtInf"), "Strd"):
        info = _child(strd, "CdtrRefInf")
        ref = _text(info, "Ref") if info is not None else ""
        if ref:
            stated = _text(info, "Tp", "CdOrPrtry", "Cd") or _text(info, "Tp", "CdOrPrtry", "Prtry")
            return ref, reference_type(ref, stated)
    return None, None


class _Statement:
    """One Stmt/Ntfctn/Rpt: its identity, account and the ordinals of what its entries say."""

    def __init__(self, report, where: str, name: str):
        self.where = f"{name}: {where}" if "!" in name else where
        self.id = _text(report, "Id")
        self.sequence = _text(report, "ElctrncSeqNb") or _text(report, "LglSeqNb")
        self.account = _account_id(report, "Acct") or "-"
        self.created = _text(report, "CreDtTm")
        self.seen: dict[tuple, int] = {}

    @property
    def label(self) -> str:
        return f"{self.id}#{self.sequence}" if self.sequence else self.id

    def entry_key(self, entry_ref: str, says: tuple) -> str:
        if entry_ref:
            return f"bank:{self.account}:{entry_ref}"
        self.seen[says] = self.seen.get(says, 0) + 1
        booked, direction, value, code = says[:4]
        return f"bank:{self.account}:{self.label}:{booked}:{direction}{value}{code}:{self.seen[says]}"


def read_camt(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    """Every entry and transaction of a camt.052/053/054 message (see the module docstring)."""
    out = PaymentFile(name, "camt")
    try:
        root = ElementTree.fromstring(data)
    except Exception as exc:  # defusedxml (entities, DTDs) and expat raise several kinds
        head = data[:200].decode("utf-8", errors="replace")
        out.rejects.append(reject(name, "document", "(xml)", f"not readable XML: {exc}", head))
        return out
    is_document = _local(root.tag) == "Document"
    message = next((c for c in root if _local(c.tag) in MESSAGES), None) if is_document else None
    if message is None:
        out.rejects.append(reject(name, "document", _local(root.tag), "not an ISO 20022 bank-to-customer "
                                  "message (camt.052, camt.053 or camt.054)", ""))
        return out
    number, report_name = MESSAGES[_local(message.tag)]
    version = NAMESPACE.match(root.tag[1:].split("}")[0]) if root.tag.startswith("{") else None
    if version is None or version.group(1) != number or int(version.group(2)) not in VERSIONS:
        namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else "(none)"
        out.rejects.append(reject(name, "Document", "@xmlns", f"camt.{number} in namespace {namespace}: "
                                  "versions 001.02 to 001.13 are read", ""))
        return out
    out.kind = f"camt.{number}.001.{version.group(2)}"
    reports = _children(message, report_name)
    if not reports:
        out.rejects.append(reject(name, f"Document/{_local(message.tag)}", report_name,
                                  f"the message has no {report_name}: nothing to read", ""))
        return out
    for s_no, report in enumerate(reports, 1):
        _read_report(report, _Statement(report, f"{report_name}[{s_no}]", name), name, limits, out)
    return out


def _read_report(report, statement: _Statement, name: str, limits: Limits, out: PaymentFile) -> None:
    problem = _iban_problem(statement.account)
    if problem:
        out.checks.append(f"{statement.where}/Acct/Id/IBAN: {problem}")
    booked_sum: dict[str, Decimal] = {}
    for e_no, entry in enumerate(_children(report, "Ntry"), 1):
        where = f"{statement.where}/Ntry[{e_no}]"
        try:
            records = _entry_records(entry, where, statement, name, limits, out)
        except BadField as bad:
            raw = tostring(entry, encoding="unicode")
            out.rejects.append(reject(name, f"{where}/{bad.field}", bad.field, str(bad), raw))
            continue
        out.payments += records
        if records and _status(entry) == "BOOK":
            first = records[0]
            sign = 1 if _text(entry, "CdtDbtInd") == "CRDT" else -1
            entry_amount = sum((r["amount"] for r in records), Decimal(0))
            code = first["currency"]
            booked_sum[code] = booked_sum.get(code, Decimal(0)) + sign * entry_amount
    _check_balances(report, statement, booked_sum, out)


def _check_balances(report, statement: _Statement, booked: dict[str, Decimal], out: PaymentFile) -> None:
    """Opening (OPBD, else PRCD) + booked entries = closing (CLBD), where both are given."""
    balances = _balances(report)
    opening = balances.get("OPBD") or balances.get("PRCD")
    closing = balances.get("CLBD")
    if opening is None or closing is None or opening[1] != closing[1]:
        return
    code = opening[1]
    moved = booked.get(code, Decimal(0))
    if opening[0] + moved != closing[0]:
        out.checks.append(
            f"{statement.where} ({statement.label}): balances do not add up: opening {opening[0]} {code} "
            f"+ booked entries {moved} = {opening[0] + moved}, the closing balance says {closing[0]}")


def _entry_records(entry, where: str, statement: _Statement, name: str, limits: Limits,
                   out: PaymentFile) -> list[dict]:
    amount_node = _child(entry, "Amt")
    if amount_node is None:
        raise BadField("Amt", "missing")
    code = currency(amount_node.get("Ccy") or "", "Amt/@Ccy")
    value = amount(amount_node.text or "", "Amt", code, limits)
    direction = _text(entry, "CdtDbtInd")
    if direction not in ("CRDT", "DBIT"):
        raise BadField("CdtDbtInd", f"must be CRDT or DBIT, got {direction!r}")
    sts = _status(entry)
    booked_text = (_text(entry, "BookgDt", "Dt") or _text(entry, "BookgDt", "DtTm")
                   or _text(entry, "ValDt", "Dt") or _text(entry, "ValDt", "DtTm"))
    if not booked_text and sts == "BOOK":
        raise BadField("BookgDt", "a booked entry needs its booking date")
    received = moment(booked_text or statement.created, "BookgDt")
    reversal = _text(entry, "RvslInd").lower() in ("true", "1")
    txs = [tx for details in _children(entry, "NtryDtls") for tx in _children(details, "TxDtls")]
    if len(txs) > 1:
        amounts = []
        for t_no, tx in enumerate(txs, 1):
            found = _tx_amount(tx)
            if found is None:
                raise BadField(f"NtryDtls/TxDtls[{t_no}]/Amt", "a batch transaction has no amount")
            amounts.append(amount(found[0], f"NtryDtls/TxDtls[{t_no}]/Amt", code, limits))
            if found[1] and found[1] != code:
                raise BadField(f"NtryDtls/TxDtls[{t_no}]/Amt/@Ccy",
                               f"transaction in {found[1]}, its entry in {code}")
        if sum(amounts, Decimal(0)) != value:
            raise BadField("NtryDtls/TxDtls", f"the {len(txs)} transactions add up to {sum(amounts)} "
                                              f"{code}, the entry is {value} {code}")
    else:
        amounts = [value]
    says = (received.date().isoformat(), direction, str(value), code,
            tuple(_text(tx, "Refs", "EndToEndId") for tx in txs),
            tuple(_account_id(_child(tx, "RltdPties"), "DbtrAcct" if direction == "CRDT" else "CdtrAcct")
                  for tx in txs))
    key = statement.entry_key(_text(entry, "AcctSvcrRef"), says)
    if sts != "BOOK":
        key += ":pending" if sts in ("PDNG", "FUTR") else f":{sts.lower()}"
    records = []
    for t_no, (tx, tx_value) in enumerate(zip(txs or [None], amounts, strict=True), 1):
        t_where = f"{where}/NtryDtls/TxDtls[{t_no}]" if len(txs) > 1 else where
        returned = tx is not None and _child(tx, "RtrInf") is not None
        status = _record_status(sts, direction, reversal, returned)
        records.append(_record(entry, tx, statement, name, t_where, key if len(txs) <= 1 else f"{key}/{t_no}",
                               status, tx_value, code, received, out))
    if len(txs) == 1:
        found = _tx_amount(txs[0])
        if found and found[0] and Decimal(found[0]) != value:
            records[0]["detail"] = _join(records[0]["detail"],
                                         f"transaction amount {found[0]} {found[1]}, booked {value} {code}")
    return records


def _record_status(sts: str, direction: str, reversal: bool, returned: bool) -> str:
    if sts in ("PDNG", "FUTR"):
        return "pending"
    if sts != "BOOK":
        return "information"
    if direction == "DBIT":
        return "returned" if reversal or returned else "not_a_payment"
    return "not_a_payment" if reversal else "succeeded"


def _join(*parts: str | None) -> str | None:
    return "; ".join(p for p in parts if p) or None


def _record(entry, tx, statement: _Statement, name: str, where: str, key: str, status: str,
            value: Decimal, code: str, received, out: PaymentFile) -> dict:
    parties = _child(tx, "RltdPties") if tx is not None else None
    credit = status in ("succeeded", "pending", "information") and _text(entry, "CdtDbtInd") == "CRDT"
    if credit or status == "returned":  # the customer: the debtor of the (original) credit
        payer = (_party_name(parties, "UltmtDbtr") or _party_name(parties, "Dbtr")
                 or (_party_name(parties, "Cdtr") if status == "returned" else ""))
        payer_account = _account_id(parties, "DbtrAcct") or _account_id(parties, "CdtrAcct")
    else:
        payer = _party_name(parties, "UltmtCdtr") or _party_name(parties, "Cdtr")
        payer_account = _account_id(parties, "CdtrAcct")
    end_to_end = _text(tx, "Refs", "EndToEndId") if tx is not None else ""
    ref, ref_type = _creditor_reference(tx)
    reason = _text(tx, "RtrInf", "Rsn", "Cd") or _text(tx, "RtrInf", "Rsn", "Prtry") if tx is not None else ""
    problem = _iban_problem(payer_account)
    if problem:
        out.checks.append(f"{statement.where}/{where.split('/', 1)[1]}: counterparty {problem}")
    return record(
        payment_id=key,
        source_file=name,
        location=where,
        method="bank",
        status=status,
        amount=value,
        currency=code,
        received_at=received,
        reference=_text(entry, "AcctSvcrRef") or _text(entry, "NtryRef") or None,
        remittance=_remittance(entry, tx),
        payer=payer or None,
        payer_iban=payer_account or None,
        end_to_end_id=end_to_end if end_to_end and end_to_end.upper() != NOT_PROVIDED else None,
        mandate_id=(_text(tx, "Refs", "MndtId") if tx is not None else "") or None,
        creditor_reference=ref,
        creditor_reference_type=ref_type,
        return_reason=reason or None,
        statement_id=statement.label,
        bank_account=statement.account,
        detail=_join("reversal of a debit" if status == "not_a_payment"
                     and _text(entry, "CdtDbtInd") == "CRDT" else None, problem),
    )
