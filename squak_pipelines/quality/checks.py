"""Dagster wrapper: a Great Expectations suite as an asset check."""


import dagster as dg

from squak_pipelines.quality.gx_suites import validate_table
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL


def gx_suite_check(asset_key: dg.AssetKey, table: str, suite: str, *, blocking: bool = True,
                   description: str | None = None) -> dg.AssetChecksDefinition:
    """An asset check that runs `expectations/<suite>.json` on `table`."""

    @dg.asset_check(pool=WAREHOUSE_POOL, asset=asset_key, name=f"gx_{suite}", blocking=blocking,
                    description=description or f"Great Expectations suite `{suite}` on {table}")
    def _check(squak: SquakResource) -> dg.AssetCheckResult:
        outcome = validate_table(suite, squak.warehouse(), table)
        stats = outcome.statistics
        return dg.AssetCheckResult(
            passed=outcome.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "suite": suite,
                "evaluated_expectations": stats.get("evaluated_expectations", 0),
                "successful_expectations": stats.get("successful_expectations", 0),
                "unsuccessful_expectations": stats.get("unsuccessful_expectations", 0),
                "success_percent": float(stats.get("success_percent") or 0.0),
                "failures": dg.MetadataValue.json(outcome.failures),
            },
        )

    return _check
