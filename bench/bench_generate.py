"""Benchmark `squak generate`: CDRs written per second and peak memory.

    .venv/bin/python bench/bench_generate.py --cdrs 10000000 --customers 20000

Prints figures; asserts nothing about speed (performance is measured, not tested).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import GenerateOptions, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cdrs", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--deck-prefixes", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=None, help="data dir (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squak-bench-") as tmp:
        out = args.out or Path(tmp)
        settings = Settings.from_env({"SQUAK_DATA_DIR": str(out)})
        options = GenerateOptions(customers=args.customers, cdrs=args.cdrs,
                                  deck_extra_prefixes=args.deck_prefixes)
        started = time.perf_counter()
        manifest = generate(settings, options)
        seconds = time.perf_counter() - started
        counts = manifest["counts"]
        size = sum(p.stat().st_size for p in settings.cdr_drop_dir.rglob("*") if p.is_file())
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"squak generate: {counts['cdr_records']:,} CDR records in {counts['cdr_files']} files "
              f"({size / 2**20:,.0f} MiB), {counts['accounts']:,} accounts, "
              f"{counts['services']:,} services")
        print(f"  {seconds:.1f} s, {counts['cdr_records'] / seconds:,.0f} records/s, "
              f"peak RSS {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
