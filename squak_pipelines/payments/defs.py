"""Dagster wrappers for payments and receivables: one multi-asset (payments, matches,
suspense, ledger, aging, dunning), its checks, the job and the payments drop-folder sensor."""

import hashlib

import dagster as dg

from squak_pipelines.payments.stage import ledger_differences, payments_paid_twice, run_payments
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

GROUP = "payments"
KEYS = {
    "payments": "Every payment received (card settlements, bank statements, manual), each once.",
    "matches": "How each payment found its account and invoice (assigned, reference, token and "
    "amount, account) and what it paid.",
    "suspense": "Payments no invoice could be found for, with the reason; finance assigns them.",
    "ledger": "Each account's invoices, payments, credit notes, refunds and chargebacks with a running "
    "balance.",
    "aging": "Open invoice amounts by days past due: current, 1-30, 31-60, 61-90, 90+.",
    "dunning": "Accounts in a dunning state (reminder, warning, suspension candidate) and the notices.",
}
LEDGER = dg.AssetKey(["payments", "ledger"])
MATCHES = dg.AssetKey(["payments", "matches"])

@dg.multi_asset(pool=WAREHOUSE_POOL,
    specs=[
        dg.AssetSpec(
            dg.AssetKey(["payments", name]),
            group_name=GROUP,
            kinds={"python"},
            deps=[dg.AssetKey(["invoicing", "invoices"]), dg.AssetKey(["orders", "services"])],
            description=text,
        )
        for name, text in KEYS.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "ledger_balances",
            asset=LEDGER,
            blocking=True,
            description="For every account: invoiced + credit notes - paid + refunds and chargebacks "
            "= closing balance, from the source tables.",
        ),
        dg.AssetCheckSpec(
            "no_payment_matched_twice",
            asset=MATCHES,
            blocking=True,
            description="Each payment is matched once and pays no more than its amount.",
        ),
    ],
    can_subset=False,
)
def receivables(squak: SquakResource):
    """Read new payment files, then rebuild matches, suspense, ledger, aging and dunning."""
    warehouse = squak.warehouse()
    report = run_payments(warehouse, squak.settings)
    metadata = {
        "as_of": report.as_of.isoformat(),
        "payment_files": report.files,
        "new_payments": report.new_payments,
        "failed_charges": report.failed,
        "debits": report.debits,
        "reversals": report.reversals,
        "pending_entries": report.pending,
        "duplicate_payments": report.duplicates,
        "rejected_payment_records": report.rejected,
        "file_checks": dg.MetadataValue.json(report.file_checks[:50]),
        "direct_debit_collections": report.direct_debits,
        "invoiced_by_currency": dg.MetadataValue.json(report.invoiced),
        "collected_by_currency": dg.MetadataValue.json(report.collected),
        "payment_suspense_by_reason": dg.MetadataValue.json(report.suspense),
        "aging_by_currency": dg.MetadataValue.json(report.aging),
        "dunning_by_state": dg.MetadataValue.json(report.dunning),
        "dunning_notices_sent": report.notices,
        "autopay_charge_requests": report.charge_requests,
    }
    for name in KEYS:
        yield dg.MaterializeResult(asset_key=dg.AssetKey(["payments", name]), metadata=metadata)
    off = ledger_differences(warehouse)
    yield dg.AssetCheckResult(
        check_name="ledger_balances",
        asset_key=LEDGER,
        passed=off.empty,
        metadata={"accounts_off": dg.MetadataValue.json(off.astype(str).to_dict("records")[:20])},
    )
    twice = payments_paid_twice(warehouse)
    yield dg.AssetCheckResult(
        check_name="no_payment_matched_twice",
        asset_key=MATCHES,
        passed=twice.empty,
        metadata={"payments": dg.MetadataValue.json(twice["payment_id"].astype(str).tolist()[:20])},
    )


payments_job = dg.define_asset_job(
    "payments_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Payments and receivables: intake, matching, ledger, aging and dunning.",
)


@dg.sensor(job=payments_job, minimum_interval_seconds=60,
           description="Requests a payments run when a new payment file lands in the payments drop folder.")
def payments_drop_sensor(context: dg.SensorEvaluationContext, squak: SquakResource):
    folder = squak.settings.payments_drop_dir
    if not folder.exists():
        return dg.SkipReason(f"no payments drop folder at {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    digest = hashlib.sha256(b"".join(
        f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}\n".encode() for p in files
    )).hexdigest()
    if digest == context.cursor:
        return dg.SkipReason("no new payment files")
    context.update_cursor(digest)
    return dg.RunRequest(run_key=digest)


defs = dg.Definitions(assets=[receivables], jobs=[payments_job], sensors=[payments_drop_sensor])
