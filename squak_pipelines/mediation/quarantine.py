"""Analyst decisions on quarantined events: release (the event flows on) or confirm fraud.

Both are recorded on the quarantine row (decision, by whom, when, note). A released event
is copied into `mediation.events` with `released = true`. The day's fraud gate is
recomputed: the quarantine share counts events not released.
"""

from __future__ import annotations

from squak_pipelines import clock
from squak_pipelines.mediation.stage import EVENT_COLUMNS
from squak_pipelines.warehouse import Warehouse

DECISIONS = ("released", "confirmed_fraud")


def decide(
    warehouse: Warehouse, event_keys: list[str], decision: str, analyst: str, note: str = ""
) -> dict[str, str]:
    """Apply a decision to pending quarantined events; returns key -> outcome."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}")
    if not analyst.strip():
        raise ValueError("name the analyst who decides")
    outcome: dict[str, str] = {}
    now = clock.now()
    columns = ", ".join(EVENT_COLUMNS)
    days = set()
    with warehouse.transaction():
        for key in event_keys:
            row = warehouse.query_df(
                "select decision, partition_day from mediation.quarantine where event_key = :key",
                {"key": key},
            )
            if row.empty:
                outcome[key] = "not in quarantine"
                continue
            if row["decision"][0] != "pending":
                outcome[key] = f"already {row['decision'][0]}"
                continue
            if decision == "released":
                warehouse.execute(
                    f"insert into mediation.events ({columns}, released) "
                    f"select {columns}, true from mediation.quarantine where event_key = :key",
                    {"key": key},
                )
            warehouse.execute(
                "update mediation.quarantine set decision = :decision, decided_by = :by, "
                "decided_at = :at, note = :note where event_key = :key",
                {"decision": decision, "by": analyst, "at": now, "note": note, "key": key},
            )
            days.add(row["partition_day"][0])
            outcome[key] = decision
        for day in days:
            recompute_gate(warehouse, day)
    return outcome


def recompute_gate(warehouse: Warehouse, day) -> None:
    """Quarantine share of a day from the tables (released events count as accepted)."""
    warehouse.execute(
        """
        update mediation.partition_status set
            quarantined = q.held,
            quarantine_share = case when q.held + e.ok = 0 then 0
                                    else cast(q.held as double precision) / (q.held + e.ok) end,
            gate_passed = case when q.held + e.ok = 0 then true
                               else cast(q.held as double precision) / (q.held + e.ok)
                                    <= max_quarantine_share end
        from (select count(*) as held from mediation.quarantine
              where partition_day = :day and decision <> 'released') q,
             (select count(*) as ok from mediation.events where partition_day = :day) e
        where partition_day = :day""",
        {"day": day},
    )
