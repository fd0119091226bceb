"""How Squak's runs spread over processes and machines.

- Every asset and check op (each opens the warehouse) is in one Dagster concurrency pool,
  `squak_warehouse`.
  Its limit is 1 on the DuckDB file (one writing process at a time, so concurrent runs queue
  for the file instead of failing on its lock) and SQUAK_POOL_LIMIT (default 4) on PostgreSQL.
  On DuckDB each step also holds the file's turn (file_turn), because Dagster's local storage
  can give the pool's one slot to two steps that claim it at the same instant.
- The executor of every job: Dagster's multiprocess executor by default; `SQUAK_EXECUTOR=celery`
  sends each step to `dagster-celery` workers over the broker SQUAK_CELERY_BROKER (RabbitMQ on
  this machine by default); `k8s` runs each step in its own Kubernetes pod (dagster-k8s, see
  deploy/README.md); `in_process` runs steps in the run's own process.
- Day partitions of mediation are backfilled as one run over the range; on PostgreSQL,
  SQUAK_BACKFILL_DAYS_PER_RUN=N makes it runs of N days that run in parallel, whose writes
  take turns (Warehouse.serialize). (`dagster job backfill` always queues a run per day.) Rating
  backfills in one run, in day order, and its runs are queued one at a time in the order
  they were submitted: allowances carry over from one day of a cycle to the next.
"""

from __future__ import annotations

import os

import dagster as dg

from squak_pipelines.config import Settings

WAREHOUSE_POOL = "squak_warehouse"
# Runs of a job with this tag are started one at a time, in queue order (dagster.yaml's
# tag_concurrency_limits): rating's days, whose allowances carry over.
IN_DAY_ORDER_TAG = "squak/in_day_order"
DEFAULT_POOL_LIMIT = 4
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"  # RabbitMQ's local default account
EXECUTORS = ("multiprocess", "in_process", "celery", "k8s")


def pool_limit(settings: Settings) -> int:
    """How many steps may write the warehouse at once."""
    if settings.warehouse_kind == "duckdb":
        return 1
    return max(1, int(os.environ.get("SQUAK_POOL_LIMIT") or DEFAULT_POOL_LIMIT))


def celery_broker() -> str:
    return os.environ.get("SQUAK_CELERY_BROKER") or DEFAULT_BROKER


def celery_config() -> dict[str, object]:
    """The celery executor's config, the same for the runs and for the workers."""
    return {"broker": celery_broker(), "backend": "rpc://"}


def executor() -> dg.ExecutorDefinition:
    """The executor every job runs with (SQUAK_EXECUTOR)."""
    kind = os.environ.get("SQUAK_EXECUTOR") or "multiprocess"
    if kind not in EXECUTORS:
        raise ValueError(f"SQUAK_EXECUTOR={kind!r}: expected one of {', '.join(EXECUTORS)}")
    if kind == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config(), name="squak_celery")
    if kind == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise ValueError("SQUAK_EXECUTOR=k8s needs dagster-k8s (pip install 'squak-billing[k8s]')") \
                from exc
        return k8s_job_executor
    if kind == "in_process":
        return dg.in_process_executor
    return dg.multiprocess_executor


def mediation_backfill_policy(settings: Settings) -> dg.BackfillPolicy:
    """One run over the range (days in order, as `squak run`); on PostgreSQL with
    SQUAK_BACKFILL_DAYS_PER_RUN=N, runs of N days that run in parallel."""
    per_run = os.environ.get("SQUAK_BACKFILL_DAYS_PER_RUN")
    if settings.warehouse_kind == "duckdb" or not per_run:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=max(1, int(per_run)))
