"""Tariff what-if: a closed cycle's events re-priced under proposed plans or decks, with the
production engine, without touching what was billed.

The events are the cycle's answered rated events (and the ones left in suspense for want of
a rate or plan, which a proposal may price). They are priced day by day in the order rating
priced them, each day's allowances opening with what the days before used, so a proposal
equal to the current plans gives back every event's billed price. Before is the price
billed (`rating.rated_events`), after the proposal's; cost is the wholesale cost of the
call (`raw.cost_rates`, longest prefix, the cheapest carrier where several match; voice per
second), the same with either price, so margin moves with revenue. All sums are in exact
integer micro-units, per currency.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.cycles import load_schedules, parse_month
from squak_pipelines.limits import Limits
from squak_pipelines.rating.engine import rate
from squak_pipelines.rating.plans import Plan, load_plan, load_plans
from squak_pipelines.rating.stage import cycle_starts
from squak_pipelines.warehouse import Warehouse

ENGINE_COLUMNS = ("event_key", "service", "called_number", "start_utc", "answer_utc", "billsec", "answered",
                  "call_type", "account_id", "plan_id")
COST = """
lengths as (select distinct length(prefix) as n from raw.cost_rates),
candidates as materialized (
    select e.event_key, e.currency, e.service, cast(e.start_utc as date) as day,
           substr(ltrim(e.called_number, '+'), 1, l.n) as prefix
    from e join lengths l on l.n <= length(ltrim(e.called_number, '+'))
),
costs as (
    select c.event_key, k.rate,
           row_number() over (partition by c.event_key
                              order by length(k.prefix) desc, k.rate, k.carrier) as pick
    from candidates c
    join raw.cost_rates k on k.currency = c.currency and k.service = c.service and k.prefix = c.prefix
     and (k.effective_from is null or k.effective_from <= c.day)
)"""
EVENTS_SQL = f"""
with e as (
    select r.event_key, r.partition_day, r.service, r.call_type, r.called_number, r.start_utc,
           r.answer_utc, r.billsec, r.answered, r.account_id, r.plan_id, r.currency, r.cycle,
           r.destination, r.allowance, r.allowance_used, r.final_charge, 'rated' as status
    from rating.rated_events r
    where substr(r.cycle, 1, 7) = :month and r.answered
    union all
    select s.event_key, s.partition_day, s.service, s.call_type, s.called_number, s.start_utc,
           m.answer_utc, s.billsec, m.answered, s.account_id, s.plan_id, cast(null as varchar),
           cast(null as varchar), cast(null as varchar), cast(null as varchar), cast(0 as bigint),
           cast(0 as decimal(18, 6)), s.reason
    from rating.suspense s
    join mediation.events m on m.event_key = s.event_key
    where s.reason in ('no_rate', 'no_plan') and s.account_id is not null and m.answered
      and s.partition_day between cast(:first as date) and cast(:last as date)
),
{COST}
select e.*, k.rate as cost_rate
from e left join costs k on k.event_key = e.event_key and k.pick = 1
order by e.partition_day, e.start_utc, e.event_key
"""


class WhatIfError(ValueError):
    """The what-if cannot run as asked (one line for the CLI)."""


@dataclass(frozen=True)
class Proposal:
    """Plan files that replace the current plans of the same plan id, and deck files that
    replace the current deck of the same file name (in every plan that uses it)."""

    plans: tuple[Path, ...] = ()
    decks: Mapping[str, Path] = field(default_factory=dict)

    def load(self, reference_dir: Path) -> tuple[dict[str, Plan], dict[str, Plan]]:
        """(current plans, proposed plans); a plan or deck that does not load raises the
        loader's file/row/column error."""
        current = load_plans(reference_dir / "plans")
        used = {Path(r.file).name for plan in current.values() for r in plan.rows}
        unknown = sorted(set(self.decks) - used)
        if unknown:
            raise WhatIfError(f"no current plan uses a deck named {unknown[0]!r} (decks in use: "
                              f"{', '.join(sorted(used))})")
        for name, path in self.decks.items():
            if not Path(path).is_file():
                raise WhatIfError(f"proposed deck for {name}: {path} not found")
        proposed = load_plans(reference_dir / "plans", dict(self.decks)) if self.decks else dict(current)
        limits = Limits.load(reference_dir)
        for path in self.plans:
            if not Path(path).is_file():
                raise WhatIfError(f"proposed plan {path} not found")
            plan = load_plan(Path(path), limits, dict(self.decks), bases=(reference_dir,))
            if plan.plan_id not in current:
                raise WhatIfError(f"{path}: plan_id {plan.plan_id!r} is not a current plan (a proposal "
                                  f"replaces one: {', '.join(sorted(current))})")
            proposed[plan.plan_id] = plan
        return current, proposed


@dataclass
class WhatIf:
    cycle: str
    events: pa.Table  # per event: before and after (micro-units), cost, status and destination
    seconds: float

    def _frame(self) -> pd.DataFrame:
        t = self.events
        return pd.DataFrame({
            "currency": t["currency"].to_numpy(zero_copy_only=False),
            "plan_id": t["plan_id"].to_numpy(zero_copy_only=False),
            "account_id": t["account_id"].to_numpy(zero_copy_only=False),
            "destination": t["destination"].fill_null("(no rate)").to_numpy(zero_copy_only=False),
            "before": t["before"].to_numpy(), "after": t["after"].to_numpy(),
            "cost": t["cost"].to_numpy(), "priced_before": t["priced_before"].to_numpy(),
            "priced_after": t["priced_after"].to_numpy(), "changed": t["changed"].to_numpy(),
        })

    def by(self, *keys: str) -> pd.DataFrame:
        """Events, revenue and margin before and after, and the deltas, per currency and `keys`
        (amounts as exact decimals)."""
        frame = self._frame()
        grouped = frame.groupby(["currency", *keys], sort=True, dropna=False).agg(
            events=("before", "size"), changed=("changed", "sum"), unpriced_before=("priced_before", "sum"),
            unpriced_after=("priced_after", "sum"), before=("before", "sum"), after=("after", "sum"),
            cost=("cost", "sum")).reset_index()
        grouped["unpriced_before"] = grouped["events"] - grouped["unpriced_before"]
        grouped["unpriced_after"] = grouped["events"] - grouped["unpriced_after"]
        cost = [_cost(c) for c in grouped["cost"]]
        out = grouped.drop(columns=["before", "after", "cost"])
        out["revenue_before"] = [_money(v) for v in grouped["before"]]
        out["revenue_after"] = [_money(v) for v in grouped["after"]]
        out["revenue_delta"] = [_money(a - b)
                                for a, b in zip(grouped["after"], grouped["before"], strict=True)]
        out["cost"] = cost
        out["margin_before"] = [r - c for r, c in zip(out["revenue_before"], cost, strict=True)]
        out["margin_after"] = [r - c for r, c in zip(out["revenue_after"], cost, strict=True)]
        return out

    def most_affected(self, count: int = 10) -> pd.DataFrame:
        """The accounts whose revenue moves the most (either way)."""
        accounts = self.by("account_id", "plan_id")
        order = accounts["revenue_delta"].map(abs).sort_values(ascending=False, kind="stable").index
        return accounts.loc[order].head(count).reset_index(drop=True)

    def allowances(self) -> pd.DataFrame:
        """Allowance units used before and after, per plan and allowance."""
        t = self.events
        frame = pd.DataFrame({
            "plan_id": t["plan_id"].to_numpy(zero_copy_only=False),
            "allowance_before": t["allowance_before"].fill_null("").to_numpy(zero_copy_only=False),
            "allowance_after": t["allowance_after"].fill_null("").to_numpy(zero_copy_only=False),
            "used_before": t["allowance_used_before"].to_numpy(),
            "used_after": t["allowance_used_after"].to_numpy()})
        used = frame.groupby(["plan_id", "allowance_before"])["used_before"].sum()
        before = used[used.index.get_level_values(1) != ""]
        used = frame.groupby(["plan_id", "allowance_after"])["used_after"].sum()
        after = used[used.index.get_level_values(1) != ""]
        both = pd.concat([before.rename_axis(["plan_id", "allowance"]),
                          after.rename_axis(["plan_id", "allowance"])], axis=1).fillna(0).astype("int64")
        both = both.reset_index()
        both["delta"] = both["used_after"] - both["used_before"]
        return both


def _money(micros: int) -> Decimal:
    return Decimal(int(micros)).scaleb(-6)


def _cost(numerator: int) -> Decimal:
    """Cost from rate micro-units times seconds (a message counts 60): divided by 60 once."""
    return (Decimal(int(numerator)) / 60).scaleb(-6).quantize(Decimal("0.000001"), ROUND_HALF_UP)


def micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """decimal128(18, 6) amounts as int64 micro-units (null: 0), without Python objects."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    array = array.cast(pa.decimal128(18, 6))
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)
    words = words[2 * array.offset:2 * (array.offset + len(array))]
    low = words[0::2].copy()
    if array.null_count:
        low[np.asarray(pc.is_null(array).to_numpy(zero_copy_only=False))] = 0
    return low


def closed_cycle(warehouse: Warehouse, month: str) -> None:
    """Refuse a month with no final invoice yet: a what-if re-prices what was billed."""
    parse_month(month)
    billed = warehouse.table_exists("invoicing.invoices") and warehouse.scalar(
        "select count(*) from invoicing.invoices where substr(cycle, 1, 7) = :month", {"month": month})
    if not billed:
        raise WhatIfError(f"cycle {month} is not closed (no final invoice): a what-if re-prices a billed "
                          f"cycle; `squak bill --cycle {month} --preview` drafts an open one")


def what_if(warehouse: Warehouse, reference_dir: Path, month: str, proposal: Proposal) -> WhatIf:
    """Re-price the closed cycle `month` under `proposal`; nothing is written."""
    started = time.perf_counter()
    closed_cycle(warehouse, month)
    _, proposed = proposal.load(reference_dir)
    first = parse_month(month)
    # Days whose partitions can hold the cycle's events: bill-day cycles and late records reach
    # up to two months past the month's start.
    last = pd.Timestamp(first) + pd.DateOffset(months=3)
    events = warehouse.query_arrow(EVENTS_SQL, {"month": month, "first": first.isoformat(),
                                                "last": last.date().isoformat()})
    priced = _reprice(warehouse, events, proposed)
    keep = pc.or_(pc.equal(events["status"], "rated"),
                  pc.equal(pc.utf8_slice_codeunits(priced["cycle"].cast(pa.string()), 0, 7), month))
    table = _compare(events, priced).filter(pc.fill_null(keep, False))
    return WhatIf(month, table, time.perf_counter() - started)


def _reprice(warehouse: Warehouse, events: pa.Table, plans: dict[str, Plan]) -> pa.Table:
    """The engine's output for every event, day by day in rating's order, each day's allowances
    opening with what the earlier days of the same cycles used."""
    if not events.num_rows:
        return rate(events.select(list(ENGINE_COLUMNS)), plans)
    days = events["partition_day"].to_numpy(zero_copy_only=False)
    starts = cycle_starts(load_schedules(warehouse), days.min(), days.max())
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
    parts, used = [], pd.DataFrame(columns=["account_id", "cycle", "allowance", "used"])
    engine_input = events.select(list(ENGINE_COLUMNS))
    for lo, hi in itertools.pairwise(bounds):
        part = rate(engine_input.slice(lo, hi - lo), plans, used, cycle_starts=starts)
        parts.append(part)
        day = pd.DataFrame({"account_id": events["account_id"].slice(lo, hi - lo).to_pandas(),
                            "cycle": part["cycle"].cast(pa.string()).to_pandas(),
                            "allowance": part["allowance"].cast(pa.string()).to_pandas(),
                            "used": part["allowance_used"].to_pandas()}).dropna(subset=["allowance"])
        used = (pd.concat([used, day]).groupby(["account_id", "cycle", "allowance"], as_index=False)["used"]
                .sum())
    return pa.concat_tables([p.cast(parts[0].schema) for p in parts]).combine_chunks()


def _compare(events: pa.Table, priced: pa.Table) -> pa.Table:
    """Per event: what was billed and what the proposal charges, and the call's cost."""
    rated_after = pc.equal(priced["status"], "rated")
    rated_before = pc.equal(events["status"], "rated")
    before = micros(events["final_charge"])
    after = np.where(rated_after.to_numpy(zero_copy_only=False), micros(priced["final_charge"]), 0)
    voice = pc.equal(events["service"], "voice").to_numpy(zero_copy_only=False)
    seconds = events["billsec"].to_numpy(zero_copy_only=False).astype(np.int64)
    cost = micros(events["cost_rate"]) * np.where(voice, seconds, 60)
    destination = pc.if_else(rated_after, priced["destination"].cast(pa.string()), events["destination"])
    return pa.table({
        "event_key": events["event_key"], "account_id": events["account_id"], "plan_id": events["plan_id"],
        "currency": pc.coalesce(events["currency"], priced["currency"].cast(pa.string())),
        "service": events["service"], "destination": destination,
        "status_before": events["status"], "status_after": priced["status"],
        "priced_before": rated_before, "priced_after": rated_after,
        "before": before, "after": after, "changed": before != after, "cost": cost,
        "allowance_before": events["allowance"], "allowance_after": priced["allowance"].cast(pa.string()),
        "allowance_used_before": events["allowance_used"].fill_null(0),
        "allowance_used_after": pc.if_else(rated_after, priced["allowance_used"], 0),
    })
