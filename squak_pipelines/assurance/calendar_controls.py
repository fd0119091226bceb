"""Control 9, the billing calendar: every ended cycle with active services or rated usage
has final invoices. A month skipped by the billing runs (a missed schedule, a cycle billed by
hand out of order) fails it, naming the month."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pandas as pd

from squak_pipelines.assurance.controls import Scope, empty_findings, findings
from squak_pipelines.cycles import add_months, month_window, parse_month, schedules_in_use
from squak_pipelines.invoicing.stage import first_billing_month

ACTIVITY_SQL = """
select (select count(*) from orders.services
        where active_from < :end and (active_to is null or active_to > :start)) as services,
       (select count(*) from rating.rated_events where substr(cycle, 1, 7) = :month) as events,
       (select count(*) from invoicing.invoices where substr(cycle, 1, 7) = :month) as invoices
"""


def billing_calendar(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    wh = scope.warehouse
    if not scope.has("orders.services", "rating.rated_events", "invoicing.invoices"):
        return True, "nothing billed yet", {}, empty_findings()
    first = first_billing_month(wh, scope.settings)
    if first is None:
        return True, "no rated usage", {}, empty_findings()
    schedules = schedules_in_use(wh)
    found, checked = [], 0
    month = parse_month(first)
    while month <= scope.cycle.first:
        label = f"{month:%Y-%m}"
        earliest_end, _ = month_window(label, schedules)
        if earliest_end >= scope.as_of:
            break
        checked += 1
        start = datetime.combine(month, time(), UTC) - timedelta(days=1)
        end = datetime.combine(add_months(month, 1), time(), UTC) + timedelta(days=1)
        row = wh.query_df(ACTIVITY_SQL, {"start": start, "end": end, "month": label}).iloc[0]
        if int(row["invoices"]) == 0 and (int(row["services"]) or int(row["events"])):
            found.append({
                "kind": "cycle_not_billed",
                "record": label,
                "detail": f"cycle {label} ended on {earliest_end.isoformat()} with {int(row['services'])} "
                f"services active and {int(row['events'])} rated events, and has no final invoices",
            })
        month = add_months(month, 1)
    limit = int(scope.limits("billing_calendar")["max_unbilled_cycles"])
    missed = ", ".join(f["record"] for f in found)
    summary = f"{checked} ended cycle(s) since {first}: " + (f"{len(found)} not billed ({missed})"
                                                              if found else "all billed")
    frame = findings(found) if found else empty_findings()
    return len(found) <= limit, summary, {"ended_cycles": checked, "unbilled_cycles": len(found)}, frame
