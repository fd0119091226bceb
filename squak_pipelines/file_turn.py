"""One process at a time on a file: an advisory lock beside it (`<file>.lock`), taken for a
whole unit of work and re-entrant within the process.

The DuckDB warehouse file admits one writing process. Dagster's `squak_warehouse` pool is
meant to give it to one step at a time, but on Dagster's default local (SQLite) storage two
processes that claim the pool's one slot at the same instant can both get it (its claim reads
a free slot, then updates it, with no lock between the two on SQLite). The step that loses
the race then failed on DuckDB's own lock; with this turn it waits for the other step instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: the pool alone serializes there
    fcntl = None  # type: ignore[assignment]

_held: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, depth) in this process
_guard = threading.Lock()


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def file_turn(path: Path, waiting: Callable[[str], None] | None = None) -> Iterator[float]:
    """Hold the turn on `path` while inside; yields the seconds waited for it. `waiting` is
    told, once, which process holds the turn when this one has to wait."""
    lock = lock_path(Path(path).resolve())
    with _guard:
        if lock in _held:
            fd, depth = _held[lock]
            _held[lock] = (fd, depth + 1)
            acquired = True
        else:
            acquired = False
    if acquired:
        try:
            yield 0.0
        finally:
            _leave(lock)
        return
    waited = _take(lock, waiting)
    try:
        yield waited
    finally:
        _leave(lock)


def _take(lock: Path, waiting: Callable[[str], None] | None) -> float:
    """Open and lock `lock`, blocking until its holder lets go; register it as held."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    started = time.monotonic()
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    holder = _holder(fd)
                    waiting(f"waiting for {lock.name[:-5]}: in use by "
                            + (f"process {holder}" if holder.isdigit() else "another process"))
                fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[lock] = (fd, 1)
    return time.monotonic() - started


def _leave(lock: Path) -> None:
    with _guard:
        fd, depth = _held[lock]
        if depth > 1:
            _held[lock] = (fd, depth - 1)
            return
        del _held[lock]
    os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip()
