"""The Dagster definitions load with every asset, check, job and sensor."""

from pathlib import Path

import dagster as dg

from squak_pipelines.definitions import defs
from squak_pipelines.reference.defs import reference_files_sensor
from squak_pipelines.resources import SquakResource


def test_definitions_load_completely() -> None:
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"raw/products", "raw/tax_rates", "raw/switches", "raw/cdr_drop_files"} <= keys
    assert {"staging/stg_cdr_drop_files", "intermediate/int_cdr_file_deliveries",
            "marts/ops_cdr_intake_daily", "marts/dim_tax_jurisdictions"} <= keys
    graph = defs.resolve_asset_graph()
    # dbt sources are wired to the Python assets that write them.
    staging = graph.get(dg.AssetKey(["staging", "stg_cdr_drop_files"]))
    assert dg.AssetKey(["raw", "cdr_drop_files"]) in staging.parent_keys
    checks = {c.name for c in graph.asset_check_keys}
    assert {"gx_cdr_drop_files", "gx_reference_tax_rates"} <= checks
    assert any(name.startswith("not_null_") for name in checks), "dbt tests surface as checks"
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"reference_job", "orders_job", "capture_job", "mediation_job", "warehouse_models_job",
            "billing_cycle_job", "rating_job", "invoicing_job"} <= jobs
    assert defs.resolve_sensor_def("suspense_rerating_sensor") is not None
    assert defs.resolve_schedule_def("close_cycle_schedule") is not None
    assert {"rating/rated_events", "rating/suspense", "invoicing/drafts", "invoicing/invoices",
            "invoicing/documents", "invoicing/deliveries"} <= keys
    assert defs.resolve_sensor_def("reference_files_sensor") is not None
    assert defs.resolve_sensor_def("cdr_drop_sensor") is not None
    assert {"orders/services", "orders/rejections", "mediation/events", "mediation/quarantine",
            "mediation/rejects", "mediation/partition_status"} <= keys
    assert {"no_number_assigned_twice", "active_services_billable", "conservation", "gx_fraud_gate",
            "gx_mediated_events", "nothing_lost", "no_negative_charges", "totals_add_up",
            "gapless_numbers"} <= checks


def test_reference_sensor_runs_only_on_change(tmp_path: Path) -> None:
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "tax_rates.csv").write_text("v1")
    resource = SquakResource(data_dir=str(tmp_path), warehouse_url=f"duckdb:///{tmp_path}/w.duckdb")
    with dg.build_sensor_context(resources={"squak": resource}) as ctx:
        first = reference_files_sensor(ctx)
        assert isinstance(first, dg.RunRequest)
        ctx.update_cursor(first.run_key)
        assert isinstance(reference_files_sensor(ctx), dg.SkipReason)
        (ref / "tax_rates.csv").write_text("v2")
        assert isinstance(reference_files_sensor(ctx), dg.RunRequest)
