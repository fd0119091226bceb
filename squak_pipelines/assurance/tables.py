"""Warehouse tables of revenue assurance (schema `assurance`): declared once, here."""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.schema import BOOL, DATE, INT, MONEY, TEXT, UTC_TS, schemas, table

_S = TEXT

TABLES = (
    table("assurance.control_results", "Each control's verdict per billing month: passed, critical, "
          "summary, figures and threshold.", [
              ("cycle", _S), ("number", INT), ("control", _S), ("title", _S), ("critical", BOOL),
              ("passed", BOOL), ("summary", _S), ("findings", INT), ("figures", _S), ("threshold", _S),
              ("as_of", DATE), ("run_at", UTC_TS)], unique=[("cycle", "number")], rewritten=True),
    table("assurance.findings", "Each record a control found: kind, record, account, amount, detail.", [
        ("cycle", _S), ("control", _S), ("kind", _S), ("record", _S), ("account_id", _S), ("currency", _S),
        ("amount", MONEY), ("detail", _S)]),
    table("assurance.expected_revenue", "Revenue expected from orders and plans vs invoiced, by plan "
          "and line type, with the explanation of each difference.", [
              ("cycle", _S), ("plan_id", _S), ("currency", _S), ("line_type", _S), ("expected", MONEY),
              ("invoiced", MONEY), ("difference", MONEY), ("explanation", _S)]),
)
SCHEMAS: dict[str, pa.Schema] = schemas(TABLES)
