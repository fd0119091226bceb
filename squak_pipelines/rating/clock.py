"""Plan-local time for arrays of UTC instants, without a per-event time-zone call.

UTC offsets are looked up per quarter hour (every real zone changes offset on a quarter-hour
boundary), so converting ten million instants is one table lookup each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

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


def month_label(index: int) -> str:
    year, month = divmod(int(index), 12)
    return f"{1970 + year:04d}-{month + 1:02d}"
