"""The tables dbt reads as sources: every declared table exists (created empty by the
migrations when its stage has not run yet: a month with no closed cycle, a warehouse before its
first payment file), so the marts build on any warehouse and simply show nothing for it."""

from __future__ import annotations

from squak_pipelines.migrations import migrate
from squak_pipelines.warehouse import Warehouse


def ensure_sources(warehouse: Warehouse) -> list[str]:
    """Apply the pending migrations (creating missing tables); returns the migrations applied."""
    return migrate(warehouse)
