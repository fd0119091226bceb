"""Plan-local time for arrays of UTC instants, without a per-event time-zone call.

UTC offsets are looked up per quarter hour (every real zone changes offset on a quarter-hour
boundary), so converting ten million instants is one table lookup each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from squak_pipelines import cycles

SLOT = 900  # seconds
DAY = 86_400
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True)
class OffsetTable:
    first_slot: int
    offsets: np.ndarray  # UTC offset (s) of each quarter hour from first_slot
    next_change: np.ndarray  # UTC instant (s) at which the offset next changes (or far away)

    @classmethod
    def build(cls, timezone: str, utc_seconds: np.ndarray) -> OffsetTable:
        zone = ZoneInfo(timezone)
        lo = int(utc_seconds.min()) // SLOT - 1 if len(utc_seconds) else 0
        hi = int(utc_seconds.max()) // SLOT + 4 * 24 * 2 if len(utc_seconds) else 1  # calls run on
        slots = np.arange(lo, hi + 1, dtype=np.int64)
        offsets = np.array(
            [int(datetime.fromtimestamp(int(s) * SLOT, UTC).astimezone(zone).utcoffset().total_seconds())
             for s in slots], dtype=np.int64)
        change = np.flatnonzero(np.diff(offsets)) + 1  # slot index where a new offset starts
        following = np.searchsorted(change, np.arange(len(slots)), side="right")
        starts = np.append(slots[change] * SLOT, np.int64(2**62))
        return cls(lo, offsets, starts[following])

    def local(self, utc_seconds: np.ndarray) -> np.ndarray:
        """Local wall-clock seconds since 1970-01-01 00:00 local."""
        return utc_seconds + self.offsets[utc_seconds // SLOT - self.first_slot]

    def until_change(self, utc_seconds: np.ndarray) -> np.ndarray:
        """Seconds until the zone's offset next changes (DST)."""
        return self.next_change[utc_seconds // SLOT - self.first_slot] - utc_seconds


def minute_of_week(local_seconds: np.ndarray) -> np.ndarray:
    """Minute of the local week, Monday 00:00 = 0."""
    days = local_seconds // DAY
    return ((days + EPOCH_WEEKDAY) % 7) * 1440 + (local_seconds % DAY) // 60


def month_start_day(day: np.ndarray) -> np.ndarray:
    """Day number (since 1970-01-01) of the first of each day's month."""
    months = np.asarray(day, dtype=np.int64).astype("datetime64[D]").astype("datetime64[M]")
    return months.astype("datetime64[D]").astype(np.int64)


def cycle_label(start_day: int) -> str:
    """Label of the cycle starting on day number `start_day` (cycles.cycle_label)."""
    return cycles.cycle_label(date(1970, 1, 1) + timedelta(days=int(start_day)))


class CycleStarts:
    """Accounts' cycle starts (bill days other than the 1st, and bill-day changes): for each
    account id, the sorted day numbers its cycles start on. Accounts not listed bill by
    calendar month."""

    def __init__(self, starts: dict[str, list[date]]) -> None:
        self.starts = {a: np.array([(d - date(1970, 1, 1)).days for d in days], dtype=np.int64)
                       for a, days in starts.items() if days}

    def __bool__(self) -> bool:
        return bool(self.starts)

    def apply(self, account: np.ndarray, accounts: list, day: np.ndarray, calendar: np.ndarray
              ) -> np.ndarray:
        """Start day of each event's cycle: its account's, else `calendar` (month starts)."""
        keys, values = [], []
        for code, account_id in enumerate(accounts):
            days = self.starts.get(account_id)
            if days is not None:
                keys.append((code << 32) + days)
                values.append(days)
        if not keys:
            return calendar
        key, value = np.concatenate(keys), np.concatenate(values)
        order = np.argsort(key, kind="stable")
        key, value = key[order], value[order]
        wanted = (account << 32) + day
        pos = np.searchsorted(key, wanted, side="right") - 1
        hit = (account >= 0) & (pos >= 0)
        pos = np.maximum(pos, 0)
        hit &= (key[pos] >> 32) == account
        return np.where(hit, value[pos], calendar)
