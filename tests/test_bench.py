"""`make bench` (`python -m bench`) runs the real pipeline end to end and reports every stage.

A smoke run at 50k CDRs on DuckDB: it must finish every stage with rows counted and the
outcome recorded. Speed is measured by the benchmark itself, never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import compare, cost_curve, parse_sizes, record, table
from squak_pipelines.runner import STAGES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_runs_a_50k_month_through_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQUAK_WAREHOUSE")}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--sizes", "50000:200", "--warehouses", "duckdb",
         "--work", str(tmp_path / "work"), "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    (run,) = figures["runs"]
    assert run["success"] and run["warehouse"] == "duckdb"
    assert [s["stage"] for s in run["stages"]] == [s.key for s in STAGES]
    by_stage = {s["stage"]: s for s in run["stages"]}
    assert by_stage["mediation"]["rows"] >= run["counts"]["cdr_records"]  # and the resent file
    assert by_stage["invoicing"]["rows"] >= 150  # about every generated account is billed
    assert all(s["seconds"] > 0 and s["peak_rss_mib"] > 0 for s in run["stages"])
    outcome = run["outcome"]
    assert outcome["rated_events"] > 0 and outcome["invoices"] == by_stage["invoicing"]["rows"]
    assert outcome["mediated_events"] + outcome["quarantined"] + outcome["rejected_records"] \
        + outcome["duplicates"] <= run["counts"]["cdr_records"]
    assert "| **total** |" in result.stdout
    what_if = run["what_if"]  # the tariff what-if on the billed month, beside rating
    assert what_if["events"] > 0 and what_if["changed"] > 0 and what_if["rating_seconds"] > 0
    assert "what-if (beside rating" in result.stdout


def _run(warehouse: str, cdrs: int, seconds: float, charge: str = "10.50") -> dict:
    return {"cdrs": cdrs, "customers": 10, "warehouse": warehouse, "success": True,
            "total_seconds": seconds, "peak_rss_mib": 100, "children_peak_rss_mib": 50,
            "stages": [{"stage": "rating", "success": True, "seconds": seconds, "rows": cdrs,
                        "unit": "events", "rows_per_second": cdrs // seconds, "peak_rss_mib": 100}],
            "outcome": {"rated_events": cdrs, "rated_charge": charge}}


def test_bench_compares_warehouses_and_the_cost_curve(tmp_path: Path) -> None:
    assert parse_sizes("1_000_000:3000, 50000:300") == [(1_000_000, 3000), (50_000, 300)]
    runs = [_run("duckdb", 1000, 10), _run("postgres", 1000, 20, "10.5000"),
            _run("duckdb", 10000, 120)]
    lines = compare(runs) + cost_curve(runs)
    assert lines[0] == "1,000 CDRs: outcomes identical on duckdb and postgres"
    assert lines[1].startswith("duckdb: 1,000 -> 10,000 CDRs (10x) took 12.00x the time: 1.20x linear")
    differing = compare([_run("duckdb", 1000, 10), _run("postgres", 1000, 10, "10.49")])
    assert "DIFFER" in differing[0] and "rated_charge" in differing[0]

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nKept.\n\n<!-- bench:pipeline:start -->\nold\n"
                   "<!-- bench:pipeline:end -->\n\nAlso kept.\n")
    machine = {"cpu": "x", "cores": 2, "memory_gib": 24, "os": "Linux", "python": "3.11",
               "duckdb": "1", "postgresql": "16", "load_average": 0.5}
    record(doc, {"started": "now", "command": "python -m bench", "machine": machine,
                 "runs": runs, "comparisons": lines})
    text = doc.read_text()
    assert "Kept." in text and "Also kept." in text and "old" not in text
    assert table(runs)[2] in text and "1.20x linear" in text
