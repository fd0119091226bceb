"""The dbt documentation of the warehouse models (`squak docs`): one self-contained HTML page
(`dbt docs generate --static`) that opens from disk, and `dbt docs serve` on request."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from squak_pipelines.analytics.project import dbt_executable
from squak_pipelines.analytics.sources import ensure_sources
from squak_pipelines.config import DBT_PROJECT_DIR, Settings
from squak_pipelines.warehouse import open_warehouse


class DocsError(RuntimeError):
    """dbt could not document the project (its output says why)."""


def docs_dir(settings: Settings) -> Path:
    return settings.data_dir / "docs"


def _dbt(settings: Settings, *args: str) -> list[str]:
    return [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
            str(DBT_PROJECT_DIR), "--target", settings.dbt_target, "--target-path", str(docs_dir(settings))]


def generate_docs(settings: Settings) -> Path:
    """Write the docs of every model, source and test, with the warehouse's catalog; returns
    the static page."""
    ensure_sources(open_warehouse(settings))  # every source table exists, so the catalog lists it
    env = {**os.environ, **settings.dbt_env()}
    done = subprocess.run(_dbt(settings, "docs", "generate", "--static"), env=env, capture_output=True,
                          text=True, check=False)
    page = docs_dir(settings) / "static_index.html"
    if done.returncode != 0 or not page.exists():
        raise DocsError(f"dbt docs generate failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return page


def serve_docs(settings: Settings, port: int) -> int:
    """`dbt docs serve` on the generated docs (blocks until interrupted)."""
    env = {**os.environ, **settings.dbt_env()}
    return subprocess.call(_dbt(settings, "docs", "serve", "--port", str(port), "--no-browser"), env=env)
