"""A plain, per-event Python rating of docs/billing-rules.md, written for obviousness, not speed.

It is the yardstick the vectorized engine is tested against (property tests) and the
baseline the benchmark compares with. Split-band calls are walked second by second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from squak_pipelines.cycles import CALENDAR, Schedule, cycle_label
from squak_pipelines.money import quantize
from squak_pipelines.rating.plans import DeckRow, Plan

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Event:
    key: str
    service: str
    called: str
    at: datetime  # answer time, else start (UTC)
    billsec: int
    answered: bool
    call_type: str = ""
    account: str | None = None


@dataclass
class Priced:
    status: str
    row: DeckRow | None = None
    units: int = 0
    covered: int = 0
    charge: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    cycle: str = ""


def band_at(plan: Plan, local: datetime) -> str | None:
    band = plan.week[local.weekday() * 1440 + local.hour * 60 + local.minute]
    return plan.bands[band] if band >= 0 else None


def prefix_index(plan: Plan) -> dict[str, dict[str, list[DeckRow]]]:
    """service -> prefix -> deck rows."""
    index: dict[str, dict[str, list[DeckRow]]] = {}
    for r in plan.rows:
        index.setdefault(r.service, {}).setdefault(r.prefix, []).append(r)
    return index


def pick_row(plan: Plan, index: dict[str, list[DeckRow]], digits: str, local: datetime) -> DeckRow | None:
    """Rules 1-3: longest prefix in force, band row else fallback, latest effective date."""
    day = local.date()
    rows: list[DeckRow] = []
    for length in range(len(digits), 0, -1):  # longest prefix with a row in force wins
        candidates = index.get(digits[:length], [])
        rows = [r for r in candidates if r.effective_from is None or r.effective_from <= day]
        if rows:
            break
    if not rows:
        return None
    band = band_at(plan, local)
    for candidates in ([r for r in rows if r.band and r.band == band], [r for r in rows if not r.band]):
        if candidates:
            return max(candidates, key=lambda r: r.effective_from or datetime.min.date())
    return None


def charged_seconds(row: DeckRow, billsec: int) -> int:
    if billsec <= row.first:
        return row.first
    blocks = -(-(billsec - row.first) // row.step)
    return row.first + blocks * row.step


def rate_events(events: list[Event], plan: Plan, allowances: bool = True,
                schedule: Schedule = CALENDAR) -> list[Priced]:
    """Price each event (`schedule`: the account's bill days, for its cycle)."""
    zone = ZoneInfo(plan.timezone)
    index = prefix_index(plan)
    out: list[Priced] = []
    labels: dict = {}  # local day -> its cycle's label
    for ev in events:
        local = ev.at.astimezone(zone)
        day = local.date()
        if day not in labels:
            labels[day] = cycle_label(schedule.cycle_of(day)[0])
        priced = Priced("rated", cycle=labels[day])
        out.append(priced)
        billable = ev.answered and (ev.billsec > 0 or ev.service == "sms")
        number = ev.called[1:] if ev.called.startswith("+") else ""
        if not (number.isdigit() and number.isascii() and len(number) <= 15):
            number = ""
        priced.row = pick_row(plan, index.get(ev.service, {}), number, local) if number else None
        if not billable or ev.call_type in ("emergency", "internal"):
            continue
        if priced.row is None:
            priced.status = "no_rate"
            continue
        priced.units = 1 if ev.service == "sms" else charged_seconds(priced.row, ev.billsec)
    if allowances:
        _consume(plan, events, out)
    for ev, priced in zip(events, out, strict=True):
        if priced.status != "rated" or priced.units == 0 or priced.row is None:
            continue
        left = priced.units - priced.covered
        if left <= 0:
            continue
        row = priced.row
        if ev.service == "sms":
            amount = row.connect_fee + row.rate * left
        elif plan.band_rule == "split":
            amount = _split_amount(plan, ev, priced, zone)
            if amount is None:
                priced.status = "no_rate"
                continue
            amount += row.connect_fee
        else:
            amount = row.connect_fee + row.rate * left / 60
        priced.charge = quantize(amount, plan.rating_decimals, plan.rounding)
        for disc in plan.discounts:
            applies = (disc.applies_to == "usage" or (disc.applies_to == "international_usage"
                       and ev.call_type == "international") or disc.applies_to == ev.service)
            if applies and priced.charge > 0:
                priced.discount += quantize(priced.charge * disc.percent / 100, plan.rating_decimals,
                                            plan.rounding)
    return out


def _split_amount(plan: Plan, ev: Event, priced: Priced, zone: ZoneInfo) -> Decimal | None:
    total = Decimal(0)
    first = ev.at + timedelta(seconds=priced.covered)
    for second in range(priced.units - priced.covered):
        local = (first + timedelta(seconds=second)).astimezone(zone)
        row = _row_for_band(plan, ev, priced.row, band_at(plan, local))
        if row is None:
            return None
        total += row.rate
    return total / 60


def _row_for_band(plan: Plan, ev: Event, at_answer: DeckRow, band: str | None) -> DeckRow | None:
    """The row of the answer-time prefix and effective date for another band."""
    day = ev.at.astimezone(ZoneInfo(plan.timezone)).date()
    rows = [r for r in plan.deck(ev.service) if r.prefix == at_answer.prefix
            and (r.effective_from is None or r.effective_from <= day)]
    for candidates in ([r for r in rows if r.band and r.band == band], [r for r in rows if not r.band]):
        if candidates:
            return max(candidates, key=lambda r: r.effective_from or datetime.min.date())
    return None


def _consume(plan: Plan, events: list[Event], out: list[Priced]) -> None:
    used: dict[tuple[str, str, str], int] = {}
    order = sorted(range(len(events)), key=lambda i: (events[i].at, i))
    for i in order:
        ev, priced = events[i], out[i]
        if priced.status != "rated" or priced.units == 0 or ev.account is None or priced.row is None:
            continue
        allowance = next((a for a in plan.allowances
                          if a.service == ev.service and a.covers(priced.row.destination)), None)
        if allowance is None:
            continue
        key = (ev.account, priced.cycle, allowance.name)
        remaining = max(allowance.units - used.get(key, 0), 0)
        priced.covered = min(priced.units, remaining)
        used[key] = used.get(key, 0) + priced.units

