"""Charging on the warehouse (DuckDB and PostgreSQL): every mediated event rated or in
suspense, suspense re-rated when the order or plan arrives, deterministic re-rating, the
fraud gate blocking a day, the Dagster asset and its checks, and the quote CLI."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from squak_pipelines.cli import main
from squak_pipelines.config import Settings
from squak_pipelines.mediation.stage import mediate
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.rating.defs import rated_events, suspense_rerating_sensor
from squak_pipelines.rating.stage import rate_days, suspense_days
from squak_pipelines.resources import SquakResource
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from tests.stage_helpers import copy_demo, mediated


@pytest.fixture(params=["duckdb", "postgres"])
def charged(request: pytest.FixtureRequest, tmp_path: Path, demo) -> tuple[Warehouse, Settings, list[date]]:
    settings = copy_demo(demo, tmp_path / "squak")
    if request.param == "duckdb":
        warehouse: Warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    else:
        warehouse = PostgresWarehouse(request.getfixturevalue("fresh_pg_url"))
    return warehouse, settings, mediated(warehouse, settings)


def _totals(warehouse: Warehouse) -> list[tuple]:
    frame = warehouse.query_df("select event_key, cast(final_charge as varchar) as c, allowance_used "
                               "from rating.rated_events order by event_key")
    return list(frame.itertuples(index=False, name=None))


def test_every_event_rated_or_in_suspense_and_rerating_is_deterministic(charged, demo) -> None:
    warehouse, settings, days = charged
    report = rate_days(warehouse, settings, days)
    mediated = warehouse.count("mediation.events")
    assert report.events == mediated == report.rated + sum(report.suspense.values())
    assert warehouse.count("rating.rated_events") + warehouse.count("rating.suspense") == mediated
    planted = sum(f["unknown_caller"] for f in demo[1]["cdr"]["files"])
    assert 0 < report.suspense["unknown_account"] <= planted
    assert set(report.suspense) == {"unknown_account"}, "the demo decks price every destination"
    assert warehouse.scalar("select count(*) from rating.rated_events where final_charge < 0 "
                            "or charge < 0 or discount < 0") == 0
    assert warehouse.scalar("select count(*) from rating.rated_events where answered and billsec > 0 "
                            "and charge > 0") > 0
    assert warehouse.scalar("select count(*) from rating.rated_events where allowance_used > 0") > 0
    assert warehouse.scalar("select count(*) from rating.rated_events where discount > 0") > 0
    revenue = sum((Decimal(v) for kinds in report.revenue.values() for v in kinds.values()), Decimal(0))
    assert revenue == warehouse.scalar("select sum(final_charge) from rating.rated_events")
    before = _totals(warehouse)
    rate_days(warehouse, settings, days)
    assert _totals(warehouse) == before, "re-rating the same inputs gives the same prices"


def test_suspense_is_rerated_when_the_order_or_plan_arrives(charged) -> None:
    warehouse, settings, days = charged
    rate_days(warehouse, settings, days)
    key, number, day = warehouse.query_df(
        "select event_key, calling_number, partition_day from rating.rated_events "
        "where answered and billsec > 0 order by event_key limit 1").iloc[0]
    day = date.fromisoformat(str(day)[:10])
    warehouse.execute("update orders.services set plan_id = 'NOT-YET' where number = :n", {"n": number})
    rate_days(warehouse, settings, [day])
    reason = "select reason from rating.suspense where event_key = :k"
    assert warehouse.scalar(reason, {"k": key}) == "no_plan"
    warehouse.execute("create table orders.services_held as select * from orders.services where number = :n",
                      {"n": number})
    warehouse.execute("delete from orders.services where number = :n", {"n": number})
    rate_days(warehouse, settings, [day])
    assert warehouse.scalar("select reason from rating.suspense where event_key = :k",
                            {"k": key}) == "unknown_account"
    warehouse.execute("insert into orders.services select * from orders.services_held")
    warehouse.execute("update orders.services set plan_id = (select plan_id from orders.services s2 "
                      "where s2.number <> :n and s2.plan_id <> 'NOT-YET' limit 1) where number = :n",
                      {"n": number})
    rate_days(warehouse, settings, [day])
    assert warehouse.scalar("select count(*) from rating.suspense where event_key = :k", {"k": key}) == 0
    assert warehouse.scalar("select count(*) from rating.rated_events where event_key = :k", {"k": key}) == 1


def test_a_day_blocked_by_the_fraud_gate_is_not_rated(charged) -> None:
    warehouse, settings, days = charged
    warehouse.execute("update mediation.partition_status set gate_passed = false where partition_day = :d",
                      {"d": days[0]})
    report = rate_days(warehouse, settings, days[:2])
    assert report.blocked_days == [days[0].isoformat()] and report.days == [days[1].isoformat()]
    assert warehouse.scalar("select count(*) from rating.rated_events where partition_day = :d",
                            {"d": days[0]}) == 0


def test_dagster_asset_checks_and_suspense_sensor(tmp_path: Path, demo) -> None:
    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(settings.data_dir / "warehouse.duckdb")
    run_order_stage(warehouse, settings)
    mediate(warehouse, settings, [date(2026, 10, 5), date(2026, 10, 6)])
    resource = SquakResource(data_dir=str(settings.data_dir),
                             warehouse_url=f"duckdb:///{settings.data_dir / 'warehouse.duckdb'}")
    result = dg.materialize([rated_events], partition_key="2026-10-05", resources={"squak": resource})
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"nothing_lost": True, "no_negative_charges": True, "zero_priced_share": True,
                      "mediation_gate": True}
    meta = result.get_asset_materialization_events()[0].step_materialization_data.materialization.metadata
    assert meta["rated"].value > 0 and "USD" in meta["revenue_by_service_and_call_type"].value
    warehouse.execute("delete from rating.rated_events where partition_day = '2026-10-05' and event_key in "
                      "(select event_key from rating.rated_events limit 1)")
    from squak_pipelines.rating.defs import _nothing_lost

    assert not _nothing_lost(warehouse, {"first": date(2026, 10, 5), "last": date(2026, 10, 5)}).passed
    warehouse.execute("update orders.services set plan_id = 'NOT-YET' where number in (select calling_number "
                      "from mediation.events where partition_day = '2026-10-05' limit 1)")
    dg.materialize([rated_events], partition_key="2026-10-05", resources={"squak": resource})
    with dg.build_sensor_context(resources={"squak": resource}) as ctx:
        requests = suspense_rerating_sensor(ctx)
        cursor = ctx.cursor
    assert [r.partition_key for r in requests] == ["2026-10-05"], "the day with suspense is re-rated"
    with dg.build_sensor_context(resources={"squak": resource}, cursor=cursor) as ctx:
        assert isinstance(suspense_rerating_sensor(ctx), dg.SkipReason), "nothing changed since"


def test_quote_cli_writes_every_row_and_explains_one(tmp_path: Path, demo, capsys) -> None:
    settings, _ = demo
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,service,calling_number,called_number,start_time,answer_time,billsec,disposition,"
        "account_code\n"
        "e1,voice,+12125550100,+447700900123,2026-10-14T16:00:00Z,2026-10-14T16:00:05Z,125,ANSWERED,A\n"
        "e2,voice,+12125550100,+99999999,2026-10-14T16:00:00Z,2026-10-14T16:00:05Z,125,ANSWERED,A\n"
        "e3,sms,+12125550100,12125551234,2026-10-14T16:00:00Z,,0,DELIVERED,A\n"
        "e4,voice,+12125550100,+12125551234,2026-10-14T16:00:00Z,,0,NO ANSWER,A\n")
    out = tmp_path / "rated.csv"
    plan = settings.reference_dir / "plans" / "RES-US-PLUS.yaml"
    code = main(["rate", "--plan", str(plan), "--events", str(events), "--out", str(out),
                 "--explain", "e1", "--home-country-code", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "matched_prefix  4477" in printed and "final_charge" in printed
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and '"no_rate"' in lines[2] and '"rated"' in lines[3]
    header = [h.strip('"') for h in lines[0].split(",")]
    first = dict(zip(header, lines[1].split(","), strict=False))
    assert first["final_charge"] == "0.169600", "0.1785 less 5% international discount 0.0089"
    bad = tmp_path / "bad.csv"
    bad.write_text("event_id,called_number,start_time\ne1,+4477,yesterday\n")
    assert main(["rate", "--plan", str(plan), "--events", str(bad), "--out", str(out)]) == 2
    assert "bad.csv:2: column 'start_time'" in capsys.readouterr().err


def test_a_changed_deck_re_rates_the_days_not_yet_billed(tmp_path: Path, demo) -> None:
    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(settings.data_dir / "warehouse.duckdb")
    run_order_stage(warehouse, settings)
    days = [date(2026, 10, 5), date(2026, 10, 6)]
    mediate(warehouse, settings, days)
    rate_days(warehouse, settings, days)
    # The events of 5 Oct are on a final invoice; 6 Oct is still open.
    warehouse.load("invoicing.billed_events", warehouse.query_arrow(
        "select event_key, 'SQK-2026-000001' as invoice_number from rating.rated_events "
        "where partition_day = '2026-10-05'"))
    resource = SquakResource(data_dir=str(settings.data_dir),
                             warehouse_url=f"duckdb:///{settings.data_dir / 'warehouse.duckdb'}")
    with dg.build_sensor_context(resources={"squak": resource}) as ctx:
        suspense_rerating_sensor(ctx)  # the first tick only learns the state
        cursor = ctx.cursor
    deck = settings.reference_dir / "decks" / "usd_voice.csv"
    deck.write_text(deck.read_text().replace(",0.0080,", ",0.0090,", 1))
    with dg.build_sensor_context(resources={"squak": resource}, cursor=cursor) as ctx:
        requests = suspense_rerating_sensor(ctx)
        cursor = ctx.cursor
    # The open day is re-priced; the billed day only if it has events in suspense.
    assert {r.partition_key for r in requests} == {"2026-10-06", *suspense_days(warehouse)}
    with dg.build_sensor_context(resources={"squak": resource}, cursor=cursor) as ctx:
        assert isinstance(suspense_rerating_sensor(ctx), dg.SkipReason), "nothing changed since"
