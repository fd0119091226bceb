"""The billing calendar: bill days, cycle assignment, proration, allowance reset, which cycles
are billed when, issue dates, the schedule and the calendar control (hand-computed cases)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from squak_pipelines.cycles import (
    ALWAYS,
    CALENDAR,
    CycleError,
    Schedule,
    check_bill_day,
    check_billable,
    months_ending_on,
    pending_months,
)
from squak_pipelines.invoicing.compose import Cycle, ServicePeriod, service_lines
from squak_pipelines.rating.clock import CycleStarts
from squak_pipelines.rating.engine import rate
from tests.rating_helpers import events, plan_at

D = date


@pytest.mark.parametrize(("bill_day", "day", "first", "last"), [
    (1, D(2026, 10, 31), D(2026, 10, 1), D(2026, 10, 31)),
    (1, D(2026, 11, 1), D(2026, 11, 1), D(2026, 11, 30)),
    (15, D(2026, 11, 14), D(2026, 10, 15), D(2026, 11, 14)),
    (15, D(2026, 11, 15), D(2026, 11, 15), D(2026, 12, 14)),
    (15, D(2026, 12, 31), D(2026, 12, 15), D(2027, 1, 14)),  # across the year end
    (31, D(2026, 11, 29), D(2026, 10, 31), D(2026, 11, 29)),  # 31 falls on Nov 30
    (31, D(2026, 11, 30), D(2026, 11, 30), D(2026, 12, 30)),
    (31, D(2027, 2, 28), D(2027, 2, 28), D(2027, 3, 30)),
    (31, D(2027, 3, 31), D(2027, 3, 31), D(2027, 4, 29)),
])
def test_cycle_of_a_day_for_bill_days_1_15_and_31(bill_day, day, first, last) -> None:
    assert Schedule.fixed(bill_day).cycle_of(day) == (first, last)


def test_labels_sort_as_dates_and_name_the_billing_month() -> None:
    assert Schedule.fixed(15).cycles_starting_in(D(2026, 10, 1)) == [
        ("2026-10-15", D(2026, 10, 15), D(2026, 11, 14))]
    assert CALENDAR.cycles_starting_in(D(2026, 10, 1)) == [("2026-10", D(2026, 10, 1), D(2026, 10, 31))]
    assert sorted(["2026-11", "2026-10-31", "2026-10-15", "2026-10"]) == [
        "2026-10", "2026-10-15", "2026-10-31", "2026-11"]


@pytest.mark.parametrize(("changes", "month", "expected"), [
    # 1 -> 15 from 1 Dec: one short cycle 1-14 Dec, then 15th to 14th.
    (((ALWAYS, 1), (D(2026, 12, 1), 15)), D(2026, 12, 1),
     [("2026-12", D(2026, 12, 1), D(2026, 12, 14)), ("2026-12-15", D(2026, 12, 15), D(2027, 1, 14))]),
    # 15 -> 1 from 15 Nov: short cycle 15-30 Nov, then calendar months.
    (((ALWAYS, 15), (D(2026, 11, 15), 1)), D(2026, 11, 1),
     [("2026-11-15", D(2026, 11, 15), D(2026, 11, 30))]),
    (((ALWAYS, 15), (D(2026, 11, 15), 28)), D(2026, 11, 1),
     [("2026-11-15", D(2026, 11, 15), D(2026, 11, 27)), ("2026-11-28", D(2026, 11, 28), D(2026, 12, 27))]),
])
def test_a_bill_day_change_takes_effect_at_the_boundary_with_one_short_cycle(
    changes, month, expected
) -> None:
    schedule = Schedule(changes)
    assert schedule.cycles_starting_in(month) == expected
    before = schedule.cycles_starting_in(D(2026, 10, 1))
    assert before[0][1].day == changes[0][1]  # the old schedule runs up to the change


def test_proration_by_the_days_of_the_account_cycle(tmp_path: Path) -> None:
    """A 30.00 line activated on 1 Nov (New York), bill day 15: cycle 15 Oct - 14 Nov has 31
    days, 14 of them active: 30 x 14 / 31 = 13.548... -> 13.55; bill day 31 in November
    (31 Oct - 29 Nov, 30 days, 29 active): 30 x 29 / 30 = 29.00."""
    plan = plan_at(tmp_path, fees={"recurring": [{"product": "P", "amount": "30.00", "description": "Line"}]})
    period = ServicePeriod("S1", "P", "T", "+12125550100", 1, datetime(2026, 11, 1, 4, 0, tzinfo=UTC), None)
    first, last = Schedule.fixed(15).cycle_of(D(2026, 11, 1))
    (line,) = service_lines([period], {"T": plan}, Cycle("2026-10-15", first, last), "USD")
    assert (line.amount, line.quantity) == (Decimal("13.55"), Decimal("0.4516"))
    assert "14 of 31 days" in line.description
    first, last = Schedule.fixed(31).cycle_of(D(2026, 11, 1))
    (line,) = service_lines([period], {"T": plan}, Cycle("2026-10-31", first, last), "USD")
    assert line.amount == Decimal("29.00") and "29 of 30 days" in line.description


def test_rating_assigns_the_account_cycle_and_resets_the_allowance_per_cycle(tmp_path: Path) -> None:
    """Bill day 15, 3 free minutes a cycle: a 2-minute call on 14 Nov uses 2; on 15 Nov a new
    cycle starts with 3 again. New York fall-back (1 Nov 2026 06:00 UTC): 03:30 UTC is still
    31 Oct local, so the calendar account's call belongs to October."""
    plan = plan_at(tmp_path, allowances=[{"name": "3 min", "service": "voice", "minutes": 3,
                                          "destinations": ["North America*"]}])
    calls = events([
        {"called": "+13055550000", "at": "2026-11-14T15:00:00Z", "billsec": 120, "account": "B15"},
        {"called": "+13055550000", "at": "2026-11-14T16:00:00Z", "billsec": 120, "account": "B15"},
        {"called": "+13055550000", "at": "2026-11-15T15:00:00Z", "billsec": 120, "account": "B15"},
        {"called": "+13055550000", "at": "2026-11-01T03:30:00Z", "billsec": 60, "account": "CAL"},
        {"called": "+13055550000", "at": "2026-11-01T04:30:00Z", "billsec": 60, "account": "CAL"},
    ])
    starts = CycleStarts({"B15": Schedule.fixed(15).starts(D(2026, 9, 1), D(2026, 12, 31))})
    out = rate(calls, {"T": plan}, cycle_starts=starts).to_pylist()
    assert [r["cycle"] for r in out] == ["2026-10-15", "2026-10-15", "2026-11-15", "2026-10", "2026-11"]
    assert [r["allowance_used"] for r in out[:3]] == [120, 60, 120]  # the 15th starts afresh
    assert out[1]["charge"] == Decimal("0.0100")  # 60 s uncovered at 0.01/min


def test_which_cycles_to_bill_and_what_is_refused() -> None:
    schedules = [CALENDAR, Schedule.fixed(15)]
    assert pending_months("2026-10", set(), schedules, D(2026, 11, 25)) == ["2026-10"]
    assert pending_months("2026-10", set(), schedules, D(2026, 12, 1)) == ["2026-10", "2026-11"]
    assert pending_months("2026-10", {"2026-10"}, schedules, D(2027, 1, 15)) == ["2026-11", "2026-12"]
    refusals = {
        "2026-13": "must be YYYY-MM",
        "2026-09": "before the first billing cycle 2026-10",
        "2027-01": "starts after today",
        "2026-12": "has not ended",
        "2026-11": "cycle 2026-10 has ended and is not billed yet",
    }
    for month, message in refusals.items():
        with pytest.raises(CycleError, match=message):
            check_billable(month, "2026-10", ["2026-10", "2026-11"], schedules, D(2026, 12, 2), False)
    check_billable("2026-12", "2026-10", [], schedules, D(2026, 12, 2), preview=True)  # a preview is fine
    for bad in ("0", "32", "x", "-1"):
        with pytest.raises(CycleError, match="from 1 to 31"):
            check_bill_day(bad)
    assert check_bill_day("") == 1 and check_bill_day("31") == 31


def test_months_ending_on_a_day() -> None:
    schedules = [CALENDAR, Schedule.fixed(15), Schedule.fixed(31)]
    assert months_ending_on(D(2026, 11, 30), schedules) == ["2026-11"]
    assert months_ending_on(D(2026, 11, 14), schedules) == ["2026-10"]
    assert months_ending_on(D(2026, 11, 29), schedules) == ["2026-10"]  # bill day 31: 31 Oct - 29 Nov
    assert months_ending_on(D(2026, 11, 20), schedules) == []


def test_the_schedule_requests_the_month_that_has_just_ended(tmp_path: Path, monkeypatch) -> None:
    from squak_pipelines.config import Settings
    from squak_pipelines.definitions import defs
    from squak_pipelines.resources import squak_resource

    monkeypatch.setenv("SQUAK_DATA_DIR", str(tmp_path / "empty"))
    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("close_cycle_schedule")
    resources = {"squak": squak_resource(Settings.from_env())}
    at = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=at, resources=resources,
                                   repository_def=repo) as context:
        result = schedule.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests] == ["2026-11-01"]
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 12, 2, 6, 0, tzinfo=UTC),
                                   resources=resources, repository_def=repo) as context:
        quiet = schedule.evaluate_tick(context)
    assert not quiet.run_requests and "no billing cycle ended" in quiet.skip_message


def test_a_changed_bill_day_from_the_order_drops(tmp_path: Path, demo, monkeypatch) -> None:
    """An account record moving a calendar-month account to day 15, received on 20 Nov, takes
    effect on 1 Dec: November stays whole, 1-14 Dec is one short cycle, then 15th to 14th."""
    from squak_pipelines.cycles import load_schedules
    from squak_pipelines.orders.stage import run_order_stage
    from squak_pipelines.warehouse import DuckDBWarehouse
    from tests.stage_helpers import copy_demo

    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    run_order_stage(warehouse, settings)
    account = warehouse.scalar("select min(account_id) from orders.accounts where bill_day = '1'")
    base = (settings.orders_drop_dir / "accounts-base.csv").read_text().splitlines()
    header = base[0].split(",")
    row = next(line for line in base[1:] if line.startswith(f"{account},")).split(",")
    row[header.index("bill_day")] = "15"
    (settings.orders_drop_dir / "accounts-change.csv").write_text(f"{base[0]}\n{','.join(row)}\n")
    monkeypatch.setenv("SQUAK_TODAY", "2026-11-20")
    run_order_stage(warehouse, settings)
    schedule = load_schedules(warehouse)[account]
    assert schedule.changes == ((ALWAYS, 1), (D(2026, 12, 1), 15))
    assert schedule.cycles_starting_in(D(2026, 11, 1)) == [("2026-11", D(2026, 11, 1), D(2026, 11, 30))]
    assert [c[0] for c in schedule.cycles_starting_in(D(2026, 12, 1))] == ["2026-12", "2026-12-15"]
    current = warehouse.scalar("select bill_day from orders.accounts where account_id = :a", {"a": account})
    assert current == "15"
