"""`python -m bench` (`make bench`): the whole month through the real pipeline, measured.

    python -m bench                                   # 1M and 10M CDRs, DuckDB and PostgreSQL
    python -m bench --sizes 50000:300 --warehouses duckdb
    python -m bench --record                          # also rewrite BENCHMARKS.md's figures

Each size (CDRs:accounts) and warehouse is one child process (`bench.month`): it generates the
month with `squak generate` and runs every stage job `squak run` runs, from the drop files to
final invoices, payments, revenue-assurance controls, dbt marts and reports. Prints per stage
wall seconds, rows/s and peak RSS, the total, the cost curve between sizes, and whether the
warehouses agree on the outcome; writes all of it as JSON. PostgreSQL runs get a database of
their own on SQUAK_BENCH_PG_URL (default postgresql://postgres@127.0.0.1:5432/test), dropped
afterwards. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("SQUAK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
START, END = "<!-- bench:pipeline:start -->", "<!-- bench:pipeline:end -->"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'1000000:3000,10000000:30000' -> [(1000000, 3000), (10000000, 30000)]."""
    sizes = []
    for item in text.split(","):
        cdrs, _, customers = item.strip().partition(":")
        if not customers:
            raise argparse.ArgumentTypeError(f"size {item!r}: write CDRS:ACCOUNTS, e.g. 1000000:3000")
        sizes.append((int(cdrs.replace("_", "")), int(customers.replace("_", ""))))
    return sizes


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) / 2**20 for line in _lines("/proc/meminfo")
                   if line.startswith("MemTotal")), 0.0)
    import duckdb

    described = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory, 1),
                 "os": platform.platform(), "python": platform.python_version(),
                 "duckdb": duckdb.__version__, "load_average": os.getloadavg()[0]}
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as con:
            described["postgresql"] = con.execute(sa.text("show server_version")).scalar()
        engine.dispose()
    except Exception:  # no PostgreSQL here: say so, do not fail
        described["postgresql"] = "unreachable"
    return described


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def run_one(cdrs: int, customers: int, warehouse: str, work: Path, month: str | None) -> dict[str, Any]:
    """One size on one warehouse, in a child process; its figures."""
    data_dir = work / f"{warehouse}-{cdrs}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    out = data_dir / "figures.json"
    print(f"==> {cdrs:,} CDRs, {customers:,} accounts on {warehouse} ({data_dir})", flush=True)

    def child(url: str | None) -> int:
        command = [sys.executable, "-m", "bench.month", "--data-dir", str(data_dir), "--cdrs", str(cdrs),
                   "--customers", str(customers), "--json", str(out)]
        command += ["--month", month] if month else []
        command += ["--warehouse-url", url] if url else []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SQUAK_WAREHOUSE", "SQUAK_DAGSTER",
                                                                            "DAGSTER_HOME"))}
        env.setdefault("SQUAK_INVOICE_PDF", "off")  # PDFs are timed per 1,000 by bench_invoicing
        return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode

    started = time.perf_counter()
    if warehouse == "postgres":
        from squak_pipelines.warehouse import throwaway_postgres

        with throwaway_postgres(PG_ADMIN_URL, "squak_bench") as url:
            code = child(url)
    else:
        code = child(None)
    figures = json.loads(out.read_text()) if out.exists() else {"success": False, "stages": []}
    figures.update(cdrs=cdrs, customers=customers, exit_code=code,
                   wall_seconds=round(time.perf_counter() - started, 2))
    return figures


def compare(runs: list[dict[str, Any]]) -> list[str]:
    """Lines saying whether the warehouses agree on each size's outcome."""
    lines = []
    for cdrs in sorted({r["cdrs"] for r in runs}):
        same = [r for r in runs if r["cdrs"] == cdrs and r.get("outcome")]
        if len(same) < 2:
            continue
        first, *others = same
        diffs = [f"{k}: {first['warehouse']} {first['outcome'][k]} vs {o['warehouse']} {o['outcome'].get(k)}"
                 for o in others for k in first["outcome"]
                 if _norm(first["outcome"][k]) != _norm(o["outcome"].get(k))]
        lines.append(f"{cdrs:,} CDRs: outcomes identical on " + " and ".join(r["warehouse"] for r in same)
                     if not diffs else f"{cdrs:,} CDRs: outcomes DIFFER: " + "; ".join(diffs))
    return lines


def _norm(value: Any) -> Any:
    try:
        from decimal import Decimal

        return Decimal(str(value)).normalize()
    except Exception:  # not a number: compare as it is
        return value


def cost_curve(runs: list[dict[str, Any]]) -> list[str]:
    """How the total grows from the smallest to the largest size, against linear."""
    lines = []
    for warehouse in sorted({r["warehouse"] for r in runs if r.get("warehouse")}):
        mine = sorted((r for r in runs if r.get("warehouse") == warehouse and r.get("success")),
                      key=lambda r: r["cdrs"])
        if len(mine) >= 2:
            small, large = mine[0], mine[-1]
            growth = large["total_seconds"] / small["total_seconds"]
            scale = large["cdrs"] / small["cdrs"]
            lines.append(f"{warehouse}: {small['cdrs']:,} -> {large['cdrs']:,} CDRs ({scale:.0f}x) took "
                         f"{growth:.2f}x the time: {growth / scale:.2f}x linear")
    return lines


def table(runs: list[dict[str, Any]]) -> list[str]:
    """The figures as a Markdown table, one row per stage and run."""
    out = ["| CDRs | accounts | warehouse | stage | seconds | rows | rows/s | peak RSS MiB |",
           "|---:|---:|---|---|---:|---:|---:|---:|"]
    for run in runs:
        head = f"| {run['cdrs']:,} | {run['customers']:,} | {run.get('warehouse', '?')} "
        for s in run.get("stages", []):
            rate = f"{s['rows_per_second']:,}" if s.get("rows_per_second") else ""
            rows = f"{s['rows']:,} {s['unit']}" if s.get("rows") is not None else ""
            flag = "" if s["success"] else " FAILED"
            out.append(f"{head}| {s['stage']}{flag} | {s['seconds']:,.1f} | {rows} | {rate} | "
                       f"{s['peak_rss_mib']:,} |")
        if run.get("what_if"):
            w = run["what_if"]
            out.append(f"{head}| what-if (beside rating, not in the total) | {w['seconds']:,.1f} | "
                       f"{w['events']:,} events | {w['events_per_second']:,} | {w['peak_rss_mib']:,} |")
        if run.get("stages"):
            out.append(f"{head}| **total** | **{run['total_seconds']:,.1f}** | | | "
                       f"**{run['peak_rss_mib']:,}** (children {run.get('children_peak_rss_mib', 0):,}) |")
    return out


def record(path: Path, result: dict[str, Any]) -> None:
    """Rewrite the figures between BENCHMARKS.md's markers (the rest is kept as written)."""
    m = result["machine"]
    body = [START, "",
            f"Measured {result['started']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
            f"{m['os']}; Python {m['python']}, DuckDB {m['duckdb']}, PostgreSQL {m['postgresql']}; "
            f"load average {m['load_average']:.1f} at the start. Command: `{result['command']}`.", "",
            *table(result["runs"]), "", *[f"- {line}" for line in result["comparisons"]], "", END]
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    path.write_text(head + "\n".join(body) + rest.split(END, 1)[1], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1000000:3000,10000000:30000"),
                        help="CDRS:ACCOUNTS[,...] (default 1000000:3000,10000000:30000)")
    parser.add_argument("--warehouses", default="duckdb,postgres", help="duckdb,postgres (default both)")
    parser.add_argument("--month", help="month to generate (default: the last that has ended)")
    parser.add_argument("--work", type=Path, help="where the months are generated (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated months")
    parser.add_argument("--json", type=Path, default=ROOT / ".squak" / "bench" / "pipeline.json")
    parser.add_argument("--record", action="store_true", help="write the figures into BENCHMARKS.md")
    args = parser.parse_args(argv)
    warehouses = [w.strip() for w in args.warehouses.split(",") if w.strip()]
    unknown = set(warehouses) - {"duckdb", "postgres"}
    if unknown:
        parser.error(f"--warehouses: unknown {', '.join(sorted(unknown))} (duckdb, postgres)")
    work = args.work or Path(tempfile.mkdtemp(prefix="squak-bench-"))
    result: dict[str, Any] = {"started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "command": " ".join(["python -m bench", *(argv or sys.argv[1:])]),
                              "machine": machine(), "runs": []}
    try:
        for cdrs, customers in args.sizes:
            for warehouse in warehouses:
                result["runs"].append(run_one(cdrs, customers, warehouse, work, args.month))
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["comparisons"] = compare(result["runs"]) + cost_curve(result["runs"])
    print("\n".join(["", *table(result["runs"]), "", *result["comparisons"]]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(f"figures: {args.json}")
    if args.record:
        record(ROOT / "BENCHMARKS.md", result)
        print(f"recorded in {ROOT / 'BENCHMARKS.md'}")
    agree = not any("DIFFER" in line for line in result["comparisons"])
    ok = agree and all(r.get("success") for r in result["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
