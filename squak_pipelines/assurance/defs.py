"""Dagster wrappers for revenue assurance and reporting: the cycle's controls as one asset with
a check per control (after invoicing and payments), and the dashboards and finance report
built from the dbt marts."""

import dagster as dg

from squak_pipelines.assurance.finance_report import MARTS, load_marts, report_cycles, write_finance_report
from squak_pipelines.assurance.images import figure_pngs, markdown_image
from squak_pipelines.assurance.stage import CONTROLS, run_assurance
from squak_pipelines.assurance.thresholds import DEFAULTS
from squak_pipelines.invoicing.defs import MONTHLY
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

GROUP = "assurance"
CONTROLS_KEY = dg.AssetKey(["assurance", "controls"])
# Every table and file the controls read (squak_pipelines/assurance/*.py).
UPSTREAM = [dg.AssetKey(key.split("/")) for key in (
    "raw/cdr_drop_files",
    "mediation/files", "mediation/events", "mediation/rejects", "mediation/duplicates",
    "mediation/quarantine", "mediation/b_legs", "mediation/partition_status",
    "orders/services",
    "reference/rate_plans", "reference/rate_decks",
    "rating/rated_events", "rating/suspense",
    "invoicing/drafts", "invoicing/invoices", "invoicing/invoice_lines", "invoicing/billed_events",
    "invoicing/credit_notes", "invoicing/credit_note_lines",
    "payments/payments", "payments/matches", "payments/ledger", "payments/suspense",
)]


def _check_spec(control) -> dg.AssetCheckSpec:
    kind = (
        "critical: blocks finalization through the draft gate"
        if DEFAULTS[control.name]["critical"]
        else "warns"
    )
    return dg.AssetCheckSpec(
        control.name,
        asset=CONTROLS_KEY,
        description=f"Control {control.number}, {control.title} ({kind}; "
        "thresholds in reference/assurance.yaml).",
    )


@dg.asset(pool=WAREHOUSE_POOL,
    key=CONTROLS_KEY,
    group_name=GROUP,
    kinds={"python"},
    deps=UPSTREAM,
    partitions_def=MONTHLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[_check_spec(c) for c in CONTROLS],
    description="The revenue-assurance controls of the cycle (results in assurance.control_results, "
    "the leakage report in assurance.findings and invoices/<cycle>/leakage-<cycle>.csv).",
)
def assurance_controls(context: dg.AssetExecutionContext, squak: SquakResource):
    warehouse = squak.warehouse()
    cycles = sorted({key[:7] for key in context.partition_keys})
    reports = [run_assurance(warehouse, squak.settings, c) for c in cycles]
    latest = reports[-1]
    table = "\n".join(
        f"| {r.number} | {r.title} | {'yes' if r.critical else 'no'} | {'pass' if r.passed else 'FAIL'} | "
        f"{r.summary} |"
        for r in latest.results
    )
    yield dg.MaterializeResult(
        metadata={
            "cycles": dg.MetadataValue.json(cycles),
            "control_results": {r.control: ("passed" if r.passed else "attention") for r in latest.results},
            "controls": dg.MetadataValue.md(
                f"Cycle {latest.cycle}, as of {latest.as_of}\n\n"
                f"| # | control | critical | result | figures |\n|---|---|---|---|---|\n{table}"
            ),
            "findings": sum(len(r.findings) for rep in reports for r in rep.results),
            "leakage_report": dg.MetadataValue.path(str(latest.leakage_report)),
        }
    )
    for control in CONTROLS:
        results = [next(r for r in rep.results if r.control == control.name) for rep in reports]
        failed = [r for r in results if not r.passed]
        yield dg.AssetCheckResult(
            check_name=control.name,
            asset_key=CONTROLS_KEY,
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR if results[-1].critical else dg.AssetCheckSeverity.WARN,
            metadata={
                "summary": results[-1].summary,
                "findings": sum(len(r.findings) for r in results),
                "threshold": dg.MetadataValue.json(results[-1].threshold),
                "leakage": dg.MetadataValue.json({c: str(a) for r in results for c, a in r.leakage.items()}),
                "records": dg.MetadataValue.json(
                    [str(x) for r in failed for x in r.findings["record"].head(20)]
                ),
            },
        )


ASSURANCE_TABLES = [
    dg.AssetSpec(dg.AssetKey(["assurance", name]), deps=[CONTROLS_KEY], group_name=GROUP, description=text,
                 kinds={"table"})
    for name, text in (
        (
            "findings",
            "The leakage report: every discrepancy with its amount and record (written with "
            "assurance/controls).",
        ),
        (
            "expected_revenue",
            "Invoiced against expected revenue per plan, currency and line type (control 7).",
        ),
    )
]

assurance_job = dg.define_asset_job(
    "assurance_job",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=MONTHLY,
    description="Run the revenue-assurance controls of a billing cycle.",
)


REPORTING = "reporting"
FIGURE_MARTS = {
    "revenue_trend": (
        "Revenue trend: rated usage per day and invoiced revenue per cycle, by currency.",
        ["revenue_monthly", "usage_daily_hourly"],
    ),
    "revenue_mix": (
        "Revenue mix: share of revenue before tax by line kind and by product.",
        ["revenue_monthly"],
    ),
    "usage_heatmap": ("Voice minutes by weekday and hour (UTC).", ["usage_daily_hourly"]),
    "top_destinations": (
        "Top destinations by usage revenue, with the usage margin over wholesale cost.",
        ["top_destinations"],
    ),
    "ra_controls": ("Revenue-assurance control status of the cycle.", ["ra_control_status"]),
    "aging": ("Open receivables by currency and aging bucket.", ["receivables_aging"]),
}


def _mart(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


@dg.multi_asset(pool=WAREHOUSE_POOL,
    specs=[
        *[
            dg.AssetSpec(
                dg.AssetKey(["dashboards", name]),
                group_name=REPORTING,
                kinds={"plotly"},
                deps=[_mart(m) for m in marts],
                description=text,
            )
            for name, (text, marts) in FIGURE_MARTS.items()
        ],
        dg.AssetSpec(
            dg.AssetKey(["dashboards", "finance_report"]),
            group_name=REPORTING,
            kinds={"html"},
            deps=[_mart(m) for m in MARTS],
            description="Self-contained HTML finance report per cycle (revenue trend and mix, usage "
            "heatmap, top destinations, RA controls, leakage, aging, collections, taxes), "
            "written next to the invoices.",
        ),
    ],
    can_subset=False,
)
def dashboards(context: dg.AssetExecutionContext, squak: SquakResource):
    """Figures of the latest cycle from the marts, shown as images in the UI, and the finance
    report of every cycle."""
    warehouse = squak.warehouse()
    marts = load_marts(warehouse)
    cycles = report_cycles(marts)
    reports = [write_finance_report(squak.settings, warehouse.kind, marts, c) for c in cycles]
    latest = reports[-1] if reports else None
    images = figure_pngs(latest.figures) if latest else {}
    for name, (text, _) in FIGURE_MARTS.items():
        metadata = {"cycle": latest.cycle if latest else "none"}
        if name in images:
            metadata["figure"] = dg.MetadataValue.md(markdown_image(images[name], text))
        elif latest:
            metadata["figure"] = dg.MetadataValue.md(f"{text}\n\nSee the finance report: `{latest.path}`")
        yield dg.MaterializeResult(asset_key=dg.AssetKey(["dashboards", name]), metadata=metadata)
    yield dg.MaterializeResult(
        asset_key=dg.AssetKey(["dashboards", "finance_report"]),
        metadata={
            "cycles": dg.MetadataValue.json(cycles),
            "finance_report": dg.MetadataValue.path(str(latest.path) if latest else "none"),
            "headline": dg.MetadataValue.md(
                "\n".join(
                    f"- **{k['label']}**: {k['value']} ({k['sub']})" for k in (latest.kpis if latest else [])
                )
            ),
            "figures_as_images": len(images),
        },
    )
    if latest and not images:
        context.log.warning("figures were not rendered as images (no Chromium); the HTML report has them")


reporting_job = dg.define_asset_job(
    "reporting_job",
    selection=dg.AssetSelection.groups(REPORTING),
    description="Build the dashboards and the finance report from the marts.",
)

reporting_defs = dg.Definitions(assets=[dashboards], jobs=[reporting_job])

defs = dg.Definitions.merge(
    dg.Definitions(assets=[assurance_controls, *ASSURANCE_TABLES], jobs=[assurance_job]), reporting_defs
)
