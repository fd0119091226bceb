"""Dagster wrappers for the dbt project: every model an asset, every dbt test a check."""


import os

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from squak_pipelines.analytics.project import dbt_executable, dbt_project, ensure_manifest
from squak_pipelines.config import Settings

_settings = Settings.from_env()
# dbt's profiles.yml reads its connection from these variables (derived from the URL).
for _key, _value in _settings.dbt_env().items():
    os.environ.setdefault(_key, _value)
_project = dbt_project(_settings)
_project.prepare_if_dev()
ensure_manifest(_settings)


@dbt_assets(manifest=_project.manifest_path, project=_project, name="squak_dbt_models")
def squak_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Build and test the staging, intermediate and mart models."""
    yield from dbt.cli(["build"], context=context).stream()


dbt_job = dg.define_asset_job("warehouse_models_job", selection=dg.AssetSelection.assets(squak_dbt_models),
                              description="Build and test the dbt models.")

defs = dg.Definitions(
    assets=[squak_dbt_models],
    jobs=[dbt_job],
    resources={"dbt": DbtCliResource(project_dir=_project, profiles_dir=str(_project.profiles_dir),
                                     target=_settings.dbt_target, dbt_executable=dbt_executable())},
)
