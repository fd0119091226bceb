"""A writable copy of the session's demo, taken through orders and mediation (and rating)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from squak_pipelines.config import Settings
from squak_pipelines.mediation.stage import mediate
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.rating.stage import rate_days
from squak_pipelines.warehouse import Warehouse


def copy_demo(demo, root: Path) -> Settings:
    """The demo's files in `root`, with a gate loose enough for its small month."""
    settings, _ = demo
    shutil.copytree(settings.data_dir, root, ignore=shutil.ignore_patterns("*.duckdb*", "dagster", "logs"))
    copy = Settings.from_env({"SQUAK_DATA_DIR": str(root)})
    rules = copy.reference_dir / "fraud_rules.yaml"
    rules.write_text(rules.read_text().replace("max_quarantine_share: 0.05", "max_quarantine_share: 0.9"))
    return copy


def mediated(warehouse: Warehouse, settings: Settings) -> list[date]:
    """Orders provisioned and every CDR day mediated; returns the days."""
    run_order_stage(warehouse, settings)
    return [date.fromisoformat(d) for d in mediate(warehouse, settings).days]


def rated(warehouse: Warehouse, settings: Settings) -> None:
    rate_days(warehouse, settings, mediated(warehouse, settings))
