"""One payments schema for every source, and the strict field readers all readers share.

A payment record is a dict of `PAYMENT_FIELDS`. Its `status` says what it is:
`succeeded` (money received), `failed` (a declined card charge), `refunded` / `chargeback`
(a card payment given back), `returned` (a bank credit taken back: a returned direct debit
or a reversed credit), `not_a_payment` (a debit on the account: fees, outgoing payments),
`pending` and `information` (entries a bank reports but has not booked: kept, never booked).
A reject names the file, the line or element path, the field and the reason, and keeps the
raw text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from squak_pipelines.limits import Limits
from squak_pipelines.money import MINOR_UNITS

DEFAULT_LIMITS = Limits()

STATUSES = ("succeeded", "failed", "refunded", "chargeback", "returned", "not_a_payment", "pending",
            "information")
REVERSALS = ("refunded", "chargeback", "returned")  # take back what an earlier payment paid
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
    "payer_iban",
    "end_to_end_id",
    "mandate_id",
    "creditor_reference",
    "creditor_reference_type",
    "return_reason",
    "reverses",
    "statement_id",
    "bank_account",
    "detail",
)


@dataclass
class PaymentFile:
    """What one file gave: payment records (dicts of PAYMENT_FIELDS), rejects, and checks
    of the file as a whole (e.g. a statement whose balances do not add up)."""

    name: str
    kind: str
    payments: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def extend(self, other: PaymentFile) -> None:
        self.payments += other.payments
        self.rejects += other.rejects
        self.checks += other.checks


class BadField(ValueError):
    """A field that cannot be read; `field` names it (a column or an element path)."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field


def amount(text: str, name: str, currency: str, limits: Limits, signed: bool = False) -> Decimal:
    """A positive decimal amount (or, `signed`, a non-zero one), no larger than the largest
    payment allowed and with no more decimals than the currency has."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise BadField(name, f"not a decimal amount: {text!r}") from None
    if not value.is_finite() or value == 0 or (value < 0 and not signed):
        raise BadField(name, f"must be a {'non-zero' if signed else 'positive'} amount, got {text!r}")
    if abs(value) > limits.max_payment:
        raise BadField(name, f"{text.strip()} is above the largest payment allowed ({limits.max_payment}, "
                             "reference/limits.yaml max_payment)")
    code = currency.strip().upper()
    if code in MINOR_UNITS and value != value.quantize(Decimal(1).scaleb(-MINOR_UNITS[code])):
        raise BadField(name, f"{text.strip()} has more decimals than {code} has ({MINOR_UNITS[code]})")
    return value


def currency(text: str, name: str = "currency") -> str:
    code = text.strip().upper()
    if code not in MINOR_UNITS:
        raise BadField(name, f"not an ISO 4217 currency: {text!r}")
    return code


def moment(text: str, name: str) -> datetime:
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadField(name, f"not an ISO 8601 date or time: {text!r}") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record(**values) -> dict:
    return {f: values.get(f) for f in PAYMENT_FIELDS}


def reject(name: str, location: str, field_name: str, reason: str, raw: str) -> dict:
    return {"source_file": name, "location": location, "field": field_name, "reason": reason,
            "raw": raw[:2000]}


def csv_rows(data: bytes, name: str, required: tuple[str, ...], out: PaymentFile):
    """(line, row, raw) of a CSV file with a header; a missing required column or an unreadable
    record is a reject, and reading goes on after it."""
    text = data.decode("utf-8-sig", errors="replace").replace("\x00", "\ufffd")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        fieldnames = []
        text = f"{exc}: {text[:200]}"
    missing = [c for c in required if c not in fieldnames]
    if missing:
        out.rejects.append(reject(name, "line 1", missing[0], "required column missing", text[:200]))
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # one unreadable record: kept as a reject, the rest still read
            where = f"line {reader.line_num}"
            out.rejects.append(reject(name, where, "(row)", f"unreadable record: {exc}", ""))
            continue
        raw = ",".join(str(v) for v in row.values())
        if None in row:
            where = f"line {reader.line_num}"
            out.rejects.append(reject(name, where, "(row)", "more fields than the header", raw))
            continue
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}, raw


def read_csv_records(data: bytes, name: str, kind: str, required: tuple[str, ...],
                     to_record: Callable[[int, dict[str, str]], dict]) -> PaymentFile:
    """A CSV payment file, one record a row made by `to_record(line, row)`; a row whose field
    cannot be read (`BadField`) is a reject naming its line and field, and reading goes on."""
    out = PaymentFile(name, kind)
    for line, row, raw in csv_rows(data, name, required, out):
        try:
            out.payments.append(to_record(line, row))
        except BadField as bad:
            out.rejects.append(reject(name, f"line {line}", bad.field, str(bad), raw))
    return out
