"""Shared fixtures: a small generated demo operator and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import GenerateOptions, generate

# Every date rule reads Squak's clock: tests fix it, so none depends on the machine's date. The
# default is a day after the demo month (2026-10) and the month after it have ended.
TEST_TODAY = "2026-12-05"
PG_ADMIN_URL = os.environ.get("SQUAK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SMALL = GenerateOptions(customers=60, cdrs=8_000, seed=7)


def _pg_unreachable(reason: str) -> None:
    message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {reason}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + " (required under CI=true)")
    pytest.skip(message + " (start PostgreSQL or set SQUAK_TEST_PG_URL)")


@contextmanager
def _throwaway_database() -> Iterator[str]:
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as con:
            con.execute(sa.text("select 1"))
    except Exception as exc:
        _pg_unreachable(str(exc).splitlines()[0])
    name = f"squak_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as con:
        con.execute(sa.text(f'create database "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as con:
            con.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                                "where datname = :n and pid <> pg_backend_pid()"), {"n": name})
            con.execute(sa.text(f'drop database if exists "{name}"'))
        admin.dispose()


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> str:
    """SQUAK_TODAY for the test (a test that needs another day sets its own)."""
    monkeypatch.setenv("SQUAK_TODAY", TEST_TODAY)
    return TEST_TODAY


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a database shared by the session's light PostgreSQL tests."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """URL of a database of this test's own (for tests that keep state in the warehouse)."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    """A small demo data set (generated once per session; treat it as read-only)."""
    root = tmp_path_factory.mktemp("demo")
    settings = Settings.from_env({"SQUAK_DATA_DIR": str(root)})
    manifest = generate(settings, SMALL)
    return settings, manifest


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "squak"


@pytest.fixture(params=["duckdb", "postgres"])
def invoiced(request: pytest.FixtureRequest, tmp_path: Path, demo):
    """The demo rated and October billed (issued 1 Nov, due 16 Nov) on DuckDB and PostgreSQL; the
    clock then stands on 25 Nov."""
    from squak_pipelines.invoicing.stage import bill_cycle
    from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse
    from tests.stage_helpers import copy_demo, rated

    settings = copy_demo(demo, tmp_path / "squak")
    if request.param == "duckdb":
        warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    else:
        warehouse = PostgresWarehouse(request.getfixturevalue("fresh_pg_url"))
    rated(warehouse, settings)
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("SQUAK_INVOICE_PDF", "off")  # PDFs are tested with invoicing
    monkeypatch.setenv("SQUAK_TODAY", "2026-11-01")  # October billed on time: issued 1 Nov, due 16 Nov
    bill_cycle(warehouse, settings, "2026-10", finalize=True)
    monkeypatch.setenv("SQUAK_TODAY", "2026-11-25")  # customers have paid (or not) by the 25th
    return warehouse, settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long end-to-end tests (`slow`) first, so the workers of `make test` share them
    instead of one worker finishing them alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
