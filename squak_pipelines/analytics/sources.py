"""The tables dbt reads as sources, created empty when their stage has not run yet (a month
with no closed cycle, a warehouse before its first payment file), so the marts build on any
warehouse and simply show nothing for a stage with no data."""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.warehouse import Warehouse


def source_schemas() -> dict[str, pa.Schema]:
    """Every stage's tables with their Arrow schemas (the raw reference tables come from files
    and are loaded by the reference stage, which always runs first)."""
    from squak_pipelines.assurance.stage import TABLES as ASSURANCE
    from squak_pipelines.invoicing.credit_notes import CREDIT_TABLES
    from squak_pipelines.invoicing.stage import TABLES as INVOICING
    from squak_pipelines.mediation.stage import FILES_SCHEMA, TABLE_SCHEMAS
    from squak_pipelines.orders.tables import SCHEMAS as ORDERS
    from squak_pipelines.payments.stage import DERIVED
    from squak_pipelines.payments.stage import TABLES as PAYMENTS
    from squak_pipelines.rating.stage import TABLES as RATING

    return {
        **ORDERS,
        **TABLE_SCHEMAS,
        "mediation.files": FILES_SCHEMA,
        **RATING,
        **INVOICING,
        **CREDIT_TABLES,
        **PAYMENTS,
        **DERIVED,
        **ASSURANCE,
    }


def ensure_sources(warehouse: Warehouse) -> list[str]:
    """Create the missing source tables (empty); returns their names."""
    created = []
    with warehouse.session():
        for name, schema in source_schemas().items():
            if not warehouse.table_exists(name):
                warehouse.load(name, schema.empty_table(), mode="append")
                created.append(name)
    return created
