"""Dagster wrappers for reference data: one asset per reference file, and a sensor that
re-lands them when an operator edits a file."""


import hashlib

import dagster as dg

from squak_pipelines.config import Settings
from squak_pipelines.quality.checks import gx_suite_check
from squak_pipelines.reference.files import REFERENCE_FILES
from squak_pipelines.reference.versions import RULE_FILES, rules_version
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

GROUP = "reference"
DATA_VERSION_TAG = "dagster/data_version"  # the tag an observation's data version is recorded in


def _reference_asset(name: str) -> dg.AssetsDefinition:
    file_name, loader = REFERENCE_FILES[name]

    source = [dg.AssetKey(["reference", "tax_table"])] if name == "tax_rates" else []

    @dg.asset(pool=WAREHOUSE_POOL, key=["raw", name], group_name=GROUP, kinds={"python", "csv"}, deps=source,
              description=f"Operator reference file `reference/{file_name}`, validated and "
                          f"landed as `raw.{name}`.")
    def _asset(context: dg.AssetExecutionContext, squak: SquakResource) -> dg.MaterializeResult:
        path = squak.settings.reference_dir / file_name
        table = loader(path)
        rows = squak.warehouse().load(f"raw.{name}", table)
        context.log.info(f"landed {rows} rows from {path}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows, "source_file": str(path),
            "preview": dg.MetadataValue.md(table.slice(0, 10).to_pandas().to_markdown(index=False)),
        })

    return _asset


@dg.multi_observable_source_asset(
    specs=[dg.AssetSpec(["reference", name], group_name=GROUP, description=text, kinds={"yaml" if
                        name in ("rate_plans", "fraud_rules") else "csv"})
           for name, (_, text) in RULE_FILES.items()],
    can_subset=True)
def rule_files(context: dg.AssetExecutionContext):
    """The operator's rule files as observable source assets: a data version is their content.
    Files only, never the warehouse: no resource, so no wait for the warehouse's turn."""
    reference_dir = Settings.from_env().reference_dir
    for key in sorted(context.selected_asset_keys):
        version, files = rules_version(reference_dir, key.path[-1])
        yield dg.ObserveResult(asset_key=key, data_version=dg.DataVersion(version),
                               metadata={"files": dg.MetadataValue.json(files)})




@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Observes the rate plans, rate decks, tax table and fraud rules: a changed file "
                       "is a new data version of its source asset (on by default: it only records).")
def rule_files_sensor(context: dg.SensorEvaluationContext, squak: SquakResource):
    import json

    seen = json.loads(context.cursor) if context.cursor else {}
    now, events = {}, []
    for name in RULE_FILES:
        version, files = rules_version(squak.settings.reference_dir, name)
        now[name] = version
        if seen.get(name) != version:
            events.append(dg.AssetObservation(
                asset_key=dg.AssetKey(["reference", name]), tags={DATA_VERSION_TAG: version},
                metadata={"files": dg.MetadataValue.json(files)}))
    context.update_cursor(json.dumps(now, sort_keys=True))
    if not events:
        return dg.SkipReason("rule files unchanged")
    return dg.SensorResult(asset_events=events)


reference_assets = [_reference_asset(name) for name in REFERENCE_FILES]
reference_job = dg.define_asset_job("reference_job", selection=dg.AssetSelection.groups(GROUP),
                                    description="Validate and land the operator's reference files.")


@dg.sensor(job=reference_job, minimum_interval_seconds=60,
           description="Re-lands reference data when a reference file changes.")
def reference_files_sensor(context: dg.SensorEvaluationContext, squak: SquakResource):
    digest = hashlib.sha256()
    for name, (file_name, _) in sorted(REFERENCE_FILES.items()):
        path = squak.settings.reference_dir / file_name
        digest.update(name.encode() + (path.read_bytes() if path.exists() else b"<missing>"))
    version = digest.hexdigest()
    if version == context.cursor:
        return dg.SkipReason("reference files unchanged")
    context.update_cursor(version)
    return dg.RunRequest(run_key=version)


defs = dg.Definitions(
    assets=[*reference_assets, rule_files],
    asset_checks=[gx_suite_check(dg.AssetKey(["raw", "tax_rates"]), "raw.tax_rates",
                                 "reference_tax_rates")],
    jobs=[reference_job],
    sensors=[reference_files_sensor, rule_files_sensor],
)
