"""Dagster's home: local storage under the data directory, or dagster-postgres by env."""

from __future__ import annotations

import os
from pathlib import Path

from squak_pipelines.config import Settings
from squak_pipelines.scale_out import WAREHOUSE_POOL, pool_limit

DEPLOY_DIR = Path(__file__).parent / "deploy"
MANAGED_MARK = "# Managed by squak"


def prepare_dagster_home(settings: Settings) -> Path:
    """Create DAGSTER_HOME (default `<data dir>/dagster`) and its dagster.yaml.

    With SQUAK_DAGSTER_PG_URL set, run/event/schedule storage goes to PostgreSQL; without it
    Dagster keeps its default local storage. The warehouse pool's limit follows the warehouse
    (scale_out.pool_limit). A dagster.yaml written by hand is left alone.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text().startswith(MANAGED_MARK):
        target.write_text(instance_yaml(settings))
    os.environ["DAGSTER_HOME"] = str(home)
    _set_up_storage(home)
    return home


def _set_up_storage(home: Path) -> None:
    """Create Dagster's storage and the warehouse pool's limit now, in one process: runs that
    start together would race to create them (on PostgreSQL, Dagster's first use of a pool from
    two runs at once fails one of them on a unique key)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        # Only when missing: a limit set by hand (`dagster instance concurrency set`) stays.
        if WAREHOUSE_POOL not in storage.get_concurrency_keys():
            storage.initialize_concurrency_limit_to_default(WAREHOUSE_POOL)


DEV_MARK = "# Made by squak_pipelines.instance.dev_instance_yaml (a test keeps it so)"


def dev_instance_yaml(settings: Settings, home: str) -> str:
    """The repository's own `dagster.yaml`, read by `dagster dev -w workspace.yaml` started in its
    folder without DAGSTER_HOME: the managed instance of `instance_yaml`, with its storage at
    `home` (relative to that folder), so a new shell's UI shows the runs `make run` made."""
    body = instance_yaml(settings).split("\n", 1)[1]
    return (f"{DEV_MARK}.\n"
            "# What `dagster dev -w workspace.yaml` uses when started here without DAGSTER_HOME.\n"
            f"# Storage is `make run`'s Dagster home ({home}), so the UI shows its runs;\n"
            "# the rest is the embedded default's instance (squak_pipelines/deploy/dagster.local.yaml).\n"
            f"storage:\n  sqlite:\n    base_dir: {home}\n"
            "local_artifact_storage:\n  module: dagster._core.storage.root\n  class: LocalArtifactStorage\n"
            f"  config:\n    base_dir: {home}\n" + body)


def instance_yaml(settings: Settings) -> str:
    """The managed dagster.yaml for these settings."""
    template = "dagster.postgres.yaml" if settings.dagster_pg_url else "dagster.local.yaml"
    return (DEPLOY_DIR / template).read_text().replace("{pool_limit}", str(pool_limit(settings)))
