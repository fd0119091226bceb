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


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Spawned worker processes that end with this one."""
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=end_with_parent, initargs=(os.getpid(),)) as pool:
        yield pool


def map_in_workers(function: Callable[[T], R], items: Iterable[T], parallel_from: int,
                   workers: int | None = None) -> list[R]:
    """`function` over `items`, in order: in worker processes when there are at least
    `parallel_from` items and more than one worker, else here. `function` must be a
    module-level callable (it is pickled)."""
    items = list(items)
    workers = workers or worker_count()
    if len(items) < parallel_from or workers < 2:
        return [function(item) for item in items]
    chunk = max(1, min(64, len(items) // (workers * 4)))
    with process_pool(min(workers, len(items))) as pool:
        return list(pool.map(function, items, chunksize=chunk))
