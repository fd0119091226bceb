"""Rating engine: hand-computed charges for every rule of docs/billing-rules.md, and plan/deck
validation errors that name file, row and column."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from squak_pipelines.rating.engine import rate
from squak_pipelines.rating.plans import PlanFileError, load_plan
from tests.rating_helpers import DECK, DECK_HEADER, events, plan_at, write_plan

# Wed 2026-10-14: 16:00Z = 12:00 EDT (peak); 2026-10-15T00:00Z = Wed 20:00 EDT (offpeak).
PEAK, OFFPEAK, FRIDAY_PEAK = "2026-10-14T16:00:00Z", "2026-10-15T00:00:00Z", "2026-10-16T16:00:00Z"

CASES = [
    # (name, called, answer time, billsec, expected charge, expected charged seconds)
    ("60/60 rounds 61 s up to two blocks", "+13055550000", PEAK, 61, "0.0200", 120),
    ("60/60 first block is a minimum", "+13055550000", PEAK, 1, "0.0100", 60),
    ("30/6 first block then 6 s blocks", "+12125551234", PEAK, 31, "0.0120", 36),
    ("30/6 minimum of 30 s", "+12125551234", PEAK, 10, "0.0100", 30),
    ("1/1 with a connect fee", "+442071234567", PEAK, 125, "0.1542", 125),
    ("0/1 per second, no minimum", "+491711234567", PEAK, 7, "0.0035", 7),
    ("longest prefix beats a shorter one", "+493012345678", PEAK, 60, "0.0030", 60),
    ("unanswered call costs nothing, no connect fee", "+442071234567", PEAK, 0, "0.0000", 0),
    ("band row in force (peak)", "+447700900123", PEAK, 61, "0.2000", 120),
    ("empty band row is the fallback (offpeak)", "+447700900123", OFFPEAK, 61, "0.1200", 120),
    ("price change in the middle of the cycle", "+447700900123", FRIDAY_PEAK, 61, "0.2400", 120),
    ("effective date read in the plan's zone: still the 14th", "+447700900123", "2026-10-15T03:30:00Z", 61,
     "0.1200", 120),
    ("effective date read in the plan's zone: the 15th", "+447700900123", "2026-10-15T04:30:00Z", 61,
     "0.1600", 120),
]


@pytest.mark.parametrize(("name", "called", "at", "billsec", "charge", "seconds"), CASES,
                         ids=[c[0] for c in CASES])
def test_voice_rules(tmp_path: Path, name, called, at, billsec, charge, seconds) -> None:
    plan = plan_at(tmp_path)
    row = rate(events([{"called": called, "at": at, "billsec": billsec}]), {"T": plan}).to_pylist()[0]
    assert row["status"] == "rated", name
    assert row["charge"] == Decimal(charge), name
    assert row["final_charge"] == Decimal(charge)
    assert row["charged_units"] == seconds


def test_breakdown_explains_the_price(tmp_path: Path) -> None:
    plan = plan_at(tmp_path)
    call = {"called": "+447700900123", "at": FRIDAY_PEAK, "billsec": 61}
    row = rate(events([call]), {"T": plan}).to_pylist()[0]
    assert row["matched_prefix"] == "447" and row["destination"] == "UK Mobile"
    assert row["band"] == "peak" and row["deck_file"] == "deck.csv" and row["deck_line"] == 7
    assert str(row["effective_from"]) == "2026-10-15" and row["increment"] == "60/60"
    assert row["rate"] == Decimal("0.12") and row["connect_fee"] == 0 and row["currency"] == "USD"
    assert row["cycle"] == "2026-10"


def test_no_rate_sms_and_emergency(tmp_path: Path) -> None:
    plan = plan_at(tmp_path)
    rows = rate(events([
        {"called": "+999123456", "at": PEAK, "billsec": 30},
        {"called": "+12125551234", "at": PEAK, "service": "sms"},
        {"called": "911", "at": PEAK, "billsec": 60, "call_type": "emergency"},
        {"called": "+447700900123", "at": PEAK, "billsec": 30},
    ], plan_id="T"), {"T": plan}).to_pylist()
    assert rows[0]["status"] == "no_rate" and rows[0]["charge"] is None, "never priced at zero"
    assert rows[1]["status"] == "rated" and rows[1]["charge"] == Decimal("0.0100")
    assert rows[1]["charged_units"] == 1
    assert rows[2]["status"] == "rated" and rows[2]["charge"] == 0
    unknown = rate(events([{"called": "+13055550000", "at": PEAK, "billsec": 5}], plan_id="NOPE"),
                   {"T": plan}).to_pylist()[0]
    assert unknown["status"] == "no_plan"


@pytest.mark.parametrize(("rounding", "connect_call", "half"), [
    ("half_up", "0.1508", "0.0001"), ("up", "0.1509", "0.0001"), ("down", "0.1508", "0.0000")])
def test_rounding_modes(tmp_path: Path, rounding, connect_call, half) -> None:
    plan = plan_at(tmp_path, rounding=rounding)
    rows = rate(events([
        {"called": "+442071234567", "at": PEAK, "billsec": 121},  # 0.05 + 0.05 * 121 / 60 = 0.150833..
        {"called": "+493012345678", "at": PEAK, "billsec": 1},  # 0.003 / 60 = 0.00005 exactly
    ]), {"T": plan}).to_pylist()
    assert [r["charge"] for r in rows] == [Decimal(connect_call), Decimal(half)]


def test_rating_decimals(tmp_path: Path) -> None:
    plan = plan_at(tmp_path, rating_decimals=2)
    row = rate(events([{"called": "+442071234567", "at": PEAK, "billsec": 121}]), {"T": plan}).to_pylist()[0]
    assert row["charge"] == Decimal("0.15")


SPLIT_START = "2026-10-14T22:59:00Z"  # Wed 18:59 EDT, one minute before peak ends


@pytest.mark.parametrize(("band_rule", "billsec", "charge", "split"), [
    ("start", 120, "0.2000", None),
    ("split", 120, "0.1600", "peak 60s; offpeak 60s"),  # 60 s at 0.10 + 60 s at 0.06
    # 19:00 and midnight: 60 s peak, the rest offpeak, still the rows in force at the start.
    ("split", 18120, "18.1600", "peak 60s; offpeak 18060s"),
    ("start", 18120, "30.2000", None),
])
def test_band_rules_across_19_00_and_midnight(tmp_path: Path, band_rule, billsec, charge, split) -> None:
    plan = plan_at(tmp_path, band_rule=band_rule)
    row = rate(events([{"called": "+447700900123", "at": SPLIT_START, "billsec": billsec}]),
               {"T": plan}).to_pylist()[0]
    assert row["charge"] == Decimal(charge)
    assert row["band"] == "peak" and row["band_split"] == split


def test_dst_moves_band_edges_in_utc(tmp_path: Path) -> None:
    plan = plan_at(tmp_path)
    rows = rate(events([
        {"called": "+447700900123", "at": "2026-10-30T12:30:00Z", "billsec": 60},  # Fri 08:30 EDT
        {"called": "+447700900123", "at": "2026-11-02T12:30:00Z", "billsec": 60},  # Mon 07:30 EST
    ]), {"T": plan}).to_pylist()
    assert [r["band"] for r in rows] == ["peak", "offpeak"]


def test_split_across_the_dst_change(tmp_path: Path) -> None:
    """2026-11-01 05:30Z is 01:30 EDT; at 06:00Z clocks go back to 01:00 EST, so the whole
    hour to 06:30Z (01:30 EST) is in the 01:00-02:00 night band."""
    deck = f"{DECK_HEADER}\n1,North America,0.0200,0,1/1,,,voice\n1,North America,0.0100,0,1/1,,night,voice\n"
    plan = plan_at(tmp_path, deck=deck, band_rule="split",
                   time_bands=[{"name": "night", "windows": ["Daily 01:00-02:00"]},
                               {"name": "day", "otherwise": True}])
    row = rate(events([{"called": "+13055550000", "at": "2026-11-01T05:30:00Z", "billsec": 3600}]),
               {"T": plan}).to_pylist()[0]
    assert row["charge"] == Decimal("0.6000"), "wall-clock arithmetic would give 0.9000"
    row = rate(events([{"called": "+13055550000", "at": "2026-11-01T06:50:00Z", "billsec": 1200}]),
               {"T": plan}).to_pylist()[0]
    assert row["charge"] == Decimal("0.3000") and row["band_split"] == "night 600s; day 600s"


def test_allowance_consumed_in_call_order_and_exhausted_mid_call(tmp_path: Path) -> None:
    plan = plan_at(tmp_path, allowances=[
        {"name": "3 minutes", "service": "voice", "minutes": 3, "destinations": ["North America*", "UK"]},
        {"name": "1 SMS", "service": "sms", "messages": 1}])
    calls = [  # given out of order: consumption follows call start
        {"key": "third", "called": "+13055550000", "at": "2026-10-14T18:00:00Z", "billsec": 61},
        {"key": "second", "called": "+442071234567", "at": "2026-10-14T17:00:00Z", "billsec": 125},
        {"key": "first", "called": "+13055550000", "at": "2026-10-14T16:00:00Z", "billsec": 61},
        {"key": "other account", "called": "+13055550000", "at": "2026-10-14T16:30:00Z", "billsec": 61,
         "account": "B"},
        {"key": "sms1", "called": "+13055550000", "at": "2026-10-14T16:00:00Z", "service": "sms"},
        {"key": "sms2", "called": "+13055550000", "at": "2026-10-14T16:01:00Z", "service": "sms"},
        {"key": "next cycle", "called": "+13055550000", "at": "2026-11-01T16:00:00Z", "billsec": 61},
    ]
    priced = rate(events(calls), {"T": plan}).to_pylist()
    rows = {call["key"]: row for call, row in zip(calls, priced, strict=True)}
    assert (rows["first"]["allowance_used"], rows["first"]["charge"]) == (120, 0)
    assert rows["first"]["allowance"] == "3 minutes"
    # 60 s left: 65 uncovered seconds at 0.05/min plus the connect fee.
    assert (rows["second"]["allowance_used"], rows["second"]["charge"]) == (60, Decimal("0.1042"))
    assert (rows["third"]["allowance_used"], rows["third"]["charge"]) == (0, Decimal("0.0200"))
    assert rows["third"]["allowance"] is None
    assert rows["other account"]["charge"] == 0
    assert rows["sms1"]["charge"] == 0 and rows["sms2"]["charge"] == Decimal("0.0100")
    assert rows["next cycle"]["charge"] == 0 and rows["next cycle"]["cycle"] == "2026-11"


def test_opening_balance_carries_usage_from_earlier_days(tmp_path: Path) -> None:
    import pandas as pd

    plan = plan_at(tmp_path, allowances=[{"name": "3 minutes", "service": "voice", "minutes": 3,
                                          "destinations": ["North America*"]}])
    opening = pd.DataFrame({"account_id": ["A"], "cycle": ["2026-10"], "allowance": ["3 minutes"],
                            "used": [150]})
    row = rate(events([{"called": "+13055550000", "at": PEAK, "billsec": 61}]), {"T": plan},
               opening).to_pylist()[0]
    assert (row["allowance_used"], row["charge"]) == (30, Decimal("0.0150"))


def test_discount_is_its_own_amount(tmp_path: Path) -> None:
    plan = plan_at(tmp_path, discounts=[{"name": "10% off international", "applies_to": "international_usage",
                                         "percent": "10"}])
    rows = rate(events([
        {"called": "+442071234567", "at": PEAK, "billsec": 125, "call_type": "international"},
        {"called": "+13055550000", "at": PEAK, "billsec": 61},
    ]), {"T": plan}).to_pylist()
    assert rows[0]["charge"] == Decimal("0.1542") and rows[0]["discount"] == Decimal("0.0154")
    assert rows[0]["final_charge"] == Decimal("0.1388")
    assert rows[0]["discount_name"] == "10% off international"
    assert rows[1]["discount"] == 0 and rows[1]["discount_name"] is None


BAD_DECKS = [
    ("duplicate prefix for the same band and date", "1,A,0.01,0,60/60,,,voice\n1,B,0.02,0,60/60,,,voice",
     3, "prefix"),
    ("non-digit prefix", "1x2,A,0.01,0,60/60,,,voice", 2, "prefix"),
    ("negative rate", "1,A,-0.01,0,60/60,,,voice", 2, "rate"),
    ("malformed increment", "1,A,0.01,0,60-60,,,voice", 2, "increment"),
    ("zero step", "1,A,0.01,0,60/0,,,voice", 2, "increment"),
    ("unknown band", "1,A,0.01,0,60/60,,weekend,voice", 2, "time_band"),
    ("bad date", "1,A,0.01,0,60/60,2026-13-01,,voice", 2, "effective_from"),
    ("float-like garbage", "1,A,1e-2x,0,60/60,,,voice", 2, "rate"),
]


@pytest.mark.parametrize(("name", "rows", "line", "column"), BAD_DECKS, ids=[b[0] for b in BAD_DECKS])
def test_bad_deck_names_file_row_and_column(tmp_path: Path, name, rows, line, column) -> None:
    with pytest.raises(PlanFileError) as err:
        plan_at(tmp_path, deck=f"{DECK_HEADER}\n{rows}\n")
    assert err.value.line == line and err.value.column == column, name
    assert f"deck.csv:{line}" in str(err.value)


def test_overlapping_bands_and_bad_plan_fields(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="overlaps band 'peak' on Mon 18:00"):
        plan_at(tmp_path, time_bands=[{"name": "peak", "windows": ["Mon-Fri 08:00-19:00"]},
                                      {"name": "evening", "windows": ["Mon-Fri 18:00-22:00"]}])
    for field, value in (("rounding", "bankers"), ("band_rule", "middle"), ("currency", "XXX"),
                         ("timezone", "Mars/Olympus"), ("rating_decimals", 9)):
        with pytest.raises(PlanFileError) as err:
            plan_at(tmp_path, **{field: value})
        assert err.value.column == field


def test_band_windows_wrap_midnight_and_weekend(tmp_path: Path) -> None:
    plan = plan_at(tmp_path, deck=f"{DECK_HEADER}\n1,NA,0.01,0,60/60,,,voice\n",
                   time_bands=[{"name": "night", "windows": ["Mon-Sun 22:00-06:00"]},
                               {"name": "weekend", "windows": ["Sat,Sun 06:00-22:00"]},
                               {"name": "day", "otherwise": True}])
    names = [plan.bands[plan.week[m]] for m in (0, 5 * 60 + 59, 6 * 60, 22 * 60, 5 * 1440 + 12 * 60)]
    assert names == ["night", "night", "day", "night", "weekend"]


def test_demo_plans_load(demo) -> None:
    settings, _ = demo
    from squak_pipelines.rating.plans import load_plans

    plans = load_plans(settings.reference_dir / "plans")
    assert {"RES-US-BASIC", "BIZ-US-UCAAS", "RES-MX"} <= set(plans)
    assert plans["BIZ-US-UCAAS"].band_rule == "split" and len(plans["BIZ-US-UCAAS"].bands) == 3
    assert all(p.deck("voice") for p in plans.values())


def test_plan_deck_paths_resolve_from_plans_folder(tmp_path: Path) -> None:
    (tmp_path / "decks").mkdir()
    (tmp_path / "decks" / "d.csv").write_text(DECK)
    path = write_plan(tmp_path / "plans", decks={"voice": "decks/d.csv"})
    assert load_plan(path).deck("voice")
