"""Run a Great Expectations 1.x suite from `expectations/` on warehouse data.

On DuckDB the data is validated as a pandas DataFrame (GX cannot validate a DuckDB file
through SQLAlchemy); on PostgreSQL GX's own postgres data source validates the table in
place. An ephemeral context keeps GX's generated folders out of the repository.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from squak_pipelines.config import EXPECTATIONS_DIR
from squak_pipelines.warehouse import Warehouse, check_identifier


@dataclass(frozen=True)
class SuiteOutcome:
    """What a suite found, in a form a Dagster check or a CLI can report."""

    suite: str
    success: bool
    statistics: dict[str, Any]
    failures: list[dict[str, Any]] = field(default_factory=list)


def load_suite_definition(name: str, folder: Path = EXPECTATIONS_DIR) -> dict[str, Any]:
    path = folder / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite {name!r} at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def _context_and_suite(definition: dict[str, Any]):
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = ExpectationSuite(name=definition["name"], meta=definition.get("meta", {}))
    for exp in definition["expectations"]:
        suite.add_expectation_configuration(
            ExpectationConfiguration(type=exp["type"], kwargs=exp.get("kwargs", {}),
                                     meta=exp.get("meta", {})))
    return ctx, ctx.suites.add(suite)


def _outcome(name: str, result: Any) -> SuiteOutcome:
    failures = [
        {"expectation": r.expectation_config.type,
         "column": r.expectation_config.kwargs.get("column") or "/".join(
             str(r.expectation_config.kwargs.get(k)) for k in ("column_A", "column_B")),
         "unexpected_count": r.result.get("unexpected_count"),
         "examples": [str(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]],
         "observed": str(r.result.get("observed_value")) if "observed_value" in r.result else None}
        for r in result.results if not r.success
    ]
    return SuiteOutcome(suite=name, success=bool(result.success),
                        statistics=dict(result.statistics), failures=failures)


def validate_dataframe(name: str, frame: pd.DataFrame, folder: Path = EXPECTATIONS_DIR) -> SuiteOutcome:
    """Validate a DataFrame with the suite `expectations/<name>.json`."""
    return validate_frames(name, [frame], folder)


def validate_frames(name: str, frames: Iterable[pd.DataFrame],
                    folder: Path = EXPECTATIONS_DIR) -> SuiteOutcome:
    """Validate data too large for one DataFrame, a part at a time (each part's rows are held
    only while it is validated). An expectation fails when it fails on any part; its counts
    of unexpected values add up. (Row-to-row expectations, such as uniqueness, see one part:
    give each part the rows they compare, e.g. whole days.)"""
    import great_expectations as gx

    ctx, suite = _context_and_suite(load_suite_definition(name, folder))
    batch = (ctx.data_sources.add_pandas("frame").add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe("whole"))
    validation = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-validation", data=batch, suite=suite))
    outcomes = [_outcome(name, validation.run(batch_parameters={"dataframe": frame})) for frame in frames]
    return outcomes[0] if len(outcomes) == 1 else _combined(name, outcomes)


def _combined(name: str, outcomes: list[SuiteOutcome]) -> SuiteOutcome:
    """One outcome of a suite validated part by part."""
    failures: dict[tuple[str, str], dict[str, Any]] = {}
    for outcome in outcomes:
        for failure in outcome.failures:
            key = (failure["expectation"], failure["column"])
            if key not in failures:
                failures[key] = {**failure, "examples": list(failure["examples"])}
                continue
            merged = failures[key]
            if isinstance(failure["unexpected_count"], int):
                merged["unexpected_count"] = (merged["unexpected_count"] or 0) + failure["unexpected_count"]
            merged["examples"] = (merged["examples"] + failure["examples"])[:5]
    evaluated = max((o.statistics.get("evaluated_expectations", 0) for o in outcomes), default=0)
    statistics = {"evaluated_expectations": evaluated, "successful_expectations": evaluated - len(failures),
                  "unsuccessful_expectations": len(failures),
                  "success_percent": 100.0 * (evaluated - len(failures)) / evaluated if evaluated else 100.0,
                  "parts": len(outcomes)}
    return SuiteOutcome(suite=name, success=all(o.success for o in outcomes), statistics=statistics,
                        failures=list(failures.values()))


def validate_table(name: str, warehouse: Warehouse, table: str,
                   folder: Path = EXPECTATIONS_DIR) -> SuiteOutcome:
    """Validate a warehouse table: in place on PostgreSQL, as a DataFrame on DuckDB."""
    check_identifier(table)
    if warehouse.kind == "duckdb":
        return validate_dataframe(name, warehouse.query_df(f"select * from {table}"), folder)
    import great_expectations as gx

    schema, _, table_name = table.rpartition(".")
    ctx, suite = _context_and_suite(load_suite_definition(name, folder))
    url = warehouse.engine.url.render_as_string(hide_password=False)
    source = ctx.data_sources.add_postgres("warehouse", connection_string=url)
    batch = (source.add_table_asset(name, table_name=table_name, schema_name=schema or None)
             .add_batch_definition_whole_table("whole"))
    validation = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-validation", data=batch, suite=suite))
    return _outcome(name, validation.run())
