"""Controls on usage: completeness (1), suspense and reject aging (2), zero-rated audit (4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from squak_pipelines.assurance.controls import (
    Scope,
    combine,
    empty_findings,
    findings,
    findings_frame,
    money,
)
from squak_pipelines.mediation.stage import nonempty_lines
from squak_pipelines.quality.gx_suites import validate_dataframe

FILES_SQL = """
with accounted as (
  select source_file, source_sha256, count(*) as n from (
    select source_file, source_sha256 from mediation.events where partition_day between :first and :last
    union all
    select source_file, source_sha256 from mediation.rejects where partition_day between :first and :last
    union all
    select source_file, source_sha256 from mediation.duplicates where partition_day between :first and :last
    union all
    select source_file, source_sha256 from mediation.quarantine where partition_day between :first and :last
    union all
    select source_file, source_sha256 from mediation.b_legs where partition_day between :first and :last
  ) x group by 1, 2)
select f.switch_id, f.partition_day, f.file_name, f.sha256, f.status, f.records_in, f.accepted,
       f.rejected, f.duplicates, f.quarantined, coalesce(f.b_legs, 0) as b_legs,
       case when f.status = 'before_first_day' then f.records_in else 0 end as held,
       case when f.status = 'duplicate_delivery' then f.duplicates
            when f.status = 'before_first_day' then f.records_in else coalesce(a.n, 0) end as accounted
from mediation.files f
left join accounted a on a.source_file = f.file_name and a.source_sha256 = f.sha256
where f.partition_day between :first and :last
order by f.switch_id, f.partition_day, f.file_name
"""
NOT_MEDIATED_SQL = """
select d.switch_id, d.relative_path, d.sha256, d.records
from raw.cdr_drop_files d
where not exists (select 1 from mediation.files f where f.file_name = d.relative_path and f.sha256 = d.sha256)
"""
# Accepted events of days the fraud gate let through that are neither rated nor in suspense.
UNRATED_SQL = """
select e.event_key, e.partition_day, e.source_file, e.source_line, e.calling_number
from mediation.events e
join mediation.partition_status p on p.partition_day = e.partition_day and p.gate_passed
where e.partition_day between :first and :last
  and not exists (select 1 from rating.rated_events r where r.event_key = e.event_key)
  and not exists (select 1 from rating.suspense s where s.event_key = e.event_key)
"""
FLOW_SQL = """
select
  (select count(*) from mediation.events where partition_day between :first and :last) as mediated,
  (select coalesce(sum(billsec), 0) from mediation.events
    where partition_day between :first and :last and answered) as mediated_seconds,
  (select count(*) from rating.rated_events where partition_day between :first and :last) as rated,
  (select coalesce(sum(billsec), 0) from rating.rated_events
    where partition_day between :first and :last and answered) as rated_seconds,
  (select count(*) from rating.suspense where partition_day between :first and :last) as suspense
"""
# Answered events of the cycle with an owner that no final invoice carries; `late` when they
# were rated after the cycle was finalized (they go on the next invoice as late usage).
UNBILLED_SQL = """
with finals as (select account_id, currency, max(finalized_at) as finalized_at
                from invoicing.invoices where substr(cycle, 1, 7) = :cycle group by 1, 2)
select r.event_key, r.account_id, r.currency, r.final_charge, r.billsec, r.partition_day,
       case when f.finalized_at is not null and r.rated_at > f.finalized_at then 1 else 0 end as late
from rating.rated_events r
left join finals f on f.account_id = r.account_id and f.currency = r.currency
where substr(r.cycle, 1, 7) = :cycle and r.answered and r.account_id is not null
  and not exists (select 1 from invoicing.billed_events b where b.event_key = r.event_key)
  and r.cycle not in (select unnest(string_to_array(:open_cycles, ',')))
"""
BILLED_SQL = """
select count(*) as billed, coalesce(sum(r.billsec), 0) as billed_seconds
from rating.rated_events r
join invoicing.billed_events b on b.event_key = r.event_key
where substr(r.cycle, 1, 7) = :cycle
"""


def usage_completeness(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    """Per switch and day, records received = mediated + rejected + duplicates + quarantined +
    B-legs (+ files held whole before the first CDR day);
    mediated events are rated or in suspense; the cycle's answered rated events are invoiced."""
    wh, params = scope.warehouse, scope.params
    rows: list[dict] = []  # per out-of-balance file (few)
    parts: list[pd.DataFrame] = []  # per event (column-wise)
    figures: dict[str, Any] = {}
    if scope.has("mediation.files"):
        files = wh.query_df(FILES_SQL, params)
        per_day = files.groupby(["switch_id", "partition_day"], as_index=False)[
            ["records_in", "accepted", "rejected", "duplicates", "quarantined", "b_legs", "held", "accounted"]
        ].sum()
        off = files[files["records_in"] != files["accounted"]]
        figures["switch_days"] = len(per_day)
        figures["records_received"] = int(files["records_in"].sum())
        figures["records_accounted"] = int(files["accounted"].sum())
        figures["switch_days_out_of_balance"] = int((per_day["records_in"] != per_day["accounted"]).sum())
        per_day["counted"] = per_day[["accepted", "rejected", "duplicates", "quarantined", "b_legs",
                                      "held"]].sum(axis=1)
        suite = validate_dataframe("usage_completeness", per_day)
        figures["gx_suite_passed"] = suite.success
        for row in off.itertuples():
            rows.extend(_lost_records(scope.settings.cdr_drop_dir, wh, row))
    if scope.has("raw.cdr_drop_files", "mediation.files"):
        never = wh.query_df(NOT_MEDIATED_SQL)
        parts.append(
            findings_frame(
                "file_not_mediated",
                never["relative_path"],
                detail=never["records"].astype(str)
                + " records received from "
                + never["switch_id"]
                + ", never mediated",
            )
        )
    if scope.has("mediation.events", "rating.rated_events", "rating.suspense", "mediation.partition_status"):
        flow = wh.query_df(FLOW_SQL, params).iloc[0]
        figures.update({k: int(flow[k]) for k in flow.index})
        unrated = wh.query_df(UNRATED_SQL, params)
        parts.append(
            findings_frame(
                "mediated_not_rated",
                unrated["event_key"],
                detail=unrated["source_file"]
                + ":"
                + unrated["source_line"].astype(str)
                + " ("
                + unrated["partition_day"].astype(str)
                + ") neither rated nor in suspense",
            )
        )
    if scope.phase == "final" and scope.has(
        "invoicing.invoices", "invoicing.billed_events", "rating.rated_events"
    ):
        billed = wh.query_df(BILLED_SQL, params).iloc[0]
        figures["billed_events"], figures["billed_seconds"] = (
            int(billed["billed"]),
            int(billed["billed_seconds"]),
        )
        unbilled = wh.query_df(UNBILLED_SQL, params)
        figures["late_events_for_next_cycle"] = int(unbilled["late"].sum())
        lost = unbilled[unbilled["late"] == 0]
        parts.append(
            findings_frame(
                "rated_not_invoiced",
                lost["event_key"],
                account_id=lost["account_id"],
                currency=lost["currency"],
                amount=lost["final_charge"],
                detail="answered call of "
                + lost["partition_day"].astype(str)
                + ", "
                + lost["billsec"].astype(str)
                + " s, on no invoice",
            )
        )
    found = combine([findings(rows) if rows else empty_findings(), *parts])
    limit = int(scope.limits("usage_completeness")["max_unexplained_records"])
    passed = len(found) <= limit and figures.get("gx_suite_passed", True)
    summary = (
        f"{figures.get('records_received', 0):,} records received, "
        f"{figures.get('records_accounted', 0):,} accounted for; {len(found)} unexplained"
    )
    return passed, summary, figures, found


def _lost_records(drop_dir: Path, wh, row) -> list[dict]:
    """The records of an out-of-balance file that no table holds: by line when the file is
    still in the drop folder, else the count."""
    missing = int(row.records_in) - int(row.accounted)
    path = drop_dir / row.file_name
    base = {"kind": "record_lost_in_mediation"}
    if missing > 0 and path.exists() and row.status != "duplicate_delivery":
        seen = set(
            wh.query_df(
                " union all ".join(
                    f"select source_line from mediation.{t} where source_file = :f and source_sha256 = :s"
                    for t in ("events", "rejects", "duplicates", "quarantine")
                ),
                {"f": row.file_name, "s": row.sha256},
            )["source_line"].astype(int)
        )
        unseen = [(n, text) for n, text in nonempty_lines(path) if n not in seen]
        if len(unseen) > missing and unseen and unseen[0][0] == 1:
            unseen = unseen[1:]  # the header line
        if len(unseen) == missing:
            return [
                {**base, "record": f"{row.file_name}:{n}", "detail": f"line {n}: {text[:160]}"}
                for n, text in unseen
            ]
    return [
        {
            **base,
            "record": row.file_name,
            "detail": f"{row.records_in} records in, {row.accounted} accounted for "
            f"({row.switch_id}, {row.partition_day})",
        }
    ]


def _bucket_labels(edges: list[int]) -> list[str]:
    bounds = [0, *edges]
    return [
        f"{lo if i == 0 else lo + 1}-{hi}" for i, (lo, hi) in enumerate(zip(bounds, edges, strict=False))
    ] + [f"{edges[-1] + 1}+"]


def suspense_aging(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    """Events waiting in rating suspense, quarantined events pending review and rejected
    records, by age (days since their day); the oldest must be within the limit."""
    wh = scope.warehouse
    limits = scope.limits("suspense_aging")
    parts = []
    if scope.has("rating.suspense"):
        parts.append(
            wh.query_df(
                "select 'rating_suspense' as source, event_key as record, partition_day, "
                "reason, account_id from rating.suspense"
            )
        )
    if scope.has("mediation.quarantine"):
        parts.append(
            wh.query_df(
                "select 'quarantine' as source, event_key as record, partition_day, fraud_rules as reason, "
                "cast(null as varchar) as account_id from mediation.quarantine where decision = 'pending'"
            )
        )
    if scope.has("mediation.rejects"):
        parts.append(
            wh.query_df(
                "select 'mediation_reject' as source, "
                "source_file || ':' || cast(source_line as varchar) as record, partition_day, reason, "
                "cast(null as varchar) as account_id from mediation.rejects"
            )
        )
    items = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else pd.DataFrame(columns=["source", "record", "partition_day", "reason", "account_id"])
    )
    edges = [int(x) for x in limits["bucket_edges_days"]]
    labels = _bucket_labels(edges)
    age = (
        (pd.Timestamp(scope.as_of) - pd.to_datetime(items["partition_day"])).dt.days.to_numpy()
        if len(items)
        else np.array([], dtype=int)
    )
    items = items.assign(age_days=age, bucket=[labels[i] for i in np.searchsorted(edges, age, side="left")])
    figures: dict[str, Any] = {"open_items": len(items), "oldest_days": int(age.max()) if len(age) else 0}
    for source, group in items.groupby("source"):
        figures[f"{source}_by_age"] = {b: int((group["bucket"] == b).sum()) for b in labels}
    too_old = items[items["age_days"] > int(limits["max_oldest_days"])]
    found = combine(
        findings_frame(
            f"aged_{source}",
            group["record"],
            account_id=group["account_id"],
            detail=group["reason"].astype(str)
            + ", waiting "
            + group["age_days"].astype(str)
            + " days since "
            + group["partition_day"].astype(str),
        )
        for source, group in too_old.groupby("source")
    )
    summary = (
        f"{len(items):,} items waiting, oldest {figures['oldest_days']} days "
        f"(limit {limits['max_oldest_days']})"
    )
    return too_old.empty, summary, figures, found


ZERO_SQL = """
select r.event_key, r.account_id, r.currency, r.call_type, r.called_number, r.destination, r.rate,
       r.charge, r.allowance_used, r.deck_file, r.deck_line,
       case when exists (select 1 from orders.services s where s.number = r.called_number
                         and s.active_from <= r.start_utc
                         and (s.active_to is null or s.active_to > r.start_utc)) then 1 else 0 end as on_net
from rating.rated_events r
where substr(r.cycle, 1, 7) = :cycle and r.answered and (r.billsec > 0 or r.service = 'sms')
  and r.final_charge = 0
"""


def zero_rated(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    """Answered, billable events of the cycle priced at zero that the whitelist does not explain
    (free call types and prefixes, the operator's own numbers, allowances, full discounts)."""
    wh, limits = scope.warehouse, scope.limits("zero_rated")
    if not scope.has("rating.rated_events", "orders.services"):
        return True, "no rated events", {}, empty_findings()
    answered = int(
        wh.scalar(
            "select count(*) from rating.rated_events where substr(cycle, 1, 7) = :cycle and answered "
            "and (billsec > 0 or service = 'sms')",
            scope.params,
        )
        or 0
    )
    zero = wh.query_df(ZERO_SQL, scope.params)
    digits = zero["called_number"].fillna("").str.lstrip("+")
    reasons = pd.Series("", index=zero.index, dtype=object)
    checks = [
        ("allowance", (zero["allowance_used"] > 0) & bool(limits["allowance"])),
        ("discount", zero["charge"].map(money) > 0),
        ("free_call_type", zero["call_type"].isin(list(limits["free_call_types"]))),
        (
            "free_prefix",
            digits.str.startswith(tuple(str(p) for p in limits["free_prefixes"]))
            if len(zero) and limits["free_prefixes"]
            else pd.Series(False, index=zero.index),
        ),
        ("on_net", (zero["on_net"] == 1) & bool(limits["on_net"])),
    ]
    for name, mask in checks:
        reasons = reasons.where(reasons != "", np.where(mask, name, ""))
    unexplained = zero[reasons == ""]
    share = len(unexplained) / answered if answered else 0.0
    figures = {
        "answered_billable": answered,
        "zero_priced": len(zero),
        "explained_by": {k: int((reasons == k).sum()) for k, _ in checks},
        "unexplained": len(unexplained),
        "unexplained_share": round(share, 6),
    }
    u = unexplained
    found = findings_frame(
        "zero_rated_unexplained",
        u["event_key"],
        account_id=u["account_id"],
        currency=u["currency"],
        detail=u["call_type"]
        + " call to "
        + u["called_number"]
        + " ("
        + u["destination"].fillna("").replace("", "no destination")
        + ") priced 0 by "
        + u["deck_file"].astype(str)
        + ":"
        + u["deck_line"].astype(str)
        + ", rate "
        + u["rate"].astype(str),
    )
    passed = share <= float(limits["max_unexplained_share"])
    summary = f"{len(zero):,} of {answered:,} answered events priced at zero; {len(unexplained)} unexplained"
    return passed, summary, figures, found
