"""Payment files as operators receive them, read into one payments schema.

Formats (by file name in the payments drop folder):
- `settlement*.csv`: a card processor's settlement report: processor_reference, token,
  amount, currency, status (succeeded, failed, refunded, chargeback), settled_at and an
  optional description (our charge requests put the invoice number there);
- `*.xml`: ISO 20022 bank-to-customer statements, camt.053 (any 001.xx version): each
  credit entry (`Ntry` with `CdtDbtInd` CRDT) is a payment, its remittance information
  (`Ustrd`, `Strd/CdtrRefInf/Ref`) carries the invoice number; debit entries are kept with
  status `not_a_payment`;
- `manual*.csv`: payments finance records by hand: payment_id, account_id,
  invoice_number, amount, currency, received_at, method, note.
Every record gets a stable payment_id (the processor's, bank's or finance's own reference),
so a file delivered twice records each payment once. A record that cannot be read is
rejected with its file, line (or element path) and reason, and kept.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from xml.etree.ElementTree import tostring  # serializing only; parsing goes through defusedxml

from defusedxml import ElementTree

from squak_pipelines.limits import Limits
from squak_pipelines.money import MINOR_UNITS

DEFAULT_LIMITS = Limits()

CARD_STATUSES = ("succeeded", "failed", "refunded", "chargeback")
PAYMENT_FIELDS = (
    "payment_id",
    "source_file",
    "location",
    "method",
    "status",
    "amount",
    "currency",
    "received_at",
    "reference",
    "token",
    "account_id",
    "invoice_hint",
    "remittance",
    "payer",
)


@dataclass
class PaymentFile:
    """What one file gave: payment records (dicts of PAYMENT_FIELDS) and rejects."""

    name: str
    kind: str
    payments: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)


class _Bad(ValueError):
    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field


def file_kind(name: str) -> str | None:
    lower = Path(name).name.lower()
    if lower.endswith(".xml"):
        return "camt053"
    if lower.startswith("settlement") and lower.endswith(".csv"):
        return "settlement"
    if lower.startswith("manual") and lower.endswith(".csv"):
        return "manual"
    return None


def _amount(text: str, name: str, currency: str, limits: Limits) -> Decimal:
    """A positive decimal amount, no larger than the largest payment allowed and with no
    more decimals than the currency has (0.001 USD is not money a bank moves)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise _Bad(name, f"not a decimal amount: {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise _Bad(name, f"must be a positive amount, got {text!r}")
    if value > limits.max_payment:
        raise _Bad(name, f"{text.strip()} is above the largest payment allowed ({limits.max_payment}, "
                         "reference/limits.yaml max_payment)")
    code = currency.strip().upper()
    if code in MINOR_UNITS and value != value.quantize(Decimal(1).scaleb(-MINOR_UNITS[code])):
        raise _Bad(name, f"{text.strip()} has more decimals than {code} has ({MINOR_UNITS[code]})")
    return value


def _currency(text: str, name: str = "currency") -> str:
    code = text.strip().upper()
    if code not in MINOR_UNITS:
        raise _Bad(name, f"not a known ISO 4217 currency: {text!r}")
    return code


def _moment(text: str, name: str) -> datetime:
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(name, f"not an ISO 8601 date or time: {text!r}") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record(**values) -> dict:
    return {f: values.get(f) for f in PAYMENT_FIELDS}


def _csv_rows(data: bytes, name: str, required: tuple[str, ...], out: PaymentFile):
    text = data.decode("utf-8-sig", errors="replace").replace("\x00", "\ufffd")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        fieldnames = []
        text = f"{exc}: {text[:200]}"
    missing = [c for c in required if c not in fieldnames]
    if missing:
        out.rejects.append(_reject(name, "line 1", missing[0], "required column missing", text[:200]))
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # one unreadable record: kept as a reject, the rest still read
            where = f"line {reader.line_num}"
            out.rejects.append(_reject(name, where, "(row)", f"unreadable record: {exc}", ""))
            continue
        raw = ",".join(str(v) for v in row.values())
        if None in row:
            out.rejects.append(
                _reject(name, f"line {reader.line_num}", "(row)", "more fields than the header", raw)
            )
            continue
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}, raw


def _reject(name: str, location: str, field_name: str, reason: str, raw: str) -> dict:
    return {"source_file": name, "location": location, "field": field_name, "reason": reason, "raw": raw}


def read_settlement(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    out = PaymentFile(name, "settlement")
    required = ("processor_reference", "token", "amount", "currency", "status", "settled_at")
    for line, row, raw in _csv_rows(data, name, required, out):
        try:
            if not row["processor_reference"]:
                raise _Bad("processor_reference", "must not be empty")
            if row["status"].lower() not in CARD_STATUSES:
                raise _Bad("status", f"{row['status']!r} is not one of {', '.join(CARD_STATUSES)}")
            status = row["status"].lower()
            out.payments.append(
                _record(
                    payment_id=f"card:{row['processor_reference']}:{status}",
                    source_file=name,
                    location=f"line {line}",
                    method="card",
                    status=status,
                    amount=_amount(row["amount"], "amount", row["currency"], limits),
                    currency=_currency(row["currency"]),
                    received_at=_moment(row["settled_at"], "settled_at"),
                    reference=row["processor_reference"],
                    token=row["token"] or None,
                    invoice_hint=row.get("description") or None,
                    remittance=row.get("description") or None,
                )
            )
        except _Bad as bad:
            out.rejects.append(_reject(name, f"line {line}", bad.field, str(bad), raw))
    return out


def read_manual(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    out = PaymentFile(name, "manual")
    required = ("payment_id", "account_id", "invoice_number", "amount", "currency", "received_at")
    for line, row, raw in _csv_rows(data, name, required, out):
        try:
            if not row["payment_id"]:
                raise _Bad("payment_id", "must not be empty")
            out.payments.append(
                _record(
                    payment_id=f"manual:{row['payment_id']}",
                    source_file=name,
                    location=f"line {line}",
                    method=row.get("method") or "manual",
                    status="succeeded",
                    amount=_amount(row["amount"], "amount", row["currency"], limits),
                    currency=_currency(row["currency"]),
                    received_at=_moment(row["received_at"], "received_at"),
                    reference=row["payment_id"],
                    account_id=row["account_id"] or None,
                    invoice_hint=row["invoice_number"] or None,
                    remittance=row.get("note") or None,
                )
            )
        except _Bad as bad:
            out.rejects.append(_reject(name, f"line {line}", bad.field, str(bad), raw))
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element, *path: str):
    """The first descendant along `path` (namespace-agnostic local names), or None."""
    node = element
    for step in path:
        node = next((c for c in node if _local(c.tag) == step), None)
        if node is None:
            return None
    return node


def _text(element, *path: str) -> str:
    node = _child(element, *path)
    return (node.text or "").strip() if node is not None else ""


def _all_text(element, name: str) -> list[str]:
    found = ((e.text or "").strip() for e in element.iter() if _local(e.tag) == name)
    return [text for text in found if text]


def read_camt053(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    out = PaymentFile(name, "camt053")
    try:
        root = ElementTree.fromstring(data)
    except Exception as exc:  # defusedxml and expat raise several kinds
        out.rejects.append(
            _reject(
                name,
                "document",
                "(xml)",
                f"not readable XML: {exc}",
                data[:200].decode("utf-8", errors="replace"),
            )
        )
        return out
    if _local(root.tag) != "Document" or _child(root, "BkToCstmrStmt") is None:
        out.rejects.append(_reject(name, "document", _local(root.tag), "not a camt.053 statement", ""))
        return out
    statements = [s for s in _child(root, "BkToCstmrStmt") if _local(s.tag) == "Stmt"]
    for s_no, statement in enumerate(statements, 1):
        statement_id = _text(statement, "Id")
        entries = [e for e in statement if _local(e.tag) == "Ntry"]
        for e_no, entry in enumerate(entries, 1):
            where = f"Stmt[{s_no}]/Ntry[{e_no}]"
            raw = tostring(entry, encoding="unicode")[:2000]
            try:
                amount_node = _child(entry, "Amt")
                if amount_node is None:
                    raise _Bad("Amt", "missing")
                amount = _amount(amount_node.text or "", "Amt", amount_node.get("Ccy") or "", limits)
                currency = _currency(amount_node.get("Ccy") or "", "Amt/@Ccy")
                direction = _text(entry, "CdtDbtInd")
                if direction not in ("CRDT", "DBIT"):
                    raise _Bad("CdtDbtInd", f"must be CRDT or DBIT, got {direction!r}")
                booked = (
                    _text(entry, "BookgDt", "Dt")
                    or _text(entry, "BookgDt", "DtTm")
                    or _text(entry, "ValDt", "Dt")
                )
                if not booked:
                    raise _Bad("BookgDt", "missing booking date")
                reference = _text(entry, "AcctSvcrRef") or _text(
                    entry, "NtryDtls", "TxDtls", "Refs", "EndToEndId"
                )
                if not reference:
                    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
                    reference = f"{statement_id}:{e_no}:{digest}"
                texts = _all_text(entry, "Ustrd") + _all_text(entry, "Ref")
                out.payments.append(
                    _record(
                        payment_id=f"bank:{reference}",
                        source_file=name,
                        location=where,
                        method="bank",
                        status="succeeded" if direction == "CRDT" else "not_a_payment",
                        amount=amount,
                        currency=currency,
                        received_at=_moment(booked, "BookgDt"),
                        reference=reference,
                        remittance=" | ".join(texts) or None,
                        payer=_text(entry, "NtryDtls", "TxDtls", "RltdPties", "Dbtr", "Nm")
                        or _text(entry, "NtryDtls", "TxDtls", "RltdPties", "Dbtr", "Pty", "Nm")
                        or None,
                    )
                )
            except _Bad as bad:
                out.rejects.append(_reject(name, f"{where}/{bad.field}", bad.field, str(bad), raw))
    return out


READERS = {"settlement": read_settlement, "manual": read_manual, "camt053": read_camt053}


def read_payment_file(path: Path, name: str | None = None, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    """One payment file, by its kind; an unknown kind is one reject naming the file."""
    name = name or path.name
    kind = file_kind(name)
    if kind is None:
        out = PaymentFile(name, "unknown")
        out.rejects.append(
            _reject(
                name,
                "file",
                "(name)",
                "unknown payment file kind (settlement*.csv, manual*.csv or camt.053 *.xml)",
                "",
            )
        )
        return out
    return READERS[kind](path.read_bytes(), name, limits)
