"""Build small plans and events for rating tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import yaml

from squak_pipelines.rating.plans import Plan, load_plan

DECK_HEADER = "prefix,destination,rate,connect_fee,increment,effective_from,time_band,service"
DECK = f"""{DECK_HEADER}
1,North America,0.0100,0,60/60,,,voice
1212,New York,0.0200,0,30/6,,,voice
44,UK,0.0500,0.0500,1/1,,,voice
447,UK Mobile,0.1000,0,60/60,2026-10-01,peak,voice
447,UK Mobile,0.0600,0,60/60,2026-10-01,,voice
447,UK Mobile,0.1200,0,60/60,2026-10-15,peak,voice
447,UK Mobile,0.0800,0,60/60,2026-10-15,,voice
49,Germany,0.0300,0,0/1,,,voice
4930,Berlin,0.0030,0,1/1,,,voice
1,North America,0.0100,0,1/1,,,sms
"""


def write_plan(root: Path, deck: str = DECK, **overrides) -> Path:
    """A plan (America/New_York, peak Mon-Fri 08:00-19:00) over `deck`; `overrides` replace
    plan keys."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "deck.csv").write_text(deck, encoding="utf-8")
    doc = {
        "plan_id": "T", "currency": "USD", "timezone": "America/New_York", "rounding": "half_up",
        "rating_decimals": 4, "band_rule": "start",
        "time_bands": [{"name": "peak", "windows": ["Mon-Fri 08:00-19:00"]},
                       {"name": "offpeak", "otherwise": True}],
        "decks": {"voice": "deck.csv"}, "allowances": [], "discounts": [],
    }
    doc.update(overrides)
    path = root / f"{doc['plan_id']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def plan_at(root: Path, deck: str = DECK, **overrides) -> Plan:
    return load_plan(write_plan(root, deck, **overrides))


def events(rows: list[dict], plan_id: str = "T") -> pa.Table:
    """Engine input from dicts: called, at (ISO UTC answer time), billsec; optional service,
    answered, call_type, account, key."""
    ts = pa.timestamp("s", tz="UTC")
    at = [datetime.fromisoformat(r["at"].replace("Z", "+00:00")) for r in rows]
    return pa.table({
        "event_key": [r.get("key", str(i)) for i, r in enumerate(rows)],
        "service": [r.get("service", "voice") for r in rows],
        "called_number": [r["called"] for r in rows],
        "start_utc": pa.array(at, ts),
        "answer_utc": pa.array(at, ts),
        "billsec": pa.array([r.get("billsec", 0) for r in rows], pa.int64()),
        "answered": [r.get("answered", r.get("billsec", 0) > 0 or r.get("service") == "sms") for r in rows],
        "call_type": [r.get("call_type", "national") for r in rows],
        "account_id": pa.array([r.get("account", "A") for r in rows], pa.string()),
        "plan_id": [plan_id] * len(rows),
    })
