"""The billing cycle on the warehouse: draft (preview) and finalize a month's invoices.

Inputs are read set-based: accounts, service periods overlapping the cycle, usage summed
per account, currency, cycle, service, call type and destination from `rating.rated_events`
(events of this cycle and earlier ones not yet invoiced), and the tax table. Drafts are
replaced on every run. Finalizing numbers the drafts gaplessly per series
(`<prefix>-<year>-<000001>`, the prefix from reference/operator.yaml) inside one transaction
that also records the events billed and stores the documents (HTML, JSON and the EN 16931
e-invoices, validated), so a finalized invoice never changes; re-running a cycle leaves it as
it is and rewrites its documents byte for byte from what was stored at finalization.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.cycles import (
    CALENDAR,
    DEFAULT_DUE_DAYS,
    BillingTerms,
    CycleError,
    check_billable,
    load_schedules,
    month_window,
    months_ending_on,
    parse_month,
    pending_months,
    schedules_in_use,
)
from squak_pipelines.faults import fault_point
from squak_pipelines.invoicing.batch import PARALLEL_FROM, render_documents
from squak_pipelines.invoicing.call_detail import appendix_calls, write_call_detail
from squak_pipelines.invoicing.compose import Cycle, Invoice, ServicePeriod, compose
from squak_pipelines.invoicing.pdf import PdfJob, pdf_complete, pdfs_wanted, write_pdfs
from squak_pipelines.invoicing.promotions import load_coupons
from squak_pipelines.invoicing.render import operator_of, render_json
from squak_pipelines.invoicing.tables import SCHEMAS as TABLES
from squak_pipelines.memory import release_freed_memory
from squak_pipelines.migrations import migrate
from squak_pipelines.money import money_array
from squak_pipelines.paths import inside
from squak_pipelines.progress import Progress
from squak_pipelines.rating.plans import load_plans
from squak_pipelines.reference.files import load_tax_rates
from squak_pipelines.warehouse import Warehouse
from squak_pipelines.workers import Workers, shared_workers

CHUNK = 2000  # invoices rendered (and, final, stored) at a time: memory bounded at any size
USAGE_SQL = """
select r.account_id, r.currency, r.cycle, r.service, r.call_type, r.destination, r.discount_name,
       r.plan_id, r.band,
       count(*) as calls, sum(r.charged_units) as units, sum(r.allowance_used) as allowance_used,
       sum(r.charge) as charge, sum(r.discount) as discount
from rating.rated_events r
where r.cycle <= :top and r.answered
  and not exists (select 1 from invoicing.billed_events b where b.event_key = r.event_key)
group by 1, 2, 3, 4, 5, 6, 7, 8, 9
order by 1, 2, 3, 4, 5, 6, 7, 8, 9
"""


@dataclass
class BillingReport:
    cycle: str
    drafts: int = 0
    finalized: int = 0
    already_final: int = 0
    totals: dict[str, str] = field(default_factory=dict)  # currency -> amount (this run's invoices)
    tax_totals: dict[str, str] = field(default_factory=dict)
    numbers: list[str] = field(default_factory=list)
    documents: Path | None = None
    call_detail_files: int = 0
    pdfs_rendered: int = 0
    gate: Any = None  # the revenue-assurance gate's SuiteOutcome (when finalizing)
    einvoices: int = 0  # final invoices with valid EN 16931 e-invoices made by this run
    einvoice_blocked: dict[str, str] = field(default_factory=dict)  # number -> rules broken


def ensure_tables(warehouse: Warehouse) -> None:
    """The warehouse's tables, created or upgraded by the numbered migrations."""
    migrate(warehouse)


def service_periods(warehouse: Warehouse, first: date, last: date) -> dict[str, list[ServicePeriod]]:
    """Service periods overlapping the days `first`..`last` (a day's margin for time zones)."""
    if not warehouse.table_exists("orders.services"):
        return {}
    start = datetime.combine(first, time(), UTC) - timedelta(days=1)
    end = datetime.combine(last, time(), UTC) + timedelta(days=2)
    rows = warehouse.query_arrow(
        "select service_id, account_id, product_id, plan_id, number, period, active_from, active_to "
        "from orders.services where active_from < :end and (active_to is null or active_to > :start)",
        {"start": start, "end": end},
    ).to_pylist()
    out: dict[str, list[ServicePeriod]] = {}
    for r in rows:
        out.setdefault(r["account_id"], []).append(
            ServicePeriod(
                r["service_id"],
                r["product_id"],
                r["plan_id"],
                r["number"],
                int(r["period"]),
                r["active_from"],
                r["active_to"],
            )
        )
    return out


def periods_for(warehouse: Warehouse, cycles: list[Cycle]) -> dict[str, list[ServicePeriod]]:
    """Service periods overlapping any of the cycles (by account)."""
    return service_periods(warehouse, min(c.first for c in cycles), max(c.last for c in cycles))


def _usage(warehouse: Warehouse, top: str) -> dict[tuple[str, str], list[dict]]:
    """Unbilled answered usage of cycles up to the label `top`, by account and currency."""
    if not warehouse.table_exists("rating.rated_events"):
        return {}
    out: dict[tuple[str, str], list[dict]] = {}
    for r in warehouse.query_arrow(USAGE_SQL, {"top": top}).to_pylist():
        out.setdefault((r["account_id"], r["currency"]), []).append(r)
    return out


def _adjustments(warehouse: Warehouse, top: str) -> dict[tuple[str, str], list[dict]]:
    """Re-rating differences on invoiced events not yet on an invoice, by account and currency."""
    if not warehouse.table_exists("rating.adjustments"):
        return {}
    out: dict[tuple[str, str], list[dict]] = {}
    for r in warehouse.query_arrow(
        "select account_id, currency, cycle, count(*) as calls, sum(difference) as difference "
        "from rating.adjustments where invoice_number is null and cycle <= :top group by 1, 2, 3",
        {"top": top},
    ).to_pylist():
        out.setdefault((r["account_id"], r["currency"]), []).append(r)
    return out


def _previous_balances(warehouse: Warehouse, month: str) -> dict[tuple[str, str], Decimal]:
    """Amount due on each account's latest finalized invoice before the cycle (payments
    received since are their own figure)."""
    rows = warehouse.query_arrow(
        "select account_id, currency, amount_due from (select account_id, currency, amount_due, "
        "row_number() over (partition by account_id, currency order by cycle desc) as n "
        "from invoicing.invoices where substr(cycle, 1, 7) < :month) x where n = 1",
        {"month": month},
    ).to_pylist()
    return {(r["account_id"], r["currency"]): Decimal(r["amount_due"]) for r in rows}


def _unapplied_credits(warehouse: Warehouse) -> dict[tuple[str, str], Decimal]:
    """Credit notes not yet on an invoice, by account and currency (negative amounts)."""
    if not warehouse.table_exists("invoicing.credit_notes"):
        return {}
    rows = warehouse.query_arrow(
        "select account_id, currency, sum(total) as total from invoicing.credit_notes "
        "where applied_to is null group by 1, 2"
    ).to_pylist()
    return {(r["account_id"], r["currency"]): Decimal(r["total"]) for r in rows}


def _payments_received(warehouse: Warehouse, month: str, issued: date) -> dict[tuple[str, str], Decimal]:
    """Matched payments (less refunds and chargebacks) of each account received after its
    last invoice was issued and before this cycle's invoice date, as negative amounts."""
    if not warehouse.table_exists("payments.matches"):
        return {}
    rows = warehouse.query_arrow(
        "select m.account_id, p.currency, sum(case when p.status = 'succeeded' then -p.amount "
        "else p.amount end) as amount "
        "from payments.matches m join payments.payments p using (payment_id) "
        "left join (select account_id, currency, max(issue_date) as last_issue from invoicing.invoices "
        "where substr(cycle, 1, 7) < :month group by 1, 2) l "
        "on l.account_id = m.account_id and l.currency = p.currency "
        "where p.received_at < :issued and (l.last_issue is null or p.received_at >= l.last_issue) "
        "group by 1, 2",
        {"month": month, "issued": datetime.combine(issued, time(), UTC)},
    ).to_pylist()
    return {(r["account_id"], r["currency"]): Decimal(r["amount"]) for r in rows}


def account_cycles(warehouse: Warehouse, month: str, today: date, ended_only: bool,
                   due_days: int = DEFAULT_DUE_DAYS, only: str | None = None) -> dict[str, list[Cycle]]:
    """The cycles of the billing month per account (those ended by `today` when `ended_only`),
    issued today. Accounts without a bill day bill the calendar month."""
    schedules = load_schedules(warehouse)
    first = parse_month(month)
    out: dict[str, list[Cycle]] = {}
    default = [Cycle(label, a, b, today, due_days) for label, a, b in CALENDAR.cycles_starting_in(first)]
    accounts = warehouse.query_arrow("select account_id from orders.accounts")["account_id"].to_pylist() \
        if warehouse.table_exists("orders.accounts") else []
    for account_id in accounts if only is None else [a for a in accounts if a == only]:
        schedule = schedules.get(account_id)
        cycles = default if schedule is None else [
            Cycle(label, a, b, today, due_days) for label, a, b in schedule.cycles_starting_in(first)]
        cycles = [c for c in cycles if c.last < today or not ended_only]
        if cycles:
            out[account_id] = cycles
    return out


def draft_invoices(warehouse: Warehouse, settings: Settings, month: str, finalize: bool = False,
                   today: date | None = None, account: str | None = None) -> list[Invoice]:
    """Drafts for every account cycle of the billing month (or of one `account`) with services
    or usage and no final invoice yet (`finalize`: only cycles that have ended by today)."""
    today = today or clock.today()
    terms = BillingTerms.load(settings.reference_dir)
    plans = load_plans(settings.reference_dir / "plans")
    taxes = load_tax_rates(settings.reference_dir / "tax_rates.csv").to_pylist()
    accounts = {
        a["account_id"]: a for a in warehouse.query_arrow("select * from orders.accounts").to_pylist()
    }
    cycles = account_cycles(warehouse, month, today, finalize, terms.due_days, account)
    if not cycles:
        return []
    every = [c for items in cycles.values() for c in items]
    top = max(c.label for c in every)
    periods = periods_for(warehouse, every)
    usage = _usage(warehouse, top)
    adjustments = _adjustments(warehouse, top)
    balances = _previous_balances(warehouse, month)
    coupons = load_coupons(settings.reference_dir)
    credits = _unapplied_credits(warehouse)
    paid = _payments_received(warehouse, month, today)
    final = {
        r["invoice_key"]
        for r in warehouse.query_arrow(
            "select invoice_key from invoicing.invoices where substr(cycle, 1, 7) = :month", {"month": month}
        ).to_pylist()
    }
    currencies: dict[str, set[str]] = {}
    for account_id, currency in set(usage) | set(adjustments):
        currencies.setdefault(account_id, set()).add(currency)
    for account_id, items in periods.items():
        for p in items:
            if p.plan_id in plans:
                currencies.setdefault(account_id, set()).add(plans[p.plan_id].currency)
    drafts = []
    for account_id in sorted(currencies):
        account = accounts.get(account_id)
        if account is None or account_id not in cycles:
            continue
        jurisdiction = [
            t
            for t in taxes
            if t["country"] == account["country"]
            and t["state"] in ("", account["state"])
        ]
        for currency in sorted(currencies[account_id]):
            left_usage = usage.get((account_id, currency), [])
            left_adjustments = adjustments.get((account_id, currency), [])
            carried = True  # balance, credits and payments go on the account's first invoice of the run
            for cycle in cycles[account_id]:  # oldest first: usage goes on the first cycle it fits
                mine = [u for u in left_usage if u["cycle"] <= cycle.label]
                left_usage = [u for u in left_usage if u["cycle"] > cycle.label]
                fixes = [a for a in left_adjustments if a["cycle"] <= cycle.label]
                left_adjustments = [a for a in left_adjustments if a["cycle"] > cycle.label]
                if f"{account_id}:{cycle.label}:{currency}" in final:
                    continue
                invoice = compose(
                    account,
                    cycle,
                    currency,
                    periods.get(account_id, []),
                    plans,
                    mine,
                    [t for t in jurisdiction if (t["effective_from"] or cycle.last) <= cycle.last],
                    balances.get((account_id, currency), Decimal(0)) if carried else Decimal(0),
                    fixes,
                    coupons.get(account_id, []),
                    credits.get((account_id, currency), Decimal(0)) if carried else Decimal(0),
                    paid.get((account_id, currency), Decimal(0)) if carried else Decimal(0),
                )
                if invoice.lines:
                    drafts.append(invoice)
                    carried = False
    return drafts


def _totals(invoices: list[Invoice]) -> dict[str, pa.Array | list]:
    """The columns drafts and final invoices share."""
    return {
        "invoice_key": [i.key for i in invoices],
        "account_id": [i.account_id for i in invoices],
        "cycle": [i.cycle for i in invoices],
        "currency": [i.currency for i in invoices],
        "subtotal": money_array([i.subtotal for i in invoices]),
        "tax_total": money_array([i.tax_total for i in invoices]),
        "total": money_array([i.total for i in invoices]),
        "amount_due": money_array([i.amount_due for i in invoices]),
    }


def _lines_table(invoices: list[Invoice]) -> pa.Table:
    rows = [(inv.key, n, line) for inv in invoices for n, line in enumerate(inv.lines, 1)]
    get = lambda attr: [getattr(line, attr) for _, _, line in rows]  # noqa: E731
    return pa.table(
        {
            "invoice_key": [k for k, _, _ in rows],
            "line_no": pa.array([n for _, n, _ in rows], pa.int64()),
            "kind": get("kind"),
            "description": get("description"),
            "quantity": money_array(get("quantity")),
            "unit": get("unit"),
            "unit_price": money_array(get("unit_price")),
            "amount": money_array(get("amount")),
            "service_id": get("service_id"),
            "call_type": get("call_type"),
            "destination": get("destination"),
            "calls": pa.array(get("calls"), pa.int64()),
            "allowance_used": money_array(get("allowance_used")),
            "tax_id": get("tax_id"),
            "base": money_array(get("base")),
            "applies_to": get("applies_to"),
            "cycle": get("cycle"),
            "service": get("service"),
            "band": get("band"),
            "discount_name": get("discount_name"),
            "late": get("late"),
        },
        schema=TABLES["invoicing.invoice_lines"],
    )


def _write_documents(folder: Path, name: str, html: str, document: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    inside(folder, f"{name}.html").write_text(html, encoding="utf-8")
    inside(folder, f"{name}.json").write_text(document, encoding="utf-8")


def bill_cycle(
    warehouse: Warehouse, settings: Settings, label: str, finalize: bool, documents: bool = True,
    account: str | None = None,
) -> BillingReport:
    """Draft the billing month's invoices (`finalize=False`: a preview, open cycles included)
    or draft and finalize those of its account cycles that have ended, then (unless
    `documents=False`) write the final invoices' documents. Finalizing a month none of whose
    cycles has ended raises CycleError."""
    month = label
    parse_month(month)
    today = clock.today()
    out_dir = settings.data_dir / "invoices" / month
    report = BillingReport(month, documents=out_dir)
    with warehouse.session():
        ensure_tables(warehouse)
        if finalize:
            earliest_end, _ = month_window(month, schedules_in_use(warehouse))
            if earliest_end >= today:
                raise CycleError(f"cycle {month} has not ended (its first account cycle ends "
                                 f"{earliest_end.isoformat()}); use --preview for a draft")
        drafts = draft_invoices(warehouse, settings, month, finalize, today, account)
        report.drafts = len(drafts)
        draft_json = [render_json(i) for i in drafts]
        rendered = finalize and _drafts_stored(warehouse, month, account, drafts, draft_json)
        _store_drafts(warehouse, settings, month, account, drafts, draft_json, render=not rendered)
        del draft_json  # stored; finalizing renders each invoice's own (numbered) document
        release_freed_memory()
        if finalize:
            from squak_pipelines.assurance.invoice_gate import RevenueAssuranceError, run_gate

            report.gate = run_gate(warehouse, settings, month)
            if not report.gate.success:
                raise RevenueAssuranceError(month, report.gate)
            _finalize(warehouse, settings, drafts, today, report)
            if account is None:
                _record_run(warehouse, month, today, report)
            if documents:
                report.pdfs_rendered, report.call_detail_files = write_documents(
                    warehouse, settings, month
                )
        for invoice in drafts:
            report.totals[invoice.currency] = str(
                Decimal(report.totals.get(invoice.currency, "0")) + invoice.total
            )
            report.tax_totals[invoice.currency] = str(
                Decimal(report.tax_totals.get(invoice.currency, "0")) + invoice.tax_total
            )
    return report


def _drafts_stored(warehouse: Warehouse, month: str, account: str | None, drafts: list[Invoice],
                   documents: list[str]) -> bool:
    """Whether invoicing.drafts already holds each of these drafts as it is now (the preview
    run before this finalization, with nothing changed since; it may also hold drafts of
    cycles still open): then their pages need not be rendered and written again."""
    stored = warehouse.query_arrow(
        "select invoice_key, document from invoicing.drafts where substr(cycle, 1, 7) = :month "
        "and (account_id = :account or :account = '')", {"month": month, "account": account or ""})
    mine = dict(zip(stored.column("invoice_key").to_pylist(), stored.column("document").to_pylist(),
                    strict=True))
    return all(mine.get(i.key) == d for i, d in zip(drafts, documents, strict=True))


def _store_drafts(warehouse: Warehouse, settings: Settings, month: str, account: str | None,
                  drafts: list[Invoice], documents: list[str], render: bool = True) -> None:
    """The drafts' rows in place of the month's earlier drafts, and (`render`) their HTML and
    JSON files."""
    if render:
        out_dir = settings.data_dir / "invoices" / month / "drafts"
        progress = Progress("draft invoices", len(drafts), "invoices")
        with shared_workers(PARALLEL_FROM) as workers:
            for start in range(0, len(drafts), CHUNK):
                part = drafts[start:start + CHUNK]
                pages = render_documents(part, settings.reference_dir, settings.data_dir, workers=workers)
                for invoice, document, page in zip(part, documents[start:start + CHUNK], pages, strict=True):
                    _write_documents(out_dir, invoice.key.replace(":", "_"), page.html, document)
                release_freed_memory()
                progress.advance(len(part))
    with warehouse.transaction():
        if warehouse.kind == "postgres":  # two runs drafting at once: one after the other, so
            # the second deletes the first's drafts instead of repeating their keys
            warehouse.execute("lock table invoicing.drafts in exclusive mode")
        warehouse.execute("delete from invoicing.drafts where substr(cycle, 1, 7) = :month "
                          "and (account_id = :account or :account = '')",
                          {"month": month, "account": account or ""})
        warehouse.load(
            "invoicing.drafts",
            pa.table({**_totals(drafts), "document": documents}, schema=TABLES["invoicing.drafts"]),
            mode="append",
        )


def _record_run(warehouse: Warehouse, month: str, today: date, report: BillingReport) -> None:
    """One row per finalizing run; `complete` once every account cycle of the month has ended."""
    _, latest_end = month_window(month, schedules_in_use(warehouse))
    warehouse.load(
        "invoicing.billing_runs",
        pa.table(
            {
                "cycle": [month],
                "run_on": pa.array([today], pa.date32()),
                "finalized": pa.array([report.finalized], pa.int64()),
                "complete": [latest_end < today],
                "recorded_at": pa.array([clock.now()], pa.timestamp("us", tz="UTC")),
            },
            schema=TABLES["invoicing.billing_runs"],
        ),
        mode="append",
    )


def billed_months(warehouse: Warehouse) -> set[str]:
    """Billing months whose every account cycle was finalized once it had ended."""
    if not warehouse.table_exists("invoicing.billing_runs"):
        return set()
    return set(warehouse.query_arrow(
        "select distinct cycle from invoicing.billing_runs where complete")["cycle"].to_pylist())


def first_billing_month(warehouse: Warehouse, settings: Settings) -> str | None:
    """`first_cycle` of reference/billing.yaml, else the month of the first rated cycle."""
    terms = BillingTerms.load(settings.reference_dir)
    if terms.first_cycle:
        return terms.first_cycle
    if not warehouse.table_exists("rating.rated_events"):
        return None
    return warehouse.scalar("select min(substr(cycle, 1, 7)) from rating.rated_events")


def cycles_to_bill(warehouse: Warehouse, settings: Settings, today: date | None = None) -> list[str]:
    """Every billing month with an ended cycle that is not yet wholly billed, oldest first."""
    today = today or clock.today()
    schedules = schedules_in_use(warehouse)
    return pending_months(first_billing_month(warehouse, settings), billed_months(warehouse),
                          schedules, today)


def months_due(day: date, warehouse: Warehouse | None, settings: Settings) -> list[str]:
    """Billing months the schedule requests on `day`: those with an account cycle that ended
    the day before, and any ended month not yet billed (read from the warehouse when it can be
    read; a busy or unreachable warehouse leaves the calendar months alone)."""
    schedules, pending = [CALENDAR], []
    if warehouse is not None:
        try:
            schedules = schedules_in_use(warehouse)
            pending = cycles_to_bill(warehouse, settings, day)
        except Exception:
            pass
    return sorted(set(pending) | set(months_ending_on(day - timedelta(days=1), schedules)))


def check_cycle(warehouse: Warehouse, settings: Settings, month: str, preview: bool,
                today: date | None = None) -> None:
    """Raise CycleError (one line) when the month may not be billed (or previewed) today."""
    today = today or clock.today()
    parse_month(month)
    pending = cycles_to_bill(warehouse, settings, today)
    check_billable(month, first_billing_month(warehouse, settings), pending, schedules_in_use(warehouse),
                   today, preview)


def _wants_appendix(invoice: Invoice) -> bool:
    return (invoice.customer.get("call_detail") or "").lower() == "appendix"


def lock_numbering(warehouse: Warehouse) -> None:
    """Inside a transaction: concurrent finalizations queue here, so numbers stay gapless."""
    if warehouse.kind == "postgres":
        warehouse.execute("lock table invoicing.number_series in exclusive mode")


def reserve_numbers(warehouse: Warehouse, series: str, count: int) -> list[str]:
    """The next `count` numbers of a series (`<series>-000001` on); call after
    `lock_numbering`, in the transaction that stores the documents."""
    start = warehouse.scalar(
        "select next_number from invoicing.number_series where series = :s", {"s": series}
    )
    if start is None:
        start = 1
        warehouse.load(
            "invoicing.number_series",
            pa.table({"series": [series], "next_number": [1]}, schema=TABLES["invoicing.number_series"]),
            mode="append",
        )
    warehouse.execute(
        "update invoicing.number_series set next_number = :n where series = :s",
        {"n": int(start) + count, "s": series},
    )
    return [f"{series}-{int(start) + offset:06d}" for offset in range(count)]


def _finalize(
    warehouse: Warehouse, settings: Settings, drafts: list[Invoice], today: date, report: BillingReport
) -> None:
    """Number and store the drafts, issued today, and record the events they bill, in one
    transaction. Numbers rise with issue dates: a clock behind the last issue date is refused."""
    series = f"{operator_of(settings.reference_dir).invoice_prefix}-{today.year}"
    with warehouse.transaction():
        lock_numbering(warehouse)
        latest = latest_issue_date(warehouse)
        if latest is not None and latest > today:
            raise CycleError(f"today is {today.isoformat()} but documents were already issued on "
                             f"{latest.isoformat()}: an invoice is never issued in the past "
                             "(check SQUAK_TODAY)")
        done = {
            r["invoice_key"]
            for r in warehouse.query_arrow(
                "select invoice_key from invoicing.invoices where substr(cycle, 1, 7) = :month",
                {"month": report.cycle},
            ).to_pylist()
        }
        todo = [i for i in drafts if i.key not in done]
        report.already_final = len(done)
        if not todo:
            return
        now = clock.now()
        for invoice, number in zip(todo, reserve_numbers(warehouse, series, len(todo)), strict=True):
            invoice.number = number
        billed = pa.table(
            {
                "account_id": [i.account_id for i in todo],
                "currency": [i.currency for i in todo],
                "cycle": [i.cycle for i in todo],
                "invoice_number": [i.number for i in todo],
            }
        )
        keys = warehouse.query_arrow_with(
            "select event_key, invoice_number from (select r.event_key, b.invoice_number, "
            "row_number() over (partition by r.event_key order by b.cycle) as n "
            "from rating.rated_events r join {billed} b "
            "on b.account_id = r.account_id and b.currency = r.currency "
            "where r.cycle <= b.cycle and r.answered "
            "and not exists (select 1 from invoicing.billed_events x where x.event_key = r.event_key)) e "
            "where n = 1",
            "billed",
            billed,
        )
        if keys.num_rows:
            warehouse.load(
                "invoicing.billed_events", keys.cast(TABLES["invoicing.billed_events"]), mode="append"
            )
        taxes = tax_table(settings)
        progress = Progress("final invoices", len(todo), "invoices")
        with shared_workers(PARALLEL_FROM) as workers:
            for start in range(0, len(todo), CHUNK):
                _store_final(warehouse, settings, todo[start:start + CHUNK], now, taxes, workers, report)
                release_freed_memory()  # the chunk's pages and e-invoices, freed, back to the system
                progress.advance(len(todo[start:start + CHUNK]))
        if warehouse.table_exists("invoicing.credit_notes"):
            warehouse.query_arrow_with(
                "update invoicing.credit_notes c set applied_to = b.invoice_number from {billed} b "
                "where c.applied_to is null and b.account_id = c.account_id and b.currency = c.currency "
                "returning c.number",
                "billed",
                billed,
            )
        if warehouse.table_exists("rating.adjustments"):
            warehouse.query_arrow_with(
                "update rating.adjustments a set invoice_number = b.invoice_number from {billed} b "
                "where a.invoice_number is null and a.cycle <= b.cycle "
                "and b.account_id = a.account_id and b.currency = a.currency returning a.event_key",
                "billed",
                billed,
            )
        fault_point("invoicing.before_commit")
        report.finalized = len(todo)
        report.numbers = [i.number for i in todo if i.number]


def _store_final(warehouse: Warehouse, settings: Settings, todo: list[Invoice], now: datetime,
                 taxes: dict[str, dict], workers: Workers, report: BillingReport) -> None:
    """Render and store a chunk of numbered invoices (inside the finalizing transaction): a
    chunk's pages, e-invoices and call-detail appendices are in memory at a time, not the
    month's."""
    documents = [render_json(i) for i in todo]
    calls = appendix_calls(warehouse, [i.number for i in todo if _wants_appendix(i)])
    rendered = render_documents(todo, settings.reference_dir, settings.data_dir, calls, taxes, workers)
    pages = [r.html for r in rendered]
    edocs = [r.einvoice for r in rendered]
    report.einvoices += sum(1 for e in edocs if e.ubl and not e.errors)
    report.einvoice_blocked.update({i.number: e.errors for i, e in zip(todo, edocs, strict=True)
                                    if e.errors and i.number})
    warehouse.load(
        "invoicing.invoices",
        pa.table(
            {
                "number": [i.number for i in todo],
                **_totals(todo),
                "issue_date": pa.array([date.fromisoformat(i.issue_date) for i in todo], pa.date32()),
                "due_date": pa.array([date.fromisoformat(i.due_date) for i in todo], pa.date32()),
                "previous_balance": money_array([i.previous_balance for i in todo]),
                "document": documents,
                "html": pages,
                "html_sha256": [hashlib.sha256(page.encode()).hexdigest() for page in pages],
                "finalized_at": pa.array([now] * len(todo), pa.timestamp("us", tz="UTC")),
                "ubl": [e.ubl for e in edocs],
                "cii": [e.cii for e in edocs],
                "einvoice_errors": [e.errors for e in edocs],
            },
            schema=TABLES["invoicing.invoices"],
        ),
        mode="append",
    )
    warehouse.load("invoicing.invoice_lines", _lines_table(todo), mode="append")


def write_documents(warehouse: Warehouse, settings: Settings, month: str) -> tuple[int, int]:
    """HTML, JSON, PDF and call-detail CSV of every final invoice of the billing month;
    returns the PDFs rendered and the call-detail files written."""
    parse_month(month)
    out_dir = settings.data_dir / "invoices" / month
    with warehouse.session():
        ensure_tables(warehouse)
        pdfs = _rewrite_final_documents(warehouse, month, out_dir)
        return pdfs, write_call_detail(warehouse, month, out_dir)


def _rewrite_final_documents(warehouse: Warehouse, month: str, out_dir: Path) -> int:
    """Documents of every final invoice of the cycle, written from what was stored when it was
    finalized: the same bytes on every run, whatever templates change later. A missing PDF is
    rendered from the stored HTML (reproducibly; `SQUAK_INVOICE_PDF=off` skips PDFs, for
    operators who send HTML only); returns how many PDFs were rendered."""
    numbers = warehouse.query_arrow(
        "select number from invoicing.invoices where substr(cycle, 1, 7) = :month order by number",
        {"month": month})["number"].to_pylist()
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = 0
    progress = Progress("invoice documents", len(numbers), "invoices")
    for start in range(0, len(numbers), CHUNK):  # a chunk of stored documents in memory at a time
        rows = warehouse.query_arrow(
            "select number, issue_date, document, html, ubl, cii from invoicing.invoices "
            "where number = any(:numbers) order by number", {"numbers": numbers[start:start + CHUNK]},
        ).to_pylist()
        jobs = []
        for row in rows:
            write_stored_documents(out_dir, row)
            pdf = inside(out_dir, f"{row['number']}.pdf")
            if pdfs_wanted() and not pdf_complete(pdf):
                jobs.append(PdfJob(pdf, row["html"], row["issue_date"], row["number"], row["cii"] or ""))
        rendered += write_pdfs(jobs)
        progress.advance(len(rows))
        del rows, jobs
        release_freed_memory()
    return rendered


def write_stored_documents(out_dir: Path, row: dict) -> None:
    """The HTML, JSON and UBL e-invoice of a final document, as stored when it was issued."""
    inside(out_dir, f"{row['number']}.html").write_text(row["html"], encoding="utf-8")
    inside(out_dir, f"{row['number']}.json").write_text(row["document"], encoding="utf-8")
    if row.get("ubl"):
        inside(out_dir, f"{row['number']}.xml").write_text(row["ubl"], encoding="utf-8")


def tax_table(settings: Settings) -> dict[str, dict]:
    """The tax table by tax id."""
    return {t["tax_id"]: t for t in load_tax_rates(settings.reference_dir / "tax_rates.csv").to_pylist()}



def latest_issue_date(warehouse: Warehouse) -> date | None:
    """The latest issue date of any invoice or credit note."""
    sql = "select max(issue_date) from invoicing.invoices"
    if warehouse.table_exists("invoicing.credit_notes"):
        sql = ("select max(d) from (select issue_date as d from invoicing.invoices union all "
               "select issue_date from invoicing.credit_notes) x")
    value = warehouse.scalar(sql)
    return value.date() if isinstance(value, datetime) else value


def last_billed_month(warehouse: Warehouse) -> str | None:
    """The latest billing month with final invoices (what reports and controls show)."""
    if not warehouse.table_exists("invoicing.invoices"):
        return None
    return warehouse.scalar("select max(substr(cycle, 1, 7)) from invoicing.invoices")
