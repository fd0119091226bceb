"""The warehouse file's turn: processes that want the DuckDB file at the same instant take it
one after another (Dagster's pool on its local storage can let them through together)."""

from __future__ import annotations

import fcntl
import itertools
import multiprocessing as mp
import os
import time
from pathlib import Path

from squak_pipelines.file_turn import file_turn, lock_path
from squak_pipelines.warehouse import DuckDBWarehouse


def _hold(path: str, barrier, out) -> None:
    barrier.wait()
    said: list[str] = []
    with file_turn(Path(path), waiting=said.append):
        entered = time.monotonic()
        time.sleep(0.2)
        left = time.monotonic()
    out.put((entered, left, os.getpid(), said))


def test_processes_asking_at_once_hold_the_file_one_after_another(tmp_path: Path) -> None:
    context = mp.get_context("fork")
    barrier, out = context.Barrier(4), context.Queue()
    procs = [context.Process(target=_hold, args=(str(tmp_path / "squak.duckdb"), barrier, out))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    held = sorted(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    for (_, left, _, _), (entered, _, _, _) in itertools.pairwise(held):
        assert entered >= left, held
    pids = {pid for _, _, pid, _ in held}
    waits = [message for _, _, _, said in held for message in said]
    assert len(waits) >= 3, "all but the first waited, and were told so"
    assert all(m.startswith("waiting for squak.duckdb: in use by ") for m in waits), waits
    # The holder's pid, unless it was asked in the instant between its lock and its writing it.
    assert {int(m.rsplit(" ", 1)[1]) for m in waits if m[-1].isdigit()} <= pids


def _locked_elsewhere(path: Path) -> bool:
    """Whether another open of the lock file would have to wait."""
    fd = os.open(lock_path(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_turn_is_reentrant_and_held_until_the_outermost_ends(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "squak.duckdb")
    with warehouse.turn() as waited:
        assert waited < 1
        with warehouse.turn(), DuckDBWarehouse(warehouse.path).turn():
            warehouse.execute("create table t as select 1 as x")
        assert _locked_elsewhere(warehouse.path)
        assert warehouse.scalar("select x from t") == 1
    assert not _locked_elsewhere(warehouse.path)
