"""Payment files as operators receive them, read into one payments schema (`records.py`).

Kinds, by content first, then by name:
- ISO 20022 camt.052/053/054 XML (`camt.py`), any file whose content is XML;
- a card processor's itemized balance report in Stripe's documented layout
  (`balance_change_from_activity.itemized`, `processor_reports.py`), by its header;
- `settlement*.csv`: a generic processor settlement report: processor_reference, token,
  amount, currency, status (succeeded, failed, refunded, chargeback), settled_at and optional
  description and transaction_id (our charge requests put the invoice number in description);
- `manual*.csv`: payments finance records by hand: payment_id, account_id, invoice_number,
  amount, currency, received_at, method, note.
A file may come plain, gzip-compressed or as a ZIP of such files (`containers.py`); each
member is read as its own file, named `archive.zip!member`.

Identity: each record's payment_id comes from its source (the bank's entry reference, the
processor's transaction id, finance's id), never from a reference the payer chose. A generic
settlement's charge is `card:<ref>:succeeded`; each refund, chargeback or failure of it is
known by its own transaction_id, else by its time and amount (a second partial refund is a
record of its own). A record that cannot be read is rejected with its file, line (or element
path) and reason, and kept.
"""

from __future__ import annotations

from pathlib import Path

from squak_pipelines.limits import Limits
from squak_pipelines.payments.camt import read_camt
from squak_pipelines.payments.containers import unpack
from squak_pipelines.payments.processor_reports import is_stripe_header, read_stripe
from squak_pipelines.payments.records import (
    DEFAULT_LIMITS,
    PAYMENT_FIELDS,
    BadField,
    PaymentFile,
    amount,
    currency,
    moment,
    read_csv_records,
    record,
    reject,
)

__all__ = ["PAYMENT_FIELDS", "PaymentFile", "read_payment_bytes", "read_payment_file"]

CARD_STATUSES = ("succeeded", "failed", "refunded", "chargeback")
KINDS_HELP = ("camt.052/053/054 XML, a Stripe itemized balance report, settlement*.csv or manual*.csv; "
              "plain, .gz or .zip")


def read_settlement(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    required = ("processor_reference", "token", "amount", "currency", "status", "settled_at")
    seen: dict[str, int] = {}

    def to_record(line: int, row: dict[str, str]) -> dict:
        ref = row["processor_reference"]
        if not ref:
            raise BadField("processor_reference", "must not be empty")
        status = row["status"].lower()
        if status not in CARD_STATUSES:
            raise BadField("status", f"{row['status']!r} is not one of {', '.join(CARD_STATUSES)}")
        code = currency(row["currency"])
        value = amount(row["amount"], "amount", code, limits)
        at = moment(row["settled_at"], "settled_at")
        if status == "succeeded":
            payment_id = f"card:{ref}:succeeded"
        elif row.get("transaction_id"):
            payment_id = f"card:{ref}:{status}:{row['transaction_id']}"
        else:  # each refund, chargeback or failure of a charge is a record of its own
            base = f"card:{ref}:{status}:{at.isoformat()}:{value}"
            seen[base] = seen.get(base, 0) + 1
            payment_id = base if seen[base] == 1 else f"{base}:{seen[base]}"
        return record(
            payment_id=payment_id, source_file=name, location=f"line {line}", method="card",
            status=status, amount=value, currency=code, received_at=at, reference=ref,
            token=row["token"] or None, invoice_hint=row.get("description") or None,
            remittance=row.get("description") or None,
            reverses=ref if status in ("refunded", "chargeback") else None)

    return read_csv_records(data, name, "settlement", required, to_record)


def read_manual(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    required = ("payment_id", "account_id", "invoice_number", "amount", "currency", "received_at")

    def to_record(line: int, row: dict[str, str]) -> dict:
        if not row["payment_id"]:
            raise BadField("payment_id", "must not be empty")
        code = currency(row["currency"])
        return record(
            payment_id=f"manual:{row['payment_id']}", source_file=name, location=f"line {line}",
            method=row.get("method") or "manual", status="succeeded",
            amount=amount(row["amount"], "amount", code, limits), currency=code,
            received_at=moment(row["received_at"], "received_at"), reference=row["payment_id"],
            account_id=row["account_id"] or None, invoice_hint=row["invoice_number"] or None,
            remittance=row.get("note") or None)

    return read_csv_records(data, name, "manual", required, to_record)


def _kind(name: str, data: bytes) -> str | None:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "camt"
    lower = Path(name.rsplit("!", 1)[-1]).name.lower()
    if not lower.endswith(".csv"):
        return None
    if is_stripe_header(head.split(b"\n", 1)[0].decode("utf-8", errors="replace")):
        return "stripe"
    if lower.startswith("settlement"):
        return "settlement"
    if lower.startswith("manual"):
        return "manual"
    return None


READERS = {"camt": read_camt, "stripe": read_stripe, "settlement": read_settlement, "manual": read_manual}


def read_payment_bytes(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    """One delivered payment file, unpacked and read member by member (see the docstring)."""
    unpacked = unpack(data, name)
    out = PaymentFile(name, "")
    kinds = []
    for where, problem in unpacked.problems:
        out.rejects.append(reject(name, where, "(file)", problem, ""))
    for member, content in unpacked.members:
        kind = _kind(member, content)
        if kind is None:
            problem = f"unknown payment file kind ({KINDS_HELP})"
            out.rejects.append(reject(name, member, "(name)", problem, ""))
            continue
        read = READERS[kind](content, member, limits)
        kinds.append(read.kind)
        out.extend(read)
    out.kind = "+".join(dict.fromkeys(kinds)) or "unknown"
    return out


def read_payment_file(path: Path, name: str | None = None, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    """One payment file from disk (see `read_payment_bytes`)."""
    return read_payment_bytes(path.read_bytes(), name or path.name, limits)
