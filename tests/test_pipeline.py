"""End to end through the CLI: `squak demo` then `squak run` again, on both warehouses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from squak_pipelines.config import Settings
from squak_pipelines.warehouse import open_warehouse

SQUAK = str(Path(sys.executable).parent / "squak")


def _squak(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([SQUAK, *args], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"squak {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _env(data_dir: Path, today: str = "2026-11-25", **extra: str) -> dict[str, str]:
    """The CLI's environment: its own data directory and clock (2026-11-25: October has ended,
    so the demo month is 2026-10)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQUAK_", "DAGSTER_HOME"))}
    env.update(SQUAK_DATA_DIR=str(data_dir), SQUAK_TODAY=today, **extra)
    return env


def _check_warehouse(env: dict[str, str], manifest: dict) -> dict[str, int]:
    settings = Settings.from_env(env)
    warehouse = open_warehouse(settings)
    resent = manifest["cdr"]["resent_file"]
    resent_records = next(f["records"] for f in manifest["cdr"]["files"] if f["file"] == resent["original"])
    files = warehouse.query_df("select count(*) as n, sum(records) as r from raw.cdr_drop_files")
    assert int(files["n"][0]) == manifest["counts"]["cdr_files"] + 1
    assert int(files["r"][0]) == manifest["counts"]["cdr_records"] + resent_records
    intake = warehouse.query_df(
        "select sum(redelivered_files) as redelivered, sum(records_in_redeliveries) as rr, "
        "sum(records_received) as received from marts.ops_cdr_intake_daily")
    assert int(intake["redelivered"][0]) == 1
    assert int(intake["rr"][0]) == resent_records
    assert int(intake["received"][0]) == manifest["counts"]["cdr_records"]
    assert warehouse.count("staging.stg_tax_rates") == 21
    reasons = set(warehouse.query_df("select distinct reason from orders.rejections")["reason"])
    assert {e["reason"] for e in manifest["orders"]["expected_rejections"]} <= reasons
    # Mediation: conservation against the generator's truth, and the fraud caught.
    med = warehouse.query_df("select sum(records_in) as i, sum(accepted) as a, sum(rejected) as r, "
                             "sum(duplicates) as d, sum(quarantined) as q from mediation.files")
    files = manifest["cdr"]["files"]
    assert int(med["i"][0]) == manifest["counts"]["cdr_records"] + resent_records
    assert int(med["i"][0]) == int(med["a"][0] + med["r"][0] + med["d"][0] + med["q"][0])
    # Malformed lines as planted (the re-delivered copy may be the one processed first).
    assert int(med["r"][0]) == sum(len(v) for f in files for v in f["malformed"].values())
    planted = {(f["file"], n) for f in files for v in f["malformed"].values() for n in v}
    rejects = warehouse.query_df("select source_file, source_line from mediation.rejects")
    same = {resent["copy"]: resent["original"]}
    assert {(same.get(f, f), n) for f, n in zip(rejects["source_file"], rejects["source_line"],
                                                 strict=True)} == planted
    planted_dups = sum(f["duplicates_within"] + f["duplicates_across"] for f in files)
    assert int(med["d"][0]) == resent_records + planted_dups
    quarantined = warehouse.query_df("select fraud_rules from mediation.quarantine")["fraud_rules"]
    assert quarantined.str.contains("burst").sum() == manifest["cdr"]["fraud"]["fraud_burst"]["calls"]
    assert quarantined.str.contains("high_risk").sum() == manifest["cdr"]["fraud"]["fraud_irsf"]["calls"]
    shares = warehouse.query_df("select partition_day, quarantine_share from mediation.partition_status "
                                "order by quarantine_share desc")
    fraud_days = {manifest["cdr"]["fraud"][k]["day"] for k in ("fraud_burst", "fraud_irsf")}
    assert set(shares["partition_day"].astype(str)[:2]) == fraud_days, "the fraud days stand out"
    # Rating: every mediated event rated or in suspense; the planted unknown callers wait there.
    rated, suspense = warehouse.count("rating.rated_events"), warehouse.count("rating.suspense")
    assert rated + suspense == warehouse.count("mediation.events")
    unknown = warehouse.scalar("select count(*) from rating.suspense where reason = 'unknown_account'")
    assert 0 < unknown <= sum(f["unknown_caller"] for f in files)
    revenue = warehouse.scalar("select cast(sum(final_charge) as varchar) from rating.rated_events")
    assert revenue and float(revenue) > 0
    # Invoicing: the demo month finalized, numbered from 1, with documents on disk.
    numbers = sorted(warehouse.query_df("select number from invoicing.invoices")["number"])
    assert numbers and numbers == [f"SQK-2026-{n:06d}" for n in range(1, len(numbers) + 1)]
    docs = Path(env["SQUAK_DATA_DIR"]) / "invoices" / "2026-10"
    assert (docs / f"{numbers[0]}.html").exists() and (docs / f"{numbers[-1]}.json").exists()
    assert (docs / f"{numbers[0]}.pdf").read_bytes().startswith(b"%PDF-")
    # Payments: the demo customers' files read, matched, and the ledger reconciles.
    from squak_pipelines.payments.stage import ledger_differences

    assert warehouse.count("payments.payments") > 0 and warehouse.count("payments.matches") > 0
    assert ledger_differences(warehouse).empty
    # Revenue assurance and reporting: every control ran; the marts tie to the invoices.
    controls = warehouse.query_df("select control, passed, critical from marts.ra_control_status")
    assert len(controls) == 9 and controls.query("critical")["passed"].all()
    revenue = warehouse.scalar(
        "select sum(amount) from marts.fct_revenue_lines where line_kind <> 'credit_note'")
    assert revenue == warehouse.scalar("select sum(subtotal) from invoicing.invoices")
    assert warehouse.count("marts.tax_report") > 0 and warehouse.count("marts.usage_daily_hourly") > 0
    report = (docs / "finance-report-2026-10.html").read_text()
    assert "Revenue-assurance controls" in report and "Plotly.newPlot" in report
    assert (docs / "leakage-2026-10.csv").exists()
    return {"revenue": revenue} | {t: warehouse.count(t) for t in (
        "payments.payments", "payments.matches", "payments.ledger", "payments.dunning_notices",
        "raw.cdr_drop_files", "raw.tax_rates", "marts.ops_cdr_intake_daily",
        "marts.dim_tax_jurisdictions", "marts.revenue_monthly", "marts.top_destinations",
        "marts.ra_leakage", "orders.order_lines", "orders.services", "orders.rejections",
        "orders.order_status_history", "mediation.events", "mediation.quarantine",
        "mediation.rejects", "mediation.duplicates", "mediation.files", "rating.rated_events",
        "rating.suspense", "invoicing.invoices", "invoicing.invoice_lines", "invoicing.billed_events")}


def _check_calendar(env: dict[str, str], months: list[str]) -> None:
    """Every ended cycle billed once, oldest first, on the run's date; no open cycle billed;
    the demo month (the first) billed as a normal cycle; nobody reminded before the due date."""
    import pandas as pd

    from squak_pipelines.cycles import label_start, load_schedules, schedule_of

    warehouse = open_warehouse(Settings.from_env(env))
    today = date.fromisoformat(env["SQUAK_TODAY"])
    inv = warehouse.query_df("select number, invoice_key, account_id, cycle, issue_date, due_date "
                             "from invoicing.invoices order by number")
    assert sorted(set(inv["cycle"].str[:7])) == months
    assert inv["invoice_key"].is_unique
    assert (pd.to_datetime(inv["issue_date"]).dt.date == today).all(), "issued on the day of the run"
    assert (pd.to_datetime(inv["due_date"]).dt.date == today + timedelta(days=15)).all()
    assert list(inv["number"]) == [f"SQK-{today.year}-{n:06d}" for n in range(1, len(inv) + 1)]
    by_month = inv.groupby(inv["cycle"].str[:7])["number"].agg(["min", "max"]).sort_index()
    assert all(a < b for a, b in zip(by_month["max"][:-1], by_month["min"][1:], strict=True)), \
        "older cycles numbered first"
    schedules = load_schedules(warehouse)
    for label, account in zip(inv["cycle"], inv["account_id"], strict=True):
        assert schedule_of(schedules, account).cycle_of(label_start(label))[1] < today, "no open cycle"
    lines = warehouse.query_df(
        "select l.kind, l.description, i.cycle from invoicing.invoice_lines l "
        "join invoicing.invoices i using (invoice_key)")
    late = lines[lines["kind"] == "late_usage"]["description"]
    assert not late.str.contains(f"Late usage from {months[0]}").any(), "the demo month is not late"
    assert ((lines["kind"] == "usage") & (lines["cycle"].str[:7] == months[0])).sum() > 0
    complete = warehouse.query_df("select distinct cycle from invoicing.billing_runs where complete")
    assert set(complete["cycle"]) <= set(months) and set(months[:-1]) <= set(complete["cycle"])
    assert warehouse.count("payments.dunning_notices") == 0, "no reminder before the due date"


def _check_output(stdout: str) -> None:
    assert "[9/10] Warehouse models and tests (dbt)" in stdout
    assert "revenue-assurance controls, cycle 2026-10" in stdout and "leakage report:" in stdout
    for number, title in enumerate(("Usage completeness", "Suspense and reject aging", "Duplicate billing",
                                    "Zero-rated audit", "Independent re-rating", "Orders vs billing",
                                    "Invoiced vs expected revenue", "Invoiced vs collected"), 1):
        assert f"{number}. {title}" in stdout
    assert "[10/10] Dashboards and finance report" in stdout and "finance report:" in stdout
    assert "collected by currency:" in stdout and "aging by currency:" in stdout
    assert "rated:" in stdout and "revenue by currency:" in stdout and "USD: " in stdout
    assert "invoices finalized:" in stdout and "invoices:" in stdout
    assert "order lines by status: accepted" in stdout and "rejected by reason:" in stdout
    assert "FAILED" not in stdout
    assert "failed:" not in stdout
    assert "Browse them with `make ui`" in stdout


def _demo(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Generate a small demo, then run it: the demo's planted fraud and its fraud rules scale
    with its size, so it passes its own gates."""
    _squak(["generate", "--customers", "40", "--cdrs", "5000", "--seed", "3"], env)
    return _squak(["run"], env)


def _readme_commands() -> list[str]:
    """The README's commands marked runnable (fenced as ```bash runnable), comments removed."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```bash runnable\n")[1:]
    assert blocks, "the README marks its runnable commands"
    lines = [line.split("  #", 1)[0].strip()
             for block in blocks for line in block.split("```", 1)[0].splitlines()]
    return [line for line in lines if line]


def _run_readme_commands(env: dict[str, str], data_dir: Path) -> None:
    """Each runnable README command, as written, on the demo `make run` billed."""
    for line in _readme_commands():
        args = [a.replace(".squak/", f"{data_dir}/") for a in line.split()]
        assert args[0] == ".venv/bin/squak", line
        result = _squak(args[1:], env)
        assert result.stdout.strip(), line
    assert (data_dir / "docs" / "static_index.html").exists()


@pytest.mark.slow
def test_pipeline_on_embedded_duckdb(tmp_path: Path) -> None:
    env = _env(tmp_path / "squak")
    result = _demo(env, tmp_path / "squak")
    _check_output(result.stdout)
    _run_readme_commands(env, tmp_path / "squak")
    _check_calendar(env, ["2026-10"])
    manifest = json.loads((tmp_path / "squak" / "demo" / "manifest.json").read_text())
    _check_warehouse(env, manifest)
    # Dagster's local storage holds the stage runs, all successful.
    import dagster as dg

    home = tmp_path / "squak" / "dagster"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 10 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # (Re-running changes nothing: the crash tests rerun every stage on both backends and
    # compare every table; the catch-up test reruns the pipeline through Dagster; the December
    # test bills again while cycles are open and gets nothing new.)
    _check_doctor(env, tmp_path / "squak")


def _check_doctor(env: dict[str, str], data_dir: Path) -> None:
    """`squak doctor` passes on a fresh run, and names the fault when PostgreSQL is down, a
    migration is missing or Chromium is absent (exit 1, with the fix)."""
    healthy = _rc(["doctor"], env)
    assert healthy.returncode == 0 and "==> all checks pass" in healthy.stdout, healthy.stdout
    broken = _rc(["doctor"], {**env, "PATH": str(Path(SQUAK).parent),
                              "SQUAK_WAREHOUSE_URL": "postgresql://postgres@127.0.0.1:9/test"})
    assert broken.returncode == 1 and "FAIL  Chromium" in broken.stdout
    assert "PostgreSQL is unreachable" in broken.stdout
    import duckdb

    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as con:
        con.execute("delete from schema_migrations where version = 2")
    missing = _rc(["doctor"], env)
    assert missing.returncode == 1 and "not applied: 0002 unique keys" in missing.stdout
    migrated = _rc(["migrate"], env)
    assert migrated.returncode == 0 and "applied 0002 unique keys" in migrated.stdout


@pytest.mark.slow
@pytest.mark.postgres
def test_pipeline_on_postgres_with_dagster_postgres_storage(tmp_path: Path, fresh_pg_url: str) -> None:
    pg_url = fresh_pg_url
    env = _env(tmp_path / "squak", SQUAK_WAREHOUSE_URL=pg_url, SQUAK_DAGSTER_PG_URL=pg_url)
    result = _demo(env, tmp_path / "squak")
    _check_output(result.stdout)
    assert "on the postgres warehouse" in result.stdout
    _check_calendar(env, ["2026-10"])
    manifest = json.loads((tmp_path / "squak" / "demo" / "manifest.json").read_text())
    _check_warehouse(env, manifest)
    assert not (tmp_path / "squak" / "warehouse.duckdb").exists()
    yaml_text = (tmp_path / "squak" / "dagster" / "dagster.yaml").read_text()
    assert "SQUAK_DAGSTER_PG_URL" in yaml_text and pg_url not in yaml_text
    engine = sa.create_engine(pg_url)
    with engine.connect() as con:
        statuses = con.execute(sa.text("select status from runs")).scalars().all()
    engine.dispose()
    assert statuses == ["SUCCESS"] * 10, "Dagster's runs are stored in PostgreSQL"
    # Re-running changes nothing: the crash tests rerun every stage on both backends and compare
    # every table; the catch-up test reruns the whole pipeline through Dagster.


def _rc(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SQUAK, *args], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_billing_calendar_on_the_first_of_december(tmp_path: Path) -> None:
    """On 2026-12-01 the demo month is November: billed as a normal cycle, issued that day;
    an account record with a bad bill day is rejected; bad cycles are refused with one line."""
    data = tmp_path / "squak"
    env = _env(data, today="2026-12-01", SQUAK_INVOICE_PDF="off", SQUAK_DASHBOARD_IMAGES="off")
    _squak(["generate", "--customers", "20", "--cdrs", "2000", "--seed", "5"], env)
    base = (data / "drop" / "orders" / "accounts-base.csv").read_text().splitlines()
    header, row = base[0].split(","), base[1].split(",")
    row[header.index("account_id")], row[header.index("bill_day")] = "ACC-BADDAY", "45"
    (data / "drop" / "orders" / "accounts-extra.csv").write_text("\n".join([base[0], ",".join(row)]) + "\n")
    result = _squak(["run"], env)
    assert "billing months with ended cycles to bill (as of 2026-12-01): 2026-11" in result.stdout
    assert "==> Verdict: ok: all 10 stages ok" in result.stdout
    _check_calendar(env, ["2026-11"])
    warehouse = open_warehouse(Settings.from_env(env))
    reject = warehouse.query_df("select field, reason, message from orders.rejections "
                                "where record_key = 'ACC-BADDAY'").iloc[0]
    assert (reject["field"], reject["reason"]) == ("bill_day", "invalid_bill_day")
    assert "'45'" in reject["message"] and warehouse.scalar(
        "select count(*) from orders.accounts where account_id = 'ACC-BADDAY'") == 0
    invoices = warehouse.count("invoicing.invoices")
    for args, message in (
        (["bill", "--cycle", "2026-13"], "billing cycle must be YYYY-MM"),
        (["bill", "--cycle", "2027-01"], "cycle 2027-01 starts after today (2026-12-01)"),
        (["bill", "--cycle", "2026-12"], "cycle 2026-12 has not ended"),
        (["bill", "--cycle", "2026-09"], "cycle 2026-09 is before the first billing cycle 2026-11"),
        (["bill", "--account", "ACC-999999"], "unknown account 'ACC-999999'"),
        (["--as-of", "2026-02-30", "bill"], "must be an ISO date"),
    ):
        failed = _rc(args, env)
        assert failed.returncode == 2, (args, failed.stdout, failed.stderr)
        assert message in failed.stderr and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    again = _squak(["bill"], env).stdout  # November's bill-day-15 cycles are still open: none billed
    assert "cycle 2026-11: 0 final invoice(s) computed, 0 finalized" in again
    preview = _squak(["bill", "--cycle", "2026-12", "--preview"], env)
    assert "draft (preview, not numbered)" in preview.stdout
    assert warehouse.count("invoicing.invoices") == invoices, "nothing written"


@pytest.mark.slow
def test_billing_calendar_catches_up_missed_cycles_oldest_first(tmp_path: Path) -> None:
    """On 2027-01-15 a demo of October bills October, November and December, oldest first, all
    issued that day; losing November's invoices fails the calendar control, naming it."""
    data = tmp_path / "squak"
    env = _env(data, today="2027-01-15", SQUAK_INVOICE_PDF="off", SQUAK_DASHBOARD_IMAGES="off")
    _squak(["generate", "--customers", "20", "--cdrs", "2000", "--seed", "5", "--month", "2026-10"], env)
    result = _squak(["run"], env)
    assert ("billing months with ended cycles to bill (as of 2027-01-15): 2026-10, 2026-11, 2026-12"
            in result.stdout)
    assert "==> Verdict: ok" in result.stdout
    _check_calendar(env, ["2026-10", "2026-11", "2026-12"])
    from squak_pipelines.assurance.stage import run_controls

    settings = Settings.from_env(env)
    warehouse = open_warehouse(settings)
    warehouse.execute("delete from invoicing.invoices where substr(cycle, 1, 7) = '2026-11'")
    results = {r.control: r for r in run_controls(warehouse, settings, "2026-12", date(2027, 1, 15))}
    calendar = results["billing_calendar"]
    assert not calendar.passed and calendar.critical
    assert list(calendar.findings["record"]) == ["2026-11"]
    again = _rc(["run"], env)  # a critical control failing makes the run fail, with one verdict
    assert again.returncode == 1, again.stdout[-2000:]
    assert "==> Verdict: NOT OK" in again.stdout and "9. Billing calendar" in again.stdout
