"""Control 5, independent re-rating: a random sample of the cycle's rated events is priced
again by the plain per-event implementation of the rules (`rating.reference`) and must match
the engine's price to the micro-unit.

The sample is drawn by account (all of a sampled account's events of the cycle), because an
allowance is consumed in call order across the account's cycle: a price depends on the calls
before it. The draw is seeded by the cycle, so a re-run audits the same accounts.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from typing import Any

import pandas as pd

from squak_pipelines.assurance.controls import Scope, empty_findings, findings, money
from squak_pipelines.cycles import load_schedules, schedule_of
from squak_pipelines.rating import reference
from squak_pipelines.rating.plans import load_plans

ACCOUNTS_SQL = """
select account_id, count(*) as events from rating.rated_events
where substr(cycle, 1, 7) = :cycle and account_id is not null group by 1 order by 1
"""
EVENTS_SQL = """
select r.event_key, r.account_id, r.plan_id, r.currency, r.service, r.call_type, r.called_number,
       coalesce(r.answer_utc, r.start_utc) as answered_at, r.billsec, r.answered, r.charged_units,
       r.allowance_used, r.charge, r.discount, r.final_charge, r.cycle
from rating.rated_events r
join {sample} s on s.account_id = r.account_id
where substr(r.cycle, 1, 7) = :cycle
order by r.account_id, r.plan_id, answered_at, r.event_key
"""


def sample_accounts(
    counts: pd.DataFrame, label: str, share: float, minimum: int, max_events: int
) -> list[str]:
    """Accounts drawn at random (seeded by the cycle) until the share is reached, within the
    event budget (at least one account whenever there is one)."""
    accounts = list(counts["account_id"])
    events = dict(zip(counts["account_id"], counts["events"], strict=True))
    random.Random(f"squak-rerating-{label}").shuffle(accounts)
    wanted = max(minimum, math.ceil(share * len(accounts)))
    chosen, total = [], 0
    for account in accounts:
        if len(chosen) >= wanted or (chosen and total + int(events[account]) > max_events):
            break
        chosen.append(account)
        total += int(events[account])
    return chosen


def rerating(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    if not scope.has("rating.rated_events"):
        return True, "no rated events", {}, empty_findings()
    limits = scope.limits("rerating")
    wh = scope.warehouse
    counts = wh.query_df(ACCOUNTS_SQL, scope.params)
    chosen = sample_accounts(
        counts,
        scope.cycle.label,
        float(limits["sample_share"]),
        int(limits["min_accounts"]),
        int(limits["max_events"]),
    )
    if not chosen:
        return (
            True,
            "no rated events in the cycle",
            {"sampled_accounts": 0, "sampled_events": 0},
            empty_findings(),
        )
    sample = pd.DataFrame({"account_id": chosen})
    events = wh.query_arrow_with(EVENTS_SQL, "sample", sample, scope.params).to_pandas()
    plans = load_plans(scope.settings.reference_dir / "plans")
    schedules = load_schedules(wh)
    found: list[dict] = []
    for (account, plan_id), group in events.groupby(["account_id", "plan_id"], sort=True, dropna=False):
        plan = plans.get(plan_id) if isinstance(plan_id, str) else None
        rows = list(group.itertuples())
        if plan is None:
            why = f"plan {plan_id} no longer exists" if isinstance(plan_id, str) else "no plan on the event"
            found.extend(_mismatch(r, why, None) for r in rows)
            continue
        priced = reference.rate_events(
            [
                reference.Event(
                    r.event_key,
                    r.service,
                    r.called_number or "",
                    r.answered_at.to_pydatetime(),
                    int(r.billsec),
                    bool(r.answered),
                    r.call_type or "",
                    account,
                )
                for r in rows
            ],
            plan,
            schedule=schedule_of(schedules, account),
        )
        for r, want in zip(rows, priced, strict=True):
            problem = _compare(r, want)
            if problem:
                found.append(_mismatch(r, problem, want))
    limit = int(limits["max_mismatches"])
    figures = {
        "sampled_accounts": len(chosen),
        "accounts_in_cycle": len(counts),
        "sampled_events": len(events),
        "mismatches": len(found),
    }
    summary = f"{len(events):,} events of {len(chosen)} accounts re-rated; {len(found)} differ"
    return len(found) <= limit, summary, figures, findings(found) if found else empty_findings()


def _compare(r, want: reference.Priced) -> str:
    if want.status != "rated":
        return f"reference finds {want.status}"
    got = (
        money(r.charge),
        money(r.discount),
        money(r.final_charge),
        int(r.allowance_used),
        int(r.charged_units),
        r.cycle,
    )
    expected = (want.charge, want.discount, want.charge - want.discount, want.covered, want.units, want.cycle)
    names = ("charge", "discount", "final_charge", "allowance_used", "charged_units", "cycle")
    return "; ".join(f"{n} {g} vs {e}" for n, g, e in zip(names, got, expected, strict=True) if g != e)


def _mismatch(r, problem: str, want: reference.Priced | None) -> dict:
    expected = (want.charge - want.discount) if want is not None and want.status == "rated" else Decimal(0)
    return {
        "kind": "rerating_mismatch",
        "record": r.event_key,
        "account_id": r.account_id,
        "currency": r.currency,
        "amount": money(r.final_charge) - expected,
        "detail": f"engine vs reference: {problem}",
    }
