"""Start `dagster-celery` workers for runs launched with SQUAK_EXECUTOR=celery.

Each worker is a `celery worker` process that takes steps from the broker (SQUAK_CELERY_BROKER,
RabbitMQ on this machine by default), loads Squak's definitions with this process's settings
and writes its events to the run's instance, so the workers need the same environment as
the runs: the PostgreSQL warehouse (SQUAK_WAREHOUSE_URL), dagster-postgres storage
(SQUAK_DAGSTER_PG_URL) and the data folder (shared storage when the workers are on other
machines).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from squak_pipelines.scale_out import celery_config


def write_worker_config(home: Path) -> Path:
    """The celery executor's config for the workers, from the environment (in DAGSTER_HOME:
    the broker URL may carry a password, so it is never a file of the repo)."""
    path = home / "celery.yaml"
    path.write_text(yaml.safe_dump({"execution": {"config": celery_config()}}), encoding="utf-8")
    path.chmod(0o600)
    return path


def worker_command(config: Path, name: str, concurrency: int) -> list[str]:
    tool = Path(sys.executable).parent / "dagster-celery"
    return [str(tool), "worker", "start", "-A", "dagster_celery.app", "-y", str(config), "-n", name,
            "--", f"--concurrency={concurrency}"]


def start_workers(home: Path, count: int, concurrency: int = 1,
                  log_dir: Path | None = None) -> list[subprocess.Popen]:
    """`count` workers, each running `concurrency` steps at a time; their output goes to
    `log_dir/celery-worker-N.log` when given."""
    config = write_worker_config(home)
    # `dagster-celery worker start` runs `celery` from PATH: make it this environment's.
    tools = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([tools, os.environ.get("PATH", "")])}
    workers = []
    for number in range(1, count + 1):
        out = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            out = (log_dir / f"celery-worker-{number}.log").open("w", encoding="utf-8")
        workers.append(subprocess.Popen(
            worker_command(config, f"squak-{number}-{os.getpid()}@%h", concurrency),
            stdout=out, stderr=subprocess.STDOUT if out else None, env=env, start_new_session=True))
    return workers


def stop_workers(workers: list[subprocess.Popen], timeout: float = 30) -> None:
    """Warm shutdown (SIGTERM: finish the step at hand), then kill what is left."""
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
