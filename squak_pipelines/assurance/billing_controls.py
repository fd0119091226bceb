"""Controls on the cycle's final invoices: duplicate billing (3), orders vs billing (6) and
invoiced vs expected revenue (7)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import pandas as pd

from squak_pipelines.assurance.controls import Scope, amounts_text, empty_findings, findings, money
from squak_pipelines.invoicing.compose import service_lines
from squak_pipelines.invoicing.stage import account_cycles, periods_for
from squak_pipelines.money import MICROS, minor_units, to_micros
from squak_pipelines.rating.plans import Plan, load_plans

TWICE_SQL = """
select b.event_key, count(*) as times, min(b.invoice_number) as first_invoice,
       max(b.invoice_number) as last_invoice
from invoicing.billed_events b
group by 1 having count(*) > 1
"""
# Recurring and one-time lines of the cycle's final invoices, each saying whether a credit note
# took it back.
SERVICE_LINES_SQL = """
select i.number, i.account_id, i.currency, l.line_no, l.kind, l.service_id, l.quantity, l.amount,
       exists (select 1 from {credit_lines} c
               where c.invoice_number = i.number and c.credits_line_no = l.line_no) as credited
from invoicing.invoice_lines l
join invoicing.invoices i on i.invoice_key = l.invoice_key
where substr(i.cycle, 1, 7) = :cycle and l.kind in ('recurring', 'one_time')
order by i.number, l.line_no
"""
NO_CREDIT_LINES = "(select '' as invoice_number, 0 as credits_line_no where false)"
# Credit-note lines (before tax) against the cycle's invoices, by currency.
CREDITED_SQL = """
select n.currency, sum(c.amount) as amount, count(*) as lines
from invoicing.credit_note_lines c
join invoicing.credit_notes n on n.number = c.number
join invoicing.invoices i on i.number = c.invoice_number
where substr(i.cycle, 1, 7) = :cycle and c.kind <> 'tax'
group by 1
"""
QUANTITY_TOLERANCE = Decimal("0.0001")  # prorated quantities are rounded to 4 places


def _service_lines(scope: Scope, credited: bool = False) -> pd.DataFrame:
    """The cycle's service lines; without those a credit note took back unless `credited`."""
    credit = "invoicing.credit_note_lines" if scope.has("invoicing.credit_note_lines") else NO_CREDIT_LINES
    lines = scope.warehouse.query_df(SERVICE_LINES_SQL.format(credit_lines=credit), scope.params)
    lines["credited"] = lines["credited"].astype(bool)
    return lines if credited else lines[~lines["credited"]].reset_index(drop=True)


def duplicate_billing(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    """No event key on two invoices; no service charged for more than its month in a cycle."""
    if not scope.has("invoicing.billed_events", "invoicing.invoices"):
        return True, "nothing invoiced", {}, empty_findings()
    found: list[dict] = []
    twice = scope.warehouse.query_df(TWICE_SQL)
    for r in twice.itertuples():
        found.append(
            {
                "kind": "event_billed_twice",
                "record": r.event_key,
                "detail": f"on {r.times} invoices ({r.first_invoice} .. {r.last_invoice})",
            }
        )
    if len(twice):
        charges = scope.warehouse.query_df(
            "select event_key, account_id, currency, final_charge from rating.rated_events "
            "where event_key in (select event_key from invoicing.billed_events "
            "group by 1 having count(*) > 1)"
        )
        by_key = {r.event_key: r for r in charges.itertuples()}
        for f in found:
            r = by_key.get(f["record"])
            if r is not None:
                f.update(account_id=r.account_id, currency=r.currency, amount=money(r.final_charge))
    over = _recurring_over_a_month(_service_lines(scope))
    for r in over.itertuples():
        found.append(
            {
                "kind": "recurring_charge_billed_twice",
                "record": f"{r.number}#{r.line_no}",
                "account_id": r.account_id,
                "currency": r.currency,
                "amount": money(r.amount),
                "detail": f"service {r.service_id} already charged for the whole cycle",
            }
        )
    extra = len(over)
    figures = {"events_billed_twice": len(twice), "recurring_charges_billed_twice": extra}
    limit = int(scope.limits("duplicate_billing")["max_duplicates"])
    summary = f"{len(twice)} events and {extra} recurring charges billed twice"
    return len(found) <= limit, summary, figures, findings(found) if found else empty_findings()


def _recurring_over_a_month(lines: pd.DataFrame) -> pd.DataFrame:
    """The recurring lines that take a service past one month in the cycle: each service's
    quantities added up in line order (exact integer micro-months, one pass over all services),
    beyond 1 + QUANTITY_TOLERANCE per line for rounding."""
    recurring = lines[(lines["kind"] == "recurring") & lines["service_id"].notna()]
    recurring = recurring.sort_values("service_id", kind="stable")
    months = recurring["quantity"].map(lambda value: to_micros(money(value))).astype("int64")
    running = months.groupby(recurring["service_id"]).cumsum()
    allowed = MICROS + recurring.groupby("service_id")["service_id"].transform("size") * to_micros(
        QUANTITY_TOLERANCE)
    return recurring[running > allowed]


def _expected_service_charges(scope: Scope, plans: dict[str, Plan]) -> list[dict]:
    """Recurring and one-time charges the orders call for in the cycle (one per fee)."""
    out = []
    invoiced = {(r["account_id"], r["cycle"]) for r in scope.warehouse.query_arrow(
        "select account_id, cycle from invoicing.invoices where substr(cycle, 1, 7) = :cycle",
        scope.params).to_pylist()}
    cycles = {  # the account cycles that have ended, or that were billed (audited as billed)
        a: [c for c in items if c.last < scope.as_of or (a, c.label) in invoiced]
        for a, items in account_cycles(scope.warehouse, scope.cycle.label, scope.as_of, False).items()}
    every = [c for items in cycles.values() for c in items] or [scope.cycle]
    window = periods_for(scope.warehouse, every)
    for account_id, periods in sorted(window.items()):
        currencies = sorted({plans[p.plan_id].currency for p in periods if p.plan_id in plans})
        plan_of = {p.service_id: p.plan_id for p in sorted(periods, key=lambda p: p.active_from)}
        for currency, cycle in ((c, y) for c in currencies for y in cycles.get(account_id, [])):
            for line in service_lines(periods, plans, cycle, currency):
                out.append(
                    {
                        "account_id": account_id,
                        "currency": currency,
                        "kind": line.kind,
                        "service_id": line.service_id,
                        "plan_id": plan_of.get(line.service_id),
                        "amount": line.amount,
                    }
                )
    return out


def orders_vs_billing(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    """Every service active in the cycle carries its recurring (and activation) charge on a final
    invoice; no charge exists for a service that was not active."""
    if not scope.has("invoicing.invoices", "orders.services"):
        return True, "nothing invoiced", {}, empty_findings()
    plans = load_plans(scope.settings.reference_dir / "plans")
    expected = pd.DataFrame(
        _expected_service_charges(scope, plans),
        columns=["account_id", "currency", "kind", "service_id", "plan_id", "amount"],
    )
    charged = _service_lines(scope, credited=True)  # a credited charge was invoiced, then corrected
    want = (
        expected.groupby(["kind", "service_id"]).agg(
            account_id=("account_id", "first"),
            currency=("currency", "first"),
            amount=("amount", lambda s: sum(s, Decimal(0))),
        )
        if len(expected)
        else pd.DataFrame()
    )
    got = set(zip(charged["kind"], charged["service_id"], strict=True))
    found: list[dict] = []
    for (kind, service_id), r in want.iterrows():
        if (kind, service_id) not in got:
            found.append(
                {
                    "kind": f"{kind}_charge_missing",
                    "record": service_id,
                    "account_id": r.account_id,
                    "currency": r.currency,
                    "amount": r.amount,
                    "detail": f"service active in {scope.cycle.label}, no {kind} charge invoiced",
                }
            )
    active = set(want.index) if len(want) else set()
    for r in charged.itertuples():
        if (r.kind, r.service_id) not in active and not r.credited:
            found.append(
                {
                    "kind": f"{r.kind}_charge_for_inactive_service",
                    "record": f"{r.number}#{r.line_no}",
                    "account_id": r.account_id,
                    "currency": r.currency,
                    "amount": money(r.amount),
                    "detail": f"service {r.service_id} was not active in {scope.cycle.label}",
                }
            )
    missing = sum(1 for f in found if f["kind"].endswith("_missing"))
    limits = scope.limits("orders_vs_billing")
    passed = missing <= int(limits["max_missing_charges"]) and len(found) - missing <= int(
        limits["max_charges_for_inactive"]
    )
    figures = {
        "service_charges_expected": len(want),
        "service_charges_invoiced": len(charged),
        "missing": missing,
        "for_inactive_services": len(found) - missing,
    }
    summary = (
        f"{len(want):,} service charges expected, {len(charged):,} invoiced; "
        f"{missing} missing, {len(found) - missing} for inactive services"
    )
    return passed, summary, figures, findings(found) if found else empty_findings()


EVENTS_BY_PLAN_SQL = """
select r.plan_id, r.currency,
       sum(r.charge) as expected_usage,
       sum(case when b.invoice_number is not null then r.charge else 0 end) as billed_usage,
       sum(case when b.invoice_number is not null then r.discount else 0 end) as billed_discount,
       sum(case when b.invoice_number is null then r.discount else 0 end) as unbilled_discount,
       sum(case when b.invoice_number is null and r.rated_at > f.finalized_at then r.charge else 0 end)
         as late_charge,
       sum(case when b.invoice_number is null and r.rated_at > f.finalized_at then r.discount else 0 end)
         as late_discount,
       count(case when b.invoice_number is null then 1 end) as unbilled_events
from rating.rated_events r
cross join (select max(finalized_at) as finalized_at from invoicing.invoices
            where substr(cycle, 1, 7) = :cycle) f
left join (select b.event_key, b.invoice_number from invoicing.billed_events b
           join invoicing.invoices i on i.number = b.invoice_number where substr(i.cycle, 1, 7) = :cycle) b
  on b.event_key = r.event_key
where substr(r.cycle, 1, 7) = :cycle and r.answered and r.account_id is not null
  and r.cycle not in (select unnest(string_to_array(:open_cycles, ',')))
group by 1, 2
"""
LATE_SQL = """
select r.currency, sum(r.charge) as late_usage, sum(r.discount) as late_discount
from rating.rated_events r
join invoicing.billed_events b on b.event_key = r.event_key
join invoicing.invoices i on i.number = b.invoice_number
where substr(i.cycle, 1, 7) = :cycle and substr(r.cycle, 1, 7) < :cycle
group by 1
"""
LINES_SQL = """
select i.currency, l.kind, count(*) as lines, sum(l.amount) as amount
from invoicing.invoice_lines l join invoicing.invoices i on i.invoice_key = l.invoice_key
where substr(i.cycle, 1, 7) = :cycle and l.kind <> 'tax'
group by 1, 2
"""
EXPLAINED_KINDS = {
    "promotion": "promotions and coupons on the invoice",
    "adjustment": "re-rating adjustments of closed cycles",
}


def invoiced_vs_expected(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    """Revenue per plan and line type: invoiced against what active services and rated usage
    call for; every difference is explained (rounding, late usage, promotions) or a finding."""
    if not scope.has("invoicing.invoices", "rating.rated_events", "orders.services"):
        return True, "nothing invoiced", {"by_plan": []}, empty_findings()
    wh, params = scope.warehouse, scope.params
    plans = load_plans(scope.settings.reference_dir / "plans")
    rows: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"expected": Decimal(0), "invoiced": Decimal(0), "explained": Decimal(0), "lines": 0}
    )
    plan_of_service: dict[str, str] = {}
    for e in _expected_service_charges(scope, plans):
        rows[(e["plan_id"], e["currency"], e["kind"])]["expected"] += e["amount"]
        plan_of_service[e["service_id"]] = e["plan_id"]
    for r in _service_lines(scope, credited=True).itertuples():
        plan = plan_of_service.get(r.service_id) or _latest_plan(wh, r.service_id) or ""
        row = rows[(plan, r.currency, r.kind)]
        row["invoiced"] += money(r.amount)
        row["lines"] += 1
    for r in wh.query_df(EVENTS_BY_PLAN_SQL, params).itertuples():
        plan = r.plan_id if isinstance(r.plan_id, str) else ""  # events rated without a plan: none
        usage = rows[(plan, r.currency, "usage")]
        usage["expected"] += money(r.expected_usage)
        usage["invoiced"] += money(r.billed_usage)
        usage["explained"] -= money(r.late_charge)  # rated after finalization: next invoice
        usage["unbilled_events"] = int(r.unbilled_events)
        discount = rows[(plan, r.currency, "discount")]
        discount["expected"] -= money(r.billed_discount) + money(r.unbilled_discount)
        discount["invoiced"] -= money(r.billed_discount)
        discount["explained"] += money(r.late_discount)
    late = {r.currency: r for r in wh.query_df(LATE_SQL, params).itertuples()}
    if scope.has("invoicing.credit_note_lines"):  # corrections after finalization, linked to them
        for r in wh.query_df(CREDITED_SQL, params).itertuples():
            entry = rows[("", r.currency, "credit_note")]
            entry["invoiced"] = entry["explained"] = money(r.amount)
            entry["lines"] = int(r.lines)
            entry["why"] = "credit notes correcting the cycle's invoices"
    lines = wh.query_df(LINES_SQL, params)
    for currency, group in lines.groupby("currency"):
        kinds = {r.kind: r for r in group.itertuples()}
        billed_usage = sum(
            (v["invoiced"] for (p, c, k), v in rows.items() if c == currency and k == "usage"), Decimal(0)
        )
        billed_discount = sum(
            (v["invoiced"] for (p, c, k), v in rows.items() if c == currency and k == "discount"), Decimal(0)
        )
        late_row = late.get(currency)
        late_usage = money(late_row.late_usage) if late_row is not None else Decimal(0)
        rounding = rows[("", currency, "rounding")]
        n_usage = sum(int(kinds[k].lines) for k in ("usage", "late_usage", "discount") if k in kinds)
        rounding["lines"] = n_usage
        rounding["invoiced"] = (
            sum(
                (money(kinds[k].amount) for k in ("usage", "late_usage", "discount") if k in kinds),
                Decimal(0),
            )
            - billed_usage
            - billed_discount
            - late_usage
            + (money(late_row.late_discount) if late_row is not None else Decimal(0))
        )
        rounding["explained"] = rounding["invoiced"]
        if late_usage:  # net of the late events' discounts, which the discount lines carry
            entry = rows[("", currency, "late_usage")]
            late_discount = money(late_row.late_discount) if late_row is not None else Decimal(0)
            entry["invoiced"] = entry["explained"] = late_usage - late_discount
        for kind, why in EXPLAINED_KINDS.items():
            if kind in kinds:
                entry = rows[("", currency, kind)]
                entry["invoiced"] = entry["explained"] = money(kinds[kind].amount)
                entry["why"] = why
    found, table = [], []
    for (plan, currency, kind), v in sorted(rows.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        difference = v["invoiced"] - v["expected"]
        unexplained = difference - v["explained"]
        tolerance = _tolerance(scope, currency, v["lines"] or 1)
        if kind == "rounding":
            unexplained = max(abs(difference) - tolerance, Decimal(0))
            tolerance = Decimal(0)
        table.append(
            {
                "plan_id": plan,
                "currency": currency,
                "line_type": kind,
                "expected": str(v["expected"]),
                "invoiced": str(v["invoiced"]),
                "difference": str(difference),
                "explanation": v.get("why") or _why(kind, unexplained, tolerance, v),
            }
        )
        if abs(unexplained) > tolerance:
            found.append(
                {
                    "kind": "revenue_difference",
                    "record": f"{plan or 'all plans'}/{kind}",
                    "currency": currency,
                    "amount": unexplained,
                    "detail": f"expected {v['expected']}, invoiced {v['invoiced']} ({kind})",
                }
            )
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for v in table:
        totals[v["currency"]] += Decimal(v["invoiced"])
    figures = {"by_plan": table, "invoiced_before_tax": {c: str(a) for c, a in sorted(totals.items())}}
    summary = f"{len(table)} plan and line-type rows, {len(found)} unexplained differences"
    if found:
        summary += f" ({amounts_text(_sum_by_currency(found))})"
    return not found, summary, figures, findings(found) if found else empty_findings()


def _why(kind: str, unexplained: Decimal, tolerance: Decimal, v: dict[str, Any]) -> str:
    if kind == "rounding":
        return (
            "lines rounded one by one to the minor unit" if not unexplained else "rounding beyond tolerance"
        )
    if kind == "late_usage":
        return "usage of earlier cycles billed late on this cycle"
    if abs(unexplained) <= tolerance:
        return "matches"
    if kind == "usage" and v.get("unbilled_events"):
        return f"{v['unbilled_events']} rated events of the cycle not invoiced"
    return "unexplained"


def _tolerance(scope: Scope, currency: str, lines: int) -> Decimal:
    per_line = Decimal(str(scope.limits("invoiced_vs_expected")["max_unexplained_minor_units_per_line"]))
    return per_line * Decimal(1).scaleb(-minor_units(currency)) * lines


def _sum_by_currency(found: list[dict]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for f in found:
        out[f["currency"]] += f["amount"]
    return out


def _latest_plan(wh, service_id: str) -> str:
    return (
        wh.scalar(
            "select plan_id from orders.services where service_id = :s order by period desc limit 1",
            {"s": service_id},
        )
        or ""
    )
