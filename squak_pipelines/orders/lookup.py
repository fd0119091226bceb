"""Point-in-time ownership: which account held a number at a moment.

Set-based: the (number, time) pairs are joined to the service periods in one range join
(active_from <= at < active_to), never looked up one by one.
"""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.warehouse import Warehouse

OWNER_SQL = """
select p.*, s.account_id, s.service_id, s.plan_id, s.product_id
from {pairs} p
left join orders.services s
  on s.number = p.number
 and s.active_from <= p.at
 and p.at < coalesce(s.active_to, cast('infinity' as timestamptz))
"""
# No OR in the join condition: it would turn the hash join into a nested-loop join.


def owners_at(warehouse: Warehouse, pairs: pa.Table) -> pa.Table:
    """`pairs` has columns `number` (E.164 with '+') and `at` (UTC timestamp); every input
    row comes back with account_id/service_id/plan_id/product_id, NULL when nobody owned it."""
    return warehouse.query_arrow_with(OWNER_SQL, "pairs", pairs)


def owner_at(warehouse: Warehouse, number: str, at: str) -> str | None:
    """One lookup (for support and tests): the account that owned `number` at ISO time `at`."""
    return warehouse.scalar(
        "select account_id from orders.services where number = :number "
        "and active_from <= cast(:at as timestamptz) "
        "and (active_to is null or cast(:at as timestamptz) < active_to)",
        {"number": number, "at": at})
