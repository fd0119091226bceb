"""Dagster wrappers for the order stage: order and inventory tables, and their checks."""

import dagster as dg

from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL

GROUP = "orders"
TABLES = {
    "order_lines": "Every order line received, with status accepted/rejected and reason.",
    "validated_order_lines": "Order lines that passed validation and provisioning.",
    "rejections": "Rejected orders and accounts: file, line, field, reason code, message and "
                  "the record (card numbers redacted).",
    "accounts": "Customer accounts with billing info (token, brand, last four, expiry only).",
    "services": "Service periods: account, product, plan, number, features, active_from/to.",
    "number_inventory": "Every number with its status (available, assigned, quarantine).",
    "order_status_history": "Each order line's status changes with time and detail.",
}


@dg.multi_asset(pool=WAREHOUSE_POOL,
    specs=[dg.AssetSpec(["orders", name], description=text, group_name=GROUP, kinds={"python"},
                        deps=[dg.AssetKey(["raw", "products"])])
           for name, text in TABLES.items()],
    can_subset=False,
)
def order_stage(context: dg.AssetExecutionContext, squak: SquakResource):
    """Read new order drops, validate, allocate numbers, activate and update the inventory."""
    warehouse = squak.warehouse()
    result = run_order_stage(warehouse, squak.settings)
    context.log.info(f"processed {result.files_processed}, skipped {result.files_skipped}")
    counts = {name: warehouse.count(f"orders.{name}") for name in TABLES}
    status = warehouse.query_df("select status, count(*) as n from orders.order_lines group by status")
    reasons = warehouse.query_df("select reason, count(*) as n from orders.rejections group by reason")
    summary = {
        "files_processed_this_run": len(result.files_processed),
        "lines_received_this_run": result.lines_received,
        "order_lines_by_status": dg.MetadataValue.json(
            {str(k): int(v) for k, v in zip(status["status"], status["n"], strict=True)}),
        "rejected_by_reason": dg.MetadataValue.json(
            {str(k): int(v) for k, v in zip(reasons["reason"], reasons["n"], strict=True)}),
        "services_active": result.services_active, "numbers_assigned": result.numbers_assigned,
    }
    for name in TABLES:
        yield dg.MaterializeResult(asset_key=["orders", name],
                                   metadata={"dagster/row_count": counts[name], **summary})


@dg.asset_check(pool=WAREHOUSE_POOL, asset=dg.AssetKey(["orders", "services"]), blocking=True,
                description="No number is held by two services at the same moment.")
def no_number_assigned_twice(squak: SquakResource) -> dg.AssetCheckResult:
    overlaps = squak.warehouse().query_df("""
        select a.number, a.service_id as first_service, b.service_id as second_service
        from orders.services a join orders.services b
          on a.number = b.number and (a.service_id < b.service_id)
         and a.active_from < coalesce(b.active_to, timestamp '9999-12-31')
         and b.active_from < coalesce(a.active_to, timestamp '9999-12-31')
        where a.number is not null
        limit 50""")
    return dg.AssetCheckResult(passed=overlaps.empty, metadata={
        "overlaps": len(overlaps),
        "examples": dg.MetadataValue.json(overlaps.astype(str).to_dict("records"))})


@dg.asset_check(pool=WAREHOUSE_POOL, asset=dg.AssetKey(["orders", "services"]), blocking=True,
                description="Every active service has a plan and its account a usable payment method.")
def active_services_billable(squak: SquakResource) -> dg.AssetCheckResult:
    bad = squak.warehouse().query_df("""
        select s.service_id, s.account_id, s.plan_id, a.payment_method, a.billing_issue
        from orders.services s left join orders.accounts a on a.account_id = s.account_id
        where s.active_to is null
          and (s.plan_id is null or s.plan_id = '' or a.account_id is null
               or a.payment_method is null or a.payment_method = '' or a.billing_issue is not null)
        limit 50""")
    return dg.AssetCheckResult(passed=bad.empty, metadata={
        "unbillable_services": len(bad),
        "examples": dg.MetadataValue.json(bad.astype(str).to_dict("records"))})


orders_job = dg.define_asset_job("orders_job", selection=dg.AssetSelection.groups(GROUP),
                                 description="Process order drops into accounts, services and inventory.")

defs = dg.Definitions(assets=[order_stage], asset_checks=[no_number_assigned_twice, active_services_billable],
                      jobs=[orders_job])
