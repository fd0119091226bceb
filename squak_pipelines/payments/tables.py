"""Warehouse tables of payments (schema `payments`): declared once, here.

The intake tables (files, payments, rejects, assignments, charge requests, dunning notices)
only grow; the derived ones (matches, allocations, suspense, ledger, aging, dunning) are
rebuilt from them on every run, inside one transaction.
"""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.schema import DATE, INT, MONEY, TEXT, UTC_TS, schemas, table

_S, _D, _I, _TS = TEXT, MONEY, INT, UTC_TS

INTAKE = (
    table("payments.files", "Each payment file read: name, content hash, kind, what its records were "
          "(records = new_payments + failed + debits + reversals + pending + duplicates + rejected) and "
          "the checks of the file as a whole (statement balances, IBAN check digits).", [
        ("file_name", _S), ("sha256", _S), ("kind", _S), ("records", _I), ("new_payments", _I),
        ("duplicates", _I), ("rejected", _I), ("received_at", _TS), ("failed", _I), ("debits", _I),
        ("reversals", _I), ("pending", _I), ("checks", _S)], unique=[("file_name", "sha256")]),
    table("payments.payments", "Every record read from a payment file, once per payment id: payments, "
          "failed charges, refunds, chargebacks, returns, debits, pending and information entries.", [
              ("payment_id", _S), ("source_file", _S), ("location", _S), ("method", _S), ("status", _S),
              ("amount", _D), ("currency", _S), ("received_at", _TS), ("reference", _S), ("token", _S),
              ("account_id", _S), ("invoice_hint", _S), ("remittance", _S), ("payer", _S),
              ("payer_iban", _S), ("end_to_end_id", _S), ("mandate_id", _S), ("creditor_reference", _S),
              ("creditor_reference_type", _S), ("return_reason", _S), ("reverses", _S), ("statement_id", _S),
              ("bank_account", _S), ("detail", _S)],
          unique=["payment_id"]),
    table("payments.duplicates", "Records read again (the same payment id seen before): where, and the "
          "earlier record they repeat.", [
              ("source_file", _S), ("location", _S), ("payment_id", _S), ("first_file", _S),
              ("first_location", _S), ("received_at", _TS)]),
    table("payments.direct_debits", "SEPA direct-debit collections requested (pain.008): one per open "
          "invoice of a mandate account, with its end-to-end id, mandate and sequence type.", [
              ("end_to_end_id", _S), ("invoice_number", _S), ("account_id", _S), ("amount", _D),
              ("currency", _S), ("mandate_id", _S), ("mandate_date", DATE), ("iban", _S),
              ("sequence_type", _S), ("collection_date", DATE), ("file", _S)], unique=["end_to_end_id"]),
    table("payments.rejects", "Payment records that could not be read: file, location, field, reason.",
          [("source_file", _S), ("location", _S), ("field", _S), ("reason", _S), ("raw", _S)]),
    table("payments.assignments", "Analysts' manual assignments of suspense payments to invoices.", [
        ("payment_id", _S), ("invoice_number", _S), ("account_id", _S), ("assigned_by", _S),
        ("assigned_at", _TS)]),
    table("payments.charge_requests", "Card charges requested from the processor (autopay and retries).", [
        ("request_id", _S), ("invoice_number", _S), ("account_id", _S), ("token", _S), ("amount", _D),
        ("currency", _S), ("attempt", _I), ("due_on", DATE), ("file", _S)], unique=["request_id"]),
    table("payments.dunning_notices", "Dunning notices written, by account, state and date.", [
        ("account_id", _S), ("currency", _S), ("state", _S), ("invoices", _S), ("as_of", DATE),
        ("path", _S)]),
)
DERIVED_TABLES = (
    table("payments.matches", "How each payment was matched (reference, token, amount, manual).",
          [("payment_id", _S), ("how", _S), ("account_id", _S), ("invoice_number", _S)],
          unique=["payment_id"], rewritten=True),
    table("payments.allocations", "Money of each payment applied to each invoice.",
          [("payment_id", _S), ("invoice_number", _S), ("amount", _D)],
          unique=[("payment_id", "invoice_number")], rewritten=True),
    table("payments.suspense", "Payments not matched to an invoice, with the reason.", [
        ("payment_id", _S), ("reason", _S), ("amount", _D), ("currency", _S), ("received_at", _TS),
        ("remittance", _S), ("source_file", _S)], unique=["payment_id"], rewritten=True),
    table("payments.ledger", "Each account's ledger: invoices, credit notes and payments with the "
          "running balance.", [
              ("account_id", _S), ("currency", _S), ("at", _TS), ("kind", _S), ("document", _S),
              ("amount", _D), ("balance", _D)]),
    table("payments.aging", "Open invoice amounts by days past due and bucket, as of the clock's date.", [
        ("invoice_number", _S), ("account_id", _S), ("currency", _S), ("due_date", DATE),
        ("days_past_due", _I), ("bucket", _S), ("open_amount", _D), ("as_of", DATE)],
          unique=["invoice_number"], rewritten=True),
    table("payments.dunning", "Accounts in dunning: state, days past due, overdue amount.", [
        ("account_id", _S), ("currency", _S), ("state", _S), ("days_past_due", _I), ("overdue_amount", _D),
        ("invoices", _S), ("as_of", DATE)], unique=[("account_id", "currency")], rewritten=True),
)
TABLES = INTAKE + DERIVED_TABLES
SCHEMAS: dict[str, pa.Schema] = schemas(INTAKE)
DERIVED: dict[str, pa.Schema] = schemas(DERIVED_TABLES)
