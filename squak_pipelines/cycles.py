"""The billing calendar: account cycles, bill days, which cycles have ended and which to bill.

Rules (README, "Billing calendar"):
- An account's cycle runs from its bill day to the day before its next bill day, in the
  plan's time zone; bill day 1 is the calendar month. A bill day past a month's end falls on
  that month's last day (bill day 31: Oct 31, Nov 30, Dec 31).
- A cycle is labelled by its first day: `YYYY-MM` when it starts on the 1st, else
  `YYYY-MM-DD`. Labels sort as their dates do, and the billing run (Dagster's monthly
  partition, `squak bill --cycle YYYY-MM`) of a month bills every account cycle that
  starts in that month and has ended.
- A change of bill day takes effect at the next boundary of the old schedule: one short
  cycle runs from there to the first new bill day after it, then the new schedule.
- A cycle has ended once the clock's today is after its last day. Every ended cycle not
  yet billed is billed, oldest first; an open cycle is never finalized.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import yaml

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
ALWAYS = date(1970, 1, 1)
DEFAULT_DUE_DAYS = 15


class CycleError(ValueError):
    """A billing cycle that may not be billed (or is not a cycle): one line for the user."""


def parse_month(label: str) -> date:
    """First day of a `YYYY-MM` billing month."""
    if not isinstance(label, str) or not MONTH.match(label):
        raise CycleError(f"billing cycle must be YYYY-MM (e.g. 2026-10), got {label!r}")
    return date(int(label[:4]), int(label[5:]), 1)


def month_label(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def last_ended_month(today: date) -> str:
    """The calendar month before today's."""
    return month_label(add_months(today, -1))


def add_months(day: date, months: int) -> date:
    """First day of the month `months` after `day`'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def boundary(month: date, bill_day: int) -> date:
    """The bill day in `month`, clamped to the month's last day."""
    return month.replace(day=min(bill_day, calendar.monthrange(month.year, month.month)[1]))


def check_bill_day(value: object) -> int:
    """A bill day 1-31 (empty: 1)."""
    text = str(value if value is not None else "").strip()
    if text == "":
        return 1
    if not text.isdigit() or not 1 <= int(text) <= 31:
        raise CycleError(f"bill day must be a whole number from 1 to 31 (days past a month's end "
                         f"fall on its last day), got {text!r}")
    return int(text)


def cycle_label(start: date) -> str:
    return month_label(start) if start.day == 1 else start.isoformat()


def label_start(label: str) -> date:
    return parse_month(label) if len(label) == 7 else date.fromisoformat(label)


@dataclass(frozen=True)
class Schedule:
    """An account's bill days over time: (effective_from, bill_day), effective_from ascending;
    the first entry is in force since always."""

    changes: tuple[tuple[date, int], ...] = ((ALWAYS, 1),)

    @classmethod
    def fixed(cls, bill_day: int) -> Schedule:
        return cls(((ALWAYS, bill_day),))

    def starts(self, first: date, last: date) -> list[date]:
        """Every cycle start from the one holding `first` through `last` (and the one after)."""
        out: list[date] = []
        for i, (since, bill_day) in enumerate(self.changes):
            until = self.changes[i + 1][0] if i + 1 < len(self.changes) else date.max
            if since > ALWAYS:
                out.append(since)  # a change opens a (short) cycle on its date
            month = add_months(max(since, first - timedelta(days=62)), -1)
            while (start := boundary(month, bill_day)) < until and start <= last + timedelta(days=62):
                if start > since:
                    out.append(start)
                month = add_months(month, 1)
        out = sorted(set(out))
        keep = bisect_right(out, first) - 1
        return out[max(keep, 0):]

    def cycle_of(self, day: date) -> tuple[date, date]:
        """(first, last) day of the cycle holding `day`."""
        starts = self.starts(day, day + timedelta(days=62))
        i = bisect_right(starts, day) - 1
        return starts[i], starts[i + 1] - timedelta(days=1)

    def cycles_starting_in(self, month: date) -> list[tuple[str, date, date]]:
        """(label, first, last) of each cycle that starts in the month of `month`."""
        nxt = add_months(month, 1)
        starts = self.starts(month, nxt + timedelta(days=62))
        out = []
        for a, b in pairwise(starts):
            if month <= a < nxt:
                out.append((cycle_label(a), a, b - timedelta(days=1)))
        return out


CALENDAR = Schedule()  # bill day 1: calendar months


@dataclass(frozen=True)
class BillingTerms:
    """`reference/billing.yaml` (optional): `first_cycle` (the first month Squak bills; usage
    before it is late usage of that cycle) and `due_days` (payment terms)."""

    first_cycle: str | None = None
    due_days: int = DEFAULT_DUE_DAYS

    @classmethod
    def load(cls, reference_dir: Path) -> BillingTerms:
        path = reference_dir / "billing.yaml"
        if not path.exists():
            return cls()
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise CycleError(f"{path}: expected a mapping of settings")
        unknown = sorted(set(loaded) - {"first_cycle", "due_days"})
        if unknown:
            raise CycleError(f"{path}: unknown setting(s) {', '.join(unknown)} "
                             "(allowed: first_cycle, due_days)")
        first = loaded.get("first_cycle")
        if first is not None:
            try:
                parse_month(str(first))
            except CycleError as exc:
                raise CycleError(f"{path}: first_cycle: {exc}") from None
        due = loaded.get("due_days", DEFAULT_DUE_DAYS)
        if isinstance(due, bool) or not isinstance(due, int) or not 0 <= due <= 365:
            raise CycleError(f"{path}: due_days must be a whole number of days from 0 to 365, got {due!r}")
        return cls(str(first) if first is not None else None, due)


def month_window(month: str, schedules: list[Schedule]) -> tuple[date, date]:
    """(first end, last end) of the account cycles of a billing month over the schedules in use."""
    first = parse_month(month)
    ends = [last for s in schedules for _, _, last in s.cycles_starting_in(first)]
    if not ends:
        ends = [add_months(first, 1) - timedelta(days=1)]
    return min(ends), max(ends)


def pending_months(first_month: str | None, billed: set[str], schedules: list[Schedule],
                   today: date) -> list[str]:
    """Billing months with an ended account cycle that are not wholly billed, oldest first."""
    if first_month is None:
        return []
    out = []
    month = parse_month(first_month)
    while month <= today:
        label = month_label(month)
        earliest_end, _ = month_window(label, schedules)
        if earliest_end >= today:
            break
        if label not in billed:
            out.append(label)
        month = add_months(month, 1)
    return out


def check_billable(month: str, first_month: str | None, pending: list[str], schedules: list[Schedule],
                   today: date, preview: bool) -> None:
    """Raise CycleError (one line) when `month` may not be billed today."""
    start = parse_month(month)
    if first_month is None:
        raise CycleError("nothing to bill yet: no rated usage (run the pipeline first: make run)")
    if month < first_month:
        raise CycleError(f"cycle {month} is before the first billing cycle {first_month}")
    if start > today:
        raise CycleError(f"cycle {month} starts after today ({today.isoformat()})")
    if preview:
        return
    earliest_end, _ = month_window(month, schedules)
    if earliest_end >= today:
        raise CycleError(f"cycle {month} has not ended (it ends {earliest_end.isoformat()}; it can be "
                         f"billed from {(earliest_end + timedelta(days=1)).isoformat()}); "
                         "use --preview for a draft")
    earlier = [m for m in pending if m < month]
    if earlier:
        raise CycleError(f"cycle {earlier[0]} has ended and is not billed yet: every ended cycle is billed, "
                         f"oldest first (squak bill without --cycle bills {', '.join(earlier)} first)")


def load_schedules(warehouse) -> dict[str, Schedule]:
    """Bill-day schedules of the accounts that do not bill by calendar month: the current
    `orders.accounts.bill_day`, with the changes recorded in `orders.bill_days`."""
    if not warehouse.table_exists("orders.accounts"):
        return {}
    current = {r["account_id"]: r["bill_day"] for r in warehouse.query_arrow(
        "select account_id, bill_day from orders.accounts").to_pylist()}
    history: dict[str, list[tuple[date, int]]] = {}
    if warehouse.table_exists("orders.bill_days"):
        for r in warehouse.query_arrow(
                "select account_id, effective_from, bill_day from orders.bill_days "
                "order by account_id, effective_from").to_pylist():
            history.setdefault(r["account_id"], []).append((r["effective_from"], int(r["bill_day"])))
    out = {}
    for account_id, value in current.items():
        try:
            bill_day = check_bill_day(value)
        except CycleError:
            bill_day = 1  # rejected at intake; never stored
        changes = history.get(account_id) or [(ALWAYS, bill_day)]
        changes[0] = (ALWAYS, changes[0][1])
        schedule = Schedule(tuple(changes))
        if schedule != Schedule():
            out[account_id] = schedule
    return out


def schedules_in_use(warehouse) -> list[Schedule]:
    """The distinct schedules of the accounts, the calendar month always among them."""
    return [CALENDAR, *set(load_schedules(warehouse).values())]


def schedule_of(schedules: dict[str, Schedule], account_id: str) -> Schedule:
    return schedules.get(account_id, CALENDAR)


def months_ending_on(day: date, schedules: list[Schedule]) -> list[str]:
    """Billing months of the account cycles whose last day is `day`."""
    out = set()
    for schedule in set(schedules):
        first, last = schedule.cycle_of(day)
        if last == day:
            out.add(month_label(first))
    return sorted(out)
