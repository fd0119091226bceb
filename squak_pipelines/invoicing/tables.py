"""Warehouse tables of invoicing (schema `invoicing`): declared once, here."""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.schema import BOOL, DATE, INT, MONEY, TEXT, UTC_TS, schemas, table

_S, _D = TEXT, MONEY

TABLES = (
    table("invoicing.invoices", "Final invoices: number, account, cycle, totals, amount due and the "
          "document as issued (HTML and its hash).", [
              ("number", _S), ("invoice_key", _S), ("account_id", _S), ("cycle", _S), ("currency", _S),
              ("issue_date", DATE), ("due_date", DATE), ("subtotal", _D), ("tax_total", _D),
              ("total", _D), ("previous_balance", _D), ("amount_due", _D), ("document", _S),
              ("html", _S), ("html_sha256", _S), ("finalized_at", UTC_TS),
              # EN 16931: UBL 2.1 for every invoice, CII (Factur-X) for EUR, and what validation found
              ("ubl", _S), ("cii", _S), ("einvoice_errors", _S)],
          unique=["number", "invoice_key"]),
    table("invoicing.invoice_lines", "Lines of the final invoices (written with invoicing.invoices).", [
        ("invoice_key", _S), ("line_no", INT), ("kind", _S), ("description", _S), ("quantity", _D),
        ("unit", _S), ("unit_price", _D), ("amount", _D), ("service_id", _S), ("call_type", _S),
        ("destination", _S), ("calls", INT), ("allowance_used", _D), ("tax_id", _S), ("base", _D),
        ("applies_to", _S), ("cycle", _S), ("service", _S), ("band", _S), ("discount_name", _S),
        ("late", BOOL)], unique=[("invoice_key", "line_no")]),
    table("invoicing.drafts", "Draft invoices of open or unfinalized cycles (replaced on each draft run).", [
        ("invoice_key", _S), ("account_id", _S), ("cycle", _S), ("currency", _S), ("subtotal", _D),
        ("tax_total", _D), ("total", _D), ("amount_due", _D), ("document", _S)],
          unique=["invoice_key"], rewritten=True),
    table("invoicing.billed_events", "Which invoice billed each rated event: an event is billed once.",
          [("event_key", _S), ("invoice_number", _S)], unique=["event_key"]),
    table("invoicing.number_series", "Invoice and credit-note number series and the next free number.",
          [("series", _S), ("next_number", INT)], unique=["series"]),
    table("invoicing.billing_runs", "Each billing run of a month: when, how many invoices, complete "
          "or not.", [
        ("cycle", _S), ("run_on", DATE), ("finalized", INT), ("complete", BOOL), ("recorded_at", UTC_TS)]),
    table("invoicing.credit_notes", "Credit notes against final invoices, with the invoice that took "
          "the credit.", [
              ("number", _S), ("invoice_number", _S), ("account_id", _S), ("cycle", _S), ("currency", _S),
              ("issue_date", DATE), ("reason", _S), ("subtotal", _D), ("tax_total", _D), ("total", _D),
              ("applied_to", _S), ("document", _S), ("html", _S), ("html_sha256", _S),
              ("created_at", UTC_TS), ("ubl", _S), ("cii", _S), ("einvoice_errors", _S)], unique=["number"]),
    table("invoicing.credit_note_lines", "Lines of the credit notes, each naming the invoice line it "
          "credits (null for taxes).", [
              ("number", _S), ("line_no", INT), ("invoice_number", _S), ("credits_line_no", INT),
              ("kind", _S), ("description", _S), ("amount", _D), ("tax_id", _S)],
          unique=[("number", "line_no")]),
    table("invoicing.deliveries", "Each invoice's delivery by method (email, post): status, attempts; "
          "recorded before and after sending, so nothing is sent twice.", [
              ("number", _S), ("method", _S), ("status", _S), ("attempts", INT), ("detail", _S),
              ("updated_at", UTC_TS)], unique=[("number", "method")], rewritten=True),
)
SCHEMAS: dict[str, pa.Schema] = schemas(TABLES)
CREDIT_TABLES = {k: v for k, v in SCHEMAS.items() if k.startswith("invoicing.credit_note")}
DELIVERIES = SCHEMAS["invoicing.deliveries"]
