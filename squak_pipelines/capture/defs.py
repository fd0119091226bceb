"""Dagster wrappers for CDR capture: the drop-folder inventory."""


import dagster as dg

from squak_pipelines.capture.drop_files import scan_drop_folder, to_table
from squak_pipelines.quality.checks import gx_suite_check
from squak_pipelines.reference.files import load_switches
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

GROUP = "capture"


@dg.asset(pool=WAREHOUSE_POOL, key=["raw", "cdr_drop_files"], group_name=GROUP, kinds={"python"},
          deps=[dg.AssetKey(["raw", "switches"])],
          description="Every CDR file in the drop folder: switch, format, size, content hash "
                      "and record count (the 'records in' of conservation).")
def cdr_drop_files(context: dg.AssetExecutionContext, squak: SquakResource) -> dg.MaterializeResult:
    settings = squak.settings
    switches = load_switches(settings.reference_dir / "switches.csv")
    files = scan_drop_folder(settings.cdr_drop_dir, switches)
    table = to_table(files)
    squak.warehouse().load("raw.cdr_drop_files", table)
    per_switch: dict[str, int] = {}
    for f in files:
        per_switch[f.switch_id] = per_switch.get(f.switch_id, 0) + f.records
    hashes = [f.sha256 for f in files]
    context.log.info(f"{len(files)} files, {sum(per_switch.values())} records")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(files),
        "records": sum(per_switch.values()),
        "records_by_switch": dg.MetadataValue.json(per_switch),
        "redelivered_files": len(hashes) - len(set(hashes)),
        "drop_folder": str(settings.cdr_drop_dir),
    })


capture_job = dg.define_asset_job("capture_job", selection=dg.AssetSelection.groups(GROUP),
                                  description="Inventory the CDR drop folder.")

defs = dg.Definitions(
    assets=[cdr_drop_files],
    asset_checks=[gx_suite_check(cdr_drop_files.key, "raw.cdr_drop_files", "cdr_drop_files")],
    jobs=[capture_job],
)
