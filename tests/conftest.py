"""Shared fixtures: a small generated demo operator and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import GenerateOptions, generate
from squak_pipelines.warehouse import throwaway_postgres

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
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres(PG_ADMIN_URL, "squak_test"))
        except Exception as exc:
            _pg_unreachable(str(exc).splitlines()[0])
        yield url


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


@pytest.fixture(scope="session", params=["duckdb", "postgres"])
def billed_demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, demo):
    """The demo with its cost decks loaded, rated and October billed, once per session and
    warehouse, for tests that only read what was billed (explain, what-if)."""
    from squak_pipelines.invoicing.stage import bill_cycle
    from squak_pipelines.reference.files import load_cost_rates
    from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse
    from tests.stage_helpers import copy_demo, rated

    root = tmp_path_factory.mktemp(f"billed_{request.param}")
    settings = copy_demo(demo, root / "squak")
    with ExitStack() as stack:
        if request.param == "duckdb":
            warehouse = DuckDBWarehouse(root / "w.duckdb")
        else:
            warehouse = PostgresWarehouse(stack.enter_context(_throwaway_database()))
        with pytest.MonkeyPatch.context() as patch:  # for the billing only: never the session's
            patch.setenv("SQUAK_INVOICE_PDF", "off")
            patch.setenv("SQUAK_TODAY", "2026-11-01")
            rated(warehouse, settings)
            warehouse.load("raw.cost_rates", load_cost_rates(settings.reference_dir / "cost_rates.csv"))
            bill_cycle(warehouse, settings, "2026-10", finalize=True)
        yield warehouse, settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long end-to-end tests (`slow`) first, so the workers of `make test` share them
    instead of one worker finishing them alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
