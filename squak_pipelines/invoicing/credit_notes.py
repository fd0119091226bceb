"""Credit notes: the correction of a final invoice, which itself never changes.

A credit note has its own gapless series (`<prefix>-CN-<year>-NNNNNN`), names the invoice it
corrects and the reason, and credits whole lines of it: all lines not credited before, or
the line numbers given. Lines are credited at their invoiced amount; taxes are credited on
the credited base, with the tax's rate and scope, rounded once per credit note; the credit
note that credits an invoice's last lines credits exactly the tax left, fixed fees included,
so the credit notes of an invoice never add up to more (or less) than the invoice.
The credit is applied to the account's next invoice ("Credit notes" before the amount due).
Documents (HTML, JSON, PDF) are written next to the invoice's, from what was stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.invoicing.compose import LINE_FIELDS, ZERO, Invoice, Line, taxable
from squak_pipelines.invoicing.einvoice import make as make_einvoice
from squak_pipelines.invoicing.pdf import render_pdf
from squak_pipelines.invoicing.render import operator_of, render_html, render_json
from squak_pipelines.invoicing.stage import (
    ensure_tables,
    lock_numbering,
    pdfs_wanted,
    reserve_numbers,
    tax_table,
    write_stored_documents,
)
from squak_pipelines.invoicing.tables import CREDIT_TABLES
from squak_pipelines.money import money_array, round_to_currency
from squak_pipelines.warehouse import Warehouse


class CreditNoteError(ValueError):
    """The credit note cannot be issued as asked (names the invoice and the problem)."""


def ensure_credit_tables(warehouse: Warehouse) -> None:
    ensure_tables(warehouse)


def _invoice(warehouse: Warehouse, number: str) -> tuple[dict, Invoice]:
    rows = warehouse.query_arrow(
        "select number, cycle, document from invoicing.invoices where number = :n", {"n": number}
    ).to_pylist()
    if not rows:
        raise CreditNoteError(f"invoice {number!r} is not a final invoice")
    data = json.loads(rows[0]["document"])
    lines = [
        Line(**{f: _value(f, line.get(f)) for f in LINE_FIELDS if f in line}) for line in data["lines"]
    ]
    head = {k: v for k, v in data.items() if k in Invoice.__dataclass_fields__ and k != "lines"}
    return rows[0], Invoice(**{**head, "lines": lines})


def _value(name: str, value):
    decimal_fields = ("amount", "quantity", "unit_price", "allowance_used", "base")
    if name in decimal_fields and value is not None:
        return Decimal(value)
    return value


def _tax_lines(
    credited: list[tuple[int, Line]],
    original: Invoice,
    already: dict[str, Decimal],
    last: bool,
    rates: dict[str, dict],
) -> list[Line]:
    """Tax credits for the credited lines (see the module docstring)."""
    out = []
    for tax in (x for x in original.lines if x.kind == "tax"):
        if last:
            amount = -(tax.amount + already.get(tax.tax_id, ZERO))
        else:
            rate = rates.get(tax.tax_id)
            if rate is None or rate["kind"] != "percent":
                continue  # fixed fees are credited with the invoice's last lines
            base = sum((line.amount for _, line in credited if taxable(line, rate["applies_to"])), ZERO)
            amount = -round_to_currency(base * Decimal(rate["rate_percent"]) / 100, original.currency)
        if amount != 0:
            out.append(Line("tax", f"Credit: {tax.description}", amount, tax_id=tax.tax_id))
    return out


def issue_credit_note(
    warehouse: Warehouse,
    settings: Settings,
    invoice_number: str,
    reason: str,
    line_numbers: list[int] | None = None,
    today: date | None = None,
) -> Invoice:
    """Issue (number, store and write) a credit note for lines of a final invoice."""
    if not reason.strip():
        raise CreditNoteError("a credit note needs a reason")
    issued = today or clock.today()
    with warehouse.session():
        ensure_credit_tables(warehouse)
        with warehouse.transaction():
            lock_numbering(warehouse)
            row, original = _invoice(warehouse, invoice_number)
            previous = warehouse.query_arrow(
                "select credits_line_no, tax_id, amount from invoicing.credit_note_lines "
                "where invoice_number = :n",
                {"n": invoice_number},
            ).to_pylist()
            done = {p["credits_line_no"] for p in previous if p["credits_line_no"] is not None}
            already: dict[str, Decimal] = {}
            for p in previous:
                if p["tax_id"]:
                    already[p["tax_id"]] = already.get(p["tax_id"], ZERO) + Decimal(p["amount"])
            open_lines = {
                n: line for n, line in enumerate(original.lines, 1) if line.kind != "tax" and n not in done
            }
            wanted = sorted(open_lines) if line_numbers is None else sorted(set(line_numbers))
            for n in wanted:
                if n not in open_lines:
                    why = "was credited before" if n in done else "is not a chargeable line"
                    raise CreditNoteError(f"invoice {invoice_number}: line {n} {why}")
            if not wanted:
                raise CreditNoteError(f"invoice {invoice_number}: every line is credited already")
            credited = [(n, open_lines[n]) for n in wanted]
            rates = tax_table(settings)
            taxes = _tax_lines(credited, original, already, len(wanted) == len(open_lines), rates)
            lines = [
                replace(line, description=f"Credit: {line.description}", amount=-line.amount)
                for _, line in credited
            ]
            subtotal = sum((line.amount for line in lines), ZERO)
            tax_total = sum((line.amount for line in taxes), ZERO)
            prefix = operator_of(settings.reference_dir).invoice_prefix
            [number] = reserve_numbers(warehouse, f"{prefix}-CN-{issued.year}", 1)
            note = replace(
                original,
                lines=lines + taxes,
                subtotal=subtotal,
                tax_total=tax_total,
                total=subtotal + tax_total,
                previous_balance=ZERO,
                credits=ZERO,
                amount_due=subtotal + tax_total,
                number=number,
                issue_date=issued.isoformat(),
                due_date=issued.isoformat(),
                document_type="credit_note",
                corrects=invoice_number,
                reason=reason.strip(),
            )
            _store(warehouse, settings, note, [n for n, _ in credited], issued, rates)
        write_credit_note_documents(warehouse, settings.data_dir / "invoices" / row["cycle"], number)
    return note


def write_credit_note_documents(warehouse: Warehouse, folder: Path, number: str) -> None:
    """HTML, JSON and PDF of a credit note, from what was stored when it was issued."""
    row = warehouse.query_arrow(
        "select number, issue_date, document, html, ubl, cii from invoicing.credit_notes where number = :n",
        {"n": number},
    ).to_pylist()[0]
    folder.mkdir(parents=True, exist_ok=True)
    write_stored_documents(folder, row)
    if pdfs_wanted():
        (folder / f"{number}.pdf").write_bytes(
            render_pdf(row["html"], row["issue_date"], number, row["cii"] or ""))


def _store(
    warehouse: Warehouse, settings: Settings, note: Invoice, credited: list[int], issued: date,
    rates: dict[str, dict],
) -> None:
    """The credit note and its lines (the credited invoice lines first, then taxes)."""
    number, invoice_number = note.number, note.corrects
    subtotal, tax_total = note.subtotal, note.tax_total
    taxes = [x for x in note.lines if x.kind == "tax"]
    document = render_json(note)
    page = render_html(note, settings.reference_dir)
    edocs = make_einvoice(note, operator_of(settings.reference_dir), rates)
    warehouse.load(
        "invoicing.credit_notes",
        pa.table(
            {
                "number": [number],
                "invoice_number": [invoice_number],
                "account_id": [note.account_id],
                "cycle": [note.cycle],
                "currency": [note.currency],
                "issue_date": pa.array([issued], pa.date32()),
                "reason": [note.reason],
                "subtotal": money_array([subtotal]),
                "tax_total": money_array([tax_total]),
                "total": money_array([note.total]),
                "applied_to": pa.nulls(1, pa.string()),
                "document": [document],
                "html": [page],
                "html_sha256": [hashlib.sha256(page.encode()).hexdigest()],
                "created_at": [clock.now()],
                "ubl": [edocs.ubl],
                "cii": [edocs.cii],
                "einvoice_errors": [edocs.errors],
            },
            schema=CREDIT_TABLES["invoicing.credit_notes"],
        ),
        mode="append",
    )
    sources = [*credited, *[None] * len(taxes)]
    all_lines = note.lines
    warehouse.load(
        "invoicing.credit_note_lines",
        pa.table(
            {
                "number": [number] * len(all_lines),
                "line_no": pa.array(range(1, len(all_lines) + 1), pa.int64()),
                "invoice_number": [invoice_number] * len(all_lines),
                "credits_line_no": pa.array(sources, pa.int64()),
                "kind": [x.kind for x in all_lines],
                "description": [x.description for x in all_lines],
                "amount": money_array([x.amount for x in all_lines]),
                "tax_id": [x.tax_id for x in all_lines],
            },
            schema=CREDIT_TABLES["invoicing.credit_note_lines"],
        ),
        mode="append",
    )
