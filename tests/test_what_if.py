"""Tariff what-if: a closed cycle re-priced under a proposal with the production engine,
billed data untouched; revenue and margin before, after and the delta."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow.compute as pc
import pytest

from squak_pipelines import cli
from squak_pipelines.rating.plans import PlanFileError, load_plans
from squak_pipelines.rating.what_if import Proposal, WhatIfError, what_if
from squak_pipelines.rating.what_if_report import store, write_report
from tests.stage_helpers import table_rows


def _billed(warehouse) -> list[dict]:
    return sorted(table_rows(warehouse, "rating.rated_events"), key=lambda r: r["event_key"])


def test_the_current_plans_as_proposal_change_nothing(billed_demo, tmp_path: Path) -> None:
    warehouse, settings = billed_demo
    before = _billed(warehouse)
    plans = tuple(sorted((settings.reference_dir / "plans").glob("*.yaml")))
    result = what_if(warehouse, settings.reference_dir, "2026-10", Proposal(plans))
    events = result.events
    assert events.num_rows == sum(1 for r in before if r["cycle"].startswith("2026-10") and r["answered"])
    assert pc.all(pc.equal(events["before"], events["after"])).as_py(), "every event's billed price"
    accounts = result.by("account_id")
    assert len(accounts) > 20 and (accounts["revenue_delta"] == 0).all()
    assert (accounts["revenue_before"] > 0).any() and (accounts["cost"] > 0).any(), "real revenue and cost"
    assert (result.allowances()["delta"] == 0).all()
    assert _billed(warehouse) == before, "billed data untouched"
    files = write_report(result, tmp_path / "report")
    assert {p.name for p in files} >= {"by_plan.csv", "by_account.csv", "impact.html"}
    assert "plotly" in (tmp_path / "report" / "impact.html").read_text()


def _raise_rate(deck: Path, prefix: str, rate: str, out: Path) -> None:
    lines = deck.read_text().splitlines()
    header = lines[0].split(",")
    at = header.index("rate")
    changed = [line if line.split(",")[0] != prefix else
               ",".join(rate if i == at else v for i, v in enumerate(line.split(","))) for line in lines]
    assert changed != lines
    out.write_text("\n".join(changed) + "\n")


def test_one_changed_rate_changes_exactly_the_events_on_that_prefix(billed_demo, tmp_path: Path) -> None:
    warehouse, settings = billed_demo
    rated = [r for r in _billed(warehouse) if r["cycle"].startswith("2026-10") and r["answered"]]
    # The international prefix with the most calls charged beyond allowances, in a plan without
    # discounts: the new price is the deck rule by hand.
    plans = load_plans(settings.reference_dir / "plans")
    plain = {p for p, plan in plans.items() if not plan.discounts}
    candidates = [r for r in rated if r["plan_id"] in plain and r["charged_units"] > r["allowance_used"]
                  and r["deck_file"].endswith("_voice.csv") and r["call_type"] == "international"]
    assert candidates
    deck, prefix = max(((r["deck_file"], r["matched_prefix"]) for r in candidates),
                       key=lambda k: sum(1 for r in candidates if (r["deck_file"], r["matched_prefix"]) == k))
    proposed = tmp_path / "proposed.csv"
    _raise_rate(settings.reference_dir / "decks" / deck, prefix, "0.5000", proposed)
    result = what_if(warehouse, settings.reference_dir, "2026-10", Proposal(decks={deck: proposed}))

    keys = result.events["event_key"].to_pylist()
    before = dict(zip(keys, result.events["before"].to_pylist(), strict=True))
    after = dict(zip(keys, result.events["after"].to_pylist(), strict=True))
    on_prefix = {r["event_key"] for r in rated if (r["deck_file"], r["matched_prefix"]) == (deck, prefix)}
    changed = {k for k in keys if after[k] != before[k]}
    assert changed and changed <= on_prefix
    checked = 0
    for r in rated:
        if r["event_key"] not in on_prefix or r["plan_id"] not in plain or r["allowance_used"]:
            continue
        decimals = Decimal(1).scaleb(-plans[r["plan_id"]].rating_decimals)
        by_hand = (Decimal("0.5") * r["charged_units"] / 60).quantize(decimals, ROUND_HALF_UP)
        by_hand += r["connect_fee"]
        assert Decimal(after[r["event_key"]]).scaleb(-6) == by_hand, r
        assert r["event_key"] in changed
        checked += 1
    assert checked
    delta = sum(after[k] - before[k] for k in keys)
    totals = result.by()
    assert sum(totals["revenue_delta"]) == Decimal(delta).scaleb(-6) != 0
    rows = store(warehouse, result, "test-raise")
    stored = warehouse.query_arrow("select sum(revenue_after - revenue_before) as d, sum(events) as n "
                                   "from rating.what_if where scenario = 'test-raise'").to_pylist()[0]
    assert rows > 0 and stored["d"] == Decimal(delta).scaleb(-6) and stored["n"] == result.events.num_rows


def test_what_cannot_run_is_refused(billed_demo, tmp_path: Path) -> None:
    warehouse, settings = billed_demo
    with pytest.raises(WhatIfError, match="2026-11 is not closed"):
        what_if(warehouse, settings.reference_dir, "2026-11", Proposal(decks={"usd_voice.csv": tmp_path}))
    broken = tmp_path / "usd_voice.csv"
    shutil.copy(settings.reference_dir / "decks" / "usd_voice.csv", broken)
    broken.write_text(broken.read_text() + "4930,Germany - Berlin,abc,0,60/60,,,voice\n")
    with pytest.raises(PlanFileError, match=r"usd_voice.csv:\d+: column 'rate'"):
        what_if(warehouse, settings.reference_dir, "2026-10", Proposal(decks={"usd_voice.csv": broken}))
    with pytest.raises(WhatIfError, match=r"no current plan uses a deck named 'nope\.csv'"):
        what_if(warehouse, settings.reference_dir, "2026-10", Proposal(decks={"nope.csv": broken}))


@pytest.mark.parametrize("billed_demo", ["duckdb"], indirect=True)
def test_the_command_line_reports_and_refuses_in_one_line(billed_demo, monkeypatch, tmp_path: Path) -> None:
    warehouse, settings = billed_demo
    monkeypatch.setenv("SQUAK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SQUAK_WAREHOUSE_URL", f"duckdb:///{warehouse.path}")
    plan = settings.reference_dir / "plans" / "BIZ-EU.yaml"

    def run(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(["what-if", *args])
        return code, out.getvalue(), err.getvalue()

    code, out, _ = run("--cycle", "2026-10", "--plan", str(plan), "--out", str(tmp_path / "r"))
    assert code == 0 and "per currency" in out and "most affected accounts" in out
    assert (tmp_path / "r" / "by_destination.csv").exists()
    for args, message in ((("--cycle", "2026-12", "--plan", str(plan)), "is not closed"),
                          (("--cycle", "2026-10"), "give a proposal"),
                          (("--cycle", "2026-10", "--deck", "usd_voice.csv"), "CURRENT_NAME=PROPOSED_FILE"),
                          (("--cycle", "2026-10", "--plan", str(tmp_path / "none.yaml")), "not found")):
        code, _, err = run(*args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("billed_demo", ["duckdb"], indirect=True)
def test_the_dagster_job_takes_the_proposal_as_run_config(billed_demo, tmp_path: Path) -> None:
    import dagster as dg

    from squak_pipelines.rating.defs import what_if_results
    from squak_pipelines.resources import SquakResource

    warehouse, settings = billed_demo
    squak = SquakResource(data_dir=str(settings.data_dir), warehouse_url=f"duckdb:///{warehouse.path}")
    plan = str(settings.reference_dir / "plans" / "BIZ-UK.yaml")
    config = {"ops": {"rating__what_if": {"config": {"cycle": "2026-10", "plans": [plan],
                                                      "scenario": "uk-as-is"}}}}
    result = dg.materialize([what_if_results], resources={"squak": squak}, run_config=config)
    assert result.success
    metadata = result.asset_materializations_for_node("rating__what_if")[0].metadata
    assert metadata["scenario"].value == "uk-as-is" and metadata["events"].value > 0
    delta = warehouse.scalar("select sum(revenue_after - revenue_before) from rating.what_if "
                             "where scenario = 'uk-as-is'")
    assert delta == 0
    failed = dg.materialize([what_if_results], resources={"squak": squak}, raise_on_error=False,
                            run_config={"ops": {"rating__what_if": {"config": {"cycle": "2026-12",
                                                                               "plans": [plan]}}}})
    assert not failed.success
