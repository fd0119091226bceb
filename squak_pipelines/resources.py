"""Dagster resources: the one warehouse every asset uses, and Squak's folders."""


import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from squak_pipelines.config import Settings
from squak_pipelines.migrations import migrate
from squak_pipelines.warehouse import Warehouse, open_warehouse

TURN_TAKEN = "warehouse turn taken"
TURN_RELEASED = "warehouse turn released"


class SquakResource(dg.ConfigurableResource):
    """Squak's data directory and warehouse (DuckDB file by default, PostgreSQL by URL)."""

    data_dir: str
    warehouse_url: str

    @property
    def settings(self) -> Settings:
        return Settings.from_env({"SQUAK_DATA_DIR": self.data_dir,
                                  "SQUAK_WAREHOUSE_URL": self.warehouse_url})

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["SquakResource"]:
        """A run's step holds the warehouse's turn from its start to its end (DuckDB: one
        process at a time on the file, also where Dagster's pool let two steps through at
        once). Sensors and schedules only read, briefly, and never wait for a turn."""
        log = context.log
        if context.dagster_run is None or log is None:
            yield self
            return
        with open_warehouse(self.settings).turn(waiting=log.info) as waited:
            log.info(f"{TURN_TAKEN} after {waited:.1f} s")
            try:
                yield self
            finally:
                log.info(TURN_RELEASED)

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
