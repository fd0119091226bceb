"""A writable copy of the session's demo, taken through orders and mediation (and rating)."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

from squak_pipelines.config import Settings
from squak_pipelines.mediation.stage import mediate
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.rating.stage import rate_days
from squak_pipelines.schema import registry
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


# Columns that carry the wall-clock time of the run (the clock's date with the real time).
RUN_TIME = {"finalized_at", "updated_at", "recorded_at", "run_at", "created_at", "decided_at", "assigned_at",
            "rated_at"}
RUN_TIME_OF = {"payments.files": {"received_at"}, "payments.duplicates": {"received_at"},
               "invoicing.deliveries": {"detail"}}


def _plain(value: object) -> object:
    """One spelling of a value on either backend (UTC ISO times)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def table_rows(warehouse: Warehouse, name: str) -> list[dict[str, object]]:
    """A declared table's rows without the run's wall-clock times, in one spelling on either
    backend."""
    cols = [c for c in registry()[name].columns.names if c not in RUN_TIME | RUN_TIME_OF.get(name, set())]
    quoted = ", ".join(f'"{c}"' for c in cols)
    rows = warehouse.query_arrow(f"select {quoted} from {name}").to_pylist()
    return [{k: _plain(v) for k, v in r.items()} for r in rows]


def snapshot(warehouse: Warehouse, data_dir: Path, schemas: tuple[str, ...] = ()) -> dict[str, object]:
    """Every table's rows (of `schemas`, else all, and the document folders) without the run's
    wall-clock times, in one spelling on either backend, sorted."""
    out: dict[str, object] = {}
    for name in registry():
        if schemas and name.split(".")[0] not in schemas:
            continue
        out[name] = sorted(repr(row).replace(str(data_dir), "<data>") for row in table_rows(warehouse, name))
    if schemas:
        return out
    for folder in ("invoices", "outbox", "outgoing", "portal", "dunning", "print"):
        root = data_dir / folder
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        out[folder] = {str(p.relative_to(data_dir)): p.read_bytes().replace(str(data_dir).encode(), b"<data>")
                       for p in files}
    return out
