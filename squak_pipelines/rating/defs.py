"""Dagster wrappers for rating: day-partitioned rated events and suspense, their checks, and
a sensor that re-rates suspense when orders or plans change."""

import hashlib
import json
from datetime import date

import dagster as dg
from pydantic import Field

from squak_pipelines.mediation.defs import DAILY
from squak_pipelines.rating.stage import load_rating_checks, rate_days, suspense_days, unbilled_days
from squak_pipelines.reference.versions import rules_version
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import IN_DAY_ORDER_TAG, WAREHOUSE_POOL

GROUP = "rating"
RATED = dg.AssetKey(["rating", "rated_events"])
SUSPENSE = dg.AssetKey(["rating", "suspense"])
PRICES = [dg.AssetKey(["reference", "rate_plans"]), dg.AssetKey(["reference", "rate_decks"])]
RATING_INPUTS = [dg.AssetKey(["mediation", "events"]), dg.AssetKey(["orders", "services"]),
                 dg.AssetKey(["orders", "accounts"]), *PRICES]


@dg.multi_asset(pool=WAREHOUSE_POOL,
    specs=[
        dg.AssetSpec(RATED, group_name=GROUP, kinds={"python", "duckdb"},
                     deps=RATING_INPUTS,
                     description="Every billable event priced for its account and plan, with the "
                                 "breakdown: prefix, destination, band, deck row and date, charged "
                                 "seconds, allowance, connect fee, rate, discount, final charge."),
        dg.AssetSpec(SUSPENSE, group_name=GROUP, kinds={"python", "duckdb"},
                     deps=RATING_INPUTS,
                     description="Events that could not be rated (unknown_account, no_plan, no_rate), "
                                 "kept with the reason and re-rated when the order or rate arrives."),
    ],
    check_specs=[
        dg.AssetCheckSpec("nothing_lost", asset=RATED, blocking=True,
                          description="Every mediated event of a rated day is rated or in suspense."),
        dg.AssetCheckSpec("no_negative_charges", asset=RATED, blocking=True,
                          description="No charge, discount or final charge is negative."),
        dg.AssetCheckSpec("zero_priced_share", asset=RATED,
                          description="Answered calls priced at zero outside allowances and "
                                      "emergency calls stay within the configured share."),
        dg.AssetCheckSpec("mediation_gate", asset=RATED,
                          description="No day of the run was blocked by the mediation fraud gate."),
    ],
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def rated_events(context: dg.AssetExecutionContext, squak: SquakResource):
    """Rate the mediated events of the run's days (replacing earlier results of those days)."""
    days = [date.fromisoformat(k) for k in context.partition_keys]
    warehouse = squak.warehouse()
    report = rate_days(warehouse, squak.settings, days)
    metadata = {
        "events": report.events,
        "rated": report.rated,
        "suspense_by_reason": dg.MetadataValue.json(report.suspense),
        "revenue_by_currency": dg.MetadataValue.json(report.revenue_by_currency),
        "revenue_by_service_and_call_type": dg.MetadataValue.json(report.revenue),
        "blocked_days": dg.MetadataValue.json(report.blocked_days),
    }
    yield dg.MaterializeResult(asset_key=RATED, metadata={**metadata, "dagster/row_count": report.rated})
    yield dg.MaterializeResult(asset_key=SUSPENSE, metadata=metadata)
    span = {"first": min(days), "last": max(days)}
    yield _nothing_lost(warehouse, span)
    negatives = warehouse.scalar(
        "select count(*) from rating.rated_events where partition_day between :first and :last "
        "and (charge < 0 or discount < 0 or final_charge < 0)", span)
    yield dg.AssetCheckResult(check_name="no_negative_charges", asset_key=RATED, passed=negatives == 0,
                              metadata={"negative_rows": int(negatives)})
    yield _zero_priced(warehouse, span, load_rating_checks(squak.settings.reference_dir))
    yield dg.AssetCheckResult(check_name="mediation_gate", asset_key=RATED, passed=not report.blocked_days,
                              metadata={"blocked_days": dg.MetadataValue.json(report.blocked_days)})


def _nothing_lost(warehouse, span) -> dg.AssetCheckResult:
    frame = warehouse.query_df(
        """
        with m as (select partition_day, count(*) as n from mediation.events
                   where partition_day between :first and :last group by 1),
        r as (select partition_day, count(*) as n from rating.rated_events
              where partition_day between :first and :last group by 1),
        s as (select partition_day, count(*) as n from rating.suspense
              where partition_day between :first and :last group by 1)
        select m.partition_day, m.n as mediated, coalesce(r.n, 0) as rated, coalesce(s.n, 0) as suspense
        from m left join r using (partition_day) left join s using (partition_day)
        where r.n is not null or s.n is not null""", span)
    off = frame[frame["mediated"] != frame["rated"] + frame["suspense"]]
    return dg.AssetCheckResult(
        check_name="nothing_lost", asset_key=RATED, passed=off.empty,
        metadata={"days": len(frame), "mediated": int(frame["mediated"].sum()),
                  "rated": int(frame["rated"].sum()), "suspense": int(frame["suspense"].sum()),
                  "days_out_of_balance": dg.MetadataValue.json(off.astype(str).to_dict("records"))})


def _zero_priced(warehouse, span, limits) -> dg.AssetCheckResult:
    row = warehouse.query_df(
        "select count(*) as answered, coalesce(sum(case when final_charge = 0 and allowance_used = 0 "
        "then 1 else 0 end), 0) as zero from rating.rated_events where partition_day between :first "
        "and :last and answered and billsec > 0 and call_type not in ('emergency', 'internal')", span).iloc[0]
    share = int(row["zero"]) / int(row["answered"]) if int(row["answered"]) else 0.0
    limit = float(limits["max_zero_priced_share"])
    return dg.AssetCheckResult(
        check_name="zero_priced_share", asset_key=RATED, passed=share <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"answered": int(row["answered"]), "zero_priced": int(row["zero"]),
                  "share": round(share, 4), "limit": limit})


rating_job = dg.define_asset_job(
    "rating_job", selection=dg.AssetSelection.groups(GROUP), partitions_def=DAILY,
    description="Rate the mediated events of one or more days.",
    # Allowances carry over from day to day: the run queue starts these runs one at a time,
    # in the order they were queued (a backfill queues its days in order).
    tags={IN_DAY_ORDER_TAG: "rating"})


@dg.sensor(job=rating_job, minimum_interval_seconds=60,
           description="Re-rates when prices or orders change: a changed rate plan or deck re-rates "
                       "every day not yet fully billed and the days in suspense; new or changed orders "
                       "re-rate the days in suspense.")
def suspense_rerating_sensor(context: dg.SensorEvaluationContext, squak: SquakResource):
    settings = squak.settings
    warehouse = squak.warehouse()
    prices = "+".join(rules_version(settings.reference_dir, name)[0] for name in ("rate_plans", "rate_decks"))
    orders = ""
    if warehouse.table_exists("orders.services"):
        orders = str(warehouse.scalar(
            "select count(*) || ':' || coalesce(cast(max(active_from) as varchar), '') || ':' || "
            "coalesce(cast(max(active_to) as varchar), '') from orders.services"))
    state = {"prices": prices, "orders": orders}
    previous = json.loads(context.cursor) if context.cursor else {}
    context.update_cursor(json.dumps(state))
    if previous == state:
        return dg.SkipReason("orders and prices unchanged")
    days = set(suspense_days(warehouse))
    if previous and previous.get("prices") != prices:  # not on the first tick: nothing to compare
        days |= set(unbilled_days(warehouse))
    if not days:
        return dg.SkipReason("nothing in suspense and no unbilled day to re-price")
    tag = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    return [dg.RunRequest(partition_key=day, run_key=f"rerate:{day}:{tag}") for day in sorted(days)]


WHAT_IF = dg.AssetKey(["rating", "what_if"])


class WhatIfConfig(dg.Config):
    """A tariff proposal for a closed cycle (the same as `squak what-if`'s options)."""

    cycle: str = Field(description="A closed (billed) cycle, YYYY-MM.")
    plans: list[str] = Field(default_factory=list,
                             description="Proposed plan YAMLs, each replacing the plan of its plan_id.")
    decks: dict[str, str] = Field(default_factory=dict,
                                  description="Current deck file name -> proposed deck file.")
    scenario: str = Field(default="", description="Scenario name (default: from the file names).")


@dg.asset(pool=WAREHOUSE_POOL, key=WHAT_IF, group_name="what_if", kinds={"python", "plotly"},
          deps=[RATED, SUSPENSE, dg.AssetKey(["raw", "cost_rates"]), dg.AssetKey(["invoicing", "invoices"]),
                *PRICES],
          description="Tariff what-if: a closed cycle's events re-priced under a proposal with the "
                      "production engine (billed data untouched); revenue and margin per scenario, "
                      "account, plan and destination. Run `what_if_job` with run config.")
def what_if_results(context: dg.AssetExecutionContext, config: WhatIfConfig, squak: SquakResource):
    from pathlib import Path

    from squak_pipelines.cycles import CycleError
    from squak_pipelines.rating.plans import PlanFileError
    from squak_pipelines.rating.what_if import Proposal, WhatIfError
    from squak_pipelines.rating.what_if_report import run_scenario, summary

    proposal = Proposal(tuple(Path(p) for p in config.plans), {k: Path(v) for k, v in config.decks.items()})
    if not proposal.plans and not proposal.decks:
        raise dg.Failure(description="give a proposal: run config `plans` and/or `decks`")
    try:
        done = run_scenario(squak.warehouse(), squak.settings, config.cycle, proposal, config.scenario)
    except (WhatIfError, PlanFileError, CycleError) as exc:
        raise dg.Failure(description=str(exc)) from None
    result = done.result
    context.log.info(summary(result))
    return dg.MaterializeResult(metadata={
        "scenario": done.name, "cycle": config.cycle, "events": result.events.num_rows, "rows": done.rows,
        "revenue": dg.MetadataValue.json(result.by().astype(str).to_dict("records")),
        "most_affected": dg.MetadataValue.json(result.most_affected().astype(str).to_dict("records")),
        "figure": dg.MetadataValue.path(str(done.folder / "impact.html")),
        "files": dg.MetadataValue.json([p.name for p in done.files]),
        "seconds": round(result.seconds, 2)})


what_if_job = dg.define_asset_job(
    "what_if_job", selection=dg.AssetSelection.assets(WHAT_IF),
    description="Re-price a closed cycle under a proposal (run config: cycle, plans, decks, scenario).")

defs = dg.Definitions(assets=[rated_events, what_if_results], jobs=[rating_job, what_if_job],
                      sensors=[suspense_rerating_sensor])
