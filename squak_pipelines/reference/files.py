"""Read and validate the operator's reference CSVs into typed Arrow tables.

A bad value fails the load with the file, line and field named; money columns become
exact decimals (Arrow decimal128 -> SQL NUMERIC), never floats.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from squak_pipelines.mediation.layouts import layout_path
from squak_pipelines.money import MINOR_UNITS, parse_amount
from squak_pipelines.paths import is_safe_part
from squak_pipelines.reference.tables import SCHEMAS

TAX_APPLIES_TO = {"usage", "recurring", "all", "international_usage", "per_number"}
TAX_KINDS = {"percent", "fixed"}
SWITCH_FORMATS = {"asterisk", "freeswitch", "canonical", "auto", ""}  # auto/empty: detect


class ReferenceFileError(ValueError):
    """A reference file is malformed; the message names file, line and field."""

    def __init__(self, path: Path, line: int, field: str, problem: str):
        super().__init__(f"{path}:{line}: field {field!r}: {problem}")
        self.path, self.line, self.field, self.problem = path, line, field, problem


def read_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a headed CSV with their line numbers; checks the required columns exist."""
    if not path.exists():
        raise FileNotFoundError(f"reference file missing: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ReferenceFileError(path, 1, missing[0], "required column is missing")
        rows = []
        for row in reader:
            if None in row:
                raise ReferenceFileError(path, reader.line_num, "(row)", "more fields than the header")
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()}))
    return rows


def _check(path: Path, line: int, field: str, ok: bool, problem: str) -> None:
    if not ok:
        raise ReferenceFileError(path, line, field, problem)


def _decimal(path: Path, line: int, field: str, text: str, allow_empty: bool = False) -> Decimal | None:
    if text == "" and allow_empty:
        return None
    try:
        value = parse_amount(text, field=field)
    except ValueError as exc:
        raise ReferenceFileError(path, line, field, str(exc)) from None
    _check(path, line, field, value >= 0, f"must not be negative, got {text}")
    return value


def _unique(path: Path, rows: list[tuple[int, dict[str, str]]], key: str) -> None:
    seen: dict[str, int] = {}
    for line, row in rows:
        _check(path, line, key, bool(row[key]), "must not be empty")
        _check(path, line, key, row[key] not in seen,
               f"duplicate {row[key]!r} (first on line {seen.get(row[key])})")
        seen[row[key]] = line


def load_products(path: Path) -> pa.Table:
    rows = read_rows(path, ("product_id", "name", "kind", "features", "min_quantity",
                            "max_quantity", "plans"))
    _unique(path, rows, "product_id")
    for line, row in rows:
        for field in ("min_quantity", "max_quantity"):
            _check(path, line, field, row[field].isdigit(), f"not a whole number: {row[field]!r}")
        _check(path, line, "max_quantity", int(row["max_quantity"]) >= int(row["min_quantity"]),
               "smaller than min_quantity")
    return pa.table({
        "product_id": [r["product_id"] for _, r in rows],
        "name": [r["name"] for _, r in rows],
        "kind": [r["kind"] for _, r in rows],
        "features": [r["features"] for _, r in rows],
        "min_quantity": pa.array([int(r["min_quantity"]) for _, r in rows], pa.int32()),
        "max_quantity": pa.array([int(r["max_quantity"]) for _, r in rows], pa.int32()),
        "plans": [r["plans"] for _, r in rows],
    })


def load_tax_rates(path: Path) -> pa.Table:
    """The tax table. Optional columns: `vat` (yes/no: an EN 16931 value added tax; default
    `is_vat`) and `reverse_charge` (yes: a business customer with a valid VAT id accounts for
    this VAT itself; its invoices carry the reverse-charge note instead of the tax)."""
    rows = read_rows(path, ("tax_id", "name", "country", "state", "applies_to", "kind", "rate",
                            "amount", "currency", "effective_from"))
    _unique(path, rows, "tax_id")
    rates, amounts = [], []
    for line, row in rows:
        _check(path, line, "applies_to", row["applies_to"] in TAX_APPLIES_TO,
               f"{row['applies_to']!r} is not one of {sorted(TAX_APPLIES_TO)}")
        _check(path, line, "kind", row["kind"] in TAX_KINDS, f"{row['kind']!r} is not percent or fixed")
        _check(path, line, "currency", row["currency"] in MINOR_UNITS,
               f"{row['currency']!r} is not a known ISO 4217 currency")
        _check(path, line, "country", len(row["country"]) == 2 and row["country"].isalpha(),
               f"{row['country']!r} is not an ISO 3166 country code")
        rate = _decimal(path, line, "rate", row["rate"], allow_empty=row["kind"] == "fixed")
        amount = _decimal(path, line, "amount", row["amount"], allow_empty=row["kind"] == "percent")
        _check(path, line, "rate", rate is None or rate <= 100, "a percentage above 100")
        for flag in ("vat", "reverse_charge"):
            _check(path, line, flag, row.get(flag, "") in ("", "yes", "no"),
                   f"{row.get(flag)!r} is not yes or no")
        _check(path, line, "reverse_charge", row.get("reverse_charge") != "yes" or row["kind"] == "percent",
               "only a percentage tax (a VAT) can be reverse charged")
        rates.append(rate)
        amounts.append(amount)
    return pa.table({
        **{c: [r[c] for _, r in rows] for c in ("tax_id", "name", "country", "state",
                                                "applies_to", "kind", "currency")},
        "rate_percent": pa.array(rates, pa.decimal128(9, 4)),
        "amount": pa.array(amounts, pa.decimal128(18, 6)),
        "effective_from": pa.array([r["effective_from"] for _, r in rows]).cast(pa.date32()),
        "vat": pa.array([is_vat(r) for _, r in rows], pa.bool_()),
        "reverse_charge": pa.array([r.get("reverse_charge") == "yes" for _, r in rows], pa.bool_()),
    })


def is_vat(row: dict[str, str]) -> bool:
    """Whether a tax is a value added tax (EN 16931 VAT): the `vat` column, else a national
    percentage on every line outside the United States (which has no VAT)."""
    if row.get("vat"):
        return row["vat"] == "yes"
    national = not row["state"] and row["country"] != "US"
    return row["kind"] == "percent" and row["applies_to"] == "all" and national


def load_switches(path: Path) -> pa.Table:
    rows = read_rows(path, ("switch_id", "format", "timezone", "country", "folder"))
    _unique(path, rows, "switch_id")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    for line, row in rows:
        _check(path, line, "format", row["format"] in SWITCH_FORMATS,
               f"{row['format']!r} is not one of {sorted(SWITCH_FORMATS)}")
        try:
            ZoneInfo(row["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ReferenceFileError(path, line, "timezone",
                                     f"unknown time zone {row['timezone']!r}") from None
        layout = row.get("layout", "")  # optional: a layout file for a custom CDR template
        _check(path, line, "layout", layout == "" or is_safe_part(layout),
               f"{layout!r} must name a file of reference/layouts/ (no path)")
        _check(path, line, "layout", layout == "" or layout_path(path.parent, layout).exists(),
               f"reference/layouts/{layout}.yaml does not exist")
    columns = ("switch_id", "format", "timezone", "country", "folder", "layout")
    return pa.table({c: [r.get(c, "") for _, r in rows] for c in columns})


COST_RATE_SCHEMA = SCHEMAS["raw.cost_rates"]


def load_cost_rates(path: Path) -> pa.Table:
    """Wholesale cost decks (optional): what the operator's carriers charge per minute (voice,
    per second) or per message (sms), by prefix; margins are reported where they exist."""
    if not path.exists():
        return COST_RATE_SCHEMA.empty_table()
    rows = read_rows(path, ("carrier", "prefix", "rate", "currency"))
    seen: set[tuple[str, ...]] = set()
    for line, row in rows:
        _check(path, line, "prefix", row["prefix"].isdigit() and row["prefix"].isascii(), "not all digits")
        _check(path, line, "currency", row["currency"] in MINOR_UNITS,
               f"{row['currency']!r} is not a known ISO 4217 currency")
        service = row.get("service") or "voice"
        _check(path, line, "service", service in ("voice", "sms"), f"{service!r} is not voice or sms")
        rate = _decimal(path, line, "rate", row["rate"])
        _check(path, line, "rate", rate is not None and rate >= 0, "a negative rate")
        key = (row["carrier"], row["prefix"], service, row["currency"], row.get("effective_from", ""))
        _check(path, line, "prefix", key not in seen, "a second row for the same carrier, prefix, "
               "service, currency and date")
        seen.add(key)
    return pa.table({
        "carrier": [r["carrier"] for _, r in rows], "prefix": [r["prefix"] for _, r in rows],
        "destination": [r.get("destination", "") for _, r in rows],
        "service": [r.get("service") or "voice" for _, r in rows],
        "currency": [r["currency"] for _, r in rows],
        "rate": pa.array([Decimal(r["rate"]) for _, r in rows], pa.decimal128(18, 6)),
        "effective_from": pa.array([r.get("effective_from") or None for _, r in rows]).cast(pa.date32()),
    }, schema=COST_RATE_SCHEMA)


REFERENCE_FILES: dict[str, tuple[str, Callable[[Path], pa.Table]]] = {
    "products": ("products.csv", load_products),
    "tax_rates": ("tax_rates.csv", load_tax_rates),
    "switches": ("switches.csv", load_switches),
    "cost_rates": ("cost_rates.csv", load_cost_rates),
}
