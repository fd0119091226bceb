"""Dagster resources: the one warehouse every asset uses, and Squak's folders."""


import os

import dagster as dg

from squak_pipelines.config import Settings
from squak_pipelines.migrations import migrate
from squak_pipelines.warehouse import Warehouse, open_warehouse


class SquakResource(dg.ConfigurableResource):
    """Squak's data directory and warehouse (DuckDB file by default, PostgreSQL by URL)."""

    data_dir: str
    warehouse_url: str

    @property
    def settings(self) -> Settings:
        return Settings.from_env({"SQUAK_DATA_DIR": self.data_dir,
                                  "SQUAK_WAREHOUSE_URL": self.warehouse_url})

    def warehouse(self) -> Warehouse:
        """The warehouse, migrated to the declared tables (a no-op query when up to date)."""
        warehouse = open_warehouse(self.settings)
        migrate(warehouse)
        return warehouse


def squak_resource(settings: Settings | None = None) -> SquakResource:
    """The resource for the environment; a PostgreSQL URL stays an env-var reference so the
    password never shows in the Dagster UI's resource config."""
    settings = settings or Settings.from_env()
    url: str | dg.EnvVar = settings.warehouse_url
    if os.environ.get("SQUAK_WAREHOUSE_URL"):
        url = dg.EnvVar("SQUAK_WAREHOUSE_URL")
    data_dir: str | dg.EnvVar = str(settings.data_dir)
    return SquakResource(data_dir=data_dir, warehouse_url=url)
