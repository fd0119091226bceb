"""Scale-out: day partitions of mediation materialized concurrently, from Dagster's CLI, end
where one serial run over the same days ends.

- DuckDB: runs of the multiprocess executor in parallel processes; their steps take turns on
  the warehouse file (the `squak_warehouse` pool, and the file's turn each step holds where
  the pool on Dagster's local storage lets two through at once): no lock errors, no overlap.
- PostgreSQL: the same runs with SQUAK_EXECUTOR=celery, their steps executed by two
  `dagster-celery` workers (`squak workers`) over RabbitMQ, with dagster-postgres storage.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import GenerateOptions, generate
from squak_pipelines.mediation.stage import mediate
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.resources import TURN_RELEASED, TURN_TAKEN
from squak_pipelines.warehouse import open_warehouse
from tests.conftest import _throwaway_database
from tests.stage_helpers import table_rows

DAYS = ("2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04")
BIN = Path(sys.executable).parent
ROOT = Path(__file__).parent.parent
MEDIATION = "group:mediation"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated month (read-only: each test copies it)."""
    root = tmp_path_factory.mktemp("scale_out") / "squak"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SQUAK_TODAY", "2026-12-05")
        options = GenerateOptions(customers=30, cdrs=3000, seed=5)
        generate(Settings.from_env({"SQUAK_DATA_DIR": str(root)}), options)
    rules = root / "reference" / "fraud_rules.yaml"
    rules.write_text(rules.read_text().replace("max_quarantine_share: 0.05", "max_quarantine_share: 0.9"))
    return root


def _install(month: Path, target: Path, **env: str) -> dict[str, str]:
    """A copy of the month with its orders provisioned and its Dagster home ready; the
    environment its processes run in."""
    from squak_pipelines.instance import prepare_dagster_home

    shutil.copytree(month, target)
    run_env = {**os.environ, "SQUAK_DATA_DIR": str(target), "DAGSTER_HOME": str(target / "dagster"), **env}
    for name in ("SQUAK_WAREHOUSE_URL", "SQUAK_DAGSTER_PG_URL", "SQUAK_EXECUTOR", "SQUAK_CELERY_BROKER"):
        if name not in env:
            run_env.pop(name, None)
    settings = Settings.from_env(run_env)
    run_order_stage(open_warehouse(settings), settings)
    with _dagster_env(run_env):
        prepare_dagster_home(settings)  # storage created once, before the processes race to it
    return run_env


@contextmanager
def _dagster_env(env: dict[str, str]) -> Iterator[None]:
    """`env`'s Dagster home and storage variables, set while in use."""
    names = ("DAGSTER_HOME", "SQUAK_DAGSTER_PG_URL")
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in names:
            if env.get(name):
                os.environ[name] = env[name]
            else:
                os.environ.pop(name, None)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _materialize(env: dict[str, str], log: Path, partition: str) -> subprocess.Popen:
    """`dagster asset materialize` of the mediation assets for one day, or a range `a...b`."""
    flag = "--partition-range" if "..." in partition else "--partition"
    return subprocess.Popen(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "squak_pipelines.definitions",
         "--select", MEDIATION, flag, partition],
        env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _all_succeed(procs: list[subprocess.Popen], logs: list[Path], helper: subprocess.Popen | None = None,
                 timeout: float = 400) -> None:
    """Wait for the runs; fail at once if `helper` (the workers) dies meanwhile."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        assert helper is None or helper.poll() is None, "the workers stopped"
        time.sleep(0.5)
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is None:
            proc.kill()
        assert proc.wait() == 0, log.read_text()[-4000:]
        text = log.read_text()
        assert "Could not set lock" not in text and "STEP_FAILURE" not in text, text[-4000:]


def _parallel(env: dict[str, str], logs: Path, helper: subprocess.Popen | None = None) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    files = [logs / f"{day}.log" for day in DAYS]
    _all_succeed([_materialize(env, f, day) for f, day in zip(files, DAYS, strict=True)], files, helper)


def _step_windows(env: dict[str, str]) -> dict[str, tuple[float, float, str]]:
    """Per run: its day, when its mediation step started and ended, and where it ran."""
    with _dagster_env(env), dg.DagsterInstance.get() as instance:
        out = {}
        for run in instance.get_runs():
            records = instance.all_logs(run.run_id)
            kinds = [(r, r.dagster_event.event_type_value if r.dagster_event else "") for r in records]
            start = min(r.timestamp for r, kind in kinds if kind == "STEP_START")
            end = max(r.timestamp for r, kind in kinds if kind == "STEP_SUCCESS")
            worker = next((str(r.dagster_event.engine_event_data.metadata["Celery worker"].value)
                           for r in records if r.dagster_event and r.dagster_event.is_engine_event
                           and "Celery worker" in (r.dagster_event.engine_event_data.metadata or {})), "")
            out[run.tags["dagster/partition"]] = (start, end, worker)
        return out


def _turns(env: dict[str, str]) -> list[tuple[float, float, str]]:
    """Every step's hold on the warehouse: when it took its turn, when it let go, its run."""
    with _dagster_env(env), dg.DagsterInstance.get() as instance:
        out = []
        for run in instance.get_runs():
            logs = [r for r in instance.all_logs(run.run_id) if r.user_message]
            taken = [r.timestamp for r in logs if r.user_message.startswith(TURN_TAKEN)]
            released = [r.timestamp for r in logs if r.user_message == TURN_RELEASED]
            assert len(taken) == len(released) >= 1, [r.user_message for r in logs]
            out += [(t, r, run.run_id) for t, r in zip(sorted(taken), sorted(released), strict=True)]
        return sorted(out)


# Where a record was read: a record delivered in the files of two days is mediated once, and
# which delivery is kept follows the order the days are mediated in (the order files arrive).
PROVENANCE = {"source_file", "source_sha256", "source_line", "partition_day", "raw_line", "duplicate_of"}


def _outcome(env: dict[str, str]) -> dict[str, object]:
    """What the billing rules fix about mediated days: every table's rows in full for records
    delivered once; for records delivered more than once, the kept record (less where it was
    read) and how many copies were duplicates; per file, its records and that they are all
    accounted for; per day, the fraud gate."""
    warehouse = open_warehouse(Settings.from_env(env))
    repeated = {str(k) for k in warehouse.query_arrow(
        "select distinct event_key from mediation.duplicates").column(0).to_pylist()}
    out: dict[str, object] = {}
    for name in ("mediation.events", "mediation.quarantine", "mediation.b_legs", "mediation.duplicates"):
        out[name] = sorted(repr({k: v for k, v in row.items() if row["event_key"] not in repeated
                                 or k not in PROVENANCE}) for row in table_rows(warehouse, name))
    assert out["mediation.events"], "the days were mediated"
    files = warehouse.query_df("select file_name, sha256, status, records_in, "
                               "accepted + rejected + duplicates + quarantined + b_legs as accounted "
                               "from mediation.files where status = 'processed'")
    assert (files["records_in"] == files["accounted"]).all(), files
    out["mediation.files"] = sorted(files[["file_name", "sha256", "status", "records_in"]].astype(str)
                                    .itertuples(index=False, name=None))
    gate = warehouse.query_df("select partition_day, gate_passed from mediation.partition_status")
    out["gate"] = sorted(gate.astype(str).itertuples(index=False, name=None))
    out["repeated"] = sorted(repeated)
    return out


def test_day_partitions_in_parallel_processes_take_turns_on_duckdb(month: Path, tmp_path: Path) -> None:
    serial = _install(month, tmp_path / "serial")
    log = tmp_path / "serial.log"
    _all_succeed([_materialize(serial, log, f"{DAYS[0]}...{DAYS[-1]}")], [log])

    parallel = _install(month, tmp_path / "parallel")
    _parallel(parallel, tmp_path / "logs")
    turns = _turns(parallel)
    assert len({run for _, _, run in turns}) == len(DAYS), "one run per day"
    for (_, end, _), (start, _, _) in itertools.pairwise(turns):
        assert start >= end, f"one step at a time holds the DuckDB file: {turns}"
    assert _outcome(parallel) == _outcome(serial)


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """A broker URL on a RabbitMQ virtual host of this test's own (no other worker takes its
    steps); skipped without rabbitmqctl, failed under CI=true."""
    ctl = shutil.which("rabbitmqctl")
    ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    vhost = f"squak_test_{uuid.uuid4().hex[:8]}"

    def ctl_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)  # type: ignore[list-item]

    made = ctl is not None and ctl_run("add_vhost", vhost).returncode == 0
    if not made:
        message = "RabbitMQ (rabbitmqctl, 127.0.0.1:5672) is not available for the celery test"
        if ci:
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    try:
        ctl_run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"pyamqp://guest@127.0.0.1:5672/{vhost}"
    finally:
        ctl_run("delete_vhost", vhost)


def _wait_until_ready(log_dir: Path, count: int, workers: subprocess.Popen, timeout: float = 120) -> None:
    """Until `count` celery workers have logged that they are ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert workers.poll() is None, "the workers stopped"
        ready = [p for p in log_dir.glob("celery-worker-*.log") if " ready." in p.read_text()]
        if len(ready) >= count:
            return
        time.sleep(0.5)
    pytest.fail(f"{count} celery workers not ready after {timeout:.0f} s (logs in {log_dir})")


@pytest.mark.postgres
def test_day_partitions_on_celery_workers_with_postgres(month: Path, tmp_path: Path, fresh_pg_url: str,
                                                        rabbitmq_vhost: str) -> None:
    with _throwaway_database() as serial_url:
        serial = _install(month, tmp_path / "serial", SQUAK_WAREHOUSE_URL=serial_url)
        settings = Settings.from_env(serial)
        mediate(open_warehouse(settings), settings, [date.fromisoformat(d) for d in DAYS])
        expected = _outcome(serial)

    parallel = _install(month, tmp_path / "parallel", SQUAK_WAREHOUSE_URL=fresh_pg_url,
                        SQUAK_DAGSTER_PG_URL=fresh_pg_url, SQUAK_EXECUTOR="celery",
                        SQUAK_CELERY_BROKER=rabbitmq_vhost)
    workers = subprocess.Popen([str(BIN / "squak"), "workers", "--count", "2"], env=parallel, cwd=ROOT,
                               stdout=(tmp_path / "workers.log").open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_until_ready(tmp_path / "parallel" / "logs", 2, workers)
        _parallel(parallel, tmp_path / "logs", workers)
    finally:
        workers.terminate()
        workers.wait(60)
    logs = "\n".join(p.read_text() for p in (tmp_path / "parallel" / "logs").glob("celery-worker-*.log"))
    assert workers.returncode in (0, 130), (tmp_path / "workers.log").read_text() + logs[-3000:]
    ran_on = {day: worker for day, (_, _, worker) in _step_windows(parallel).items()}
    assert sorted(ran_on) == list(DAYS) and all(w.startswith("squak-") for w in ran_on.values()), ran_on
    assert len(set(ran_on.values())) == 2, f"both workers took steps: {ran_on}"
    assert _outcome(parallel) == expected
