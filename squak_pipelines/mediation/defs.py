"""Dagster wrappers for CDR capture and mediation: a day-partitioned asset, its checks and
the drop-folder sensor."""


import dagster as dg

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.mediation.stage import backfill_hint, mediate, scan_drops
from squak_pipelines.partitions import daily
from squak_pipelines.quality.gx_suites import validate_dataframe, validate_frames
from squak_pipelines.resources import SquakResource
from squak_pipelines.scale_out import WAREHOUSE_POOL, mediation_backfill_policy

GROUP = "mediation"
# First day of CDR partitions: SQUAK_FIRST_CDR_DAY (for older traffic); last: today.
DAILY = daily()
TABLES = {
    "events": "Mediated events: one schema, E.164, UTC, enriched (call type, countries, "
    "destination), de-duplicated and screened; raw line kept.",
    "quarantine": "Events held by fraud screening with the rules that flagged them and the "
    "analyst's decision.",
    "rejects": "Malformed records: file, line, reason, field and raw line.",
    "duplicates": "Repeated events (same key) and whole re-delivered files.",
    "b_legs": "FreeSWITCH B-legs (legs=ab) of the calls in events: kept, never rated as calls.",
    "files": "Each delivered file with its conservation counts.",
    "partition_status": "Per day: quarantine share and whether the fraud gate passed.",
}
EVENTS = dg.AssetKey(["mediation", "events"])


@dg.multi_asset(pool=WAREHOUSE_POOL,
    specs=[
        dg.AssetSpec(
            ["mediation", name],
            description=text,
            group_name=GROUP,
            kinds={"python", "duckdb"},
            deps=[dg.AssetKey(["orders", "services"]), dg.AssetKey(["raw", "switches"]),
                  dg.AssetKey(["raw", "cdr_drop_files"]), dg.AssetKey(["reference", "fraud_rules"])],
        )
        for name, text in TABLES.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "conservation",
            asset=EVENTS,
            blocking=True,
            description="Per file and day: in = accepted + rejected + duplicates + quarantined + B-legs.",
        ),
        dg.AssetCheckSpec(
            "gx_fraud_gate",
            asset=EVENTS,
            blocking=True,
            description="GX suite `fraud_gate`: quarantine share within the limit per day.",
        ),
        dg.AssetCheckSpec(
            "gx_mediated_events",
            asset=EVENTS,
            blocking=True,
            description="GX suite `mediated_events` on the days processed.",
        ),
    ],
    partitions_def=DAILY,
    backfill_policy=mediation_backfill_policy(Settings.from_env()),
    can_subset=False,
)
def mediated_cdrs(context: dg.AssetExecutionContext, squak: SquakResource):
    """Parse, normalize, enrich, de-duplicate and screen the CDR files of the run's days."""
    from datetime import date

    days = [date.fromisoformat(k) for k in context.partition_keys]
    warehouse = squak.warehouse()
    report = mediate(warehouse, squak.settings, days)
    context.log.info(f"mediated {report.files} files of {len(report.days)} days")
    if report.held_hint:
        context.log.warning(report.held_hint)
    summary = {
        "files": report.files,
        "records_in": report.records_in,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "duplicates": report.duplicates,
        "quarantined": report.quarantined,
        "b_legs": report.b_legs,
        "held_before_first_day": len(report.held_files),
        "top_reject_reasons": dg.MetadataValue.json(
            dict(sorted(report.reject_reasons.items(), key=lambda kv: -kv[1])[:10])
        ),
        "fraud_hits_by_rule": dg.MetadataValue.json(report.fraud_hits),
        "gate_failed_days": dg.MetadataValue.json(report.gate_failed_days),
    }
    for name in TABLES:
        yield dg.MaterializeResult(asset_key=["mediation", name], metadata=summary)
    yield conservation_result(warehouse, days)
    yield gate_result(warehouse, days)
    yield events_result(warehouse, days)


def _span(days) -> dict[str, object]:
    """A run's days are one contiguous range of partitions: bind its ends as parameters."""
    return {"first": min(days), "last": max(days)}


def conservation_result(warehouse, days) -> dg.AssetCheckResult:
    """Recount every outcome from the tables and compare with the records each file held.
    A delivery is a file name and its content hash; a re-delivered copy's records are the
    duplicates recorded for it."""
    table = warehouse.query_df(
        """
        with f as (select file_name, sha256, status, records_in, partition_day, duplicates as redelivered
                   from mediation.files where partition_day between :first and :last),
        e as (select source_file, source_sha256, count(*) as n from mediation.events
              where not released group by 1, 2),
        q as (select source_file, source_sha256, count(*) as n from mediation.quarantine group by 1, 2),
        r as (select source_file, source_sha256, count(*) as n from mediation.rejects group by 1, 2),
        d as (select source_file, source_sha256, count(*) as n from mediation.duplicates group by 1, 2),
        b as (select source_file, source_sha256, count(*) as n from mediation.b_legs group by 1, 2)
        select f.file_name, f.partition_day, f.records_in,
               coalesce(e.n, 0) + coalesce(q.n, 0) + coalesce(r.n, 0) + coalesce(d.n, 0) + coalesce(b.n, 0)
               + case when f.status = 'duplicate_delivery' then f.redelivered
                      when f.status = 'before_first_day' then f.records_in else 0 end as accounted
        from f
        left join e on e.source_file = f.file_name and e.source_sha256 = f.sha256
        left join q on q.source_file = f.file_name and q.source_sha256 = f.sha256
        left join r on r.source_file = f.file_name and r.source_sha256 = f.sha256
        left join d on d.source_file = f.file_name and d.source_sha256 = f.sha256
        left join b on b.source_file = f.file_name and b.source_sha256 = f.sha256""",
        _span(days),
    )
    off = table[table["records_in"] != table["accounted"]]
    per_day = table.groupby("partition_day")[["records_in", "accounted"]].sum()
    return dg.AssetCheckResult(
        check_name="conservation",
        asset_key=EVENTS,
        passed=off.empty,
        metadata={
            "files": len(table),
            "records_in": int(table["records_in"].sum()),
            "accounted": int(table["accounted"].sum()),
            "days_out_of_balance": int((per_day["records_in"] != per_day["accounted"]).sum()),
            "files_out_of_balance": dg.MetadataValue.json(off.astype(str).to_dict("records")[:20]),
        },
    )


def _gx_result(check_name: str, suite: str, frame, **metadata) -> dg.AssetCheckResult:
    """Run a GX suite on the run's rows and report it as the check's result."""
    if frame.empty:
        return dg.AssetCheckResult(check_name=check_name, asset_key=EVENTS, passed=True, metadata={"rows": 0})
    return _check_result(check_name, validate_dataframe(suite, frame), len(frame), **metadata)


def _check_result(check_name: str, outcome, rows: int, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=EVENTS,
        passed=outcome.success,
        metadata={
            "rows": rows,
            "failures": dg.MetadataValue.json(outcome.failures),
            **{k: v for k, v in outcome.statistics.items() if isinstance(v, int | float)},
            **metadata,
        },
    )


def gate_result(warehouse, days) -> dg.AssetCheckResult:
    frame = warehouse.query_df(
        "select * from mediation.partition_status where partition_day between :first and :last",
        _span(days),
    )
    blocked = frame.loc[~frame["gate_passed"].astype(bool), "partition_day"].astype(str).tolist()
    return _gx_result("gx_fraud_gate", "fraud_gate", frame, blocked_days=dg.MetadataValue.json(blocked))


# Rows of mediated events validated at a time (whole days): the 10M-CDR month's 9.5M events in
# one DataFrame peaked at 3.9 GiB, parts of 1M rows at 1.0 GiB (BENCHMARKS.md).
GX_PART_ROWS = 1_000_000


def events_result(warehouse, days) -> dg.AssetCheckResult:
    """GX suite `mediated_events` over the run's days, validated a few whole days at a time
    (event keys are unique across days by the table's own unique index)."""
    counts = warehouse.query_df(
        "select partition_day, count(*) as n from mediation.events "
        "where partition_day between :first and :last group by 1 order by 1", _span(days))
    parts, part, rows = [], [], 0
    for day, n in zip(counts["partition_day"], counts["n"], strict=True):
        if part and rows + n > GX_PART_ROWS:
            parts.append(part)
            part, rows = [], 0
        part.append(day)
        rows += int(n)
    if part:
        parts.append(part)
    total = int(counts["n"].sum())
    if not total:
        return dg.AssetCheckResult(check_name="gx_mediated_events", asset_key=EVENTS, passed=True,
                                   metadata={"rows": 0})
    frames = (warehouse.query_df(
        "select event_key, calling_number, called_number, call_type, duration, billsec, service, "
        "start_utc, end_utc from mediation.events where partition_day between :first and :last",
        _span(part)) for part in parts)
    outcome = validate_frames("mediated_events", frames)
    return _check_result("gx_mediated_events", outcome, total)


mediation_job = dg.define_asset_job(
    "mediation_job",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=DAILY,
    description="Mediate the CDR files of one or more days.",
)


@dg.sensor(
    job=mediation_job,
    minimum_interval_seconds=30,
    description="Requests a mediation run for each day with new CDR files in the drop folder.",
)
def cdr_drop_sensor(context: dg.SensorEvaluationContext, squak: SquakResource):
    import json

    from squak_pipelines.mediation.stage import _recorded_files

    # The cursor remembers each file's hash by size and modification time, so a tick only
    # reads files that are new or changed.
    cache = json.loads(context.cursor) if context.cursor else {}
    seen = _recorded_files(squak.warehouse())
    by_day: dict[str, list[str]] = {}
    first = clock.first_cdr_day()
    early: list = []
    for ref in scan_drops(squak.settings, hash_cache=cache):
        if (ref.name, ref.sha256) in seen:
            continue
        if ref.day < first:  # no partition for it: say how to backfill, request nothing
            early.append(ref)
            continue
        by_day.setdefault(ref.day.isoformat(), []).append(ref.sha256)
    if early:
        context.log.warning(backfill_hint(first, early))
    context.update_cursor(json.dumps(cache, sort_keys=True))
    if not by_day:
        return dg.SkipReason("no new CDR files")
    # run_key: the day plus the content of its new files, so each delivery runs once.
    return [
        dg.RunRequest(
            partition_key=day,
            run_key=f"{day}:{'+'.join(sorted(shas))[:200]}",
            tags={"squak/new_files": str(len(shas))},
        )
        for day, shas in sorted(by_day.items())
    ]


defs = dg.Definitions(assets=[mediated_cdrs], jobs=[mediation_job], sensors=[cdr_drop_sensor])
