"""Run the billing pipeline stage by stage on a persistent Dagster instance.

Each stage is one Dagster run of its stage job, so `make ui` shows exactly the runs
`make run` made. Later stages add themselves to STAGES.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from squak_pipelines.config import Settings
from squak_pipelines.memory import release_freed_memory
from squak_pipelines.progress import reported_to


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    job: str
    partitioned: bool = False  # runs over the range of days given by `days_for`


STAGES: tuple[Stage, ...] = (
    Stage("reference", "Reference data (products, taxes, switches)", "reference_job"),
    Stage("orders", "Orders and service inventory", "orders_job"),
    Stage("capture", "CDR capture (drop-folder inventory)", "capture_job"),
    Stage("mediation", "CDR mediation (parse, normalize, de-duplicate, fraud gate)", "mediation_job",
          partitioned=True),
    Stage("rating", "Rating and charging (price every event, suspense)", "rating_job", partitioned=True),
    Stage("invoicing", "Billing cycle (draft, finalize and render invoices)", "invoicing_job",
          partitioned=True),
    Stage("payments", "Payments and receivables (intake, matching, ledger, aging, dunning)", "payments_job"),
    Stage("assurance", "Revenue assurance (controls and leakage report)", "assurance_job", partitioned=True),
    Stage("models", "Warehouse models and tests (dbt)", "warehouse_models_job"),
    Stage("reporting", "Dashboards and finance report", "reporting_job"),
)

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

# What each stage works on, counted in the warehouse once it has run: (unit, SQL).
STAGE_ROWS: dict[str, tuple[str, str]] = {
    "reference": ("tax rates", "select count(*) from raw.tax_rates"),
    "orders": ("services", "select count(*) from orders.services"),
    "capture": ("CDR files", "select count(*) from raw.cdr_drop_files"),
    "mediation": ("CDR records", "select coalesce(sum(records_in), 0) from mediation.files"),
    "rating": ("events", "select (select count(*) from rating.rated_events) "
                         "+ (select count(*) from rating.suspense)"),
    "invoicing": ("invoices", "select count(*) from invoicing.invoices"),
    "payments": ("payments", "select count(*) from payments.payments"),
    "assurance": ("rated events", "select count(*) from rating.rated_events"),
    "models": ("rated events", "select count(*) from rating.rated_events"),
    "reporting": ("invoices", "select count(*) from invoicing.invoices"),
}


@dataclass
class StageReport:
    stage: Stage
    success: bool
    seconds: float
    run_id: str
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # failed checks of severity WARN
    error: str | None = None


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def run_stage(defs: dg.Definitions, stage: Stage, instance: dg.DagsterInstance,
              log_dir: Path | None = None, days: list[str] | None = None) -> StageReport:
    """One Dagster run of the stage's job; tool output (dbt's log) goes to `log_dir`.
    A partitioned stage runs once over the range of `days` (none: nothing to do)."""
    job = defs.resolve_job_def(stage.job)
    started = time.monotonic()
    tags = {"squak/stage": stage.key, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    if stage.partitioned:
        if not days:
            return StageReport(stage=stage, success=True, seconds=0.0, run_id="-" * 8)
        tags.update({"dagster/asset_partition_range_start": min(days),
                     "dagster/asset_partition_range_end": max(days)})
    with contextlib.ExitStack() as stack:
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context((log_dir / f"{stage.key}.log").open("w", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(reported_to(_log_lines(log)))  # progress into the log as it runs
        result = job.execute_in_process(instance=instance, run_config=QUIET,
                                        raise_on_error=False, tags=tags)
    # What the stage freed goes back to the system before the next stage of this process
    # starts (`squak run` and the benchmark run every stage in one process).
    release_freed_memory()
    report = StageReport(stage=stage, success=result.success,
                         seconds=time.monotonic() - started, run_id=result.run_id)
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        report.assets[mat.asset_key.to_user_string()] = {
            k: _plain(v) for k, v in mat.metadata.items()}
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        report.checks[name] = evaluation.passed
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN:
            report.warnings.append(name)
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        report.error = "; ".join(
            str(e.step_failure_data.error.message).strip() for e in failures if e.step_failure_data
        ) or "the run failed"
    return report


def _log_lines(log: Any) -> logging.Handler:
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    return handler


PID_TAG, HOST_TAG = "squak/pid", "squak/host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs left STARTING/STARTED by a `squak` process that no longer exists (killed, crashed,
    machine restarted) are marked failed, so they never hold the one-run queue; returns their
    ids. Runs of other hosts or processes still alive are left alone."""
    from dagster import DagsterRunStatus, RunsFilter

    stuck = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]))
    failed = []
    for run in stuck:
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid and host == socket.gethostname() and int(pid) != os.getpid() and not _alive(int(pid)):
            instance.report_run_failed(run, f"the squak process {pid} that ran it is gone (killed, crashed)")
            # Its step may hold the warehouse pool's slot: free it, or the next run waits forever.
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            failed.append(run.run_id)
    return failed


class StageDays:
    """The partitions a partitioned stage runs over, as `squak run` chooses them: the days with
    new CDR files (capture, mediation), every mediated day (rating), the billing months with
    ended cycles not yet billed (invoicing) and those, else the last billed, audited
    (assurance). Says what it chose through `say`."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings, self.say = settings, say
        self.billed: list[str] = []
        self.audited: list[str] = []

    def __call__(self, stage: Stage) -> list[str]:
        from squak_pipelines import clock
        from squak_pipelines.invoicing.stage import cycles_to_bill, last_billed_month
        from squak_pipelines.mediation.stage import early_files_hint, mediated_days, pending_days
        from squak_pipelines.warehouse import open_warehouse

        warehouse = open_warehouse(self.settings)
        if stage.key == "invoicing":
            self.billed = cycles_to_bill(warehouse, self.settings)
            self.say(f"        billing months with ended cycles to bill (as of {clock.today()}): "
                     + (", ".join(self.billed) if self.billed else "none"))
            return [f"{c}-01" for c in self.billed]
        if stage.key == "assurance":
            self.audited = self.billed or [m for m in [last_billed_month(warehouse)] if m]
            self.say(f"        audited cycles: {', '.join(self.audited) or 'none billed yet'}")
            return [f"{c}-01" for c in self.audited]
        if stage.key == "rating":
            days = mediated_days(warehouse)
            self.say(f"        {len(days)} mediated day(s) to rate")
            return days
        days = pending_days(warehouse, self.settings)
        hint = early_files_hint(self.settings)
        if hint:
            self.say(f"        {hint}")
        if days:
            self.say(f"        {len(days)} day(s) with new CDR files: {days[0]} .. {days[-1]}")
        else:
            self.say("        no new CDR files")
        return days


def run_pipeline(defs: dg.Definitions, instance: dg.DagsterInstance,
                 on_start: Callable[[int, Stage], None] | None = None,
                 on_end: Callable[[int, StageReport], None] | None = None,
                 stages: tuple[Stage, ...] = STAGES,
                 log_dir: Path | None = None,
                 days_for: Callable[[Stage], list[str]] | None = None) -> list[StageReport]:
    """Run every stage in order (after failing runs a dead process left behind); stop at the
    first failed stage."""
    fail_dead_runs(instance)
    reports = []
    for number, stage in enumerate(stages, 1):
        if on_start:
            on_start(number, stage)
        days = days_for(stage) if (days_for and stage.partitioned) else None
        report = run_stage(defs, stage, instance, log_dir, days)
        reports.append(report)
        if on_end:
            on_end(number, report)
        if not report.success:
            break
    return reports
