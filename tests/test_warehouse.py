from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse, pg_type


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBWarehouse(tmp_path / "w.duckdb")
    return PostgresWarehouse(request.getfixturevalue("pg_url"))


def _sample() -> pa.Table:
    return pa.table({
        "name": ['Smith, Jones & Co', 'He said "hi"', "", None, "Zoë Müller"],
        "qty": pa.array([1, 2, None, 4, 5], pa.int64()),
        "amount": pa.array([Decimal("19.99"), Decimal("0.000001"), None, Decimal("-2.5"),
                            Decimal("123456789012.123456")], pa.decimal128(18, 6)),
        "at": pa.array([datetime(2026, 10, 3, 14, 0, tzinfo=UTC), None,
                        datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC),
                        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                        datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "ok": [True, False, None, True, False],
    })


def test_bulk_load_round_trips_exactly(warehouse: Warehouse) -> None:
    assert warehouse.load("scratch.sample", _sample()) == 5
    back = warehouse.query_arrow("select * from scratch.sample order by qty nulls last")
    rows = back.to_pylist()
    assert [r["name"] for r in rows] == ['Smith, Jones & Co', 'He said "hi"', None, "Zoë Müller", ""]
    amounts = [r["amount"] for r in rows]
    assert amounts[0] == Decimal("19.99") and amounts[1] == Decimal("0.000001")
    assert amounts[4] is None and amounts[3] == Decimal("123456789012.123456")
    assert pa.types.is_decimal(back.schema.field("amount").type), "money must never come back as float"
    assert rows[0]["at"] == datetime(2026, 10, 3, 14, 0, tzinfo=UTC)
    assert rows[2]["ok"] is True


def test_append_and_replace(warehouse: Warehouse) -> None:
    warehouse.load("scratch.sample", _sample())
    warehouse.load("scratch.sample", _sample(), mode="append")
    assert warehouse.count("scratch.sample") == 10
    warehouse.load("scratch.sample", _sample().slice(0, 2))
    assert warehouse.count("scratch.sample") == 2
    assert warehouse.table_exists("scratch.sample") and not warehouse.table_exists("raw.nothing")


def test_named_parameters_are_bound_not_interpolated(warehouse: Warehouse) -> None:
    warehouse.load("scratch.sample", _sample())
    hostile = "x'; drop table scratch.sample; --"
    assert warehouse.query_df("select count(*) as n from scratch.sample where name = :n",
                              {"n": hostile})["n"][0] == 0
    assert warehouse.scalar("select qty from scratch.sample where name = :n", {"n": 'He said "hi"'}) == 2
    assert warehouse.table_exists("scratch.sample")


def test_identifiers_are_checked(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="identifier"):
        warehouse.load("scratch.sample; drop table x", _sample())


def test_empty_result_keeps_types(warehouse: Warehouse) -> None:
    warehouse.load("scratch.sample", _sample())
    empty = warehouse.query_arrow("select amount, qty from scratch.sample where false")
    assert empty.num_rows == 0
    assert pa.types.is_decimal(empty.schema.field("amount").type)


def test_pg_type_mapping_keeps_money_numeric() -> None:
    assert pg_type(pa.decimal128(18, 6)) == "numeric(18,6)"
    assert pg_type(pa.timestamp("us", tz="UTC")) == "timestamptz"
    with pytest.raises(TypeError):
        pg_type(pa.list_(pa.int64()))


@pytest.mark.postgres
def test_a_large_postgres_load_refreshes_the_planner_statistics(pg_url: str, monkeypatch) -> None:
    import squak_pipelines.warehouse as warehouse_module

    warehouse = PostgresWarehouse(pg_url)
    monkeypatch.setattr(warehouse_module, "ANALYZE_FROM_ROWS", 1_000)
    rows = pa.table({"n": pa.array(range(5_000), pa.int64())})
    warehouse.load("scratch.analyzed", rows)
    estimate = warehouse.scalar("select reltuples from pg_class where oid = 'scratch.analyzed'::regclass")
    assert estimate == 5_000, "the planner knows the table's size right after the load"
    warehouse.load("scratch.small", rows.slice(0, 10))
    assert warehouse.scalar("select reltuples from pg_class where oid = 'scratch.small'::regclass") == -1


BULK_CRASH = """
import os, sys
import pyarrow as pa
from squak_pipelines.warehouse import DuckDBWarehouse
warehouse = DuckDBWarehouse(sys.argv[1])
with warehouse.bulk_session():
    for day in range(3):
        with warehouse.transaction():
            warehouse.load("scratch.days", pa.table({"day": [day] * 200_000}), mode="append")
    os._exit(9)  # killed before the session's checkpoint
"""


def test_a_bulk_session_keeps_every_commit_through_a_crash(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "w.duckdb"
    result = subprocess.run([sys.executable, "-c", BULK_CRASH, str(path)], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    assert path.with_name("w.duckdb.wal").stat().st_size > 0, "the commits went to the write-ahead log"
    warehouse = DuckDBWarehouse(path)
    assert warehouse.scalar("select count(*) from scratch.days") == 600_000, "replayed when reopened"
    with warehouse.bulk_session():
        warehouse.load("scratch.days", pa.table({"day": [3]}), mode="append")
    assert not path.with_name("w.duckdb.wal").exists() or path.with_name("w.duckdb.wal").stat().st_size == 0
    assert warehouse.scalar("select count(distinct day) from scratch.days") == 4
