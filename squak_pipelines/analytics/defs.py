"""Dagster wrappers for the dbt project: every model an asset, every dbt test a check."""


import os

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from squak_pipelines.analytics.project import dbt_executable, dbt_project, ensure_manifest
from squak_pipelines.analytics.sources import ensure_sources
from squak_pipelines.config import Settings
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

_settings = Settings.from_env()
# dbt's profiles.yml reads its connection from these variables, always derived from this
# process's warehouse URL (values inherited from a parent process would point dbt elsewhere).
os.environ.update(_settings.dbt_env())
_project = dbt_project(_settings)
# The manifest is parsed only when missing or older than the project (with this environment's
# dbt), not on every load as DbtProject.prepare_if_dev would under `dagster dev` (whose `dbt`
# comes from PATH, absent in a shell without the venv).
ensure_manifest(_settings)


class LayerGroups(DagsterDbtTranslator):
    """Group dbt models in the UI by layer: warehouse_staging, _intermediate, _marts."""

    def get_group_name(self, dbt_resource_props):
        fqn = dbt_resource_props.get("fqn", [])
        return f"warehouse_{fqn[1]}" if len(fqn) > 2 else "warehouse"


@dbt_assets(pool=WAREHOUSE_POOL, manifest=_project.manifest_path, project=_project, name="squak_dbt_models",
            dagster_dbt_translator=LayerGroups())
def squak_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, squak: SquakResource):
    """Build and test the staging, intermediate and mart models (sources a stage has not
    written yet are created empty first)."""
    created = ensure_sources(squak.warehouse())
    if created:
        context.log.info(f"created empty source tables: {', '.join(created)}")
    yield from dbt.cli(["build"], context=context).stream()


dbt_job = dg.define_asset_job("warehouse_models_job", selection=dg.AssetSelection.assets(squak_dbt_models),
                              description="Build and test the dbt models.")

defs = dg.Definitions(
    assets=[squak_dbt_models],
    jobs=[dbt_job],
    resources={"dbt": DbtCliResource(project_dir=_project, profiles_dir=str(_project.profiles_dir),
                                     target=_settings.dbt_target, dbt_executable=dbt_executable())},
)
