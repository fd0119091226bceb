"""Vectorized call and SMS traffic for one switch and one local day.

Every column is drawn for all calls at once with numpy; no Python loop per CDR. The
result is a "truth" frame in E.164 and UTC that the switch writers render into each
switch's own file format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from squak_pipelines.demo.catalogue import DESTINATIONS, HIGH_RISK_PREFIXES, HOME_COUNTRIES

# Share of the day's calls per local hour: business hours plus a residential evening peak.
HOURLY = np.array([0.4, 0.2, 0.15, 0.1, 0.1, 0.2, 0.6, 1.6, 3.8, 6.2, 7.4, 7.6, 6.4, 6.8, 7.2,
                   7.0, 6.4, 5.4, 4.6, 4.8, 4.6, 3.6, 2.2, 1.0])
HOURLY = HOURLY / HOURLY.sum()
WEEKDAY_FACTOR = np.array([1.05, 1.08, 1.06, 1.05, 1.0, 0.55, 0.45])  # Mon..Sun
ANSWER_RATE = 0.75

# Destination mix per caller's home country: weights per destination kind / country.
_INTL_COUNTRIES = ("GB", "DE", "FR", "MX", "IN", "PH", "CN", "AU", "CA", "JM", "DO", "US")


def _mix(home: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices into DESTINATIONS and their probabilities for calls from `home`."""
    idx, weights = [], []
    for i, dest in enumerate(DESTINATIONS):
        if dest.kind == "highrisk":
            w = 0.0
        elif dest.country == home:
            w = {"fixed": 14.0, "mobile": 10.0, "tollfree": 1.2, "premium": 0.05}[dest.kind]
        elif dest.country in _INTL_COUNTRIES and dest.kind in {"fixed", "mobile"}:
            w = 0.35 if home != "US" or dest.country != "CA" else 1.5
        else:
            w = 0.0
        if dest.prefix == HOME_COUNTRIES.get(home, {}).get("cc"):
            w = 0.0  # generic catch-all rows: numbers are drawn from specific ranges
        if w:
            idx.append(i)
            weights.append(w)
    p = np.array(weights)
    return np.array(idx), p / p.sum()


@dataclass(frozen=True)
class DayPlan:
    switch_id: str
    timezone: str
    day: date
    scale: float  # multiplier of each service's calls_per_day


def draw_numbers(rng: np.random.Generator, dest_idx: np.ndarray) -> np.ndarray:
    """E.164 digits (no '+') for calls to the given DESTINATIONS rows."""
    prefixes = np.array([d.prefix for d in DESTINATIONS], dtype=object)[dest_idx]
    lengths = np.array([d.length for d in DESTINATIONS])[dest_idx]
    digits = lengths - np.array([len(p) for p in prefixes])
    out = np.empty(len(dest_idx), dtype=object)
    for k in np.unique(digits):
        sel = digits == k
        # First subscriber digit 2-9 (no trunk/escape codes), the rest uniform.
        lead = rng.integers(2, 10, size=sel.sum())
        rest = rng.integers(0, 10 ** (int(k) - 1), size=sel.sum())
        body = pd.Series(lead).astype(str) + pd.Series(rest).astype(str).str.zfill(int(k) - 1)
        out[sel] = prefixes[sel] + body.to_numpy(dtype=object)
    return out


def day_calls(rng: np.random.Generator, services: pd.DataFrame, plan: DayPlan,
              onnet_pool: dict[str, np.ndarray]) -> pd.DataFrame:
    """Voice calls of one switch for one local day, as a truth frame (UTC, E.164)."""
    tz = ZoneInfo(plan.timezone)
    day_start = datetime.combine(plan.day, time(0), tz)
    day_end_utc = int(datetime.combine(plan.day, time(23, 59, 59), tz).timestamp())
    day_start_utc = int(day_start.timestamp())
    active = services[(services["switch_id"] == plan.switch_id)
                      & (services["from_s"] <= day_end_utc) & (services["to_s"] > day_start_utc)
                      & (services["calls_per_day"] > 0)]
    if active.empty:
        return _empty()
    rate = active["calls_per_day"].to_numpy() * plan.scale * WEEKDAY_FACTOR[plan.day.weekday()]
    n = int(rng.poisson(rate.sum()))
    if n == 0:
        return _empty()
    pick = rng.choice(len(active), size=n, p=rate / rate.sum())
    callers = active.iloc[pick]
    hour = rng.choice(24, size=n, p=HOURLY)
    local_seconds = hour * 3600 + rng.integers(0, 3600, size=n)
    wall = pd.to_datetime(np.datetime64(plan.day) + local_seconds.astype("timedelta64[s]"))
    start = (pd.DatetimeIndex(wall).tz_localize(plan.timezone, ambiguous=False,
                                                 nonexistent="shift_forward")
             .tz_convert("UTC").as_unit("s").asi8)
    start = start // 1 if start.dtype == np.int64 else start
    # Only calls while the service was active.
    keep = (start >= callers["from_s"].to_numpy()) & (start < callers["to_s"].to_numpy())
    callers, start = callers[keep], start[keep]
    n = len(callers)
    called, kind = _called_numbers(rng, callers, onnet_pool)
    answered = rng.random(n) < ANSWER_RATE
    answered &= kind != "emergency_fail"
    billsec = np.where(answered, np.clip(rng.lognormal(np.log(55), 1.25, n), 1, 4 * 3600), 0)
    billsec = billsec.astype(np.int64)
    ring = rng.integers(2, 28, size=n)
    unanswered_kind = rng.choice(np.array(["NO ANSWER", "BUSY", "FAILED"]), size=n,
                                 p=[0.7, 0.22, 0.08])
    disposition = np.where(answered, "ANSWERED", unanswered_kind)
    return pd.DataFrame({
        "switch_id": plan.switch_id,
        "account_id": callers["account_id"].to_numpy(),
        "display_name": callers["display_name"].to_numpy(),
        "calling": callers["number"].to_numpy(),
        "called": called,
        "dest_kind": kind,
        "start": start,
        "answer": np.where(answered, start + ring, -1),
        "end": start + ring + billsec,
        "billsec": billsec,
        "disposition": disposition,
        "service": "voice",
        "tag": "",
    })


def _called_numbers(rng: np.random.Generator, callers: pd.DataFrame,
                    onnet_pool: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n = len(callers)
    called = np.empty(n, dtype=object)
    kind = np.empty(n, dtype=object)
    countries = callers["country"].to_numpy()
    for home in np.unique(countries):
        sel = np.flatnonzero(countries == home)
        idx, p = _mix(str(home))
        dest = idx[rng.choice(len(idx), size=len(sel), p=p)]
        called[sel] = draw_numbers(rng, dest)
        kinds = np.array([DESTINATIONS[i].kind for i in dest], dtype=object)
        countries_of = np.array([DESTINATIONS[i].country for i in dest], dtype=object)
        kinds = np.where((kinds != "tollfree") & (kinds != "premium") & (countries_of != home),
                         "international", kinds)
        kind[sel] = kinds
        # On-net calls to another Squak customer, and a few emergency calls.
        r = rng.random(len(sel))
        pool = onnet_pool.get(str(home))
        onnet = (r < 0.06) & (pool is not None and len(pool) > 0)
        if onnet.any():
            called[sel[onnet]] = pool[rng.integers(0, len(pool), size=onnet.sum())]
            kind[sel[onnet]] = "onnet"
        emergency = r > 0.998
        if emergency.any():
            codes = np.array(HOME_COUNTRIES[str(home)]["emergency"], dtype=object)
            called[sel[emergency]] = codes[rng.integers(0, len(codes), size=emergency.sum())]
            kind[sel[emergency]] = "emergency"
    return called, kind


def day_sms(rng: np.random.Generator, services: pd.DataFrame, day: date, scale: float,
            onnet_pool: dict[str, np.ndarray]) -> pd.DataFrame:
    """SMS events of one UTC day from the messaging gateway."""
    start_utc = int(datetime.combine(day, time(0), ZoneInfo("UTC")).timestamp())
    active = services[services["sms"] & (services["from_s"] <= start_utc + 86399)
                      & (services["to_s"] > start_utc)]
    if active.empty:
        return _empty()
    rate = np.where(active["segment"] == "business", 2.5, 1.2) * scale
    n = int(rng.poisson(rate.sum()))
    if n == 0:
        return _empty()
    callers = active.iloc[rng.choice(len(active), size=n, p=rate / rate.sum())]
    start = start_utc + rng.choice(24, size=n, p=HOURLY) * 3600 + rng.integers(0, 3600, size=n)
    keep = (start >= callers["from_s"].to_numpy()) & (start < callers["to_s"].to_numpy())
    callers, start = callers[keep], start[keep]
    called, kind = _called_numbers(rng, callers, onnet_pool)
    ok = np.array([k != "emergency" and k != "tollfree" and k != "premium" for k in kind])
    callers, start, called, kind = callers[ok], start[ok], called[ok], kind[ok]
    delivered = rng.random(len(callers)) < 0.97
    return pd.DataFrame({
        "switch_id": "sqk-sms1", "account_id": callers["account_id"].to_numpy(),
        "display_name": callers["display_name"].to_numpy(), "calling": callers["number"].to_numpy(),
        "called": called, "dest_kind": kind, "start": start, "answer": start, "end": start,
        "billsec": 0, "disposition": np.where(delivered, "DELIVERED", "FAILED"),
        "service": "sms", "tag": "",
    })


def fraud_burst(rng: np.random.Generator, caller: pd.Series, at_utc: int, calls: int
                ) -> pd.DataFrame:
    """A compromised line placing many very short calls within a few minutes."""
    start = at_utc + np.sort(rng.integers(0, 8 * 60, size=calls))
    billsec = rng.integers(1, 7, size=calls)
    us = [i for i, d in enumerate(DESTINATIONS) if d.country == "US" and d.kind == "fixed"
          and len(d.prefix) > 1]
    called = draw_numbers(rng, np.array(us)[rng.integers(0, len(us), size=calls)])
    return _injected(caller, called, "national", start, billsec, "fraud_burst")


def irsf_pump(rng: np.random.Generator, caller: pd.Series, at_utc: int, calls: int
              ) -> pd.DataFrame:
    """International revenue share fraud: long night calls to high-risk ranges, in parallel."""
    start = at_utc + np.sort(rng.integers(0, 2 * 3600, size=calls))
    billsec = rng.integers(300, 1800, size=calls)
    risky = [i for i, d in enumerate(DESTINATIONS) if d.prefix in HIGH_RISK_PREFIXES]
    called = draw_numbers(rng, np.array(risky)[rng.integers(0, len(risky), size=calls)])
    return _injected(caller, called, "international", start, billsec, "fraud_irsf")


def _injected(caller: pd.Series, called: np.ndarray, kind: str, start: np.ndarray,
              billsec: np.ndarray, tag: str) -> pd.DataFrame:
    ring = 3
    return pd.DataFrame({
        "switch_id": caller["switch_id"], "account_id": caller["account_id"],
        "display_name": caller["display_name"], "calling": caller["number"], "called": called,
        "dest_kind": kind, "start": start, "answer": start + ring, "end": start + ring + billsec,
        "billsec": billsec, "disposition": "ANSWERED", "service": "voice", "tag": tag,
    })


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["switch_id", "account_id", "display_name", "calling", "called",
                                 "dest_kind", "start", "answer", "end", "billsec", "disposition",
                                 "service", "tag"])
