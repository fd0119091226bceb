"""Warehouse tables of rating (schema `rating`): declared once, here."""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.rating.engine import OUTPUT_SCHEMA
from squak_pipelines.schema import BOOL, DATE, INT, MONEY, TEXT, UTC_TS, schemas, table

_S, _TS = TEXT, UTC_TS
_BASE = [
    ("event_key", _S), ("partition_day", DATE), ("switch_id", _S), ("service", _S), ("call_type", _S),
    ("calling_number", _S), ("called_number", _S), ("start_utc", _TS), ("answer_utc", _TS),
    ("billsec", INT), ("answered", BOOL), ("account_id", _S), ("service_id", _S), ("plan_id", _S),
]
SUSPENSE_COLUMNS = ("event_key", "partition_day", "reason", "service", "call_type", "calling_number",
                    "called_number", "start_utc", "billsec", "account_id", "plan_id")

TABLES = (
    table("rating.rated_events", "Every priced event with its full rating trace (prefix, deck line, "
          "band, increment, allowance, discount).",
          pa.schema(_BASE + [f for f in OUTPUT_SCHEMA if f.name != "status"]),
          unique=["event_key"], rewritten=True),
    table("rating.suspense", "Events that could not be priced (no plan, no rate), with the reason; "
          "re-rated when reference data changes.",
          pa.schema([(n, dict(_BASE).get(n, _S)) for n in SUSPENSE_COLUMNS]),
          unique=["event_key"], rewritten=True),
    table("rating.adjustments", "Price differences found on re-rating events already billed; they go "
          "on the next invoice.", [
              ("event_key", _S), ("partition_day", DATE), ("account_id", _S), ("currency", _S),
              ("cycle", _S), ("billed_charge", MONEY), ("rerated_charge", MONEY), ("difference", MONEY),
              ("invoice_number", _S)]),
    table("rating.what_if", "Tariff what-if results (`squak what-if`): per scenario, cycle, currency, "
          "account, plan and destination, the events and their revenue billed and under the proposal, "
          "with their wholesale cost; a scenario's rows are replaced when it is run again.", [
              ("scenario", _S), ("cycle", _S), ("created_at", _TS), ("currency", _S), ("account_id", _S),
              ("plan_id", _S), ("destination", _S), ("events", INT), ("changed", INT),
              ("unpriced_before", INT), ("unpriced_after", INT), ("revenue_before", MONEY),
              ("revenue_after", MONEY), ("cost", MONEY)], rewritten=True),
)
SCHEMAS: dict[str, pa.Schema] = schemas(TABLES)
