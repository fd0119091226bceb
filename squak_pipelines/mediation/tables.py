"""Warehouse tables of mediation (schema `mediation`): declared once, here."""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.schema import BOOL, DATE, INT, TEXT, UTC_TS, schemas, table

_S, _I, _D, _TS = TEXT, INT, DATE, pa.timestamp("s", tz="UTC")
EVENT_SCHEMA = pa.schema([
    ("event_key", _S), ("native_id", _S), ("switch_id", _S), ("source_file", _S),
    ("source_sha256", _S), ("source_line", _I), ("service", _S), ("calling_number", _S),
    ("called_number", _S), ("dialed_number", _S), ("start_utc", _TS), ("answer_utc", _TS),
    ("end_utc", _TS), ("duration", _I), ("billsec", _I), ("disposition", _S), ("answered", BOOL),
    ("account_code", _S), ("origin_country", _S), ("destination_country", _S),
    ("destination_prefix", _S), ("destination_name", _S), ("destination_kind", _S),
    ("call_type", _S), ("event_day", _D), ("raw_line", _S), ("partition_day", _D), ("b_leg_id", _S),
])

KEY_REGISTER = "mediation.event_keys"  # one unique index for the keys of all three tables below

TABLES = (
    table("mediation.events", "Mediated events: one schema, E.164, UTC, enriched (call type, countries, "
          "destination), de-duplicated and screened; the raw line by reference (source_sha256, "
          "source_line: `squak cdr show KEY`; raw_line only on rows mediated before that).",
          EVENT_SCHEMA.append(pa.field("released", BOOL)), unique=["event_key"],
          registered_in=KEY_REGISTER),
    table("mediation.quarantine", "Events held by fraud screening with the rules that flagged them and "
          "the analyst's decision.",
          EVENT_SCHEMA.append(pa.field("fraud_rules", _S)).append(pa.field("decision", _S))
          .append(pa.field("decided_by", _S)).append(pa.field("decided_at", UTC_TS))
          .append(pa.field("note", _S)), unique=["event_key"], registered_in=KEY_REGISTER),
    table("mediation.b_legs", "FreeSWITCH B-legs (legs=ab): a record whose uuid is another record's "
          "bleg_uuid is a leg of that A-leg's call, kept here and never rated as a call.",
          EVENT_SCHEMA.append(pa.field("a_leg_id", _S)), unique=["event_key"], registered_in=KEY_REGISTER),
    table("mediation.rejects", "Malformed records: file, line, reason, field and raw line.", [
        ("source_file", _S), ("source_sha256", _S), ("source_line", _I), ("switch_id", _S),
        ("reason", _S), ("field", _S), ("raw_line", _S), ("partition_day", _D)]),
    table("mediation.duplicates", "Repeated events (same key) and whole re-delivered files.", [
        ("event_key", _S), ("switch_id", _S), ("source_file", _S), ("source_sha256", _S),
        ("source_line", _I), ("duplicate_of", _S), ("raw_line", _S), ("partition_day", _D)]),
    table(KEY_REGISTER, "Every event key ever accepted or quarantined (de-duplication "
          "across days).", [("event_key", _S), ("switch_id", _S), ("event_day", _D)], unique=["event_key"]),
    table("mediation.partition_status", "Per day: quarantine share and whether the fraud gate passed.", [
        ("partition_day", _D), ("records_in", _I), ("accepted", _I), ("quarantined", _I),
        ("quarantine_share", pa.float64()), ("max_quarantine_share", pa.float64()),
        ("gate_passed", BOOL)], unique=["partition_day"], rewritten=True),
    table("mediation.files", "Each delivered file with its conservation counts (status processed, "
          "unreadable, duplicate_delivery or before_first_day: held whole until the partitions reach "
          "its day).", [
        ("file_name", _S), ("sha256", _S), ("switch_id", _S), ("format", _S), ("partition_day", _D),
        ("status", _S), ("records_in", _I), ("accepted", _I), ("rejected", _I), ("duplicates", _I),
        ("quarantined", _I), ("detail", _S), ("b_legs", _I)]),
)
TABLE_SCHEMAS: dict[str, pa.Schema] = schemas(TABLES)
FILES_SCHEMA = TABLE_SCHEMAS["mediation.files"]
