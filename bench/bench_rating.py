"""Benchmark rating: the vectorized engine on 10M mediated events.

    .venv/bin/python bench/bench_rating.py [--events 10000000] [--prefixes 5000] [--sample 100000]

Builds a USD voice deck of the demo's destinations plus `--prefixes` carrier-style sub-ranges,
a plan with three time bands (peak, evening, offpeak) and a voice allowance, and synthetic
mediated events for 20,000 accounts over a month (building them is the input load, timed
apart). Prints:
- engine: events/s of `rating.engine.rate` (start and split band rules) and peak RSS;
- the per-row Python reference (`rating.reference`) on a `--sample` of the events, and the
  speed-up ratio;
- a plain DuckDB SQL baseline (longest-prefix join, increments, rate) without bands,
  effective dates or allowances.
Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from squak_pipelines.demo.catalogue import DECK_COLUMNS, voice_deck_rows
from squak_pipelines.rating import reference
from squak_pipelines.rating.engine import rate
from squak_pipelines.rating.plans import load_plan

MONTH_START = 1_790_812_800  # 2026-10-01T00:00:00Z


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start a new high-water mark of this process's resident memory (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def since_reset_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_plan(root: Path, prefixes: int, band_rule: str) -> Path:
    rows = voice_deck_rows("USD", "2026-10-01", "2026-10-15", extra_prefixes=prefixes)
    peak_rows = [{**r, "time_band": "peak", "rate": str(round(float(r["rate"]) * 1.2, 4))}
                 for r in rows if r["time_band"] == "" and len(r["prefix"]) <= 4]
    with (root / "deck.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, DECK_COLUMNS)
        writer.writeheader()
        writer.writerows(rows + [r for r in peak_rows if r["prefix"] not in {"447", "4477"}])
    plan = {
        "plan_id": "BENCH", "currency": "USD", "timezone": "America/Chicago", "rounding": "half_up",
        "rating_decimals": 4, "band_rule": band_rule,
        "time_bands": [{"name": "peak", "windows": ["Mon-Fri 08:00-18:00"]},
                       {"name": "evening", "windows": ["Mon-Fri 18:00-22:00"]},
                       {"name": "offpeak", "otherwise": True}],
        "decks": {"voice": "deck.csv"},
        "allowances": [{"name": "1,000 US minutes", "service": "voice", "minutes": 1000,
                        "destinations": ["United States*", "Canada*"]}],
        "discounts": [{"name": "10% off international", "applies_to": "international_usage",
                       "percent": "10"}],
    }
    path = root / f"bench-{band_rule}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def make_events(n: int, prefixes: list[str], seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    chosen = pa.array(np.array(prefixes, dtype=object)[rng.integers(0, len(prefixes), n)], pa.string())
    tail = pc.utf8_lpad(pa.array(rng.integers(0, 10**7, n)).cast(pa.string()), width=7, padding="0")
    called = pc.binary_join_element_wise("+", chosen, tail, "")
    start = MONTH_START + rng.integers(0, 31 * 86400, n)
    billsec = np.where(rng.random(n) < 0.15, 0, rng.gamma(1.5, 120, n).astype(np.int64))
    ts = pa.timestamp("s", tz="UTC")
    return pa.table({
        "event_key": pa.array(np.arange(n)).cast(pa.string()),
        "service": pa.array(np.full(n, "voice", dtype=object), pa.string()),
        "called_number": called,
        "start_utc": pa.array(start).cast(ts),
        "answer_utc": pa.array(start + 4).cast(ts),
        "billsec": pa.array(billsec),
        "answered": pa.array(billsec > 0),
        "call_type": pc.if_else(pc.starts_with(chosen, "1"), "national", "international"),
        "account_id": pc.binary_join_element_wise(
            "ACC-", pa.array(rng.integers(0, 20_000, n)).cast(pa.string()), ""),
        "plan_id": pa.array(np.full(n, "BENCH", dtype=object), pa.string()),
    })


def sql_baseline(events: pa.Table, deck: Path) -> float:
    con = duckdb.connect(config={"memory_limit": "4GB"})
    con.execute("create table deck as select * from read_csv(?, all_varchar=true) "
                "where coalesce(time_band, '') = '' qualify row_number() over "
                "(partition by prefix order by effective_from desc) = 1", [str(deck)])
    con.register("events", events.select(["event_key", "called_number", "billsec"]))
    started = time.perf_counter()
    con.execute("""
        create table priced as
        with cand as (select event_key, called_number, billsec, unnest(range(1, 16)) as len from events),
        hit as (select c.event_key, c.billsec, d.*, c.len from cand c
                join deck d on d.prefix = substr(c.called_number, 2, c.len)),
        best as (select * from hit qualify row_number() over (partition by event_key order by len desc) = 1),
        inc as (select *, cast(split_part(increment, '/', 1) as int) as a,
                          cast(split_part(increment, '/', 2) as int) as b from best)
        select event_key, case when billsec = 0 then 0::decimal(18,6) else round(
            cast(connect_fee as decimal(18,6)) + cast(rate as decimal(18,6)) *
            (case when billsec <= a then a else a + ceil((billsec - a) / b) * b end) / 60, 4) end as charge
        from inc""")
    seconds = time.perf_counter() - started
    priced = con.execute("select count(*) from priced").fetchone()[0]
    return seconds, priced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--prefixes", type=int, default=5000)
    parser.add_argument("--sample", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squak-bench-rate-") as tmp:
        root = Path(tmp)
        plans = {rule: load_plan(write_plan(root, args.prefixes, rule)) for rule in ("start", "split")}
        deck = plans["start"].deck("voice")
        prefix_list = sorted({r.prefix for r in deck})
        print(f"deck: {len(deck):,} rows, {len(prefix_list):,} prefixes (up to "
              f"{max(map(len, prefix_list))} digits), 3 time bands, a 1,000-minute allowance")
        started = time.perf_counter()
        events = make_events(args.events, prefix_list)
        print(f"input load: {events.num_rows:,} events built in {time.perf_counter() - started:.1f} s")
        for rule, plan in plans.items():
            rate(events.slice(0, 1000), {"BENCH": plan})  # compile the deck once (cached)
            reset_peak()
            started = time.perf_counter()
            out = rate(events, {"BENCH": plan})
            seconds = time.perf_counter() - started
            peak = since_reset_mib()
            rated = pc.sum(pc.equal(out["status"], "rated")).as_py()
            revenue = pc.sum(out["final_charge"]).as_py()
            print(f"engine ({rule} band rule): {events.num_rows:,} events in {seconds:.2f} s "
                  f"({events.num_rows / seconds:,.0f} events/s); rated {rated:,}, revenue {revenue} USD; "
                  f"peak RSS during the run {peak:,.0f} MiB (inputs {events.nbytes / 2**20:,.0f} MiB and "
                  f"output {out.nbytes / 2**20:,.0f} MiB included)")
            del out
            if rule == "start":
                engine_rate = events.num_rows / seconds
        sample = events.slice(0, args.sample).to_pylist()
        started = time.perf_counter()
        reference.rate_events([reference.Event(
            r["event_key"], r["service"], r["called_number"], r["answer_utc"].astimezone(UTC), r["billsec"],
            r["answered"], r["call_type"], r["account_id"]) for r in sample], plans["start"])
        seconds = time.perf_counter() - started
        python_rate = len(sample) / seconds
        print(f"per-row Python reference: {len(sample):,} events in {seconds:.1f} s ({python_rate:,.0f} "
              f"events/s); the engine is {engine_rate / python_rate:,.0f}x faster")
        seconds, priced = sql_baseline(events, root / "deck.csv")
        print(f"plain DuckDB SQL join (prefix, increment, rate only; {priced:,} priced): "
              f"{events.num_rows / seconds:,.0f} events/s ({seconds:.1f} s)")
        print(f"peak RSS {peak_mib():,.0f} MiB at {datetime.now(UTC):%H:%M:%S} UTC")


if __name__ == "__main__":
    main()
