"""Progress of long work (days mediated and rated, invoices drafted and finalized, documents
written, e-mails sent), reported through the Python logger `squak.progress`.

Dagster records the logger's messages in the run's log (`managed_python_loggers` in the
shipped dagster.yaml), so the UI shows the same progress `squak run` draws as a bar per stage
(`ProgressBar`). A message goes out at most every few seconds, and at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

LOGGER = logging.getLogger("squak.progress")
EVERY_SECONDS = 5.0


class Progress:
    """Counts `done` of `total` `unit`s of one piece of work (`what`)."""

    def __init__(self, what: str, total: int, unit: str, every: float = EVERY_SECONDS) -> None:
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.done = 0
        self._last = 0.0
        self._started = time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.done >= self.total or now - self._last >= self.every:
            self._last = now
            rate = self.done / max(now - self._started, 1e-9)
            state = (self.what, self.done, self.total, self.unit)
            LOGGER.info("%s: %s/%s %s (%s/s)", self.what, f"{self.done:,}", f"{self.total:,}", self.unit,
                        f"{rate:,.0f}", extra={"squak_progress": state})


@contextmanager
def reported_to(handler: logging.Handler) -> Iterator[logging.Handler]:
    """Progress goes to `handler` (too) while inside."""
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        LOGGER.removeHandler(handler)
        handler.close()


class ProgressBar(logging.Handler):
    """Draws `squak.progress` records on a terminal (one bar, redrawn in place) or as plain
    lines (a quarter at a time) when the output is a file or a pipe."""

    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        super().__init__(logging.INFO)
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._quarters: dict[str, int] = {}
        self._open = False

    def emit(self, record: logging.LogRecord) -> None:
        what, done, total, unit = getattr(record, "squak_progress", (None, 0, 0, ""))
        if what is None:
            return
        if self.tty:
            filled = int(self.width * done / max(total, 1))
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r        {what} [{bar}] {done:,}/{total:,} {unit}\033[K")
            self._open = done < total
            if not self._open:
                self.stream.write("\n")
        else:
            quarter = 4 * done // max(total, 1)
            if quarter == self._quarters.get(what, -1):
                return
            self._quarters[what] = quarter
            self.stream.write(f"        {what}: {done:,}/{total:,} {unit}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
        super().close()
