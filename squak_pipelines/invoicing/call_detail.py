"""Itemized call detail of final invoices: one CSV per invoice, from the events it billed.

Called numbers keep all but their last four digits masked (`XXXX`) for accounts that asked
for privacy (`orders.accounts.privacy_mask`). Amounts are decimal strings; rows are in
call order, so the files are the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from squak_pipelines.warehouse import Warehouse

CALL_DETAIL_SQL = """
select b.invoice_number, r.start_utc, r.answer_utc, r.service, r.call_type, r.calling_number,
       case when lower(coalesce(a.privacy_mask, '')) in ('true', '1', 'yes')
                 and length(r.called_number) > 4
            then substr(r.called_number, 1, length(r.called_number) - 4) || 'XXXX'
            else r.called_number end as called_number,
       r.destination, r.band, r.billsec, r.charged_units, r.allowance_used, r.rate,
       r.charge, r.discount, r.final_charge, r.event_key
from invoicing.billed_events b
join invoicing.invoices i on i.number = b.invoice_number
join rating.rated_events r on r.event_key = b.event_key
left join orders.accounts a on a.account_id = i.account_id
where i.cycle = :cycle
order by b.invoice_number, r.start_utc, r.event_key
"""


def write_call_detail(warehouse: Warehouse, cycle: str, folder: Path) -> int:
    """`<number>-calls.csv` for every final invoice of the cycle; returns the files written."""
    table = warehouse.query_arrow(CALL_DETAIL_SQL, {"cycle": cycle})
    if not table.num_rows:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    numbers = table["invoice_number"].combine_chunks()
    values = np.asarray(pc.dictionary_encode(numbers).indices.to_numpy(zero_copy_only=False))
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])  # rows are sorted by invoice
    ends = np.r_[starts[1:], len(values)]
    detail = table.drop_columns(["invoice_number"])
    for start, end in zip(starts, ends, strict=True):
        pacsv.write_csv(detail.slice(start, end - start), folder / f"{numbers[int(start)].as_py()}-calls.csv")
    return len(starts)

