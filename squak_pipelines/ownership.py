"""Who answers for each stage's assets (Dagster owners) and the tag that finds a stage's
assets in the UI's catalog (`squak/stage`). Team names are the roles of a telecom operator's
billing organisation; an operator maps them to its own teams here."""

from __future__ import annotations

import dagster as dg

OWNERS: dict[str, str] = {
    "reference": "team:billing-ops",
    "orders": "team:billing-ops",
    "capture": "team:mediation",
    "mediation": "team:mediation",
    "rating": "team:rating",
    "what_if": "team:pricing",
    "invoicing": "team:billing-ops",
    "payments": "team:finance",
    "assurance": "team:revenue-assurance",
    "reporting": "team:finance",
    "warehouse_staging": "team:analytics",
    "warehouse_intermediate": "team:analytics",
    "warehouse_marts": "team:analytics",
}
DEFAULT_OWNER = "team:billing-ops"


def owned(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The spec with its stage's owner and stage tag (owners set by hand are kept)."""
    stage = spec.group_name or "default"
    owners = list(spec.owners) or [OWNERS.get(stage, DEFAULT_OWNER)]
    return spec.replace_attributes(owners=owners, tags={**spec.tags, "squak/stage": stage})
