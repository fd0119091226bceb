"""Benchmark the order stage: intake of ~100k orders, and point-in-time ownership lookup of
10M (number, time) pairs as one set-based join.

    .venv/bin/python bench/bench_orders.py [--customers 100000] [--pairs 10000000]
                                           [--postgres postgresql://...] [--pg-pairs 1000000]

Prints figures (seconds, rows/s, peak memory); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import GenerateOptions, generate
from squak_pipelines.orders.lookup import owners_at
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_pairs(warehouse: Warehouse, count: int, seed: int = 1) -> pa.Table:
    """(number, at) pairs: numbers from the inventory (owned or not), times across 2026."""
    numbers = warehouse.query_arrow("select number from orders.number_inventory").column(0).to_numpy(
        zero_copy_only=False)
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    at = start + rng.integers(0, 365 * 86400, size=count) * 1_000_000
    return pa.table({"number": pa.array(numbers[rng.integers(0, len(numbers), size=count)]),
                     "at": pa.array(at, pa.timestamp("us", tz="UTC"))})


def bench_stage(name: str, warehouse: Warehouse, settings: Settings) -> None:
    started = time.perf_counter()
    result = run_order_stage(warehouse, settings)
    seconds = time.perf_counter() - started
    orders = warehouse.scalar("select count(distinct order_id) from orders.order_lines")
    print(f"[{name}] order intake: {orders:,} orders / {result.lines_received:,} lines in {seconds:.1f} s "
          f"({orders / seconds:,.0f} orders/s); {result.lines_accepted:,} accepted, "
          f"{result.services_active:,} active services; peak RSS {peak_mib():,.0f} MiB")


def bench_lookup(name: str, warehouse: Warehouse, count: int) -> None:
    pairs = random_pairs(warehouse, count)
    started = time.perf_counter()
    owners = owners_at(warehouse, pairs)
    seconds = time.perf_counter() - started
    owned = owners.num_rows - owners.column("account_id").null_count
    print(f"[{name}] point-in-time lookup: {owners.num_rows:,} pairs in {seconds:.2f} s "
          f"({owners.num_rows / seconds:,.0f} pairs/s), {owned / owners.num_rows:.1%} owned; "
          f"peak RSS {peak_mib():,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--postgres", help="also run on this PostgreSQL database (it is written to)")
    parser.add_argument("--pg-pairs", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squak-bench-orders-") as tmp:
        settings = Settings.from_env({"SQUAK_DATA_DIR": str(Path(tmp) / "squak")})
        started = time.perf_counter()
        generate(settings, GenerateOptions(customers=args.customers, cdrs=10_000))
        print(f"generated {args.customers:,} customers' orders in {time.perf_counter() - started:.1f} s")
        duck = DuckDBWarehouse(Path(tmp) / "bench.duckdb")
        bench_stage("duckdb", duck, settings)
        bench_lookup("duckdb", duck, args.pairs)
        if args.postgres:
            pg = PostgresWarehouse(args.postgres)
            pg.execute("drop schema if exists orders cascade")
            bench_stage("postgres", pg, settings)
            bench_lookup("postgres", pg, args.pg_pairs)


if __name__ == "__main__":
    main()
