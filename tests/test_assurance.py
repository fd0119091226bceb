"""Revenue assurance: each planted kind of leakage fails its control with the records behind
it; clean data passes every control; the critical controls block finalization."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from squak_pipelines.assurance.invoice_gate import RevenueAssuranceError
from squak_pipelines.assurance.stage import run_assurance, run_controls, stored_results
from squak_pipelines.assurance.thresholds import ThresholdsError, load_thresholds
from squak_pipelines.capture.drop_files import scan_drop_folder, to_table
from squak_pipelines.config import Settings
from squak_pipelines.demo.payments import write_demo_payments
from squak_pipelines.invoicing.stage import bill_cycle
from squak_pipelines.payments.stage import assign, run_payments
from squak_pipelines.reference.files import REFERENCE_FILES, load_switches
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from tests.stage_helpers import copy_demo, rated

CYCLE = "2026-10"
AS_OF = date(2026, 11, 25)


@pytest.fixture(autouse=True)
def _no_pdf(monkeypatch) -> None:
    monkeypatch.setenv("SQUAK_INVOICE_PDF", "off")


def _audit_everything(settings: Settings) -> None:
    """Every control judges every record: the whole cycle is re-rated."""
    (settings.reference_dir / "assurance.yaml").write_text(
        "rerating: {sample_share: 1.0, max_events: 1000000}\n"
    )


def _landed(warehouse: Warehouse, settings: Settings) -> None:
    """Reference files and the drop-folder inventory in `raw`, as the first stages land them."""
    for name, (file_name, loader) in REFERENCE_FILES.items():
        warehouse.load(f"raw.{name}", loader(settings.reference_dir / file_name))
    switches = load_switches(settings.reference_dir / "switches.csv")
    warehouse.load("raw.cdr_drop_files", to_table(scan_drop_folder(settings.cdr_drop_dir, switches)))


def _billed_and_paid(warehouse: Warehouse, settings: Settings) -> None:
    """The demo month landed, rated, invoiced and paid, with finance having placed every
    payment the matcher could not (so the data is clean)."""
    _audit_everything(settings)
    _landed(warehouse, settings)
    rated(warehouse, settings)
    bill_cycle(warehouse, settings, CYCLE, finalize=True)
    write_demo_payments(warehouse, settings)
    run_payments(warehouse, settings, AS_OF)
    accounts = warehouse.query_df(
        "select currency, min(account_id) as account_id from invoicing.invoices group by 1"
    )
    owner = dict(zip(accounts["currency"], accounts["account_id"], strict=True))
    for p in warehouse.query_df("select payment_id, currency from payments.suspense").itertuples():
        assign(warehouse, p.payment_id, by="finance", account_id=owner[p.currency])
    run_payments(warehouse, settings, AS_OF)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, demo) -> Iterator[tuple[Path, Settings]]:
    root = tmp_path_factory.mktemp("assured")
    settings = copy_demo(demo, root / "squak")
    with pytest.MonkeyPatch.context() as env:  # billed and audited on the same day
        env.setenv("SQUAK_INVOICE_PDF", "off")
        env.setenv("SQUAK_TODAY", AS_OF.isoformat())
        _billed_and_paid(DuckDBWarehouse(root / "w.duckdb"), settings)
    yield root / "w.duckdb", settings


@pytest.fixture
def case(clean, tmp_path: Path) -> tuple[DuckDBWarehouse, Settings]:
    """A private copy of the clean, audited month to plant a leak in."""
    db, settings = clean
    shutil.copytree(settings.data_dir, tmp_path / "squak")
    shutil.copy(db, tmp_path / "w.duckdb")
    return DuckDBWarehouse(tmp_path / "w.duckdb"), Settings.from_env(
        {"SQUAK_DATA_DIR": str(tmp_path / "squak")}
    )


def _results(warehouse: Warehouse, settings: Settings, as_of: date = AS_OF) -> dict:
    return {r.control: r for r in run_controls(warehouse, settings, CYCLE, as_of)}


def _only_failing(results: dict, *names: str) -> None:
    failing = sorted(n for n, r in results.items() if not r.passed)
    assert failing == sorted(names), {n: results[n].summary for n in failing}


def test_clean_data_passes_every_control_and_is_stored(case) -> None:
    warehouse, settings = case
    report = run_assurance(warehouse, settings, CYCLE, AS_OF)
    assert [r.number for r in report.results] == list(range(1, 10))
    assert all(r.passed for r in report.results), {
        r.control: r.summary for r in report.results if not r.passed
    }
    assert all(r.findings.empty for r in report.results)
    figures = {r.control: r.figures for r in report.results}
    completeness = figures["usage_completeness"]
    assert completeness["records_received"] == completeness["records_accounted"] > 0
    assert completeness["mediated"] == completeness["rated"] + completeness["suspense"]
    assert figures["rerating"]["sampled_events"] == warehouse.scalar(
        "select count(*) from rating.rated_events where substr(cycle, 1, 7) = :c "
        "and account_id is not null", {"c": CYCLE}
    )
    assert figures["zero_rated"]["zero_priced"] > 0 and figures["zero_rated"]["unexplained"] == 0
    by_plan = {
        (x["plan_id"], x["currency"], x["line_type"]): x for x in figures["invoiced_vs_expected"]["by_plan"]
    }
    assert any(k[2] == "recurring" and Decimal(v["expected"]) > 0 for k, v in by_plan.items())
    # Invoiced before tax per currency = the invoices' subtotals.
    subtotals = warehouse.query_df("select currency, sum(subtotal) as s from invoicing.invoices group by 1")
    for currency, total in zip(subtotals["currency"], subtotals["s"], strict=True):
        assert Decimal(figures["invoiced_vs_expected"]["invoiced_before_tax"][currency]) == total
    stored = stored_results(warehouse, CYCLE)
    assert [r["passed"] for r in stored] == [True] * 9
    with report.leakage_report.open() as f:
        assert list(csv.reader(f)) == [
            [
                "cycle",
                "control_number",
                "control",
                "kind",
                "record",
                "account_id",
                "currency",
                "amount",
                "detail",
            ]
        ]
    run_assurance(warehouse, settings, CYCLE, AS_OF)  # a re-run replaces the cycle's rows
    assert warehouse.count("assurance.control_results") == 9


def test_a_file_never_mediated_is_found(case) -> None:
    warehouse, settings = case
    name = warehouse.scalar("select min(file_name) from mediation.files")
    warehouse.execute("delete from mediation.files where file_name = :f", {"f": name})
    found = _results(warehouse, settings)["usage_completeness"].findings
    assert list(found["kind"]) == ["file_not_mediated"] and list(found["record"]) == [name]


def test_a_dropped_cdr_fails_usage_completeness_with_its_file_and_line(case) -> None:
    warehouse, settings = case
    lost = warehouse.query_df(
        "select event_key, source_file, source_line from mediation.events order by event_key limit 1"
    ).iloc[0]
    warehouse.execute("delete from mediation.events where event_key = :k", {"k": lost["event_key"]})
    results = _results(warehouse, settings)
    _only_failing(results, "usage_completeness")
    found = results["usage_completeness"].findings
    assert list(found["kind"]) == ["record_lost_in_mediation"]
    assert list(found["record"]) == [f"{lost['source_file']}:{lost['source_line']}"]
    assert results["usage_completeness"].figures["switch_days_out_of_balance"] == 1
    assert results["usage_completeness"].figures["gx_suite_passed"] is False, "the GX suite agrees"


def test_a_rated_event_left_off_the_invoices_is_found(case) -> None:
    warehouse, settings = case
    key = warehouse.scalar(
        "select b.event_key from invoicing.billed_events b join rating.rated_events r "
        "using (event_key) where substr(r.cycle, 1, 7) = :c order by 1 limit 1",
        {"c": CYCLE},
    )
    warehouse.execute("delete from invoicing.billed_events where event_key = :k", {"k": key})
    found = _results(warehouse, settings)["usage_completeness"].findings
    assert list(found["kind"]) == ["rated_not_invoiced"] and list(found["record"]) == [key]


def test_a_double_billed_event_fails_duplicate_billing(case) -> None:
    warehouse, settings = case
    key, first = warehouse.query_df(
        "select event_key, invoice_number from invoicing.billed_events order by event_key limit 1"
    ).iloc[0]
    other = warehouse.scalar("select max(number) from invoicing.invoices where number <> :n", {"n": first})
    with pytest.raises(Exception, match=r"(?i)duplicate key"):  # the warehouse's key refuses it first
        warehouse.execute(f"insert into invoicing.billed_events values ('{key}', '{other}')")
    # The control is the second line of defence (a warehouse whose key was dropped by hand).
    warehouse.execute("drop index invoicing.uq_invoicing_billed_events__event_key")
    warehouse.execute(f"insert into invoicing.billed_events values ('{key}', '{other}')")
    results = _results(warehouse, settings)
    _only_failing(results, "duplicate_billing")
    found = results["duplicate_billing"].findings
    assert list(found["record"]) == [key] and list(found["kind"]) == ["event_billed_twice"]
    charge = warehouse.scalar("select final_charge from rating.rated_events where event_key = :k", {"k": key})
    assert found["amount"].iloc[0] == charge


def test_a_recurring_charge_billed_twice_is_found(case) -> None:
    warehouse, settings = case
    line = warehouse.query_df(
        "select l.*, i.number from invoicing.invoice_lines l join invoicing.invoices i using (invoice_key) "
        "where l.kind = 'recurring' and l.quantity = 1 order by i.number, l.line_no limit 1"
    ).iloc[0]
    warehouse.execute(
        "insert into invoicing.invoice_lines (invoice_key, line_no, kind, description, quantity, unit, "
        "unit_price, amount, service_id) select invoice_key, 999, kind, description, quantity, unit, "
        "unit_price, amount, service_id from invoicing.invoice_lines where invoice_key = :k and line_no = :n",
        {"k": line["invoice_key"], "n": int(line["line_no"])},
    )
    found = _results(warehouse, settings)["duplicate_billing"].findings
    assert list(found["record"]) == [f"{line['number']}#999"]
    assert list(found["kind"]) == ["recurring_charge_billed_twice"]


def test_a_service_without_its_charge_fails_orders_vs_billing(case) -> None:
    warehouse, settings = case
    line = warehouse.query_df(
        "select invoice_key, line_no, service_id, amount from invoicing.invoice_lines "
        "where kind = 'recurring' order by invoice_key, line_no limit 1"
    ).iloc[0]
    warehouse.execute(
        "delete from invoicing.invoice_lines where invoice_key = :k and line_no = :n",
        {"k": line["invoice_key"], "n": int(line["line_no"])},
    )
    results = _results(warehouse, settings)
    _only_failing(results, "orders_vs_billing", "invoiced_vs_expected")
    found = results["orders_vs_billing"].findings
    assert list(found["kind"]) == ["recurring_charge_missing"]
    assert list(found["record"]) == [line["service_id"]] and found["amount"].iloc[0] == line["amount"]
    revenue = results["invoiced_vs_expected"].findings
    assert list(revenue["record"].str.endswith("/recurring")) == [True]
    assert revenue["amount"].iloc[0] == -line["amount"], "the plan's recurring revenue is short by the fee"


def test_a_wrong_rate_fails_independent_rerating_and_blocks_finalization(clean, tmp_path: Path, demo) -> None:
    settings = copy_demo(demo, tmp_path / "squak")
    _audit_everything(settings)
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    rated(warehouse, settings)
    key = warehouse.scalar(
        "select event_key from rating.rated_events where substr(cycle, 1, 7) = :c and final_charge > 0 "
        "order by event_key limit 1",
        {"c": CYCLE},
    )
    warehouse.execute(
        "update rating.rated_events set charge = charge + 0.01, final_charge = final_charge + 0.01 "
        "where event_key = :k",
        {"k": key},
    )
    with pytest.raises(RevenueAssuranceError, match="control 5 rerating") as failed:
        bill_cycle(warehouse, settings, CYCLE, finalize=True)
    assert key in str(failed.value.outcome.failures[-1]["records"])
    assert warehouse.count("invoicing.invoices") == 0, "nothing finalized"
    result = _results(warehouse, settings)["rerating"]
    assert not result.passed and list(result.findings["record"]) == [key]
    assert result.findings["amount"].iloc[0] == Decimal("0.01")
    assert "final_charge" in result.findings["detail"].iloc[0]


def test_a_lost_record_blocks_finalization(tmp_path: Path, demo) -> None:
    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    rated(warehouse, settings)
    key = warehouse.scalar("select event_key from rating.rated_events order by event_key limit 1")
    warehouse.execute("delete from rating.rated_events where event_key = :k", {"k": key})
    with pytest.raises(RevenueAssuranceError, match="control 1 usage_completeness"):
        bill_cycle(warehouse, settings, CYCLE, finalize=True)


def test_an_unmatched_payment_fails_invoiced_vs_collected(case) -> None:
    warehouse, settings = case
    drop = settings.payments_drop_dir / "manual-2026-11-20.csv"
    drop.write_text(
        "payment_id,account_id,invoice_number,amount,currency,received_at,method,note\n"
        "CHQ-4711,,SQK-1999-000001,42.50,USD,2026-11-20T10:00:00Z,cheque,illegible stub\n"
    )
    run_payments(warehouse, settings, AS_OF)
    results = _results(warehouse, settings)
    _only_failing(results, "invoiced_vs_collected")
    found = results["invoiced_vs_collected"].findings
    assert list(found["record"]) == ["manual:CHQ-4711"] and list(found["kind"]) == ["unmatched_payment"]
    assert found["amount"].iloc[0] == Decimal("42.50") and found["currency"].iloc[0] == "USD"


def test_zero_rated_audit_and_aging_limits(case) -> None:
    warehouse, settings = case
    key = warehouse.scalar(
        "select event_key from rating.rated_events where substr(cycle, 1, 7) = :c "
        "and call_type = 'international' "
        "and answered and billsec > 0 and final_charge > 0 order by event_key limit 1",
        {"c": CYCLE},
    )
    warehouse.execute(
        "update rating.rated_events set charge = 0, final_charge = 0, discount = 0 where event_key = :k",
        {"k": key},
    )
    results = _results(warehouse, settings, as_of=date(2027, 3, 1))
    zero = results["zero_rated"]
    assert not zero.passed and list(zero.findings["record"]) == [key]
    assert not results["rerating"].passed, "the re-rater prices it"
    aging = results["suspense_aging"]
    assert not aging.passed and aging.figures["oldest_days"] > 60
    assert set(aging.findings["kind"]) >= {"aged_rating_suspense", "aged_mediation_reject"}


def test_thresholds_file_is_validated(tmp_path: Path) -> None:
    (tmp_path / "assurance.yaml").write_text("zero_rated: {max_unexplained_share: 0.01}\n")
    assert load_thresholds(tmp_path)["zero_rated"]["max_unexplained_share"] == 0.01
    assert load_thresholds(tmp_path)["rerating"]["critical"] is True
    for text, message in (
        ("nope: {}\n", "unknown control"),
        ("rerating: {sample: 1}\n", "not a setting"),
        ("rerating: {sample_share: high}\n", "must be float"),
    ):
        (tmp_path / "assurance.yaml").write_text(text)
        with pytest.raises(ThresholdsError, match=message):
            load_thresholds(tmp_path)


@pytest.mark.postgres
def test_controls_on_postgres(tmp_path: Path, demo, fresh_pg_url: str) -> None:
    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = PostgresWarehouse(fresh_pg_url)
    _billed_and_paid(warehouse, settings)
    report = run_assurance(warehouse, settings, CYCLE, AS_OF)
    assert all(r.passed for r in report.results), {
        r.control: r.summary for r in report.results if not r.passed
    }
    warehouse.execute(
        "delete from invoicing.invoice_lines where kind = 'recurring' and line_no = "
        "(select min(line_no) from invoicing.invoice_lines where kind = 'recurring')"
    )
    failing = {r.control for r in run_controls(warehouse, settings, CYCLE, AS_OF) if not r.passed}
    assert "orders_vs_billing" in failing


def test_marts_dashboards_and_finance_report(case, tmp_path: Path) -> None:
    """dbt builds the marts over an audited month; they tie to the invoices; the finance
    report and figures come from them, and text from reference data stays text."""
    import subprocess

    from squak_pipelines.analytics.project import dbt_executable
    from squak_pipelines.analytics.sources import ensure_sources
    from squak_pipelines.assurance.figures import cycle_figures
    from squak_pipelines.assurance.finance_report import load_marts, write_finance_report
    from squak_pipelines.config import DBT_PROJECT_DIR

    warehouse, settings = case
    evil = "<img src=x onerror=alert(1)> Atlantis"
    top = warehouse.scalar(
        "select destination from rating.rated_events where substr(cycle, 1, 7) = :c and final_charge > 0 "
        "group by 1 order by sum(final_charge) desc limit 1",
        {"c": CYCLE},
    )
    warehouse.execute(
        "update rating.rated_events set destination = :e where destination = :d", {"e": evil, "d": top}
    )
    run_assurance(warehouse, settings, CYCLE, AS_OF)
    ensure_sources(warehouse)
    dbt_settings = Settings.from_env(
        {"SQUAK_DATA_DIR": str(settings.data_dir), "SQUAK_WAREHOUSE_URL": f"duckdb:///{warehouse.path}"}
    )
    result = subprocess.run(
        [
            dbt_executable(),
            "build",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        env={**os.environ, **dbt_settings.dbt_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    from tests.test_reliability import _is_money

    floats = warehouse.query_arrow(
        "select table_schema, table_name, column_name, data_type from information_schema.columns "
        "where table_schema in ('staging', 'intermediate', 'marts') and not data_type like 'DECIMAL%'"
    ).to_pylist()
    money = [f"{r['table_schema']}.{r['table_name']}.{r['column_name']} {r['data_type']}" for r in floats
             if _is_money(r["column_name"]) and r["data_type"] in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER")]
    assert money == [], "money in dbt models must stay DECIMAL"
    marts = load_marts(warehouse)
    subtotal = warehouse.scalar("select sum(subtotal) from invoicing.invoices")
    revenue = marts["revenue_monthly"]
    assert sum(revenue["revenue"]) == subtotal
    assert set(revenue["line_kind"]) >= {"recurring", "usage"}
    destinations = marts["top_destinations"].query("currency == 'USD'")
    assert evil in set(destinations["destination"]) and destinations["cost"].notna().any()
    assert list(marts["ra_control_status"]["passed"]) == [True] * 9
    report = write_finance_report(settings, "duckdb", marts, CYCLE)
    html = report.path.read_text()
    assert report.path == settings.data_dir / "invoices" / CYCLE / f"finance-report-{CYCLE}.html"
    assert "<img src=x" not in html, "figure data and tables escape reference text"
    assert "\\u003cimg src=x" in html
    assert html.count("Plotly.newPlot(") == 5 and "Revenue-assurance controls" in html
    assert set(cycle_figures(marts, CYCLE)) == {
        "revenue_trend",
        "revenue_mix",
        "usage_heatmap",
        "top_destinations",
        "ra_controls",
        "aging",
    }


def test_rerating_reports_an_event_without_its_plan(case) -> None:
    warehouse, settings = case
    key = warehouse.scalar(
        "select min(event_key) from rating.rated_events where substr(cycle, 1, 7) = :c "
        "and account_id is not null",
        {"c": CYCLE},
    )
    warehouse.execute("update rating.rated_events set plan_id = null where event_key = :k", {"k": key})
    result = _results(warehouse, settings)["rerating"]
    assert not result.passed and list(result.findings["record"]) == [key]
    assert "no plan on the event" in result.findings["detail"].iloc[0]


def test_a_goodwill_credit_note_is_explained_revenue(case) -> None:
    """A credit note taking back a recurring charge is a linked correction: orders vs billing and
    invoiced vs expected still pass, and the credit shows as its own explained line type."""
    from squak_pipelines.invoicing.credit_notes import issue_credit_note

    warehouse, settings = case
    line = warehouse.query_df(
        "select i.number, l.line_no, l.amount, i.currency from invoicing.invoice_lines l "
        "join invoicing.invoices i using (invoice_key) where l.kind = 'recurring' "
        "order by i.number, l.line_no limit 1").iloc[0]
    os.environ["SQUAK_INVOICE_PDF"] = "off"
    try:
        issue_credit_note(warehouse, settings, line["number"], "goodwill: outage", [int(line["line_no"])])
    finally:
        os.environ.pop("SQUAK_INVOICE_PDF")
    results = _results(warehouse, settings)
    assert results["orders_vs_billing"].passed and results["invoiced_vs_expected"].passed
    credited = [r for r in results["invoiced_vs_expected"].figures["by_plan"]
                if r["line_type"] == "credit_note" and r["currency"] == line["currency"]]
    assert [Decimal(r["invoiced"]) for r in credited] == [-line["amount"]]
