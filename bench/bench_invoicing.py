"""Benchmark the billing cycle: draft, finalize and render invoices for many accounts.

    .venv/bin/python bench/bench_invoicing.py [--accounts 30000] [--events-per-account 60]

Uses the demo's reference files (plans, decks, taxes, operator) and writes synthetic accounts,
services and rated usage straight into a DuckDB warehouse (building them is timed apart), then
runs `bill_cycle` with finalization for 2026-10 (PDFs off) twice on copies of that warehouse:
with EN 16931 e-invoices off and on (UBL for every invoice, CII for EUR ones, each validated
against the CEN schematron), then renders PDFs of a sample of the final invoices on every core
(EUR ones as Factur-X), as `bill_cycle` does, the revenue-assurance controls of the cycle and
its delivery (e-mails to the outbox, the portal). Prints invoices/s with e-invoices off and on,
seconds of the controls, e-mails/s, PDFs/s and peak RSS; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from squak_pipelines.assurance.stage import run_assurance
from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import GenerateOptions, generate
from squak_pipelines.invoicing.delivery import deliver_cycle
from squak_pipelines.invoicing.pdf import PdfJob, write_pdfs
from squak_pipelines.invoicing.stage import bill_cycle
from squak_pipelines.orders.tables import SCHEMAS
from squak_pipelines.rating.engine import to_decimal
from squak_pipelines.rating.tables import SCHEMAS as RATING
from squak_pipelines.warehouse import DuckDBWarehouse

PLANS = [
    ("RES-US-BASIC", "RES-LINE", "USD", "NY"),
    ("BIZ-US-UCAAS", "UCAAS-SEAT", "USD", "IL"),
    ("BIZ-UK", "UCAAS-SEAT", "GBP", ""),
    ("RES-MX", "RES-LINE", "MXN", ""),
    ("BIZ-EU", "UCAAS-SEAT", "EUR", ""),
]
COUNTRY = {"GBP": "GB", "MXN": "MX", "EUR": "DE", "USD": "US"}
DESTINATIONS = [
    "United States - Fixed",
    "United States - Mobile",
    "Canada",
    "United Kingdom - Mobile",
    "Mexico",
    "India - Mobile",
    "Germany - Fixed",
    "Philippines - Mobile",
]
CALL_TYPES = ["national", "mobile", "international", "local"]


def build(warehouse: DuckDBWarehouse, accounts: int, per_account: int, seed: int = 5) -> int:
    rng = np.random.default_rng(seed)
    ids = [f"ACC-{i:06d}" for i in range(accounts)]
    plan = rng.integers(0, len(PLANS), accounts)
    country = [COUNTRY[PLANS[p][2]] for p in plan]
    account_rows = {c: [""] * accounts for c in SCHEMAS["orders.accounts"].names}
    account_rows.update(
        account_id=ids,
        name=[f"Customer {i}" for i in range(accounts)],
        street=[f"{i} Main Street" for i in range(accounts)],
        city=["Springfield"] * accounts,
        postal_code=["10001"] * accounts,
        segment=["residential"] * accounts,
        email=[f"c{i}@example.com" for i in range(accounts)],
        country=country,
        state=[PLANS[p][3] for p in plan],
        currency=[PLANS[p][2] for p in plan],
        delivery_method=["email"] * accounts,
        privacy_mask=["false"] * accounts,
    )
    warehouse.load("orders.accounts", pa.table(account_rows, schema=SCHEMAS["orders.accounts"]))
    start = datetime(2026, 9, 1, tzinfo=UTC)
    services = 2 * accounts
    warehouse.load(
        "orders.services",
        pa.table(
            {
                "service_id": [f"SVC-{i:07d}" for i in range(services)],
                "period": [1] * services,
                "account_id": [ids[i // 2] for i in range(services)],
                "order_id": ["ORD"] * services,
                "line_no": ["1"] * services,
                "product_id": [PLANS[plan[i // 2]][1] for i in range(services)],
                "plan_id": [PLANS[plan[i // 2]][0] for i in range(services)],
                "number": [f"+1555{i:07d}" for i in range(services)],
                "features": ["voice"] * services,
                "active_from": [start] * services,
                "active_to": pa.nulls(services, pa.timestamp("us", tz="UTC")),
                "parent_service_id": [""] * services,
            },
            schema=SCHEMAS["orders.services"],
        ),
    )
    n = accounts * per_account
    owner = rng.integers(0, accounts, n)
    schema = RATING["rating.rated_events"]
    money = to_decimal(rng.integers(0, 2_000_000, n))  # micro-units: up to 2.00 a call
    table = {name: pa.nulls(n, schema.field(name).type) for name in schema.names}
    table.update(
        {
            "event_key": pa.array(np.arange(n)).cast(pa.string()),
            "account_id": pa.array(np.array(ids, dtype=object)[owner], pa.string()),
            "currency": pa.array(np.array([PLANS[p][2] for p in plan], dtype=object)[owner], pa.string()),
            "cycle": pa.array(["2026-10"] * n),
            "service": pa.array(["voice"] * n),
            "answered": pa.array([True] * n),
            "call_type": pa.array(np.array(CALL_TYPES, dtype=object)[rng.integers(0, 4, n)], pa.string()),
            "destination": pa.array(np.array(DESTINATIONS, dtype=object)[rng.integers(0, 8, n)], pa.string()),
            "charged_units": pa.array(rng.integers(6, 900, n)),
            "allowance_used": pa.array(np.zeros(n, np.int64)),
            "charge": money,
            "discount": to_decimal(np.zeros(n, np.int64)),
            "final_charge": money,
        }
    )
    warehouse.load("rating.rated_events", pa.table(table, schema=schema))
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=30_000)
    parser.add_argument("--events-per-account", type=int, default=60)
    parser.add_argument("--pdf-sample", type=int, default=1000, help="PDFs to render (0: all)")
    args = parser.parse_args()
    os.environ["SQUAK_INVOICE_PDF"] = "off"  # PDFs are timed apart, below
    with tempfile.TemporaryDirectory(prefix="squak-bench-bill-") as tmp:
        settings = Settings.from_env({"SQUAK_DATA_DIR": str(Path(tmp) / "squak")})
        generate(settings, GenerateOptions(customers=20, cdrs=100, seed=1))  # reference files only
        # The synthetic events carry random prices, not the plans' (re-rating would differ from
        # every one of them): here control 5 reports instead of blocking finalization.
        (settings.reference_dir / "assurance.yaml").write_text("rerating: {critical: false}\n")
        warehouse = DuckDBWarehouse(Path(tmp) / "bench.duckdb")
        started = time.perf_counter()
        events = build(warehouse, args.accounts, args.events_per_account)
        print(
            f"input: {args.accounts:,} accounts, {2 * args.accounts:,} services, {events:,} rated events "
            f"in {time.perf_counter() - started:.1f} s"
        )
        shutil.copy(Path(tmp) / "bench.duckdb", Path(tmp) / "without.duckdb")
        for label, switch, path in (("off", "off", "without.duckdb"), ("on", "on", "bench.duckdb")):
            os.environ["SQUAK_EINVOICE"] = switch
            target = DuckDBWarehouse(Path(tmp) / path)
            started = time.perf_counter()
            report = bill_cycle(target, settings, "2026-10", finalize=True)
            seconds = time.perf_counter() - started
            made = "HTML, JSON, call detail" + (", UBL, CII" if switch == "on" else "")
            print(
                f"billing cycle, e-invoices {label}: {report.drafts:,} drafts, "
                f"{report.finalized:,} finalized and rendered ({made}) in "
                f"{seconds:.1f} s ({report.finalized / seconds:,.0f} invoices/s); valid e-invoices "
                f"{report.einvoices:,}, blocked {len(report.einvoice_blocked):,}; peak RSS "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
            )
        print(f"totals: {report.totals}")
        started = time.perf_counter()
        audit = run_assurance(warehouse, settings, "2026-10")
        seconds = time.perf_counter() - started
        verdicts = ", ".join(f"{r.number} {'pass' if r.passed else 'fail'} ({len(r.findings):,})"
                             for r in audit.results)
        print(f"revenue assurance: 8 controls in {seconds:.1f} s; {verdicts}; peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
        os.environ.pop("SQUAK_SMTP_HOST", None)  # e-mails go to the outbox: no network in the figure
        started = time.perf_counter()
        delivered = deliver_cycle(warehouse, settings, "2026-10")
        seconds = time.perf_counter() - started
        print(f"delivery: {delivered.outbox:,} e-mails (outbox), portal pages for "
              f"{delivered.portal_accounts:,} accounts in {seconds:.1f} s "
              f"({delivered.outbox / seconds:,.0f} e-mails/s)")
        rows = warehouse.query_arrow(
            "select number, issue_date, html, cii from invoicing.invoices order by number"
            + (f" limit {args.pdf_sample}" if args.pdf_sample else "")
        ).to_pylist()
        folder = Path(tmp) / "pdf"
        folder.mkdir()
        jobs = [PdfJob(folder / f"{r['number']}.pdf", r["html"], r["issue_date"], r["number"], r["cii"] or "")
                for r in rows]
        started = time.perf_counter()
        write_pdfs(jobs)
        seconds = time.perf_counter() - started
        rate = len(jobs) / seconds
        print(
            f"PDF ({sum(1 for j in jobs if j.cii):,} of them Factur-X): {len(jobs):,} invoices in "
            f"{seconds:.1f} s ({rate:,.1f} PDFs/s on {os.cpu_count()} cores; "
            f"{report.finalized / rate / 60:,.0f} min for all {report.finalized:,})"
        )


if __name__ == "__main__":
    main()
