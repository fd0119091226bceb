"""Read order drops: accounts CSV, order lines CSV, and orders as JSON Lines.

Every record keeps its file and line. A record that can't be read becomes a rejection
(`malformed_record`) naming the file, line and field; nothing is dropped silently. Card
numbers are found and redacted here, before anything is stored.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from squak_pipelines.card_numbers import card_number_fields, redact, redact_frame

ACCOUNT_FIELDS = ("account_id", "name", "segment", "email", "street", "city", "state",
                  "postal_code", "country", "currency", "bill_day", "payment_method",
                  "card_token", "card_brand", "card_last4", "card_expiry", "autopay",
                  "delivery_method", "privacy_mask", "brand_logo", "brand_primary_color",
                  "brand_accent_color", "template", "created_at", "call_detail",
                  # SEPA direct debit (payment_method ach, EUR): the customer's account and mandate
                  "iban", "bic", "mandate_id", "mandate_date",
                  # a business customer's VAT id (printed on its invoices and e-invoices)
                  "vat_id")
LINE_FIELDS = ("order_id", "line_no", "account_id", "kind", "product_id", "plan_id", "quantity",
               "area_code", "requested_number", "phone_number", "features", "effective_at",
               "submitted_at", "notes")
REJECTION_COLUMNS = ("entity", "record_key", "source_file", "source_line", "field", "reason",
                     "message", "record")


@dataclass
class IntakeBatch:
    """Records read from new drop files, with their positions; rejects kept aside."""

    accounts: pd.DataFrame
    lines: pd.DataFrame
    rejections: pd.DataFrame


def file_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.startswith("accounts") and name.endswith(".csv"):
        return "accounts"
    if name.startswith("orders") and name.endswith((".csv", ".jsonl")):
        return "orders"
    return None


def _rejection(entity: str, key: str, source: str, line: int, field: str, reason: str,
               message: str, record: dict | str) -> dict[str, object]:
    text = redact(record if isinstance(record, str) else json.dumps(record, ensure_ascii=False))
    message = redact(message)
    return {"entity": entity, "record_key": key, "source_file": source, "source_line": line,
            "field": field, "reason": reason, "message": message, "record": text}


def _text(path: Path, source: str, entity: str, rejects: list[dict[str, object]]) -> str | None:
    """The file as text (UTF-8, BOM dropped, NUL bytes made visible as U+FFFD); None, with one
    `unreadable_file` rejection naming the file, when it is not text at all."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        rejects.append(_rejection(entity, "", source, data[: exc.start].count(b"\n") + 1, "(file)",
                                  "unreadable_file", f"not UTF-8 text (byte {exc.start}): save the file as "
                                  "UTF-8 and drop it again", ""))
        return None
    return text.replace("\x00", "\ufffd")


def _read_csv(path: Path, source: str, fields: tuple[str, ...], entity: str,
              rejects: list[dict[str, object]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    text = _text(path, source, entity, rejects)
    if text is None:
        return rows
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        key_field = fields[0]
        missing = [f for f in (key_field,) if f not in header]
        if missing:
            rejects.append(_rejection(entity, "", source, 1, missing[0], "malformed_record",
                                      f"required column {missing[0]!r} missing from header",
                                      ",".join(header)))
            return rows
        for record in reader:
            line = reader.line_num
            if None in record:
                rejects.append(_rejection(entity, str(record.get(key_field) or ""), source, line,
                                          "(row)", "malformed_record", "more fields than the header",
                                          {k: v for k, v in record.items() if k is not None}))
                continue
            row = {f: (record.get(f) or "").strip() for f in fields}
            row.update(source_file=source, source_line=line)
            rows.append(row)
    return rows


def _read_jsonl(path: Path, source: str, accounts: list[dict[str, object]],
                rejects: list[dict[str, object]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    content = _text(path, source, "order", rejects)
    if content is None:
        return rows
    with io.StringIO(content) as fh:
        for line_no, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                order = json.loads(text)
                if not isinstance(order, dict) or not isinstance(order.get("lines"), list):
                    raise ValueError("an order is an object with a 'lines' list")
            except ValueError as exc:
                rejects.append(_rejection("order", "", source, line_no, "(record)",
                                          "malformed_record", f"not a readable order: {exc}",
                                          text.strip()[:2000]))
                continue
            if isinstance(order.get("account"), dict):
                acct = {f: str(order["account"].get(f) or "").strip() for f in ACCOUNT_FIELDS}
                accounts.append({**acct, "source_file": source, "source_line": line_no})
            header = {k: str(order.get(k) or "").strip() for k in ("order_id", "account_id",
                                                                  "submitted_at", "notes")}
            for item in order["lines"]:
                item = item if isinstance(item, dict) else {}
                row = {f: str(item.get(f) if item.get(f) is not None else "").strip() for f in LINE_FIELDS}
                row.update({k: v for k, v in header.items() if v or not row.get(k)})
                row.update(source_file=source, source_line=line_no)
                rows.append(row)
    return rows


def _screen_cards(frame: pd.DataFrame, entity: str, key: str,
                  rejects: list[dict[str, object]]) -> pd.DataFrame:
    """Reject rows carrying a card number; the kept copy is redacted."""
    if frame.empty:
        return frame
    fields = card_number_fields(frame.drop(columns=["source_file", "source_line"]))
    flagged = fields != ""
    if flagged.any():
        redacted = redact_frame(frame[flagged], flagged[flagged])
        for idx, row in redacted.iterrows():
            record = {k: v for k, v in row.items() if k not in {"source_file", "source_line"}}
            rejects.append(_rejection(entity, str(row[key]), str(row["source_file"]),
                                      int(row["source_line"]), fields[idx], "card_number_in_input",
                                      "a full card number is never accepted; send the processor "
                                      "token, brand, last four digits and expiry", record))
    return frame[~flagged]


def read_drops(files: list[tuple[Path, str]]) -> IntakeBatch:
    """Read the given (path, display name) drop files into one batch."""
    rejects: list[dict[str, object]] = []
    accounts: list[dict[str, object]] = []
    lines: list[dict[str, object]] = []
    for path, source in files:
        kind = file_kind(path)
        if kind == "accounts":
            accounts.extend(_read_csv(path, source, ACCOUNT_FIELDS, "account", rejects))
        elif kind == "orders" and path.suffix == ".csv":
            lines.extend(_read_csv(path, source, LINE_FIELDS, "order", rejects))
        elif kind == "orders":
            lines.extend(_read_jsonl(path, source, accounts, rejects))
    acct_frame = pd.DataFrame(accounts, columns=[*ACCOUNT_FIELDS, "source_file", "source_line"])
    line_frame = pd.DataFrame(lines, columns=[*LINE_FIELDS, "source_file", "source_line"])
    acct_frame = _screen_cards(acct_frame, "account", "account_id", rejects)
    line_frame = _screen_cards(line_frame, "order", "order_id", rejects)
    return IntakeBatch(accounts=acct_frame.reset_index(drop=True),
                       lines=line_frame.reset_index(drop=True),
                       rejections=pd.DataFrame(rejects, columns=list(REJECTION_COLUMNS)))
