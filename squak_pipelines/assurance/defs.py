"""Dagster wrappers for revenue assurance: the cycle's controls as one asset with a check per
control, and the job that runs them after invoicing and payments."""

import dagster as dg

from squak_pipelines.assurance.stage import CONTROLS, run_assurance
from squak_pipelines.assurance.thresholds import DEFAULTS
from squak_pipelines.invoicing.defs import MONTHLY
from squak_pipelines.resources import SquakResource

GROUP = "assurance"
CONTROLS_KEY = dg.AssetKey(["assurance", "controls"])
UPSTREAM = [
    dg.AssetKey(["invoicing", "invoices"]),
    dg.AssetKey(["payments", "ledger"]),
    dg.AssetKey(["payments", "suspense"]),
    dg.AssetKey(["rating", "rated_events"]),
    dg.AssetKey(["mediation", "events"]),
    dg.AssetKey(["orders", "services"]),
]


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


@dg.asset(
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


assurance_job = dg.define_asset_job(
    "assurance_job",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=MONTHLY,
    description="Run the revenue-assurance controls of a billing cycle.",
)

defs = dg.Definitions(assets=[assurance_controls], jobs=[assurance_job])
