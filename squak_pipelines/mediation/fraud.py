"""Fraud screening: rules over a batch of events, set-based SQL in an in-process DuckDB.

Each rule has thresholds in `reference/fraud_rules.yaml`:
- burst: more than `max_calls` calls from one number within `window_minutes`;
- short_calls: at least `min_calls` answered calls of at most `max_seconds` from one number
  within `window_minutes`;
- high_risk: calls to high-risk (IRSF) ranges, by prefix;
- concurrency: more simultaneous answered calls on an account than `calls_per_line` x its
  active lines;
- night_international: more than `max_calls` international calls from one number between
  `start` and `end` local time of the switch.
A flagged event goes to quarantine with every rule that flagged it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

DEFAULTS: dict[str, dict[str, Any]] = {
    "burst": {"max_calls": 30, "window_minutes": 10},
    "short_calls": {"max_seconds": 6, "min_calls": 20, "window_minutes": 60},
    "high_risk": {"prefixes": ["882", "8816", "252", "53", "2392"]},
    "concurrency": {"calls_per_line": 2},
    "night_international": {"start": "00:00", "end": "05:00", "max_calls": 10},
    "gate": {"max_quarantine_share": 0.05, "min_quarantined": 0},
}


@dataclass(frozen=True)
class FraudRules:
    config: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> FraudRules:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
        config = {k: {**v, **(loaded or {}).get(k, {})} for k, v in DEFAULTS.items()}
        for rule, params in config.items():
            for key, value in params.items():
                if key != "prefixes" and not isinstance(value, int | float | str):
                    raise ValueError(f"{path}: {rule}.{key} must be a number or time, got {value!r}")
        return cls(config)

    def __getitem__(self, rule: str) -> dict[str, Any]:
        return self.config[rule]

    @property
    def max_quarantine_share(self) -> float:
        return float(self.config["gate"]["max_quarantine_share"])

    def day_limit(self, events: int) -> float:
        """The share of a day's events that may be held: `max_quarantine_share`, but never
        less than `min_quarantined` events (at small volumes one incident is a large share)."""
        floor = int(self.config["gate"]["min_quarantined"])
        return max(self.max_quarantine_share, floor / events if events else 0.0)


def _minutes(hhmm: str) -> int:
    hours, minutes = str(hhmm).split(":")
    return int(hours) * 60 + int(minutes)


def _worst_window(source: str, window: str) -> str:
    """Calls of `source` with, for each, the most calls any window of length `window` that
    contains it holds: `fwd` counts the window starting at each call, and a call takes the
    largest `fwd` of the windows that started within the window length before it."""
    return f"""
        select rid, max(fwd) over (partition by calling_number order by start_utc
                                   range between to_minutes({window}) preceding and current row) as worst
        from (select rid, calling_number, start_utc,
                     count(*) over (partition by calling_number order by start_utc
                                    range between current row and to_minutes({window}) following) as fwd
              from {source})"""


SCREEN_SQL = """
with voice as (select * from ev where service = 'voice'),
-- Pre-filters (necessary conditions, so results are the same): a window can only hold more
-- calls than a number makes in the whole batch, and an account can only exceed its lines
-- with more answered calls than it has lines to spare.
busy as (select calling_number from voice group by 1 having count(*) > $burst_max),
shorty as (select calling_number from voice where answered and billsec <= $short_seconds
           group by 1 having count(*) >= $short_min),
crowded as (select account_id from voice where answered and account_id is not null
            group by 1 having count(*) > max(lines) * $per_line),
burst as ({burst}),
short as ({short}),
high_risk as (
    select distinct ev.rid from ev join risky on starts_with(ev.called_number, '+' || risky.prefix)),
night as (
    select rid from (
        select rid, count(*) over (partition by calling_number, event_day) as n
        from voice
        where call_type = 'international'
          and local_minute >= $night_start and local_minute < $night_end)
    where n > $night_max),
sweep as (
    select rid, account_id, lines, delta,
           sum(delta) over (partition by account_id order by ts, delta, rid rows unbounded preceding)
               as active
    from (
        select rid, account_id, lines, answer_utc as ts, 1 as delta
        from voice semi join crowded using (account_id) where answered
        union all
        select rid, account_id, lines, end_utc as ts, -1 as delta
        from voice semi join crowded using (account_id) where answered)),
concurrency as (
    select rid from sweep where delta = 1 and active > lines * $per_line)
select rid, string_agg(rule, ',' order by rule) as fraud_rules from (
    select rid, 'burst' as rule from burst
    union all select rid, 'short_calls' from short
    union all select rid, 'high_risk' from high_risk
    union all select rid, 'night_international' from night
    union all select rid, 'concurrency' from concurrency)
group by rid
""".format(
    burst="select rid from ({}) where worst > $burst_max".format(
        _worst_window("voice semi join busy using (calling_number)", "$burst_window")
    ),
    short="select rid from ({}) where worst >= $short_min".format(
        _worst_window(
            "(select * from voice semi join shorty using (calling_number) "
            "where answered and billsec <= $short_seconds)",
            "$short_window",
        )
    ),
)


# The event columns the rules read (`_with_accounts` adds account_id and lines).
SCREEN_COLUMNS = ("rid", "service", "calling_number", "called_number", "start_utc", "answer_utc", "end_utc",
                  "answered", "billsec", "call_type", "event_day", "local_minute")


def screen(events: pa.Table, rules: FraudRules, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """(rid, fraud_rules) for every flagged row of `events`.

    `events` needs: rid, service, calling_number, called_number, start_utc, answer_utc,
    end_utc, answered, billsec, call_type, event_day, local_minute, account_id, lines."""
    own = con is None
    con = con or duckdb.connect()
    try:
        con.register("ev", events)
        con.register("risky", pa.table({"prefix": pa.array(rules["high_risk"]["prefixes"], pa.string())}))
        params = {
            "burst_window": int(rules["burst"]["window_minutes"]),
            "burst_max": int(rules["burst"]["max_calls"]),
            "short_window": int(rules["short_calls"]["window_minutes"]),
            "short_seconds": int(rules["short_calls"]["max_seconds"]),
            "short_min": int(rules["short_calls"]["min_calls"]),
            "night_start": _minutes(rules["night_international"]["start"]),
            "night_end": _minutes(rules["night_international"]["end"]),
            "night_max": int(rules["night_international"]["max_calls"]),
            "per_line": float(rules["concurrency"]["calls_per_line"]),
        }
        result = con.execute(SCREEN_SQL, params)
        fetch = getattr(result, "fetch_arrow_table", None) or result.arrow
        table = fetch()
        return table if isinstance(table, pa.Table) else table.read_all()
    finally:
        con.unregister("ev")
        con.unregister("risky")
        if own:
            con.close()
