"""Benchmark mediation: Asterisk CDR files to the mediated table in DuckDB, day by day.

    .venv/bin/python bench/bench_mediation.py [--cdrs 10000000] [--customers 20000] [--data-dir D]

Generates the demo month in Asterisk format (in a child process, so the peak memory
printed here is mediation's own), provisions the orders, then reports:
- the floor: pyarrow parsing every file into string columns (multi-threaded), and
- mediation: parse + normalize + enrich + de-duplicate + fraud screen + write, in records/s.
Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from squak_pipelines.config import Settings
from squak_pipelines.mediation.parsers import read_bytes
from squak_pipelines.mediation.stage import mediate
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.warehouse import DuckDBWarehouse


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(data_dir: Path, cdrs: int, customers: int) -> None:
    code = (
        "from squak_pipelines.config import Settings\n"
        "from squak_pipelines.demo.generate import GenerateOptions, generate\n"
        f"generate(Settings.from_env({{'SQUAK_DATA_DIR': {str(data_dir)!r}}}), "
        f"GenerateOptions(customers={customers}, cdrs={cdrs}, asterisk_only=True))\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    print(
        f"generated {cdrs:,} Asterisk CDRs for {customers:,} customers "
        f"in {time.perf_counter() - started:.0f} s"
    )


def parse_floor(files: list[Path]) -> tuple[int, float]:
    columns = [f"c{i}" for i in range(21)]
    started = time.perf_counter()
    rows = 0
    for path in files:
        table = pacsv.read_csv(
            pa.BufferReader(read_bytes(path)),
            read_options=pacsv.ReadOptions(column_names=columns),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string())),
            parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
        )
        rows += table.num_rows
    return rows, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cdrs", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--data-dir", type=Path, help="reuse (or create) this data directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squak-bench-med-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "squak"
        if not (data_dir / "demo" / "manifest.json").exists():
            generate(data_dir, args.cdrs, args.customers)
        settings = Settings.from_env({"SQUAK_DATA_DIR": str(data_dir)})
        warehouse = DuckDBWarehouse(Path(tmp) / "bench.duckdb")
        run_order_stage(warehouse, settings)
        files = sorted((settings.cdr_drop_dir / "ast-nyc1").glob("*.csv"))
        rows, seconds = parse_floor(files)
        print(
            f"floor: pyarrow parse of {len(files)} files, {rows:,} records in {seconds:.1f} s "
            f"({rows / seconds:,.0f} records/s)"
        )
        started = time.perf_counter()
        report = mediate(warehouse, settings)
        seconds = time.perf_counter() - started
        print(
            f"mediation: {report.records_in:,} records of {len(report.days)} day partitions in "
            f"{seconds:.1f} s ({report.records_in / seconds:,.0f} records/s); accepted "
            f"{report.accepted:,}, rejected {report.rejected:,}, duplicates {report.duplicates:,}, "
            f"quarantined {report.quarantined:,}; peak RSS {peak_mib():,.0f} MiB"
        )


if __name__ == "__main__":
    main()
