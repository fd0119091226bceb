"""`squak doctor`: is this installation ready to bill? Each check says what is wrong and the fix.

Checks: settings and data directory, the warehouse (reachable, not locked, migrations applied,
tables as declared), Dagster's storage, the dbt project and manifest, the Great Expectations
suites, the drop folders, the PDF renderer, Chromium (dashboard images) and, when
`SQUAK_SMTP_HOST` is set, the mail server. Nothing here writes to the warehouse.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from squak_pipelines.config import DBT_PROJECT_DIR, EXPECTATIONS_DIR, Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_data_directory(settings: Settings) -> Check:
    """The data directory exists, is writable and holds the operator's reference files."""
    data = settings.data_dir
    if not data.is_dir():
        return Check(
            "data directory",
            False,
            f"{data} does not exist",
            "run `squak generate` (demo) or create it with the operator's reference files",
        )
    if not os.access(data, os.W_OK):
        return Check("data directory", False, f"{data} is not writable", f"chmod u+w {data}")
    missing = [
        n
        for n in ("products.csv", "switches.csv", "tax_rates.csv", "operator.yaml")
        if not (settings.reference_dir / n).exists()
    ]
    if missing:
        return Check(
            "data directory",
            False,
            f"reference files missing in {settings.reference_dir}: {', '.join(missing)}",
            "run `squak generate` or add the operator's reference files",
        )
    from squak_pipelines.operator_identity import OperatorFileError, load_operator

    try:
        load_operator(settings.reference_dir)
    except OperatorFileError as exc:
        return Check("data directory", False, str(exc), "fix reference/operator.yaml (README: the operator's "
                     "identity)")
    return Check("data directory", True, f"{data} ({settings.warehouse_kind} warehouse)")


def _warehouse(settings: Settings) -> list[Check]:
    from squak_pipelines.migrations import LATEST, drift, pending
    from squak_pipelines.operator_errors import explain
    from squak_pipelines.warehouse import open_warehouse

    if settings.warehouse_kind == "duckdb" and not settings.duckdb_path.exists():
        return [Check("warehouse", False, f"no warehouse file yet at {settings.duckdb_path}",
                      "run the pipeline (`squak run`, or `make run` for the demo)")]
    warehouse = open_warehouse(settings)
    try:
        warehouse.scalar("select 1")
    except Exception as exc:  # reachability is what this check is about
        return [
            Check(
                "warehouse",
                False,
                explain(exc) or f"{type(exc).__name__}: {exc}".splitlines()[0],
                "",
            )
        ]
    checks = [Check("warehouse", True, f"{warehouse.kind} reachable")]
    missing = pending(warehouse)
    if missing:
        names = ", ".join(f"{m.version:04d} {m.name}" for m in missing)
        checks.append(
            Check(
                "migrations",
                False,
                f"not applied: {names}",
                "run `squak migrate` (any stage also applies them before it writes)",
            )
        )
        return checks
    problems = drift(warehouse)
    checks.append(
        Check(
            "migrations",
            not problems,
            f"all {LATEST} applied" + (f"; tables differ: {'; '.join(problems[:5])}" if problems else ""),
            "" if not problems else "a table was changed by hand: restore it or migrate a copy",
        )
    )
    return checks


def _dagster(settings: Settings) -> Check:
    if settings.dagster_pg_url:
        try:
            import sqlalchemy as sa

            with sa.create_engine(
                settings.dagster_pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
            ).connect() as con:
                con.execute(sa.text("select 1"))
        except Exception as exc:
            return Check(
                "dagster storage",
                False,
                f"PostgreSQL at SQUAK_DAGSTER_PG_URL unreachable: {str(exc).splitlines()[0]}",
                "start PostgreSQL or fix SQUAK_DAGSTER_PG_URL",
            )
        return Check("dagster storage", True, "PostgreSQL (dagster-postgres)")
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    if home.exists() and not os.access(home, os.W_OK):
        return Check("dagster storage", False, f"{home} is not writable", f"chmod u+w {home}")
    return Check("dagster storage", True, f"local storage in {home}")


def _dbt() -> Check:
    project = DBT_PROJECT_DIR / "dbt_project.yml"
    if not project.exists():
        return Check("dbt project", False, f"{project} is missing", "reinstall squak-billing")
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    if not manifest.exists():
        return Check("dbt project", True, f"{DBT_PROJECT_DIR} (manifest built on first use)")
    try:
        nodes = len(json.loads(manifest.read_text(encoding="utf-8")).get("nodes", {}))
    except (OSError, ValueError) as exc:
        return Check(
            "dbt project", False, f"{manifest} unreadable: {exc}", f"delete {manifest}; it is rebuilt"
        )
    return Check("dbt project", True, f"{DBT_PROJECT_DIR}, manifest with {nodes} nodes")


def _suites() -> Check:
    from squak_pipelines.quality.gx_suites import load_suite_definition

    names = sorted(p.stem for p in EXPECTATIONS_DIR.glob("*.json"))
    if not names:
        return Check(
            "expectation suites", False, f"no suites in {EXPECTATIONS_DIR}", "reinstall squak-billing"
        )
    for name in names:
        try:
            definition = load_suite_definition(name)
            assert definition.get("expectations"), "no expectations"
        except Exception as exc:
            return Check(
                "expectation suites", False, f"{name}.json: {exc}", f"fix {EXPECTATIONS_DIR / name}.json"
            )
    return Check("expectation suites", True, f"{len(names)} suites ({', '.join(names)})")


def _drop_folders(settings: Settings) -> Check:
    bad = []
    for folder in (settings.cdr_drop_dir, settings.orders_drop_dir, settings.payments_drop_dir):
        if folder.exists() and not (os.access(folder, os.R_OK | os.W_OK | os.X_OK)):
            bad.append(str(folder))
    if bad:
        return Check(
            "drop folders",
            False,
            f"not readable and writable: {', '.join(bad)}",
            "give the squak user read/write access (files are moved and recorded there)",
        )
    return Check("drop folders", True, f"{settings.drop_dir}")


def _pdf() -> Check:
    try:
        from squak_pipelines.invoicing.pdf import render_pdf

        data = render_pdf("<p>squak doctor</p>", date(2026, 1, 1), "doctor")
    except Exception as exc:
        return Check(
            "PDF renderer",
            False,
            f"WeasyPrint cannot render: {str(exc).splitlines()[0]}",
            "install Pango and HarfBuzz (make installs libpango-1.0-0 libpangoft2-1.0-0 "
            "libharfbuzz-subset0), or set SQUAK_INVOICE_PDF=off to send HTML only",
        )
    return Check("PDF renderer", data.startswith(b"%PDF-"), f"WeasyPrint ({len(data):,} bytes test page)")


def _chromium() -> Check:
    from squak_pipelines.assurance.images import images_wanted

    if not images_wanted():
        return Check("Chromium", True, "not needed (SQUAK_DASHBOARD_IMAGES=off)")
    found = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    if not found:
        return Check(
            "Chromium",
            False,
            "no chromium on PATH (dashboard images in the Dagster UI need it)",
            "apt-get install chromium (make does it when run as root)",
        )
    return Check("Chromium", True, found)


def _smtp() -> Check | None:
    host = os.environ.get("SQUAK_SMTP_HOST")
    if not host:
        return None
    port = int(os.environ.get("SQUAK_SMTP_PORT", "25"))
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        return Check(
            "SMTP", False, f"{host}:{port} unreachable ({exc})", "fix SQUAK_SMTP_HOST/SQUAK_SMTP_PORT"
        )
    return Check("SMTP", True, f"{host}:{port} reachable")


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; a failing one does not stop the others."""
    steps: list[Callable[[], Check | list[Check] | None]] = [
        lambda: check_data_directory(settings),
        lambda: _warehouse(settings),
        lambda: _dagster(settings),
        _dbt,
        _suites,
        lambda: _drop_folders(settings),
        _pdf,
        _chromium,
        _smtp,
    ]
    checks: list[Check] = []
    for step in steps:
        try:
            result = step()
        except Exception as exc:  # a check that breaks is a failed check, not a traceback
            result = Check(
                getattr(step, "__name__", "check").strip("_<>"), False, f"{type(exc).__name__}: {exc}"
            )
        if result is None:
            continue
        checks.extend(result if isinstance(result, list) else [result])
    return checks
