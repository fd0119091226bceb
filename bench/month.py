"""One month through the real pipeline in this process, measured stage by stage.

    python -m bench.month --data-dir DIR --cdrs N --customers M [--warehouse-url URL] --json OUT

Generates the month with the demo generator (`squak generate`), then runs every stage job of
`squak run` (the same Dagster jobs, partitions and demo payment files) on a Dagster instance
of its own. For each stage it records wall seconds, the rows the stage worked on, rows/s and
the peak RSS of this process during the stage (the kernel's high-water mark, reset before each
stage); dbt and PDF renderers run in child processes, whose largest peak is recorded apart.
Ends with the outcome (counts and sums) so runs on different warehouses can be compared.
`python -m bench` starts this once per size and warehouse; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import sys
import time
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

# What the month came to: identical on every warehouse, before and after a change.
OUTCOME_SQL: dict[str, str] = {
    "mediated_events": "select count(*) from mediation.events",
    "quarantined": "select count(*) from mediation.quarantine",
    "rejected_records": "select count(*) from mediation.rejects",
    "duplicates": "select count(*) from mediation.duplicates",
    "rated_events": "select count(*) from rating.rated_events",
    "rated_charge": "select cast(coalesce(sum(charge), 0) as varchar) from rating.rated_events",
    "suspense": "select count(*) from rating.suspense",
    "invoices": "select count(*) from invoicing.invoices",
    "invoiced_total": "select cast(coalesce(sum(total), 0) as varchar) from invoicing.invoices",
    "invoice_lines": "select count(*) from invoicing.invoice_lines",
    "payments": "select count(*) from payments.payments",
}


def peak_rss_mib() -> float:
    """This process's peak resident memory since the last reset (VmHWM), in MiB."""
    match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    if match:
        return int(match.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start a new high-water mark (Linux: writing 5 to clear_refs); elsewhere a no-op."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def children_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _scalar(warehouse, sql: str) -> Any:
    table = warehouse.query_arrow(sql)
    value = table.column(0)[0].as_py() if table.num_rows else None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)  # PostgreSQL's sum of integers
    return value


def _measured(step: Callable[[], Any]) -> tuple[Any, float, float]:
    reset_peak_rss()
    started = time.perf_counter()
    value = step()
    return value, time.perf_counter() - started, peak_rss_mib()


def run_month(data_dir: Path, cdrs: int, customers: int, month: str | None,
              warehouse_url: str | None, say: Callable[[str], None]) -> dict[str, Any]:
    """Generate the month in `data_dir`, run the pipeline over it; the figures as a dict."""
    os.environ["SQUAK_DATA_DIR"] = str(data_dir)
    os.environ.pop("DAGSTER_HOME", None)
    for name, value in (("SQUAK_WAREHOUSE_URL", warehouse_url), ("SQUAK_DAGSTER_PG_URL", warehouse_url)):
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    from squak_pipelines import clock
    from squak_pipelines.config import Settings
    from squak_pipelines.cycles import last_ended_month
    from squak_pipelines.demo.generate import GenerateOptions, generate

    settings = Settings.from_env()
    options = GenerateOptions(customers=customers, cdrs=cdrs, month=month or last_ended_month(clock.today()))
    manifest, seconds, peak = _measured(lambda: generate(settings, options))
    counts = manifest["counts"]
    say(f"  generate: {counts['cdr_records']:,} CDRs in {counts['cdr_files']} files, "
        f"{counts['accounts']:,} accounts, {counts['services']:,} services "
        f"({seconds:.1f} s, {counts['cdr_records'] / seconds:,.0f} CDRs/s)")
    figures: dict[str, Any] = {
        "month": options.month, "today": clock.today().isoformat(),
        "warehouse": settings.warehouse_kind, "counts": counts,
        "generate": {"seconds": round(seconds, 2), "peak_rss_mib": round(peak)},
        "stages": [],
    }
    figures["stages"] = run_stages(settings, say)
    figures["total_seconds"] = round(sum(s["seconds"] for s in figures["stages"]), 2)
    figures["peak_rss_mib"] = max((s["peak_rss_mib"] for s in figures["stages"]), default=0)
    figures["children_peak_rss_mib"] = round(children_peak_rss_mib())
    figures["success"] = bool(figures["stages"]) and all(s["success"] for s in figures["stages"])
    from squak_pipelines.warehouse import open_warehouse

    warehouse = open_warehouse(settings)
    if figures["success"]:
        figures["what_if"] = what_if_figures(settings, warehouse, options.month, figures["stages"], say)
    figures["outcome"] = {name: _scalar(warehouse, sql) for name, sql in OUTCOME_SQL.items()
                          if warehouse.table_exists(sql.rsplit(" from ", 1)[1].split()[0].rstrip(")"))}
    return figures


def what_if_figures(settings, warehouse, month: str, stages: list[dict[str, Any]],
                    say: Callable[[str], None]) -> dict[str, Any]:
    """The tariff what-if on the billed month beside rating: every deck's first rate raised by
    10% (each deck file replaced), re-priced with the production engine."""
    import tempfile

    from squak_pipelines.rating.what_if import Proposal, what_if

    decks = sorted((settings.reference_dir / "decks").glob("*.csv"))
    with tempfile.TemporaryDirectory(prefix="squak-what-if-") as folder:
        replaced = {}
        for deck in decks:
            lines = deck.read_text(encoding="utf-8").splitlines()
            at = lines[0].split(",").index("rate")
            first = lines[1].split(",")
            first[at] = str((Decimal(first[at]) * Decimal("1.1")).quantize(Decimal("0.0001")))
            out = Path(folder) / deck.name
            out.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n", encoding="utf-8")
            replaced[deck.name] = out
        result, seconds, peak = _measured(lambda: what_if(warehouse, settings.reference_dir, month,
                                                          Proposal(decks=replaced)))
    events = result.events.num_rows
    rating = next((s["seconds"] for s in stages if s["stage"] == "rating"), None)
    say(f"  what-if    {seconds:8.1f} s, {events / seconds:,.0f} events/s, peak RSS {peak:,.0f} MiB "
        f"(rating: {rating:.1f} s)" if rating else "")
    return {"seconds": round(seconds, 2), "events": events, "events_per_second": round(events / seconds),
            "changed": int(result.by()["changed"].sum()), "peak_rss_mib": round(peak),
            "rating_seconds": rating}


def run_stages(settings, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every stage of `squak run`, in order, each one Dagster run; stops at a failed stage."""
    import dagster as dg

    from squak_pipelines.cli import _demo_customers_pay, _load_definitions
    from squak_pipelines.runner import STAGE_ROWS, STAGES, StageDays, run_stage
    from squak_pipelines.warehouse import open_warehouse

    defs = _load_definitions(settings)
    instance = dg.DagsterInstance.get()
    days_for = StageDays(settings, say=lambda line: None)
    stages = []
    try:
        for stage in STAGES:
            days = days_for(stage) if stage.partitioned else None
            if stage.key == "payments":
                _demo_customers_pay(settings)
            report, seconds, peak = _measured(
                lambda stage=stage, days=days: run_stage(defs, stage, instance, settings.data_dir / "logs",
                                                         days))
            unit, sql = STAGE_ROWS.get(stage.key, ("", ""))
            rows = _scalar(open_warehouse(settings), sql) if sql and report.success else None
            stages.append({
                "stage": stage.key, "success": report.success, "seconds": round(seconds, 2),
                "partitions": len(days or []), "rows": rows, "unit": unit,
                "rows_per_second": round(rows / seconds) if rows and seconds else None,
                "peak_rss_mib": round(peak), "error": report.error,
            })
            rate = f", {rows / seconds:,.0f} {unit}/s" if rows and seconds else ""
            say(f"  {stage.key:<10} {'ok' if report.success else 'FAILED'} {seconds:8.1f} s"
                f"{rate}, peak RSS {peak:,.0f} MiB" + (f": {report.error}" if report.error else ""))
            if not report.success:
                break
    finally:
        instance.dispose()
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--cdrs", type=int, required=True)
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--month", help="the month to generate (default: the last that has ended)")
    parser.add_argument("--warehouse-url", help="postgresql://... (default: DuckDB in the data dir)")
    parser.add_argument("--json", type=Path, required=True, help="write the figures here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*is currently in beta")
    figures = run_month(args.data_dir, args.cdrs, args.customers, args.month, args.warehouse_url,
                        say=lambda line: print(line, flush=True))
    args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    return 0 if figures["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
