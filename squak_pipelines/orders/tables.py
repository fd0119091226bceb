"""Warehouse tables of the order stage (schema `orders`): declared once, here."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from squak_pipelines.schema import DATE, INT, TEXT, UTC_TS, schemas, table

TS, S = UTC_TS, TEXT

ACCOUNT_COLUMNS = (
    "account_id", "name", "segment", "email", "street", "city", "state", "postal_code",
    "country", "currency", "bill_day", "payment_method", "card_token", "card_brand",
    "card_last4", "card_expiry", "autopay", "delivery_method", "privacy_mask", "brand_logo",
    "brand_primary_color", "brand_accent_color", "template", "created_at", "call_detail", "billing_issue",
    "source_file", "iban", "bic", "mandate_id", "mandate_date", "vat_id")

TABLES = (
    table("orders.intake_files", "Every order drop file seen: name, content hash, kind, status, counts.",
          [("file_name", S), ("sha256", S), ("kind", S), ("status", S), ("records", INT), ("rejected", INT)],
          unique=[("file_name", "sha256")]),
    table("orders.accounts", "Customer accounts with billing info (card token, brand, last four and "
          "expiry only).", [(c, S) for c in ACCOUNT_COLUMNS], unique=["account_id"], rewritten=True),
    table("orders.order_lines", "Every order line received, with status accepted/rejected and reason.", [
        ("order_id", S), ("line_no", S), ("account_id", S), ("kind", S), ("product_id", S),
        ("plan_id", S), ("quantity", S), ("area_code", S), ("requested_number", S),
        ("phone_number", S), ("features", S), ("effective_at", TS), ("submitted_at", S),
        ("status", S), ("reason", S), ("message", S), ("source_file", S), ("source_line", INT)]),
    table("orders.rejections", "Rejected orders and accounts: file, line, field, reason, message and "
          "the record (card numbers redacted).", [
        ("entity", S), ("record_key", S), ("line_no", S), ("source_file", S), ("source_line", INT),
        ("field", S), ("reason", S), ("message", S), ("record", S)]),
    table("orders.services", "Service periods: account, product, plan, number, features, active_from/to, "
          "and the line an add-on belongs to.", [
        ("service_id", S), ("period", INT), ("account_id", S), ("order_id", S), ("line_no", S),
        ("product_id", S), ("plan_id", S), ("number", S), ("features", S), ("active_from", TS),
        ("active_to", TS), ("parent_service_id", S)], unique=[("service_id", "period")], rewritten=True),
    table("orders.number_inventory", "Every number with its status (available, assigned, quarantine).", [
        ("number", S), ("country", S), ("area_code", S), ("state", S), ("block", S), ("status", S),
        ("service_id", S), ("quarantine_until", TS)], unique=["number"], rewritten=True),
    table("orders.bill_days", "Accounts' bill-day history: the bill day in force from each date.",
          [("account_id", S), ("bill_day", INT), ("effective_from", DATE)]),
    table("orders.order_status_history", "Each order line's status changes with time and detail.",
          [("order_id", S), ("line_no", S), ("status", S), ("at", TS), ("detail", S)]),
)
SCHEMAS: dict[str, pa.Schema] = schemas(TABLES)


def to_table(name: str, frame: pd.DataFrame) -> pa.Table:
    """DataFrame -> Arrow with the table's fixed schema (no inferred null-typed columns)."""
    schema = SCHEMAS[name]
    frame = frame.reindex(columns=schema.names)
    for fld in schema:
        if fld.type == S:
            frame[fld.name] = frame[fld.name].astype(object).where(frame[fld.name].notna(), None)
        elif pa.types.is_timestamp(fld.type):
            frame[fld.name] = pd.to_datetime(frame[fld.name], utc=True)
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
