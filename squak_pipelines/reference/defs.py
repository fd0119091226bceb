"""Dagster wrappers for reference data: one asset per reference file, and a sensor that
re-lands them when an operator edits a file."""


import hashlib

import dagster as dg

from squak_pipelines.quality.checks import gx_suite_check
from squak_pipelines.reference.files import REFERENCE_FILES
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

GROUP = "reference"


def _reference_asset(name: str) -> dg.AssetsDefinition:
    file_name, loader = REFERENCE_FILES[name]

    @dg.asset(pool=WAREHOUSE_POOL, key=["raw", name], group_name=GROUP, kinds={"python", "csv"},
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
    assets=reference_assets,
    asset_checks=[gx_suite_check(dg.AssetKey(["raw", "tax_rates"]), "raw.tax_rates",
                                 "reference_tax_rates")],
    jobs=[reference_job],
    sensors=[reference_files_sensor],
)
