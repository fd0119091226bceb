"""Table contracts, migrations, atomic stages, crash safety, and hostile values in paths and CSVs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pyarrow as pa
import pytest

from squak_pipelines.csv_export import escape_cell, escape_table
from squak_pipelines.invoicing.pdf import pdf_complete
from squak_pipelines.migrations import LATEST, applied, drift, migrate
from squak_pipelines.paths import UnsafePathError, inside
from squak_pipelines.schema import registry
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from tests.test_mediation import drop as drop

FIXTURES = Path(__file__).parent / "fixtures"
MONEY_WORDS = {"amount", "charge", "total", "price", "fee", "revenue", "cost", "margin", "balance", "arpu",
               "invoiced", "collected", "expected", "difference", "tax", "taxable", "discount", "subtotal",
               "base", "rate", "net", "credited"}
NOT_MONEY = {"rate_percent", "collection_rate", "combined_percent", "quarantine_share",
             "max_quarantine_share", "revenue_rank"}


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBWarehouse(tmp_path / "w.duckdb")
    return PostgresWarehouse(request.getfixturevalue("fresh_pg_url"))


def _is_money(column: str) -> bool:
    """A numeric column named like money (by the words of its name)."""
    return column not in NOT_MONEY and bool(MONEY_WORDS & set(column.split("_")))


def test_fresh_warehouse_matches_the_declarations(warehouse: Warehouse) -> None:
    assert migrate(warehouse)[0].startswith("0001")
    assert applied(warehouse) == list(range(1, LATEST + 1))
    assert drift(warehouse) == []
    assert migrate(warehouse) == [], "migrating again changes nothing"
    assert warehouse.table_exists("orders.validated_order_lines")


def test_mediations_keys_are_indexed_once_on_duckdb(warehouse: Warehouse) -> None:
    """Events, quarantine and B-legs keep their keys through mediation.event_keys' index; on
    DuckDB (where each index is an in-memory ART every append maintains) they have none of
    their own, and a warehouse made before migration 7 loses them."""
    from squak_pipelines.migrations import _live_indexes

    migrate(warehouse)
    own = "uq_mediation_events__event_key"
    assert "uq_mediation_event_keys__event_key" in _live_indexes(warehouse)
    assert (own in _live_indexes(warehouse)) == (warehouse.kind == "postgres")
    if warehouse.kind == "duckdb":
        warehouse.execute(f"create unique index {own} on mediation.events (event_key)")
        warehouse.execute("delete from schema_migrations where version = 7")
        assert [label[:4] for label in migrate(warehouse)] == ["0007"]
        assert own not in _live_indexes(warehouse) and drift(warehouse) == []
    row = pa.table({"event_key": ["sw:1"], "switch_id": ["sw"], "event_day": pa.array([None], pa.date32())})
    warehouse.load("mediation.event_keys", row, mode="append")
    with pytest.raises(Exception, match=r"(?i)duplicate|unique|constraint"):
        warehouse.load("mediation.event_keys", row, mode="append")


def test_every_money_column_is_decimal() -> None:
    for t in registry().values():
        for f in t.columns:
            if pa.types.is_floating(f.type):
                assert f.name in NOT_MONEY, f"{t.name}.{f.name} is a float"
            if _is_money(f.name) and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type)):
                assert pa.types.is_decimal(f.type), f"{t.name}.{f.name} is {f.type}, money must be decimal"


def test_warehouse_of_release_0_1_is_upgraded_in_place(warehouse: Warehouse) -> None:
    """Tables as release 0.1 made them (no keys, no schema_migrations), with data; one column
    dropped to stand for a column added since."""
    for statement in (FIXTURES / "release_0_1_tables.sql").read_text().split(";\n"):
        statement = statement.strip()
        if statement.startswith("create table"):
            schema = statement.split()[2].split(".")[0]
            warehouse.execute(f"create schema if not exists {schema}")
            warehouse.execute(statement)
    warehouse.execute("alter table invoicing.invoice_lines drop column applies_to")
    warehouse.execute("insert into invoicing.invoices "
                      "(number, invoice_key, account_id, cycle, currency, total) values "
                      "('SQK-2026-000001', 'A-1|2026-10|USD', 'A-1', '2026-10', 'USD', 12.5)")
    warehouse.execute("insert into invoicing.invoice_lines (invoice_key, line_no, amount) "
                      "values ('A-1|2026-10|USD', 1, 12.5)")
    assert applied(warehouse) == []
    done = migrate(warehouse)
    assert [label[:4] for label in done] == [f"{v:04d}" for v in range(1, LATEST + 1)]
    assert drift(warehouse) == []
    assert warehouse.scalar("select total from invoicing.invoices") == pytest.approx(12.5)
    assert warehouse.scalar("select count(*) from invoicing.invoice_lines where applies_to is null") == 1
    with pytest.raises(Exception, match=r"(?i)duplicate|unique"):
        warehouse.execute("insert into invoicing.invoices (number, invoice_key) "
                          "values ('SQK-2026-000001', 'x')")


def test_duplicates_stop_the_upgrade_with_the_key(warehouse: Warehouse) -> None:
    warehouse.execute("create schema if not exists payments")
    warehouse.execute("create table payments.payments (payment_id varchar, amount decimal(18,6))")
    warehouse.execute("insert into payments.payments values ('P-1', 1), ('P-1', 2)")
    with pytest.raises(RuntimeError, match=r"payments.payments: 2 rows share the key \(payment_id\)"):
        migrate(warehouse)
    assert applied(warehouse) == [], "nothing of a failed migration stays"


def test_every_unique_key_refuses_a_repeat(warehouse: Warehouse) -> None:
    migrate(warehouse)
    for t in registry().values():
        if t.registered_in and warehouse.kind == "duckdb":  # the register's index holds the key
            assert all(key in registry()[t.registered_in].unique for key in t.unique), t.name
            continue
        for key in t.unique:
            row = pa.Table.from_pylist([{c: _sample(t.columns.field(c).type) for c in key}],
                                       schema=pa.schema([t.columns.field(c) for c in key]))
            warehouse.load(t.name, row, mode="append")
            with pytest.raises(Exception, match=r"(?i)duplicate|unique"):
                warehouse.load(t.name, row, mode="append")
            assert warehouse.count(t.name) == 1, f"{t.name}: the repeat was rolled back"
            warehouse.execute(f"delete from {t.name}")


def _sample(arrow_type: pa.DataType) -> object:
    from datetime import date, datetime

    if pa.types.is_date(arrow_type):
        return date(2026, 10, 1)
    if pa.types.is_timestamp(arrow_type):
        return datetime(2026, 10, 1, tzinfo=UTC)
    if pa.types.is_integer(arrow_type):
        return 1
    return "K-1"


def test_replacing_a_table_keeps_the_views_over_it(warehouse: Warehouse) -> None:
    migrate(warehouse)
    products = registry()["raw.products"]
    row = pa.Table.from_pylist([{"product_id": "P1", "name": "Line", "min_quantity": 1, "max_quantity": 2}],
                               schema=products.columns)
    warehouse.load("raw.products", row)
    warehouse.execute("create schema if not exists staging")
    warehouse.execute("create view staging.v_products as select product_id from raw.products")
    warehouse.load("raw.products", row)
    warehouse.load("raw.products", row)
    assert warehouse.count("staging.v_products") == 1


def test_loads_into_stage_schemas_must_be_declared(tmp_path: Path) -> None:
    from squak_pipelines.warehouse import UndeclaredTableError

    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    with pytest.raises(UndeclaredTableError, match=r"orders\.nonsense"):
        warehouse.load("orders.nonsense", pa.table({"a": [1]}))


def test_paths_from_data_stay_inside_their_folder(tmp_path: Path) -> None:
    assert inside(tmp_path, "ACC-1", "SQK-2026-000001.html") == tmp_path / "ACC-1" / "SQK-2026-000001.html"
    for evil in ("../../../escape-H03", "..", "a/b", "/etc", ".hidden", "x\x00y", "", "a" * 65):
        with pytest.raises(UnsafePathError):
            inside(tmp_path, evil)


def test_csv_cells_never_start_a_formula() -> None:
    assert escape_cell("=cmd|'/c calc'!A1") == "'=cmd|'/c calc'!A1"
    for risky in ("+SUM(A1)", "-2+3", "@HYPERLINK(x)", "\tx"):
        assert escape_cell(risky).startswith("'")
    for plain in ("-12.50", "+12125551234", "Acme", 12, None):
        assert escape_cell(plain) == plain
    table = escape_table(pa.table({"name": ["=1+1", "ok", None], "n": [1, 2, 3]}))
    assert table["name"].to_pylist() == ["'=1+1", "ok", None]


def test_a_truncated_pdf_is_not_complete(tmp_path: Path) -> None:
    from squak_pipelines.invoicing.pdf import render_pdf

    pdf = tmp_path / "a.pdf"
    data = render_pdf("<p>hello</p>", __import__("datetime").date(2026, 11, 1), "X-1")
    pdf.write_bytes(data)
    assert pdf_complete(pdf)
    pdf.write_bytes(data[: len(data) // 2])
    assert not pdf_complete(pdf)
    assert not pdf_complete(tmp_path / "missing.pdf")


def test_orders_stage_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo) -> None:
    """A failure before the commit leaves nothing behind; the retry processes every file."""
    from squak_pipelines.faults import InjectedFault
    from squak_pipelines.orders.stage import run_order_stage
    from tests.stage_helpers import copy_demo

    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    monkeypatch.setenv("SQUAK_FAULT", "orders.before_commit=raise")
    with pytest.raises(InjectedFault):
        run_order_stage(warehouse, settings)
    for name in ("intake_files", "accounts", "services", "order_lines", "number_inventory"):
        assert warehouse.count(f"orders.{name}") == 0, f"orders.{name} kept a failed run's rows"
    monkeypatch.delenv("SQUAK_FAULT")
    result = run_order_stage(warehouse, settings)
    assert result.files_processed and warehouse.count("orders.services") > 0


def test_a_run_left_by_a_killed_process_is_failed_not_queued_forever(tmp_path: Path) -> None:
    import socket

    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.dagster_run import DagsterRun

    from squak_pipelines.config import Settings
    from squak_pipelines.instance import instance_yaml
    from squak_pipelines.runner import HOST_TAG, PID_TAG, fail_dead_runs
    from squak_pipelines.scale_out import WAREHOUSE_POOL

    settings = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path)})
    (tmp_path / "dagster.yaml").write_text(instance_yaml(settings))
    instance = DagsterInstance.from_config(str(tmp_path))
    assert instance.run_monitoring_enabled, "the daemon fails runs whose worker died"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    for run_id, pid in (("dead0000", dead.pid), ("live0000", 1)):
        instance.add_run(DagsterRun(job_name="orders_job", run_id=run_id, status=DagsterRunStatus.STARTED,
                                    tags={PID_TAG: str(pid), HOST_TAG: host}))
    storage = instance.event_log_storage
    storage.set_concurrency_slots(WAREHOUSE_POOL, 1)
    assert storage.claim_concurrency_slot(WAREHOUSE_POOL, "dead0000", "mediated_cdrs").is_claimed
    assert fail_dead_runs(instance) == ["dead0000"]
    assert not storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots, "the dead run's pool slot is free"
    assert instance.get_run_by_id("dead0000").status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id("live0000").status == DagsterRunStatus.STARTED, "pid 1 is alive"


def test_bounds_reject_absurd_calls_rates_fees_and_payments(tmp_path: Path) -> None:
    from squak_pipelines.limits import Limits, LimitsError
    from squak_pipelines.payments.intake import read_manual
    from squak_pipelines.rating.plans import PlanFileError, load_plan

    limits = Limits()
    header = "payment_id,account_id,invoice_number,amount,currency,received_at\n"
    rows = ("P-1,A,I,1000000000000000,USD,2026-11-02T10:00:00Z\n"
            "P-2,A,I,0.001,USD,2026-11-02T10:00:00Z\n"
            "P-3,A,I,12.500,USD,2026-11-02T10:00:00Z\n"
            "P-4,A,I,1500,JPY,2026-11-02T10:00:00Z\n"
            "P-5,A,I,15.5,JPY,2026-11-02T10:00:00Z\n")
    read = read_manual((header + rows).encode(), "manual-x.csv", limits)
    assert sorted(p["payment_id"] for p in read.payments) == ["manual:P-3", "manual:P-4"]
    reasons = {r["location"]: r["reason"] for r in read.rejects}
    assert "above the largest payment" in reasons["line 2"]
    assert "more decimals than USD" in reasons["line 3"] and "more decimals than JPY" in reasons["line 6"]
    deck = tmp_path / "reference" / "decks" / "d.csv"
    deck.parent.mkdir(parents=True)
    (tmp_path / "reference" / "plans").mkdir()
    plan = tmp_path / "reference" / "plans" / "p.yaml"
    deck.write_text("prefix,destination,rate\n1,US,5000000000\n")
    plan.write_text("plan_id: P\ncurrency: USD\ntimezone: UTC\ndecks: {voice: ../decks/d.csv}\n")
    with pytest.raises(PlanFileError, match="largest rate allowed"):
        load_plan(plan)
    deck.write_text("prefix,destination,rate\n1,US,0.01\n")
    plan.write_text(plan.read_text() + "fees: {recurring: [{product: X, amount: -5}]}\n")
    with pytest.raises(PlanFileError, match="must not be negative"):
        load_plan(plan)
    (tmp_path / "reference" / "limits.yaml").write_text("max_rate: 1e15\n")
    with pytest.raises(LimitsError, match="too large for exact rating"):
        Limits.load(tmp_path / "reference")


def test_a_31_year_call_is_rejected_not_priced(drop) -> None:
    from tests.test_mediation import canon

    long_call = canon("long-1", "+442079400199", "2026-10-05T09:00:00Z", billsec=999_999_999)
    drop.write("cdr_sqk-lon1_20261005.csv", [long_call])
    drop.run()
    rejects = drop.df("select reason, field from mediation.rejects")
    assert list(rejects["reason"]) == ["call_too_long"]


def test_common_failures_are_one_line_with_the_fix(tmp_path: Path) -> None:
    """A warehouse locked by another process names that process; --debug shows the traceback."""
    from tests.test_pipeline import SQUAK

    data = tmp_path / "squak"
    data.mkdir()
    env = {**os.environ, "SQUAK_DATA_DIR": str(data)}
    env.pop("SQUAK_WAREHOUSE_URL", None)
    script = (f"import duckdb, time\nc = duckdb.connect({str(data / 'warehouse.duckdb')!r})\n"
              "print('held', flush=True)\ntime.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        plain = subprocess.run([SQUAK, "bill", "--preview"], env=env, capture_output=True, text=True,
                               timeout=120)
        assert plain.returncode == 1 and "Traceback" not in plain.stderr
        assert f"is in use by process {holder.pid}" in plain.stderr and plain.stderr.count("\n") == 1
        debug = subprocess.run([SQUAK, "--debug", "bill", "--preview"], env=env, capture_output=True,
                               text=True, timeout=120)
        assert "Traceback" in debug.stderr
    finally:
        holder.kill()
        holder.wait()
    empty = subprocess.run([SQUAK, "run"], env={**env, "SQUAK_DATA_DIR": str(tmp_path / "empty")},
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1
    assert "empty does not exist" in empty.stderr and "squak generate" in empty.stderr


def test_every_table_the_code_names_is_declared() -> None:
    """A table named in the package's SQL is a declared table (or the one view the migrations
    create), so a misspelt name fails here, not in production."""
    import re

    names = set(registry()) | {"orders.validated_order_lines"}
    pattern = re.compile(r"(?<![.\w])(raw|orders|mediation|rating|invoicing|payments|assurance)\.([a-z_]+)\b")
    package = Path(__file__).resolve().parent.parent / "squak_pipelines"
    unknown = set()
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for quoted in re.findall(r'"[^"\n]*"|\'[^\'\n]*\'', text):
            for schema, table in pattern.findall(quoted):
                name = f"{schema}.{table}"
                not_a_table = (table in ("yaml", "yml", "csv", "json")  # a file such as assurance.yaml
                               or table.startswith(("before_", "after_"))  # a fault point
                               or any(n.startswith(name) for n in names))  # a prefix of table names
                if name not in names and not not_a_table:
                    unknown.add(f"{path.relative_to(package)}: {name}")
    assert not unknown, sorted(unknown)


def test_postgres_restart_mid_run_fails_clearly_and_the_retry_completes(tmp_path: Path,
                                                                        fresh_pg_url: str) -> None:
    """The server goes away while a payments run holds its transaction (every connection of the
    database terminated, as a restart does): the command fails with one clear line, nothing
    half-written stays, and running it again takes every payment exactly once."""
    import sqlalchemy as sa

    from tests.test_pipeline import SQUAK

    data = tmp_path / "squak"
    (data / "drop" / "payments").mkdir(parents=True)
    (data / "drop" / "payments" / "manual-payments-1.csv").write_text(
        "payment_id,account_id,invoice_number,amount,currency,received_at\n"
        + "".join(f"P-{i},ACC-{i},SQK-2026-{i:06d},{i}.50,USD,2026-11-0{i}T10:00:00Z\n" for i in range(1, 6)))
    (data / "drop" / "payments" / "manual-payments-2.csv").write_text(
        "payment_id,account_id,invoice_number,amount,currency,received_at\nP-9,ACC-9,SQK-2026-000009,9.00,USD,"
        "2026-11-09T10:00:00Z\n")
    env = {**os.environ, "SQUAK_DATA_DIR": str(data), "SQUAK_WAREHOUSE_URL": fresh_pg_url,
           "SQUAK_FAULT": "payments.before_commit@2=pause", "SQUAK_FAULT_DIR": str(tmp_path)}
    run = subprocess.Popen([SQUAK, "payments", "run"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    paused = tmp_path / "payments.before_commit.paused"
    for _ in range(600):
        if paused.exists() or run.poll() is not None:
            break
        __import__("time").sleep(0.2)
    assert paused.exists(), run.communicate()[1][-2000:]
    engine = sa.create_engine(fresh_pg_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    database = engine.url.database
    with engine.connect() as con:
        con.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                            "where datname = :d and pid <> pg_backend_pid()"), {"d": database})
    (tmp_path / "payments.before_commit.resume").touch()
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, out + err
    assert "error: PostgreSQL closed the connection" in err and "Traceback" not in err, err
    env.pop("SQUAK_FAULT")
    retry = subprocess.run([SQUAK, "payments", "run"], env=env, capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr[-2000:]
    with engine.connect() as con:
        ids = con.execute(sa.text("select payment_id from payments.payments order by 1")).scalars().all()
        files = con.execute(sa.text("select count(*) from payments.files")).scalar()
    engine.dispose()
    assert ids == sorted(f"manual:P-{i}" for i in (1, 2, 3, 4, 5, 9)) and files == 2


def test_the_engine_refuses_a_charge_that_cannot_fit_64_bits(tmp_path: Path) -> None:
    """Bounds keep real data far away; past them the engine refuses instead of wrapping round
    (1 h at 5e9 per minute once came out as -7,445,734,561.83)."""
    from decimal import Decimal

    from squak_pipelines.limits import Limits
    from squak_pipelines.rating.engine import rate
    from squak_pipelines.rating.plans import load_plan
    from tests.rating_helpers import DECK_HEADER, events, write_plan

    deck = f"{DECK_HEADER}\n1,US,5000000000,0,60/60,,,voice\n"
    plan = load_plan(write_plan(tmp_path, deck), Limits(max_rate=Decimal("1e12")))
    with pytest.raises(OverflowError, match="does not fit exact 64-bit rating"):
        rate(events([{"called": "+12125550100", "at": "2026-10-05T14:00:00Z", "billsec": 3600}]), {"T": plan})


POOL_PARENT = """
import os, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from squak_pipelines.workers import end_with_parent
pool = ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn"), initializer=end_with_parent,
                           initargs=(os.getpid(),))
futures = [pool.submit(time.sleep, 300) for _ in range(2)]
time.sleep(3)
print(" ".join(str(p) for p in pool._processes), flush=True)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_pdf_workers_end_with_their_killed_parent() -> None:
    import signal
    import time

    parent = subprocess.Popen([sys.executable, "-c", POOL_PARENT], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    alive = set(workers)
    for _ in range(100):  # the workers notice within a second; bounded, not a timing assertion
        alive = {p for p in alive if _running(p)}
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"PDF workers {sorted(alive)} outlived their parent"
