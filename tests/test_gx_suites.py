import pandas as pd

from squak_pipelines.quality.gx_suites import validate_dataframe, validate_frames, validate_table
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse


def _files(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame({
        "switch_id": ["ast-nyc1", "fs-chi1"], "format": ["asterisk", "freeswitch"],
        "relative_path": ["ast-nyc1/a.csv", "fs-chi1/b.csv.gz"], "bytes": [10, 20],
        "sha256": ["a" * 64, "b" * 64], "compressed": [False, True], "records": [3, 4],
    })
    for column, values in overrides.items():
        frame[column] = values
    return frame


def test_suite_passes_on_good_data() -> None:
    outcome = validate_dataframe("cdr_drop_files", _files())
    assert outcome.success
    assert outcome.statistics["evaluated_expectations"] == 7
    assert outcome.failures == []


def test_suite_reports_what_failed() -> None:
    outcome = validate_dataframe("cdr_drop_files",
                                 _files(format=["asterisk", "cisco"], sha256=["a" * 64, "nothex"]))
    assert not outcome.success
    failed = {(f["expectation"], f["column"]) for f in outcome.failures}
    assert failed == {("expect_column_values_to_be_in_set", "format"),
                      ("expect_column_values_to_match_regex", "sha256")}
    assert outcome.statistics["unsuccessful_expectations"] == 2


def test_a_suite_validated_part_by_part_adds_up_its_parts() -> None:
    """Large data is validated a part at a time: a failure in any part fails the suite, with the
    unexpected values of every part counted."""
    good = _files()
    bad = _files(format=["cisco", "cisco"])
    worse = _files(format=["avaya", "asterisk"], sha256=["a" * 64, "nothex"])
    assert validate_frames("cdr_drop_files", [good, good]).success
    outcome = validate_frames("cdr_drop_files", [good, bad, worse])
    assert not outcome.success and outcome.statistics["parts"] == 3
    by_column = {f["column"]: f for f in outcome.failures}
    assert by_column["format"]["unexpected_count"] == 3
    assert sorted(by_column["format"]["examples"]) == ["avaya", "cisco", "cisco"]
    assert by_column["sha256"]["unexpected_count"] == 1
    assert outcome.statistics["unsuccessful_expectations"] == 2
    assert outcome.statistics["evaluated_expectations"] == 7


def test_validate_table_on_duckdb(tmp_path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    warehouse.load("raw.cdr_drop_files", _files())
    assert validate_table("cdr_drop_files", warehouse, "raw.cdr_drop_files").success


def test_validate_table_in_place_on_postgres(pg_url: str) -> None:
    warehouse = PostgresWarehouse(pg_url)
    warehouse.load("scratch.gx_files", _files(records=[3, -1]))
    outcome = validate_table("cdr_drop_files", warehouse, "scratch.gx_files")
    assert not outcome.success
    assert [f["column"] for f in outcome.failures] == ["records"]
