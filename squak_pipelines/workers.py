"""Worker processes for CPU-bound document work: rendering is pure Python and holds the GIL.

Workers are spawned, not forked, so nothing of the caller's open database connections or
threads is inherited; each exits as soon as its parent dies. SQUAK_WORKERS sets how many
(default: the machine's cores, at most 4; 1 keeps everything in the calling process).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def worker_count() -> int:
    """Worker processes to use: SQUAK_WORKERS, else the cores (at most 4)."""
    configured = os.environ.get("SQUAK_WORKERS", "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise ValueError(f"SQUAK_WORKERS={configured!r}: expected a whole number of processes") from None
    return min(os.cpu_count() or 1, 4)


def end_with_parent(parent: int) -> None:
    """Worker initializer: a worker whose parent died (killed, crashed) exits at once instead
    of waiting for work that will never come."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="squak-parent-watch").start()


class Workers:
    """Worker processes shared by several maps: spawned on the first map big enough to need
    them (at least `parallel_from` items), ended by `close` (use `shared_workers`)."""

    def __init__(self, parallel_from: int, workers: int | None = None):
        self.parallel_from = parallel_from
        self.workers = workers or worker_count()
        self._pool: ProcessPoolExecutor | None = None

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`function` over `items`, in order (a module-level callable: it is pickled)."""
        items = list(items)
        if len(items) < self.parallel_from or self.workers < 2:
            return [function(item) for item in items]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                             initializer=end_with_parent, initargs=(os.getpid(),))
        chunk = max(1, min(64, len(items) // (self.workers * 4)))
        return list(self._pool.map(function, items, chunksize=chunk))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@contextmanager
def shared_workers(parallel_from: int, workers: int | None = None) -> Iterator[Workers]:
    """Workers for a stage that maps in batches (one spawn, not one per batch)."""
    pool = Workers(parallel_from, workers)
    try:
        yield pool
    finally:
        pool.close()


def map_in_workers(function: Callable[[T], R], items: Iterable[T], parallel_from: int,
                   workers: int | None = None) -> list[R]:
    """`function` over `items`, in order: in worker processes when there are at least
    `parallel_from` items and more than one worker, else here. `function` must be a
    module-level callable (it is pickled)."""
    with shared_workers(parallel_from, workers) as pool:
        return pool.map(function, items)
