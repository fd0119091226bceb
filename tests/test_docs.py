"""`squak docs`: the dbt docs as one page that opens from disk, and every mart column
documented in it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from squak_pipelines.analytics.docs import docs_dir, generate_docs
from squak_pipelines.analytics.project import dbt_executable
from squak_pipelines.analytics.sources import ensure_sources
from squak_pipelines.config import DBT_PROJECT_DIR, Settings
from squak_pipelines.warehouse import open_warehouse


def test_the_docs_open_from_disk_with_every_mart_column_documented(tmp_path: Path) -> None:
    settings = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path / "squak")})
    ensure_sources(open_warehouse(settings))
    built = subprocess.run(
        [dbt_executable(), "run", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
         str(DBT_PROJECT_DIR), "--target", settings.dbt_target, "--target-path", str(tmp_path / "target"),
         "--quiet"],
        env={**os.environ, **settings.dbt_env()}, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:]
    page = generate_docs(settings)
    assert page.stat().st_size > 500_000 and "what_if_impact" in page.read_text(encoding="utf-8")
    catalog = json.loads((docs_dir(settings) / "catalog.json").read_text())
    manifest = json.loads((docs_dir(settings) / "manifest.json").read_text())
    marts = {n["unique_id"]: n for n in manifest["nodes"].values()
             if n["resource_type"] == "model" and n["schema"] == "marts"}
    assert len(marts) >= 15
    undocumented = []
    for uid, node in marts.items():
        documented = {name for name, col in node["columns"].items() if col.get("description")}
        columns = catalog["nodes"][uid]["columns"]
        undocumented += [f"{node['name']}.{c}" for c in columns if c not in documented]
    assert not undocumented, undocumented
