"""The one clock every date-dependent rule reads: `SQUAK_TODAY` (ISO date), else the real date.

Which cycles have ended, issue and due dates, aging, dunning, reject aging and every "as of"
read `today()`; record timestamps read `now()`. Tests and `--as-of` set `SQUAK_TODAY`, so no
rule depends on the machine's date. The real date is the UTC date.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time

ENV = "SQUAK_TODAY"


class ClockError(ValueError):
    """`SQUAK_TODAY` or `--as-of` is not an ISO date."""


def parse_day(value: str, what: str = ENV) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ClockError(f"{what} must be an ISO date YYYY-MM-DD, got {value!r}") from None


def today() -> date:
    """The business date: `SQUAK_TODAY` when set, else today's date in UTC."""
    value = os.environ.get(ENV, "").strip()
    return parse_day(value) if value else datetime.now(UTC).date()


def now() -> datetime:
    """A UTC instant on `today()`: the real time of day on the clock's date."""
    real = datetime.now(UTC)
    day = today()
    return real if day == real.date() else datetime.combine(day, real.time(), UTC)


def start_of_today() -> datetime:
    return datetime.combine(today(), time(), UTC)


def set_today(value: str, what: str = "--as-of") -> date:
    """Fix the clock for this process (and the Dagster runs it starts in-process)."""
    day = parse_day(value, what)
    os.environ[ENV] = day.isoformat()
    return day


def is_set() -> bool:
    return bool(os.environ.get(ENV, "").strip())


FIRST_CDR_DAY_ENV = "SQUAK_FIRST_CDR_DAY"
FIRST_CDR_DAY_DEFAULT = "2025-01-01"


def first_cdr_day() -> date:
    """The first day of the daily CDR partitions (`SQUAK_FIRST_CDR_DAY`, for older traffic)."""
    return parse_day(os.environ.get(FIRST_CDR_DAY_ENV, "").strip() or FIRST_CDR_DAY_DEFAULT,
                     FIRST_CDR_DAY_ENV)
