"""`squak rate`: price a canonical events CSV under one plan, without the warehouse.

Answers "what would these calls cost on this plan?" for operators and support. Input is
Squak's canonical CSV (event_id, service, calling_number, called_number, start_time,
answer_time, billsec, disposition, account_code, ...; ISO 8601 times, UTC unless they carry an
offset). Called numbers are E.164 ('+' optional for full numbers of more than six digits).
An optional `call_type` column feeds call-type discounts; otherwise `home_country_code`
marks calls to other country codes as international. Allowances apply per `account_code`
only when asked (a quote is usually about the price list itself).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.csv_export import write_csv as write_table
from squak_pipelines.mediation.answered import answered_mask
from squak_pipelines.rating.engine import OUTPUT_SCHEMA, rate
from squak_pipelines.rating.plans import load_plan

REQUIRED = ("event_id", "called_number", "start_time")


class EventsFileError(ValueError):
    """The events file cannot be priced; names file, line and column."""


def read_events(path: Path, home_country_code: str | None = None) -> pa.Table:
    """Canonical events as the engine's input columns (every row kept, in file order)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise EventsFileError(f"{path}:1: column {missing[0]!r} is required")
    get = lambda name, default="": frame[name] if name in frame else pd.Series(default, index=frame.index)  # noqa: E731
    start = _times(path, frame, "start_time")
    answer = (_times(path, frame, "answer_time") if "answer_time" in frame
              else pd.Series(pd.NaT, index=frame.index))
    billsec = pd.to_numeric(get("billsec", "0").replace("", "0"), errors="coerce")
    if billsec.isna().any() or (billsec < 0).any():
        line = int(billsec.index[billsec.isna() | (billsec < 0)][0]) + 2
        raise EventsFileError(f"{path}:{line}: column 'billsec' must be whole seconds >= 0")
    service = get("service", "voice").str.lower().replace("", "voice")
    disposition = get("disposition").str.upper()
    # The rule mediation applies (an answer time where the file has the column).
    answer_utc = pa.array(answer, pa.timestamp("s", tz="UTC"))
    answered = answered_mask(pa.array(service, pa.string()), pa.array(disposition, pa.string()),
                             answer_utc if "answer_time" in frame else None,
                             pa.array(billsec.astype("int64"))).to_numpy(zero_copy_only=False)
    called = get("called_number").str.replace(r"[\s().\-]", "", regex=True)
    called = called.where(called.str.startswith("+") | ~called.str.fullmatch(r"\d{7,15}"), "+" + called)
    call_type = get("call_type")
    if "call_type" not in frame and home_country_code:
        call_type = pd.Series("national", index=frame.index).where(
            called.str.startswith("+" + home_country_code), "international")
    return pa.table({
        "event_key": get("event_id"), "service": service, "called_number": called,
        "start_utc": pa.array(start, pa.timestamp("s", tz="UTC")),
        "answer_utc": answer_utc,
        "billsec": billsec.astype("int64"), "answered": answered, "call_type": call_type,
        "account_id": get("account_code").where(get("account_code") != "", None),
        "plan_id": pd.Series("quote", index=frame.index)})


def _times(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    text = frame[column]
    parsed = pd.to_datetime(text.where(text != "", None), utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna() & (text != "")
    if column == "start_time":
        bad |= text == ""
    if bad.any():
        line = int(parsed.index[bad][0]) + 2
        raise EventsFileError(f"{path}:{line}: column {column!r}: not an ISO 8601 time: "
                              f"{text[bad].iloc[0]!r}")
    return parsed.dt.floor("s")


def quote(plan_path: Path, events_path: Path, allowances: bool = False,
          home_country_code: str | None = None) -> pa.Table:
    """Every input event with its status, charge and breakdown."""
    plan = load_plan(plan_path)
    events = read_events(events_path, home_country_code)
    priced = rate(events, {"quote": plan}, allowances=allowances)
    result = events.drop_columns(["plan_id"]).rename_columns(
        ["event_id", *events.column_names[1:-1]])
    for name in OUTPUT_SCHEMA.names:
        result = result.append_column(name, priced[name])
    return result.append_column("plan_id", pa.array([plan.plan_id] * events.num_rows, pa.string()))


def write_csv(table: pa.Table, out: Path) -> None:
    """Amounts are written as decimal strings; no text cell can start a formula."""
    write_table(table, out)


def explain(table: pa.Table, event_id: str) -> str:
    """The breakdown of one event, one field a line."""
    rows = table.filter(pc.equal(table["event_id"], event_id)).to_pylist()
    if not rows:
        raise KeyError(f"event {event_id!r} is not in the file")
    row = rows[0]
    width = max(len(k) for k in row)
    return "\n".join(f"{k:<{width}}  {'' if v is None else v}" for k, v in row.items())
