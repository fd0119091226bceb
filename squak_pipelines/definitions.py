"""Squak Billing's Dagster definitions: composes each stage's `defs` and shared resources."""

import dagster as dg

from squak_pipelines.analytics import defs as analytics
from squak_pipelines.assurance import defs as assurance
from squak_pipelines.capture import defs as capture
from squak_pipelines.invoicing import defs as invoicing
from squak_pipelines.mediation import defs as mediation
from squak_pipelines.orders import defs as orders
from squak_pipelines.ownership import owned
from squak_pipelines.payments import defs as payments
from squak_pipelines.rating import defs as rating
from squak_pipelines.reference import defs as reference
from squak_pipelines.resources import squak_resource
from squak_pipelines.scale_out import executor

# Daily stages in one job; invoices have monthly partitions and close in `invoicing_job`, and
# payments follow the files customers' money arrives in (`payments_job`); the revenue-assurance
# controls audit a closed cycle (`assurance_job`) and the finance report follows the marts.
billing_cycle_job = dg.define_asset_job(
    "billing_cycle_job",
    selection=dg.AssetSelection.all()
    - dg.AssetSelection.groups("invoicing", "payments", "assurance", "reporting", "what_if"),
    description="The daily billing pipeline, stage after stage (invoices: invoicing_job).")

defs = dg.Definitions.merge(
    reference.defs,
    orders.defs,
    capture.defs,
    mediation.defs,
    rating.defs,
    invoicing.defs,
    payments.defs,
    assurance.defs,
    analytics.defs,
    dg.Definitions(jobs=[billing_cycle_job], resources={"squak": squak_resource()}, executor=executor()),
).map_asset_specs(func=owned)  # every stage's owner and `squak/stage` tag (ownership.py)
