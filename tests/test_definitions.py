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


def test_every_step_that_opens_the_warehouse_is_in_its_pool() -> None:
    """Concurrent runs queue for the DuckDB file in the `squak_warehouse` pool instead of failing
    on its lock: every asset and check op of Squak's (all of them read or write the warehouse;
    the rule files' observations read files only)."""
    from squak_pipelines.scale_out import WAREHOUSE_POOL

    graph = defs.resolve_asset_graph()
    nodes = {node.assets_def for node in graph.asset_nodes
             if node.assets_def.is_executable and not node.is_observable}
    ops = {a.op.name: a.op.pool for a in nodes}
    assert len(ops) >= 10 and set(ops.values()) == {WAREHOUSE_POOL}, ops
    checks = list(defs.asset_checks or [])
    assert checks and all(check.op.pool == WAREHOUSE_POOL for check in checks), "the checks' own ops too"


def test_executor_and_pool_limit_follow_the_environment(monkeypatch, tmp_path: Path) -> None:
    import pytest

    from squak_pipelines.config import Settings
    from squak_pipelines.scale_out import executor, pool_limit

    for kind, name in (("", "multiprocess"), ("in_process", "in_process"), ("celery", "squak_celery"),
                       ("k8s", "k8s")):
        monkeypatch.setenv("SQUAK_EXECUTOR", kind)
        assert executor().name == name
    monkeypatch.setenv("SQUAK_EXECUTOR", "dask")
    with pytest.raises(ValueError, match="SQUAK_EXECUTOR='dask'"):
        executor()
    monkeypatch.setenv("SQUAK_CELERY_BROKER", "pyamqp://guest@broker.example:5672//")
    monkeypatch.setenv("SQUAK_EXECUTOR", "celery")
    assert executor().config_schema is not None
    duck = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path)})
    pg = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path), "SQUAK_WAREHOUSE_URL": "postgresql://u@h/db"})
    monkeypatch.setenv("SQUAK_POOL_LIMIT", "6")
    assert (pool_limit(duck), pool_limit(pg)) == (1, 6), "one writer on the DuckDB file"
    assert defs.resolve_job_def("rating_job").tags.get("squak/in_day_order") == "rating"
    from squak_pipelines.scale_out import mediation_backfill_policy

    monkeypatch.setenv("SQUAK_BACKFILL_DAYS_PER_RUN", "3")
    assert mediation_backfill_policy(duck) == dg.BackfillPolicy.single_run(), "days in order on the file"
    assert mediation_backfill_policy(pg) == dg.BackfillPolicy.multi_run(max_partitions_per_run=3)
    monkeypatch.delenv("SQUAK_BACKFILL_DAYS_PER_RUN")
    assert mediation_backfill_policy(pg) == dg.BackfillPolicy.single_run()


def test_the_kubernetes_values_name_what_the_code_uses() -> None:
    """deploy/k8s/values.yaml loads Squak's definitions, with the executor, pool and run-queue
    tag the code reads."""
    import yaml

    from squak_pipelines.scale_out import EXECUTORS, IN_DAY_ORDER_TAG

    values = yaml.safe_load((Path(__file__).parent.parent / "deploy" / "k8s" / "values.yaml").read_text())
    code = values["dagster-user-deployments"]["deployments"][0]
    assert code["dagsterApiGrpcArgs"] == ["--module-name", "squak_pipelines.definitions"]
    env = {item["name"]: item["value"] for item in code["env"]}
    assert env["SQUAK_EXECUTOR"] in EXECUTORS and int(env["SQUAK_POOL_LIMIT"]) >= 1
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert [limit["key"] for limit in queue["tagConcurrencyLimits"]] == [IN_DAY_ORDER_TAG]


LINEAGE = """
import json, time
started = time.perf_counter()
import dagster as dg
from squak_pipelines.definitions import defs
graph = defs.resolve_asset_graph()
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds,
    "observable": sorted(k.to_user_string() for k in graph.observable_asset_keys),
    "parents": {k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
                for k in graph.get_all_asset_keys()},
}))
"""


def test_a_fresh_shell_loads_the_lineage_from_rule_files_to_rated_events(tmp_path: Path) -> None:
    """No venv on PATH, no Dagster home: what `dagster dev -w workspace.yaml` loads in a new shell."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SQUAK_DATA_DIR": str(tmp_path / "squak")}
    done = subprocess.run([sys.executable, "-c", LINEAGE], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"definitions loaded in {found['seconds']:.1f} s")  # a figure, not an assertion
    rules = {"reference/rate_plans", "reference/rate_decks", "reference/tax_table", "reference/fraud_rules"}
    assert rules <= set(found["observable"])
    parents = found["parents"]
    assert "raw/cdr_drop_files" in parents["mediation/events"], "capture feeds mediation"
    assert "reference/fraud_rules" in parents["mediation/events"]
    assert {"reference/rate_plans", "reference/rate_decks"} <= set(parents["rating/rated_events"])
    assert "reference/tax_table" in parents["raw/tax_rates"]


def test_every_asset_has_its_stage_owner_and_tag() -> None:
    from squak_pipelines.ownership import OWNERS

    graph = defs.resolve_asset_graph()
    for node in graph.asset_nodes:
        assert node.owners == [OWNERS[node.group_name]], (node.key, node.owners)
        assert node.tags["squak/stage"] == node.group_name and node.kinds, node.key


def test_the_rule_files_sensor_records_a_new_data_version_when_a_deck_changes(tmp_path: Path, demo) -> None:
    from tests.stage_helpers import copy_demo

    settings = copy_demo(demo, tmp_path / "squak")
    resource = SquakResource(data_dir=str(settings.data_dir), warehouse_url=settings.warehouse_url)
    sensor = defs.resolve_sensor_def("rule_files_sensor")
    with dg.build_sensor_context(resources={"squak": resource}) as ctx:
        first = sensor.evaluate_tick(ctx)
    versions = {e.asset_key.to_user_string(): e.tags["dagster/data_version"] for e in first.asset_events}
    assert set(versions) == {"reference/rate_plans", "reference/rate_decks", "reference/tax_table",
                             "reference/fraud_rules"}
    with dg.build_sensor_context(resources={"squak": resource}, cursor=first.cursor) as ctx:
        assert not sensor.evaluate_tick(ctx).asset_events, "nothing changed"
    deck = sorted((settings.reference_dir / "decks").glob("*.csv"))[0]
    deck.write_text(deck.read_text() + "\n")
    with dg.build_sensor_context(resources={"squak": resource}, cursor=first.cursor) as ctx:
        changed = sensor.evaluate_tick(ctx).asset_events
    assert [e.asset_key.to_user_string() for e in changed] == ["reference/rate_decks"]
    assert changed[0].tags["dagster/data_version"] != versions["reference/rate_decks"]
