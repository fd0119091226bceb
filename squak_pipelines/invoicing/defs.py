"""Dagster wrappers for the billing cycle: monthly draft and final invoices, their checks,
and the schedule that closes the previous month."""

import os
from datetime import timedelta

import dagster as dg

from squak_pipelines.invoicing.stage import bill_cycle, check_cycle
from squak_pipelines.partitions import monthly
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

GROUP = "invoicing"
MONTHLY = monthly()  # billing months, through the last that has ended
INVOICES = dg.AssetKey(["invoicing", "invoices"])
DRAFTS = dg.AssetKey(["invoicing", "drafts"])
DOCUMENTS = dg.AssetKey(["invoicing", "documents"])
UPSTREAM = [
    dg.AssetKey(["rating", "rated_events"]),
    dg.AssetKey(["orders", "services"]),
    dg.AssetKey(["orders", "accounts"]),  # customers, bill days, delivery and payment methods
    dg.AssetKey(["raw", "tax_rates"]),
    dg.AssetKey(["reference", "tax_table"]),  # e-invoices read the tax table's file
    dg.AssetKey(["reference", "rate_plans"]),  # recurring and one-time fees
]


def _cycles(context: dg.AssetExecutionContext) -> list[str]:
    return sorted({key[:7] for key in context.partition_keys})


@dg.asset(pool=WAREHOUSE_POOL,
    key=DRAFTS,
    group_name=GROUP,
    kinds={"python", "html"},
    deps=UPSTREAM,
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            "revenue_assurance_gate",
            asset=DRAFTS,
            blocking=True,
            description="GX suite `revenue_assurance_gate` on the drafts (usage completeness, orders vs "
            "billing, lines add up, no event billed twice) and the critical revenue-assurance controls "
            "(records conserved through mediation and rating, independent re-rating). Failing blocks "
            "finalization.",
        )
    ],
    description="Preview of the cycle's invoices (not numbered, not final), rendered as HTML/JSON.",
)
def draft_invoices(context: dg.AssetExecutionContext, squak: SquakResource):
    from squak_pipelines.assurance.invoice_gate import run_gate

    warehouse = squak.warehouse()
    reports = [bill_cycle(warehouse, squak.settings, c, finalize=False) for c in _cycles(context)]
    yield dg.MaterializeResult(
        metadata={
            "drafts": sum(r.drafts for r in reports),
            "totals_by_cycle_and_currency": dg.MetadataValue.json({r.cycle: r.totals for r in reports}),
            "documents": dg.MetadataValue.path(str(reports[-1].documents / "drafts")),
        }
    )
    outcomes = {r.cycle: run_gate(warehouse, squak.settings, r.cycle) for r in reports}
    yield dg.AssetCheckResult(
        check_name="revenue_assurance_gate",
        asset_key=DRAFTS,
        passed=all(o.success for o in outcomes.values()),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "suite": "revenue_assurance_gate",
            "cycles": dg.MetadataValue.json(sorted(outcomes)),
            "failures": dg.MetadataValue.json({c: o.failures for c, o in outcomes.items() if not o.success}),
            "critical_controls": dg.MetadataValue.json(
                {c: {r.control: r.summary for r in o.controls} for c, o in outcomes.items()}),
        },
    )


@dg.asset(pool=WAREHOUSE_POOL,
    key=INVOICES,
    group_name=GROUP,
    kinds={"python", "html"},
    deps=[DRAFTS, *UPSTREAM],
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            "totals_add_up",
            asset=INVOICES,
            description="Every final invoice: subtotal = sum of its lines, total = subtotal + taxes.",
        ),
        dg.AssetCheckSpec(
            "gapless_numbers",
            asset=INVOICES,
            description="Invoice and credit-note numbers of each series run 1..N without gaps.",
        ),
    ],
    description="Finalized invoices: numbered gaplessly, immutable, stored with their HTML and JSON.",
)
def final_invoices(context: dg.AssetExecutionContext, squak: SquakResource):
    from squak_pipelines.cycles import CycleError

    warehouse = squak.warehouse()
    reports = []
    for month in _cycles(context):  # oldest first
        try:
            check_cycle(warehouse, squak.settings, month, preview=False)
        except CycleError as exc:
            raise dg.Failure(description=str(exc)) from None
        reports.append(bill_cycle(warehouse, squak.settings, month, finalize=True, documents=False))
    yield dg.MaterializeResult(
        metadata={
            "invoices_finalized": sum(r.finalized for r in reports),
            "already_final": sum(r.already_final for r in reports),
            "einvoices_valid": sum(r.einvoices for r in reports),
            "einvoices_blocked": dg.MetadataValue.json(
                {n: e[:300] for r in reports for n, e in r.einvoice_blocked.items()}),
            "invoice_totals": dg.MetadataValue.json({r.cycle: r.totals for r in reports}),
            "tax_totals": dg.MetadataValue.json({r.cycle: r.tax_totals for r in reports}),
            "documents": dg.MetadataValue.path(str(reports[-1].documents)),
            "explain": dg.MetadataValue.md(_explain_hint(warehouse, [r.cycle for r in reports])),
        }
    )
    off = warehouse.query_df(
        "select i.number, i.subtotal, i.tax_total, i.total, "
        "sum(case when l.kind <> 'tax' then l.amount else 0 end) as lines, "
        "sum(case when l.kind = 'tax' then l.amount else 0 end) as taxes "
        "from invoicing.invoices i join invoicing.invoice_lines l on l.invoice_key = i.invoice_key "
        "group by 1, 2, 3, 4 having sum(case when l.kind <> 'tax' then l.amount else 0 end) <> i.subtotal "
        "or sum(case when l.kind = 'tax' then l.amount else 0 end) <> i.tax_total "
        "or i.subtotal + i.tax_total <> i.total"
    )
    yield dg.AssetCheckResult(
        check_name="totals_add_up",
        asset_key=INVOICES,
        passed=off.empty,
        metadata={"invoices_off": dg.MetadataValue.json(off.astype(str).to_dict("records"))},
    )
    numbers = "select number from invoicing.invoices"
    if warehouse.table_exists("invoicing.credit_notes"):
        numbers += " union all select number from invoicing.credit_notes"
    series = warehouse.query_df(
        "select substr(number, 1, length(number) - 7) as series, count(*) as n, "
        "max(cast(substr(number, length(number) - 5) as integer)) as top, "
        f"min(cast(substr(number, length(number) - 5) as integer)) as low from ({numbers}) x group by 1"
    )
    gaps = series[(series["n"] != series["top"]) | (series["low"] != 1)]
    yield dg.AssetCheckResult(
        check_name="gapless_numbers",
        asset_key=INVOICES,
        passed=gaps.empty,
        metadata={"series": dg.MetadataValue.json(series.astype(str).to_dict("records"))},
    )


def _explain_hint(warehouse, months: list[str]) -> str:
    """How to trace any amount of these invoices, shown on the biggest usage line."""
    rows = warehouse.query_arrow(
        "select i.number, l.line_no, l.description, l.amount from invoicing.invoice_lines l "
        "join invoicing.invoices i on i.invoice_key = l.invoice_key where l.kind = 'usage' "
        "and substr(i.cycle, 1, 7) = any(:months) order by l.amount desc, i.number, l.line_no limit 1",
        {"months": months}).to_pylist()
    if not rows:
        return "No usage lines."
    top = rows[0]
    return (f"Any line's events: `squak explain --invoice NUMBER --line N`; an event's price: "
            f"`squak explain --event KEY`. The biggest usage line, {top['description']} "
            f"({top['amount']}): `squak explain --invoice {top['number']} --line {top['line_no']}`")


@dg.asset(pool=WAREHOUSE_POOL,
    key=DOCUMENTS,
    group_name=GROUP,
    kinds={"python", "pdf"},
    deps=[INVOICES],
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Documents of the final invoices: HTML, JSON and the UBL e-invoice as stored, PDF "
    "rendered from the stored HTML (reproducible; Factur-X with the stored CII for EUR), itemized call "
    "detail as CSV.",
)
def invoice_documents(context: dg.AssetExecutionContext, squak: SquakResource) -> dg.MaterializeResult:
    from squak_pipelines.invoicing.stage import write_documents

    cycles = _cycles(context)
    written = [write_documents(squak.warehouse(), squak.settings, c) for c in cycles]
    return dg.MaterializeResult(
        metadata={
            "pdfs_rendered": sum(pdfs for pdfs, _ in written),
            "call_detail_files": sum(files for _, files in written),
            "documents": dg.MetadataValue.path(str(squak.settings.data_dir / "invoices" / cycles[-1])),
        }
    )


@dg.asset(pool=WAREHOUSE_POOL,
    key=["invoicing", "deliveries"],
    group_name=GROUP,
    kinds={"python", "email"},
    deps=[DOCUMENTS],
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Final invoices published to the customer portal, emailed (or written to the outbox) "
    "and queued for print, each recorded once.",
)
def invoice_deliveries(context: dg.AssetExecutionContext, squak: SquakResource) -> dg.MaterializeResult:
    from squak_pipelines.invoicing.delivery import deliver_cycle

    reports = [deliver_cycle(squak.warehouse(), squak.settings, c) for c in _cycles(context)]
    return dg.MaterializeResult(
        metadata={
            "emails_sent": sum(r.sent for r in reports),
            "emails_to_outbox": sum(r.outbox for r in reports),
            "email_send_failures": sum(r.failed for r in reports),
            "queued_for_print": sum(r.printed for r in reports),
            "print_batch": dg.MetadataValue.path(str(reports[-1].print_batch or "none")),
            "portal_accounts": max((r.portal_accounts for r in reports), default=0),
            "delivery_errors": dg.MetadataValue.json([e for r in reports for e in r.errors][:20]),
            "blocked_by_einvoice_rules": dg.MetadataValue.json(
                {n: b for r in reports for n, b in r.blocked.items()}),
        }
    )


invoicing_job = dg.define_asset_job(
    "invoicing_job",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=MONTHLY,
    description="Draft and finalize a billing cycle's invoices.",
)


@dg.schedule(
    job=invoicing_job,
    cron_schedule=f"0 {int(os.environ.get('SQUAK_BILL_HOUR', '6'))} * * *",
    execution_timezone="UTC",
    description="Each day at SQUAK_BILL_HOUR (UTC): bills the cycles that ended the day before (the "
    "calendar month on the 1st, bill-day cycles on their day) and any ended cycle not yet billed.",
)
def close_cycle_schedule(context: dg.ScheduleEvaluationContext, squak: SquakResource):
    from squak_pipelines.invoicing.stage import months_due

    day = context.scheduled_execution_time.date()
    settings = squak.settings
    readable = settings.warehouse_kind == "postgres" or settings.duckdb_path.exists()
    months = months_due(day, squak.warehouse() if readable else None, settings)
    if not months:
        return dg.SkipReason(f"no billing cycle ended on {day - timedelta(days=1)}")
    return [dg.RunRequest(run_key=f"bill-{m}-on-{day}", partition_key=f"{m}-01") for m in months]


# Tables written together with the final invoices, declared so dbt's sources show their lineage.
INVOICE_TABLES = [
    dg.AssetSpec(dg.AssetKey(["invoicing", name]), deps=[INVOICES], group_name=GROUP, description=text,
                 kinds={"table"})
    for name, text in (
        ("invoice_lines", "Lines of the final invoices (written with invoicing/invoices)."),
        ("billed_events", "Which invoice billed each rated event (written with invoicing/invoices)."),
        ("credit_notes", "Credit notes (issued with `squak credit-note`, against invoicing/invoices)."),
        ("credit_note_lines", "Lines of the credit notes, each naming the invoice line it credits."),
    )
]

defs = dg.Definitions(
    assets=[draft_invoices, final_invoices, invoice_documents, invoice_deliveries, *INVOICE_TABLES],
    jobs=[invoicing_job],
    schedules=[close_cycle_schedule],
)
