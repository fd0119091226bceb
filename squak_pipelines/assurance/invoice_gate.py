"""The revenue-assurance gate on a cycle's draft invoices, run before any is finalized.

One row per draft (account and currency) with the figures the controls compare (amounts in
integer micro-units, exact); the suite
`expectations/revenue_assurance_gate.json` (Great Expectations) decides:
- usage completeness: answered rated calls of the account not billed yet = calls on the
  draft's usage lines, and their charge = the usage lines' amount (within half a minor unit
  per line, the lines being rounded one by one);
- orders vs billing: services active in the cycle whose plan has a recurring fee for their
  product = services with a recurring line; no recurring line for a service not active;
- the draft's lines add up to its subtotal; no event key is billed twice.
With it, the critical controls of `assurance.stage` that apply before finalization must pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.invoicing.compose import Cycle, active_days
from squak_pipelines.invoicing.stage import account_cycles, periods_for
from squak_pipelines.money import MICROS, minor_units, to_micros
from squak_pipelines.quality.gx_suites import SuiteOutcome, validate_dataframe
from squak_pipelines.rating.plans import load_plans
from squak_pipelines.warehouse import Warehouse

SUITE = "revenue_assurance_gate"
RATED_SQL = """
select r.account_id, r.currency, count(*) as calls, sum(r.charge) as charge
from rating.rated_events r
where substr(r.cycle, 1, 7) <= :cycle and r.answered and r.account_id is not null
  and not exists (select 1 from invoicing.billed_events b where b.event_key = r.event_key)
group by 1, 2
"""
USAGE_KINDS = ("usage", "late_usage")


def draft_controls(warehouse: Warehouse, settings: Settings, label: str) -> pd.DataFrame:
    """The control figures of every draft of the cycle (one row each)."""
    cycle = Cycle.parse(label)
    drafts = warehouse.query_arrow(
        "select invoice_key, account_id, currency, subtotal, document from invoicing.drafts "
        "where substr(cycle, 1, 7) = :cycle order by invoice_key",
        {"cycle": label},
    ).to_pylist()
    rated = {
        (r["account_id"], r["currency"]): r
        for r in warehouse.query_arrow(RATED_SQL, {"cycle": label}).to_pylist()
    } if warehouse.table_exists("rating.rated_events") else {}
    twice = int(warehouse.scalar(
        "select count(*) from (select event_key from invoicing.billed_events group by 1 "
        "having count(*) > 1) x"
    ) or 0)
    plans = load_plans(settings.reference_dir / "plans")
    cycles = {(a, c.label): c for a, items in account_cycles(warehouse, label, clock.today(), False).items()
              for c in items}
    every = list(cycles.values()) or [cycle]
    periods = periods_for(warehouse, every)
    rows = []
    for draft in drafts:
        document = json.loads(draft["document"])
        lines = document["lines"]
        account_cycle = cycles.get((draft["account_id"], document["cycle"]), cycle)
        usage = [x for x in lines if x["kind"] in USAGE_KINDS]
        expected = set()
        for p in periods.get(draft["account_id"], []):
            plan = plans.get(p.plan_id)
            if plan is None or plan.currency != draft["currency"]:
                continue
            fees = [f for f in (plan.fees or {}).get("recurring", []) if f.get("product") == p.product_id]
            days = active_days(p, account_cycle, ZoneInfo(plan.timezone))
            if fees and days > 0:
                expected.add(p.service_id)
        charged = {x["service_id"] for x in lines if x["kind"] == "recurring"}
        got = rated.get((draft["account_id"], draft["currency"]), {"calls": 0, "charge": 0})
        drafted_usage = sum((Decimal(x["amount"]) for x in usage), Decimal(0))
        half_unit = MICROS // 10 ** minor_units(draft["currency"]) // 2  # half a minor unit
        rows.append({
            "invoice_key": draft["invoice_key"],
            "account_id": draft["account_id"],
            "currency": draft["currency"],
            "rated_calls": int(got["calls"]),
            "drafted_calls": sum(int(x["calls"]) for x in usage),
            "usage_difference": to_micros(abs(Decimal(got["charge"]) - drafted_usage)),
            "rounding_allowance": half_unit * len(usage),
            "services_expected": len(expected),
            "services_charged": len(charged & expected),
            "services_not_active": len(charged - expected),
            "subtotal": to_micros(Decimal(draft["subtotal"])),
            "lines_total": to_micros(sum((Decimal(x["amount"]) for x in lines if x["kind"] != "tax"),
                                         Decimal(0))),
            "events_billed_twice": twice,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


COLUMNS = ["invoice_key", "account_id", "currency", "rated_calls", "drafted_calls", "usage_difference",
           "rounding_allowance", "services_expected", "services_charged", "services_not_active",
           "subtotal", "lines_total", "events_billed_twice"]


@dataclass
class GateOutcome:
    """The gate's verdict: the GX suite on the drafts and the critical controls that can judge
    a cycle before finalization (usage completeness up to rating, independent re-rating)."""

    suite: SuiteOutcome
    controls: list = field(default_factory=list)  # ControlResult of the critical controls

    @property
    def success(self) -> bool:
        return self.suite.success and all(c.passed for c in self.controls)

    @property
    def failures(self) -> list[dict]:
        return self.suite.failures + [
            {"expectation": f"control {c.number} {c.control}", "column": c.summary,
             "unexpected_count": len(c.findings),
             "records": c.findings["record"].head(20).tolist()}
            for c in self.controls if not c.passed]


def run_gate(warehouse: Warehouse, settings: Settings, label: str) -> GateOutcome:
    """The suite's verdict on the cycle's drafts (an empty cycle passes) and the critical
    controls' results."""
    from squak_pipelines.assurance.stage import critical_controls_before_finalization

    return GateOutcome(validate_dataframe(SUITE, draft_controls(warehouse, settings, label)),
                       critical_controls_before_finalization(warehouse, settings, label))


class RevenueAssuranceError(RuntimeError):
    """The gate failed: the cycle's drafts are not finalized."""

    def __init__(self, label: str, outcome: GateOutcome):
        failed = "; ".join(
            f"{f['expectation']} on {f['column']} ({f.get('unexpected_count')} "
            f"{'records' if f['expectation'].startswith('control') else 'drafts'})"
            for f in outcome.failures
        )
        super().__init__(f"revenue-assurance gate failed for cycle {label}: {failed}; nothing finalized")
        self.outcome = outcome
