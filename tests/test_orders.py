"""Order stage: validation rules, allocation, service timelines, point-in-time lookup,
idempotency and card-number hygiene, on DuckDB and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from squak_pipelines.card_numbers import has_card_number, luhn_valid, redact
from squak_pipelines.config import Settings
from squak_pipelines.demo.catalogue import PRODUCTS
from squak_pipelines.orders.intake import ACCOUNT_FIELDS, LINE_FIELDS
from squak_pipelines.orders.lookup import owner_at, owners_at
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

PAN = "4111111111111111"
AREA_212 = [f"+1212736010{i}" for i in range(5)]  # +12127360100 .. 104
AREA_415 = ["+14156910100", "+14156910101"]


class OrderDesk:
    """A tiny operator: reference files, drop folder and warehouse for one test."""

    def __init__(self, root: Path, warehouse: Warehouse):
        self.settings = Settings.from_env({"SQUAK_DATA_DIR": str(root)})
        self.warehouse = warehouse
        ref = self.settings.reference_dir
        (ref / "plans").mkdir(parents=True)
        self._csv(ref / "products.csv", list(PRODUCTS))
        for plan in ("RES-US-BASIC", "RES-US-PLUS", "BIZ-US-UCAAS", "FAX-US"):
            (ref / "plans" / f"{plan}.yaml").write_text(f"plan_id: {plan}\ncurrency: USD\n")
        self._csv(ref / "switches.csv", [
            {"switch_id": "ast-nyc1", "format": "asterisk", "timezone": "America/New_York",
             "country": "US", "folder": "ast-nyc1", "serves": "US:NY,US:CA"}])
        self._csv(ref / "number_inventory.csv", [
            {"number": n, "country": "US", "area_code": area, "state": state, "block": n[:8],
             "status": "available"}
            for area, state, numbers in (("212", "NY", AREA_212), ("415", "CA", AREA_415)) for n in numbers])
        self.settings.orders_drop_dir.mkdir(parents=True)
        self.accounts([account("ACC-1"), account("ACC-2", payment_method="invoice", card_token="",
                                                  card_brand="", card_last4="", card_expiry="")],
                      "accounts-base.csv")

    @staticmethod
    def _csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] | None = None) -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns or list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    def accounts(self, rows: list[dict[str, str]], name: str) -> None:
        self._csv(self.settings.orders_drop_dir / name, rows, ACCOUNT_FIELDS)

    def orders(self, rows: list[dict[str, str]], name: str) -> None:
        self._csv(self.settings.orders_drop_dir / name, rows, LINE_FIELDS)

    def run(self):
        return run_order_stage(self.warehouse, self.settings)

    def reasons(self) -> dict[str, str]:
        frame = self.warehouse.query_df("select record_key, reason from orders.rejections")
        return dict(zip(frame["record_key"], frame["reason"], strict=True))

    def table(self, name: str) -> pd.DataFrame:
        return self.warehouse.query_df(f"select * from orders.{name}")


def account(account_id: str, **changes: str) -> dict[str, str]:
    base = {f: "" for f in ACCOUNT_FIELDS}
    base.update(account_id=account_id, name=f"Customer {account_id}", segment="residential",
                email="a@example.com", street="1 Main St", city="New York", state="NY",
                postal_code="10001", country="US", currency="USD", bill_day="1",
                payment_method="card", card_token="tok_abc", card_brand="visa", card_last4="4242",
                card_expiry="12/2029", autopay="true", delivery_method="email",
                created_at="2026-01-01T00:00:00Z")
    base.update(changes)
    return base


def line(order_id: str, **changes: str) -> dict[str, str]:
    base = {f: "" for f in LINE_FIELDS}
    base.update(order_id=order_id, line_no="1", account_id="ACC-1", kind="new", product_id="RES-LINE",
                plan_id="RES-US-BASIC", quantity="1", area_code="212",
                effective_at="2026-10-03T12:00:00Z", submitted_at="2026-10-03T11:00:00Z")
    base.update(changes)
    return base


@pytest.fixture(params=["duckdb", "postgres"])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> OrderDesk:
    if request.param == "duckdb":
        warehouse: Warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    else:
        warehouse = PostgresWarehouse(request.getfixturevalue("fresh_pg_url"))
    return OrderDesk(tmp_path / "squak", warehouse)


def test_each_validation_rule_rejects_with_its_reason(desk: OrderDesk) -> None:
    desk.accounts([
        account("ACC-NOPAY", payment_method="", card_token="", card_brand="", card_last4="", card_expiry=""),
        account("ACC-EXPIRED", card_expiry="09/2026"),
        account("ACC-ZZ", country="ZZ"),
        account("ACC-NOADDR", street=""),
        account("ACC-PAN", card_token=PAN),
    ], "accounts-2026-10.csv")
    desk.orders([
        line("OK-1"),
        line("R-PRODUCT", product_id="VOIP-GOLD"),
        line("R-PLAN", plan_id="RES-PLATINUM"),
        line("R-PLAN-PRODUCT", plan_id="BIZ-US-UCAAS"),
        line("R-QTY", quantity="3"),
        line("R-FEATURE", product_id="FAX-LINE", plan_id="FAX-US", features="sms"),
        line("R-NOPAY", account_id="ACC-NOPAY"),
        line("R-EXPIRED", account_id="ACC-EXPIRED"),
        line("R-COUNTRY", account_id="ACC-ZZ"),
        line("R-ADDRESS", account_id="ACC-NOADDR"),
        line("R-PAN-ACCOUNT", account_id="ACC-PAN"),
        line("R-PAN-NOTES", notes=f"card {PAN[:4]} {PAN[4:8]} {PAN[8:12]} {PAN[12:]}"),
        line("R-NOACCOUNT", account_id="ACC-404"),
        line("R-DISCONNECT", kind="disconnect", phone_number="+12127360104", plan_id=""),
        line("R-CHANGE", kind="change_plan", phone_number="+12127360104", plan_id="RES-US-PLUS"),
        line("R-ADDON", kind="add_on", account_id="ACC-2", product_id="SMS-OPTION"),
        line("R-TIME", effective_at="2026-13-45T25:00:00Z"),
        line("R-QTYTEXT", quantity="two"),
        line("R-KIND", kind="upgrade"),
        line("OK-1"),  # same order id and line again
    ], "orders-2026-10.csv")
    result = desk.run()
    reasons = desk.reasons()
    assert reasons == {
        "R-PRODUCT": "unknown_product", "R-PLAN": "unknown_plan", "R-PLAN-PRODUCT": "plan_not_offered",
        "R-QTY": "quantity_out_of_range", "R-FEATURE": "feature_not_offered",
        "R-NOPAY": "missing_payment_method", "R-EXPIRED": "expired_card", "R-COUNTRY": "invalid_country",
        "R-ADDRESS": "invalid_address", "ACC-PAN": "card_number_in_input",
        "R-PAN-ACCOUNT": "card_number_in_input", "R-PAN-NOTES": "card_number_in_input",
        "R-NOACCOUNT": "unknown_account", "R-DISCONNECT": "disconnect_not_active",
        "R-CHANGE": "change_plan_not_active", "R-ADDON": "no_active_service",
        "R-TIME": "malformed_record", "R-QTYTEXT": "malformed_record", "R-KIND": "malformed_record",
        "OK-1": "duplicate_order_id",
    }
    assert result.lines_accepted == 1
    rejected = desk.table("rejections").set_index("record_key")
    assert rejected.loc["R-TIME", "field"] == "effective_at"
    assert rejected.loc["R-PAN-NOTES", "field"] == "notes"
    assert rejected.loc["R-QTY", "source_file"] == "orders-2026-10.csv"
    assert rejected.loc["R-QTY", "source_line"] == 6  # header is line 1
    assert rejected.loc["R-EXPIRED", "message"].startswith("the card on file expires")


def test_bad_files_are_kept_as_rejections(desk: OrderDesk) -> None:
    path = desk.settings.orders_drop_dir / "orders-2026-10.jsonl"
    good = {"order_id": "J-1", "account_id": "ACC-1", "submitted_at": "2026-10-03T11:00:00Z",
            "lines": [{"line_no": "1", "kind": "new", "product_id": "RES-LINE", "plan_id": "RES-US-BASIC",
                       "quantity": "1", "area_code": "212", "effective_at": "2026-10-03T12:00:00Z"}]}
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({"order_id": "J-3"}) + "\n")
    desk.orders([line("C-1")], "orders-extra.csv")
    with (desk.settings.orders_drop_dir / "orders-extra.csv").open("a") as fh:
        fh.write("C-2,1,ACC-1,new,RES-LINE,RES-US-BASIC,1,212,,,,2026-10-03T12:00:00Z,,,surplus\n")
    desk.run()
    rejected = desk.table("rejections")
    malformed = rejected[rejected["reason"] == "malformed_record"]
    assert set(zip(malformed["source_file"], malformed["source_line"], strict=True)) == {
        ("orders-2026-10.jsonl", 2), ("orders-2026-10.jsonl", 3), ("orders-extra.csv", 3)}
    assert set(desk.table("validated_order_lines")["order_id"]) == {"J-1", "C-1"}
    assert set(desk.table("order_lines").query("status == 'accepted'")["order_id"]) == {"J-1", "C-1"}


def test_allocation_requested_next_free_and_exhaustion(desk: OrderDesk) -> None:
    desk.orders([
        line("A-REQ", requested_number="+12127360103", effective_at="2026-10-01T10:00:00Z"),
        line("A-NEXT", effective_at="2026-10-01T11:00:00Z"),
        line("A-TAKEN", requested_number="+12127360103", effective_at="2026-10-01T12:00:00Z"),
        line("A-AREA", area_code="", requested_number="+14156910101", effective_at="2026-10-01T13:00:00Z"),
        line("A-BULK", account_id="ACC-2", product_id="UCAAS-SEAT", plan_id="BIZ-US-UCAAS",
             quantity="3", effective_at="2026-10-01T14:00:00Z"),
        line("A-MORE", product_id="DID", plan_id="BIZ-US-UCAAS", account_id="ACC-2",
             effective_at="2026-10-01T15:00:00Z"),
    ], "orders-2026-10.csv")
    desk.run()
    numbers = desk.table("services").groupby("order_id")["number"].apply(sorted).to_dict()
    assert numbers["A-REQ"] == ["+12127360103"]
    assert numbers["A-NEXT"] == ["+12127360100"], "lowest free number of the area"
    assert numbers["A-TAKEN"] == ["+12127360101"], "requested number taken: next free instead"
    assert numbers["A-AREA"] == ["+14156910101"]
    assert "A-BULK" not in numbers, "only two numbers were left for three seats"
    assert desk.reasons()["A-BULK"] == "area_exhausted"
    assert numbers["A-MORE"] == ["+12127360102"], "an exhausted line gives back what it took"
    inventory = desk.table("number_inventory").set_index("number")
    assert inventory.loc["+12127360104", "status"] == "available"
    history = desk.table("order_status_history")
    taken = history[(history["order_id"] == "A-TAKEN")]
    assert {"received", "validated", "requested_number_unavailable", "number_allocated",
            "activation_test_passed", "active"} <= set(taken["status"])


def test_activation_test_failure_returns_the_number(desk: OrderDesk) -> None:
    inv = desk.settings.reference_dir / "number_inventory.csv"
    inv.write_text(inv.read_text() + "+13055550100,US,305,FL,+1305555,available\n")
    desk.orders([line("T-FL", area_code="305")], "orders-2026-10.csv")
    desk.run()
    assert desk.reasons()["T-FL"] == "activation_failed"
    assert desk.table("number_inventory").set_index("number").loc["+13055550100", "status"] == "available"


def test_timelines_and_point_in_time_lookup(desk: OrderDesk) -> None:
    desk.orders([
        line("T-NEW", requested_number="+12127360100", effective_at="2026-10-01T09:00:00Z"),
        line("T-CHANGE", kind="change_plan", phone_number="+12127360100", plan_id="RES-US-PLUS",
             effective_at="2026-10-10T00:00:00Z"),
        line("T-OFF", kind="disconnect", phone_number="+12127360100", plan_id="",
             effective_at="2026-10-20T15:30:00Z"),
        line("T-REUSE", account_id="ACC-2", requested_number="+12127360100",
             effective_at="2026-11-01T00:00:00Z"),
        line("T-LATER", account_id="ACC-2", requested_number="+12127360100",
             effective_at="2027-02-01T00:00:00Z"),
    ], "orders-2026-10.csv")
    desk.run()
    wh = desk.warehouse
    assert owner_at(wh, "+12127360100", "2026-10-01T08:59:59Z") is None
    assert owner_at(wh, "+12127360100", "2026-10-01T09:00:00Z") == "ACC-1", "start is inclusive"
    assert owner_at(wh, "+12127360100", "2026-10-20T15:29:59Z") == "ACC-1"
    assert owner_at(wh, "+12127360100", "2026-10-20T15:30:00Z") is None, "end is exclusive"
    # Quarantine: the number is not given out again for 90 days.
    services = desk.table("services").set_index("order_id")
    assert services.loc["T-REUSE", "number"] != "+12127360100"
    assert services.loc["T-LATER", "number"] == "+12127360100"
    assert owner_at(wh, "+12127360100", "2027-02-02T00:00:00Z") == "ACC-2"
    # Plan in force at each moment, from a set-based lookup of many pairs.
    pairs = pa.table({
        "number": ["+12127360100", "+12127360100", "+12127360100", "+19999999999"],
        "at": pa.array([datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC),
                        datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 10, 5, tzinfo=UTC)],
                       pa.timestamp("us", tz="UTC")),
        "event_id": ["e1", "e2", "e3", "e4"]})
    got = owners_at(wh, pairs).to_pandas().sort_values("event_id")
    assert got["plan_id"].tolist()[:2] == ["RES-US-BASIC", "RES-US-PLUS"]
    assert got["account_id"].isna().tolist() == [False, False, True, True]
    periods = desk.table("services").query("number == '+12127360100' and account_id == 'ACC-1'")
    assert sorted(periods["period"]) == [1, 2] and periods["service_id"].nunique() == 1


def test_rerun_changes_nothing_and_new_drop_adds_only_its_orders(desk: OrderDesk) -> None:
    desk.orders([line("I-1"), line("I-2", account_id="ACC-2")], "orders-2026-10-01.csv")
    desk.run()
    tables = ("order_lines", "services", "number_inventory", "rejections", "order_status_history", "accounts")
    before = {t: desk.table(t).sort_values(list(desk.table(t).columns[:2])).reset_index(drop=True)
              for t in tables}
    second = desk.run()
    assert second.files_processed == []
    for t in tables:
        after = desk.table(t).sort_values(list(before[t].columns[:2])).reset_index(drop=True)
        pd.testing.assert_frame_equal(before[t], after, check_dtype=False)
    # The same file delivered again under another name is recorded, not processed.
    src = desk.settings.orders_drop_dir / "orders-2026-10-01.csv"
    (desk.settings.orders_drop_dir / "orders-2026-10-01-resent.csv").write_bytes(src.read_bytes())
    desk.orders([line("I-3", effective_at="2026-10-05T00:00:00Z")], "orders-2026-10-05.csv")
    third = desk.run()
    assert third.files_processed == ["orders-2026-10-05.csv"]
    assert sorted(desk.table("order_lines")["order_id"]) == ["I-1", "I-2", "I-3"]
    files = desk.table("intake_files").set_index("file_name")
    assert files.loc["orders-2026-10-01-resent.csv", "status"] == "duplicate_delivery"
    # Earlier allocations stand: I-3 got the next free number, not someone else's.
    numbers = desk.table("services").set_index("order_id")["number"]
    assert numbers["I-1"] == "+12127360100" and numbers["I-3"] == "+12127360102"


def test_card_numbers_are_never_written(desk: OrderDesk) -> None:
    desk.accounts([account("ACC-PAN", card_token=PAN)], "accounts-2026-10.csv")
    desk.orders([line("P-1", notes=f"pay with {PAN}"), line("P-2", account_id="ACC-PAN")],
                "orders-2026-10.csv")
    desk.run()
    for table in ("order_lines", "rejections", "accounts", "order_status_history", "services"):
        text = desk.table(table).astype(str).to_csv()
        assert PAN not in text and "4111 1111" not in text, f"card number written to orders.{table}"
    assert "[REDACTED CARD NUMBER]" in desk.table("rejections").to_csv()


def test_card_number_detection() -> None:
    assert luhn_valid(PAN) and not luhn_valid("4111111111111112")
    assert has_card_number("4111-1111-1111-1111") and has_card_number(f"x {PAN} y")
    assert not has_card_number("+447700900123456"), "an E.164 phone number is not a card"
    # Every common spelling: groups by spaces, dots, dashes; doubled separators; a word before it.
    for spelling in ("4111.1111.1111.1111", "4111  1111  1111  1111", "cc4111111111111111",
                     "tok_4111111111111111", "card:4111 1111 1111 1111.", "4111/1111/1111/1111"):
        assert has_card_number(spelling), spelling
        assert "4111" not in redact(spelling).replace("[REDACTED CARD NUMBER]", ""), spelling
    assert not has_card_number("DE89 3704 0044 0532 0130 00"), "an IBAN is not a card"
    assert not has_card_number("tok_2f0ddac24097acb7") and not has_card_number("12125551234")
    assert not has_card_number("2026-10-03T12:00:00Z")
    assert redact(f"card {PAN} ok") == "card [REDACTED CARD NUMBER] ok"


def test_demo_orders_reproduce_the_generators_service_timeline(demo, tmp_path: Path) -> None:
    """The stage allocates exactly the numbers the demo traffic was generated from."""
    from squak_pipelines.demo.generate import GenerateOptions
    from squak_pipelines.demo.operator import build_operator
    from tests.conftest import SMALL

    settings, manifest = demo
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    result = run_order_stage(warehouse, settings)
    expected = {(e["order_id"], e["reason"]) for e in manifest["orders"]["expected_rejections"]}
    got = warehouse.query_df("select record_key, reason from orders.rejections")
    assert expected <= set(zip(got["record_key"], got["reason"], strict=True))
    assert result.lines_accepted > 0

    def iso(t) -> str:
        return "" if t is None or pd.isna(t) else pd.Timestamp(t).tz_convert("UTC").isoformat()

    options: GenerateOptions = SMALL
    op = build_operator(np.random.default_rng(options.seed), options.customers, options.month_start)
    gen = op.services[op.services["product_id"] != "SMS-OPTION"]
    want = set(zip(gen["account_id"], "+" + gen["number"], gen["plan_id"],
                   map(iso, gen["active_from"]), map(iso, gen["active_to"]), strict=True))
    have = warehouse.query_df("select account_id, number, plan_id, active_from, active_to "
                              "from orders.services where number is not null")
    have = set(zip(have["account_id"], have["number"], have["plan_id"], map(iso, have["active_from"]),
                   map(iso, have["active_to"]), strict=True))
    assert have == want
