"""Itemized call detail of final invoices: one CSV per invoice, from the events it billed.

Called numbers keep all but their last four digits masked (`XXXX`) for accounts that asked
for privacy (`orders.accounts.privacy_mask`). Amounts are decimal strings; rows are in
call order, so the files are the same on every run. Each call names the deck file and row
that priced it (`squak explain --event KEY` shows the rest of its price).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.csv_export import escape_table, write_csv
from squak_pipelines.paths import inside
from squak_pipelines.warehouse import Warehouse

MASKED_CALLED_NUMBER = """
       case when lower(coalesce(a.privacy_mask, '')) in ('true', '1', 'yes')
                 and length(r.called_number) > 4
            then substr(r.called_number, 1, length(r.called_number) - 4) || 'XXXX'
            else r.called_number end as called_number"""
CALL_DETAIL_SQL = f"""
select b.invoice_number, r.start_utc, r.answer_utc, r.service, r.call_type, r.calling_number,
       {MASKED_CALLED_NUMBER},
       r.destination, r.band, r.billsec, r.charged_units, r.allowance_used, r.rate,
       r.charge, r.discount, r.final_charge, r.event_key, r.deck_file, r.deck_line
from invoicing.billed_events b
join {{numbers}} n on n.number = b.invoice_number
join invoicing.invoices i on i.number = b.invoice_number
join rating.rated_events r on r.event_key = b.event_key
left join orders.accounts a on a.account_id = i.account_id
order by b.invoice_number, r.start_utc, r.event_key
"""
# Invoices whose calls are read at a time: a 10M-CDR month's whole call detail is 9.5M rows of
# 17 columns, held at once with the database's sort of them.
PART_INVOICES = 2_000


def write_call_detail(warehouse: Warehouse, cycle: str, folder: Path) -> int:
    """`<number>-calls.csv` for every final invoice of the cycle (their calls read a few
    thousand invoices at a time); returns the files written."""
    numbers = warehouse.query_arrow(
        "select distinct b.invoice_number as number from invoicing.billed_events b "
        "join invoicing.invoices i on i.number = b.invoice_number "
        "where substr(i.cycle, 1, 7) = :cycle order by 1", {"cycle": cycle})
    written = 0
    for start in range(0, numbers.num_rows, PART_INVOICES):
        part = numbers.slice(start, PART_INVOICES)
        written += _write_part(warehouse.query_arrow_with(CALL_DETAIL_SQL, "numbers", part), folder)
    return written


def _write_part(table: pa.Table, folder: Path) -> int:
    """One file per invoice of `table` (rows sorted by invoice)."""
    if not table.num_rows:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    numbers = table["invoice_number"].combine_chunks()
    values = np.asarray(pc.dictionary_encode(numbers).indices.to_numpy(zero_copy_only=False))
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])  # rows are sorted by invoice
    ends = np.r_[starts[1:], len(values)]
    detail = escape_table(_iso_times(table.drop_columns(["invoice_number"])))  # once for the part
    for start, end in zip(starts, ends, strict=True):
        name = f"{numbers[int(start)].as_py()}-calls.csv"
        write_csv(detail.slice(start, end - start), inside(folder, name), escaped=True)
    return len(starts)


def _iso_times(table: pa.Table) -> pa.Table:
    """Times as ISO 8601 UTC text (`2026-11-08T01:10:37Z`): the same bytes on either backend."""
    for i, name in enumerate(table.column_names):
        column = table.column(i)
        if pa.types.is_timestamp(column.type):
            utc = column.cast(pa.timestamp("s", tz="UTC"))
            table = table.set_column(i, name, pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ"))
    return table


APPENDIX_SQL = f"""
select b.invoice_number, r.start_utc, r.service, r.calling_number, {MASKED_CALLED_NUMBER},
       r.destination, r.billsec, r.final_charge
from invoicing.billed_events b
join {{numbers}} n on n.number = b.invoice_number
join rating.rated_events r on r.event_key = b.event_key
left join orders.accounts a on a.account_id = r.account_id
order by b.invoice_number, r.start_utc, r.event_key
"""


def _short(amount: Decimal) -> str:
    """An exact amount with trailing zeros beyond the cents dropped (0.007500 -> 0.0075)."""
    text = f"{amount.normalize():f}"
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def appendix_calls(warehouse: Warehouse, numbers: list[str]) -> dict[str, list[dict]]:
    """Every call billed on the given invoices, for the itemized appendix page (numbers masked
    as in the CSV; times in UTC; amounts as decimal strings)."""
    if not numbers:
        return {}
    table = warehouse.query_arrow_with(APPENDIX_SQL, "numbers", pa.table({"number": numbers}))
    out: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        row["start_utc"] = row["start_utc"].strftime("%Y-%m-%d %H:%M:%S")
        row["final_charge"] = _short(row["final_charge"])
        out.setdefault(row.pop("invoice_number"), []).append(row)
    return out
