"""A card processor's own report: Stripe's itemized balance change report
(`balance_change_from_activity.itemized.*`), in the column layout Stripe documents.

One row per balance transaction. Columns read (names fixed, order and extra columns free):
`balance_transaction_id` (the identity), `created_utc` (else `created`), `currency` (lower
case in Stripe's files), `gross` (decimal, in the currency's major units; negative when money
goes back), `reporting_category`, and where present `charge_id`, `source_id`, `customer_id`,
`description` and any `payment_metadata[...]` column (our charges carry the invoice number
there and in the description).

Reporting categories: `charge` is a payment received; `refund` and `dispute` take back the
charge they name (`charge_id`); `dispute_reversal` and `refund_failure` give the money back
to us, so they count as received again; everything else (fees, payouts, transfers,
adjustments, ...) is kept as `not_a_payment`.
"""

from __future__ import annotations

from squak_pipelines.limits import Limits
from squak_pipelines.payments.records import (
    DEFAULT_LIMITS,
    BadField,
    PaymentFile,
    amount,
    currency,
    moment,
    read_csv_records,
    record,
)

REQUIRED = ("balance_transaction_id", "currency", "gross", "reporting_category")
STATUS = {"charge": "succeeded", "refund": "refunded", "dispute": "chargeback",
          "dispute_reversal": "succeeded", "refund_failure": "succeeded"}


def is_stripe_header(header: str) -> bool:
    names = {c.strip().strip('"') for c in header.strip().split(",")}
    return {"balance_transaction_id", "reporting_category"} <= names


def read_stripe(data: bytes, name: str, limits: Limits = DEFAULT_LIMITS) -> PaymentFile:
    def to_record(line: int, row: dict[str, str]) -> dict:
        txn = row["balance_transaction_id"]
        if not txn:
            raise BadField("balance_transaction_id", "must not be empty")
        category = row["reporting_category"].lower()
        status = STATUS.get(category, "not_a_payment")
        code = currency(row["currency"])
        gross = amount(row["gross"], "gross", code, limits, signed=True)
        created = row.get("created_utc") or row.get("created") or ""
        if not created:
            raise BadField("created_utc", "missing: the transaction's time is required")
        charge = row.get("charge_id") or (row.get("source_id") if category == "charge" else "") or None
        metadata = [v for k, v in row.items() if k.startswith("payment_metadata[")]
        text = " ".join(h for h in (row.get("description", ""), *metadata) if h) or None
        return record(
            payment_id=f"stripe:{txn}", source_file=name, location=f"line {line}", method="card",
            status=status, amount=abs(gross), currency=code, received_at=moment(created, "created_utc"),
            reference=charge, token=row.get("customer_id") or None, invoice_hint=text,
            remittance=text, payer=row.get("customer_name") or None,
            reverses=charge if status in ("refunded", "chargeback") else None,
            detail=None if category in STATUS else f"reporting_category {category}")

    return read_csv_records(data, name, "stripe_itemized_balance", REQUIRED, to_record)
