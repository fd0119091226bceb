"""Warehouse tables of the order stage (schema `orders`) and their Arrow schemas."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
S = pa.string()

SCHEMAS: dict[str, pa.Schema] = {
    "orders.intake_files": pa.schema([("file_name", S), ("sha256", S), ("kind", S), ("status", S),
                                      ("records", pa.int64()), ("rejected", pa.int64())]),
    "orders.accounts": pa.schema([(c, S) for c in (
        "account_id", "name", "segment", "email", "street", "city", "state", "postal_code",
        "country", "currency", "bill_day", "payment_method", "card_token", "card_brand",
        "card_last4", "card_expiry", "autopay", "delivery_method", "privacy_mask", "brand_logo",
        "brand_primary_color", "brand_accent_color", "template", "created_at", "call_detail", "billing_issue",
        "source_file")]),
    "orders.order_lines": pa.schema([
        ("order_id", S), ("line_no", S), ("account_id", S), ("kind", S), ("product_id", S),
        ("plan_id", S), ("quantity", S), ("area_code", S), ("requested_number", S),
        ("phone_number", S), ("features", S), ("effective_at", TS), ("submitted_at", S),
        ("status", S), ("reason", S), ("message", S), ("source_file", S), ("source_line", pa.int64())]),
    "orders.rejections": pa.schema([
        ("entity", S), ("record_key", S), ("line_no", S), ("source_file", S), ("source_line", pa.int64()),
        ("field", S), ("reason", S), ("message", S), ("record", S)]),
    "orders.services": pa.schema([
        ("service_id", S), ("period", pa.int64()), ("account_id", S), ("order_id", S), ("line_no", S),
        ("product_id", S), ("plan_id", S), ("number", S), ("features", S), ("active_from", TS),
        ("active_to", TS)]),
    "orders.number_inventory": pa.schema([
        ("number", S), ("country", S), ("area_code", S), ("state", S), ("block", S), ("status", S),
        ("service_id", S), ("quarantine_until", TS)]),
    "orders.bill_days": pa.schema([("account_id", S), ("bill_day", pa.int64()),
                                   ("effective_from", pa.date32())]),
    "orders.order_status_history": pa.schema([
        ("order_id", S), ("line_no", S), ("status", S), ("at", TS), ("detail", S)]),
}


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
