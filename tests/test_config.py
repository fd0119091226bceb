from pathlib import Path

import pytest

from squak_pipelines.config import Settings, parse_postgres_url


def test_embedded_default_is_duckdb_under_one_data_dir(tmp_path: Path) -> None:
    s = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path)})
    assert s.warehouse_kind == "duckdb"
    assert s.duckdb_path == tmp_path / "warehouse.duckdb"
    assert s.dagster_home == tmp_path / "dagster"
    assert s.cdr_drop_dir == tmp_path / "drop" / "cdr"
    assert s.dbt_env() == {"SQUAK_DBT_TARGET": "duckdb",
                           "SQUAK_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb")}


def test_postgres_chosen_by_url_and_dbt_env_derived(tmp_path: Path) -> None:
    s = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path),
                           "SQUAK_WAREHOUSE_URL": "postgresql://bill:s%40cret@db.local:6543/squak"})
    assert s.warehouse_kind == "postgres"
    env = s.dbt_env()
    assert env["SQUAK_DBT_TARGET"] == "postgres"
    assert (env["SQUAK_PG_HOST"], env["SQUAK_PG_PORT"], env["SQUAK_PG_USER"]) == ("db.local", "6543", "bill")
    assert env["SQUAK_PG_PASSWORD"] == "s@cret"
    assert env["SQUAK_PG_DBNAME"] == "squak"
    with pytest.raises(ValueError):
        _ = s.duckdb_path


def test_bad_warehouse_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SQUAK_WAREHOUSE_URL"):
        Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path), "SQUAK_WAREHOUSE_URL": "mysql://x/y"})
    with pytest.raises(ValueError, match="names no database"):
        parse_postgres_url("postgresql://localhost")
