"""Charging: rate the mediated events of day partitions for their accounts and plans.

Each event belongs to the account whose service (the calling number) was active at the
event's start, and is priced with that service's plan. Results go to `rating.rated_events`
(with the price breakdown) or `rating.suspense` (`unknown_account`, `no_plan`, `no_rate`).
A day is replaced as a whole, so re-rating after a plan or order change is deterministic;
suspense is re-rated whenever a day is. Allowances carry over between days of a cycle:
what earlier days used is the opening balance of a later one (rate days in order).
A day whose mediation fraud gate failed is not rated (it is reported as blocked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from squak_pipelines.config import Settings
from squak_pipelines.cycles import Schedule, load_schedules
from squak_pipelines.faults import fault_point
from squak_pipelines.migrations import migrate
from squak_pipelines.progress import Progress
from squak_pipelines.rating.clock import CycleStarts
from squak_pipelines.rating.engine import OUTPUT_SCHEMA, rate
from squak_pipelines.rating.plans import Plan, load_plans
from squak_pipelines.rating.tables import SCHEMAS as TABLES
from squak_pipelines.rating.tables import SUSPENSE_COLUMNS
from squak_pipelines.warehouse import Warehouse

OWNED_EVENTS = """
select e.event_key, e.partition_day, e.switch_id, e.service, e.call_type, e.calling_number,
       e.called_number, e.start_utc, e.answer_utc, e.billsec, e.answered,
       s.account_id, s.service_id, s.plan_id
from mediation.events e
left join orders.services s
  on s.number = e.calling_number
 and s.active_from <= e.start_utc
 and e.start_utc < coalesce(s.active_to, cast('infinity' as timestamptz))
where e.partition_day = :day
order by e.start_utc, e.event_key
"""
UNOWNED_EVENTS = """
select e.event_key, e.partition_day, e.switch_id, e.service, e.call_type, e.calling_number,
       e.called_number, e.start_utc, e.answer_utc, e.billsec, e.answered,
       cast(null as varchar) as account_id, cast(null as varchar) as service_id,
       cast(null as varchar) as plan_id
from mediation.events e
where e.partition_day = :day
order by e.start_utc, e.event_key
"""
DEFAULT_CHECKS = {"max_zero_priced_share": 0.5}


@dataclass
class RatingReport:
    days: list[str] = field(default_factory=list)
    blocked_days: list[str] = field(default_factory=list)
    events: int = 0
    rated: int = 0
    suspense: dict[str, int] = field(default_factory=dict)
    revenue: dict[str, dict[str, str]] = field(default_factory=dict)  # currency -> service/type -> amount

    @property
    def revenue_by_currency(self) -> dict[str, str]:
        return {
            cur: str(sum((Decimal(v) for v in kinds.values()), Decimal(0)))
            for cur, kinds in self.revenue.items()
        }


def load_rating_checks(reference_dir: Path) -> dict[str, float]:
    """Limits of the rating checks (reference/rating_checks.yaml, optional)."""
    path = reference_dir / "rating_checks.yaml"
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {**DEFAULT_CHECKS, **(loaded or {})}


def ensure_tables(warehouse: Warehouse) -> None:
    """The warehouse's tables, created or upgraded by the numbered migrations."""
    migrate(warehouse)


def _gate_passed(warehouse: Warehouse, day: date) -> bool:
    if not warehouse.table_exists("mediation.partition_status"):
        return True
    passed = warehouse.scalar(
        "select bool_and(gate_passed) from mediation.partition_status where partition_day = :day",
        {"day": day},
    )
    return passed is not False


def _opening(warehouse: Warehouse, day: date, cycles: list[str]):
    """Allowance units used in the same cycles by days rated before `day`."""
    return warehouse.query_df(
        "select account_id, cycle, allowance, sum(allowance_used) as used from rating.rated_events "
        "where partition_day < :day and allowance is not null and substr(cycle, 1, 7) in "
        "(select unnest(string_to_array(:cycles, ','))) group by 1, 2, 3",
        {"day": day, "cycles": ",".join(cycles)},
    )


def cycle_starts(schedules: dict[str, Schedule], first: date, last: date) -> CycleStarts:
    """The cycle starts of accounts with bill days, around the days `first`..`last`."""
    margin = timedelta(days=70)
    return CycleStarts({a: s.starts(first - margin, last + margin) for a, s in schedules.items()})


def rate_day(warehouse: Warehouse, plans: dict[str, Plan], day: date,
             starts: CycleStarts | None = None) -> tuple[pa.Table, pa.Table]:
    """(rated, suspense) rows of one partition day (`starts`: accounts' bill-day cycles)."""
    has_orders = warehouse.table_exists("orders.services")
    events = warehouse.query_arrow(OWNED_EVENTS if has_orders else UNOWNED_EVENTS, {"day": day})
    unknown = pc.is_null(events["account_id"])
    events_for_engine = events.set_column(
        events.schema.get_field_index("plan_id"),
        "plan_id",
        pc.if_else(unknown, pa.scalar(None, pa.string()), events["plan_id"].cast(pa.string())),
    )
    cycles = sorted(
        {
            f"{d.year:04d}-{d.month:02d}"
            for d in pc.unique(pc.cast(events["start_utc"], pa.date32())).to_pylist()
            if d
        }
        | {f"{day.year:04d}-{day.month:02d}"}
    )
    priced = rate(events_for_engine, plans, _opening(warehouse, day, _neighbours(cycles)),
                  cycle_starts=starts)
    status = pc.if_else(unknown, pa.scalar("unknown_account"), priced["status"])
    ok = pc.equal(status, "rated")
    joined = events
    for name in OUTPUT_SCHEMA.names:
        if name != "status":
            joined = joined.append_column(name, priced[name])
    rated = joined.filter(ok).select(list(TABLES["rating.rated_events"].names))
    suspense = joined.append_column("reason", status).filter(pc.invert(ok))
    return (
        rated.cast(TABLES["rating.rated_events"]),
        suspense.select(list(SUSPENSE_COLUMNS)).cast(TABLES["rating.suspense"]),
    )


def _neighbours(cycles: list[str]) -> list[str]:
    """The cycles of the day's events plus the previous month (local time can fall there)."""
    out = set(cycles)
    for c in cycles:
        year, month = int(c[:4]), int(c[5:])
        out.add(f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}")
        out.add(f"{year + (month == 12):04d}-{month % 12 + 1:02d}")
    return sorted(out)


def rate_days(warehouse: Warehouse, settings: Settings, days: list[date]) -> RatingReport:
    """Rate each day (in order), replacing what was rated for it before."""
    plans = load_plans(settings.reference_dir / "plans")
    report = RatingReport()
    with warehouse.bulk_session():
        ensure_tables(warehouse)
        starts = cycle_starts(load_schedules(warehouse), min(days), max(days)) if days else None
        progress = Progress("rating", len(days), "days")
        for day in sorted(days):
            if not _gate_passed(warehouse, day):
                report.blocked_days.append(day.isoformat())
                progress.advance()
                continue
            rated, suspense = rate_day(warehouse, plans, day, starts)
            with warehouse.transaction():
                rated, suspense = _keep_billed(warehouse, day, rated, suspense)
                for name, table in (("rating.rated_events", rated), ("rating.suspense", suspense)):
                    warehouse.execute(
                        f"delete from {name} where partition_day = :day {KEEP_BILLED}", {"day": day}
                    )
                    if table.num_rows:
                        warehouse.load(name, table, mode="append")
                fault_point("rating.before_commit")
            report.days.append(day.isoformat())
            report.events += rated.num_rows + suspense.num_rows
            report.rated += rated.num_rows
            for item in pc.value_counts(suspense["reason"]).to_pylist():
                report.suspense[item["values"]] = report.suspense.get(item["values"], 0) + item["counts"]
            progress.advance()
        if report.days:
            report.revenue = revenue_by_type(warehouse, report.days)
    return report


KEEP_BILLED = "and event_key not in (select event_key from invoicing.billed_events)"
ADJUSTMENTS_SQL = """
select n.event_key, n.partition_day, n.account_id, n.currency, n.cycle,
       r.final_charge + coalesce(a.done, 0) as billed_charge, n.final_charge as rerated_charge,
       n.final_charge - r.final_charge - coalesce(a.done, 0) as difference
from {new} n
join rating.rated_events r on r.event_key = n.event_key
join invoicing.billed_events b on b.event_key = n.event_key
left join (select event_key, sum(difference) as done from rating.adjustments
           where invoice_number is not null group by 1) a on a.event_key = n.event_key
"""


def _keep_billed(
    warehouse: Warehouse, day: date, rated: pa.Table, suspense: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """A closed (invoiced) cycle is never altered: events already billed keep their rated row;
    a different price on re-rating becomes an adjustment for the next invoice."""
    billed = warehouse.query_arrow(
        "select r.event_key from rating.rated_events r join invoicing.billed_events b "
        "on b.event_key = r.event_key where r.partition_day = :day",
        {"day": day},
    )["event_key"]
    warehouse.execute(
        "delete from rating.adjustments where partition_day = :day and invoice_number is null", {"day": day}
    )
    if not len(billed):
        return rated, suspense
    changed = warehouse.query_arrow_with(
        ADJUSTMENTS_SQL,
        "new",
        rated.select(["event_key", "partition_day", "account_id", "currency", "cycle", "final_charge"]),
    )
    changed = changed.filter(pc.not_equal(changed["difference"], 0))
    if changed.num_rows:
        table = changed.append_column("invoice_number", pa.nulls(changed.num_rows, pa.string()))
        warehouse.load("rating.adjustments", table.cast(TABLES["rating.adjustments"]), mode="append")
    keep_out = pc.is_in(rated["event_key"], value_set=billed.combine_chunks())
    gone = pc.is_in(suspense["event_key"], value_set=billed.combine_chunks())
    return rated.filter(pc.invert(keep_out)), suspense.filter(pc.invert(gone))


def revenue_by_type(warehouse: Warehouse, days: list[str]) -> dict[str, dict[str, str]]:
    """Net usage revenue per currency and service/call type over the given days."""
    frame = warehouse.query_df(
        "select currency, service || '/' || coalesce(call_type, '') as kind, "
        "cast(sum(final_charge) as varchar) as amount from rating.rated_events "
        "where partition_day between :first and :last group by 1, 2 order by 1, 2",
        {"first": date.fromisoformat(min(days)), "last": date.fromisoformat(max(days))},
    )
    out: dict[str, dict[str, str]] = {}
    for row in frame.itertuples(index=False):
        out.setdefault(row.currency, {})[row.kind] = row.amount
    return out


def unbilled_days(warehouse: Warehouse) -> list[str]:
    """Days with answered rated events not yet on a final invoice: what a price change re-rates
    (billed events keep their price; a difference on them would be an adjustment)."""
    if not warehouse.table_exists("rating.rated_events"):
        return []
    billed = ("and not exists (select 1 from invoicing.billed_events b where b.event_key = r.event_key)"
              if warehouse.table_exists("invoicing.billed_events") else "")
    frame = warehouse.query_df(
        f"select distinct r.partition_day from rating.rated_events r where r.answered {billed} order by 1")
    return [str(d)[:10] for d in frame["partition_day"]]


def suspense_days(warehouse: Warehouse) -> list[str]:
    """Days that hold events in suspense (to re-rate when orders or plans change)."""
    if not warehouse.table_exists("rating.suspense"):
        return []
    frame = warehouse.query_df("select distinct partition_day from rating.suspense order by 1")
    return [str(d)[:10] for d in frame["partition_day"]]


