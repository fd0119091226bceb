"""`squak`: the operator's command line (generate demo data, run the pipeline, open the UI)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from squak_pipelines import clock
from squak_pipelines.config import PROJECT_ROOT, Settings


def _bar(done: int, total: int, width: int = 28) -> str:
    filled = int(width * done / max(total, 1))
    return "#" * filled + "." * (width - filled)


def _progress(label: str):
    tty = sys.stderr.isatty()
    last = [-1]

    def show(done: int, total: int, records: int) -> None:
        quarter = 4 * done // max(total, 1)
        if tty:
            sys.stderr.write(f"\r    {label} [{_bar(done, total)}] {done}/{total} days, "
                             f"{records:,} records")
            if done == total:
                sys.stderr.write("\n")
        elif quarter != last[0] or done == total:
            sys.stderr.write(f"    {label}: {done}/{total} days, {records:,} records\n")
        last[0] = quarter
        sys.stderr.flush()

    return show


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from squak_pipelines.demo.generate import GenerateOptions, generate

    if getattr(args, "payments", False):  # customers answer the invoices already finalized
        from squak_pipelines.warehouse import open_warehouse

        if not open_warehouse(settings).table_exists("invoicing.invoices"):
            print("error: no final invoices yet: run the pipeline first (make run)", file=sys.stderr)
            return 2
        files = write_demo_payment_files(settings)
        print(f"==> {len(files)} demo payment file(s) in {settings.payments_drop_dir}")
        return 0

    from squak_pipelines.cycles import CycleError, last_ended_month, parse_month

    try:
        month = args.month or last_ended_month(clock.today())
        parse_month(month)
    except CycleError as exc:
        print(f"error: --month: {exc}", file=sys.stderr)
        return 2
    options = GenerateOptions(customers=args.customers, month=month, cdrs=args.cdrs,
                              seed=args.seed, deck_extra_prefixes=args.deck_prefixes)
    print(f"==> Generating the demo operator for {options.month} (seed {options.seed}) "
          f"in {settings.data_dir}")
    started = time.monotonic()
    manifest = generate(settings, options, progress=_progress("CDR files"))
    counts = manifest["counts"]
    print(f"    {counts['accounts']:,} accounts, {counts['services']:,} services, "
          f"{counts['inventory_numbers']:,} numbers in inventory")
    print(f"    {counts['cdr_files']:,} CDR files with {counts['cdr_records']:,} records "
          f"in {settings.cdr_drop_dir} ({time.monotonic() - started:.1f}s)")
    return 0


def _load_definitions(settings: Settings):
    from squak_pipelines.instance import prepare_dagster_home

    prepare_dagster_home(settings)
    from squak_pipelines.definitions import defs

    return defs


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from squak_pipelines.doctor import check_data_directory
    from squak_pipelines.runner import STAGES, StageDays, run_pipeline

    ready = check_data_directory(settings)
    if not ready.ok:  # an empty or wrong data folder: say so before ten stages fail on it
        print(f"error: {ready.detail}: {ready.fix}", file=sys.stderr)
        return 2
    print(f"==> Running the billing pipeline on the {settings.warehouse_kind} warehouse "
          f"(today: {clock.today()}{', from SQUAK_TODAY' if clock.is_set() else ''})")
    defs = _load_definitions(settings)
    instance = dg.DagsterInstance.get()

    def start(number: int, stage) -> None:
        print(f"  [{number}/{len(STAGES)}] {stage.title} ...", flush=True)
        if stage.key == "payments" and (settings.data_dir / "demo" / "manifest.json").exists():
            _demo_customers_pay(settings)

    def end(number: int, report) -> None:
        status = "ok" if report.success else "FAILED"
        print(f"        {status} in {report.seconds:.1f}s (run {report.run_id[:8]})")
        shown: set[str] = set()
        for key, meta in report.assets.items():
            rows = meta.get("dagster/row_count")
            extra = f"{rows:,} rows" if isinstance(rows, int) else ""
            if "records" in meta:
                extra += f", {meta['records']:,} records"
            if extra:
                print(f"        - {key}: {extra}")
            for name in STAGE_FIGURES:
                if name in meta and name not in shown:
                    shown.add(name)
                    print(f"        {name.replace('_', ' ')}: {_figure(meta[name])}")
        if report.stage.key == "assurance" and report.success:
            _print_controls(settings, days_for.audited)
        failed = [n for n, passed in report.checks.items() if not passed and n not in report.warnings]
        passing = len(report.checks) - len(failed) - len(report.warnings)
        print(f"        checks: {passing}/{len(report.checks)} passed"
              + (f"; failed: {', '.join(failed)}" if failed else "")
              + (f"; needing attention: {', '.join(report.warnings)}" if report.warnings else ""))
        if report.error:
            print(f"        error: {report.error}")

    days_for = StageDays(settings)

    from squak_pipelines.progress import ProgressBar, reported_to

    with reported_to(ProgressBar(sys.stderr)):  # long work's progress drawn while the stages run
        reports = run_pipeline(defs, instance, start, end, log_dir=settings.data_dir / "logs",
                               days_for=days_for)
    finished = all(r.success for r in reports) and len(reports) == len(STAGES)
    _summary(settings, reports, finished, verbose=getattr(args, "verbose", False))
    ok = _verdict(settings, reports, finished)
    instance.dispose()
    return 0 if ok else 1


def _verdict(settings: Settings, reports, finished: bool) -> bool:
    """One line: all stages ok, or which failed; critical controls failed; which need attention."""
    from squak_pipelines.assurance.stage import stored_results
    from squak_pipelines.invoicing.stage import last_billed_month
    from squak_pipelines.runner import STAGES
    from squak_pipelines.warehouse import open_warehouse

    failed = [r.stage.key for r in reports if not r.success]
    if not finished and not failed:
        failed = ["(stopped)"]
    cycle = last_billed_month(open_warehouse(settings))
    rows = stored_results(open_warehouse(settings), cycle) if cycle else []
    critical = [f"{r['number']}. {r['title']}" for r in rows if r["critical"] and not r["passed"]]
    attention = [f"{r['number']}. {r['title']}" for r in rows if not r["critical"] and not r["passed"]]
    parts = [f"all {len(STAGES)} stages ok" if not failed
             else f"FAILED stage(s): {', '.join(failed)}"]
    if critical:
        parts.append(f"critical controls FAILED (cycle {cycle}): {', '.join(critical)}")
    if attention:
        parts.append(f"controls needing attention: {', '.join(attention)}")
    ok = not failed and not critical
    print(f"==> Verdict: {'ok' if ok else 'NOT OK'}: " + "; ".join(parts))
    return ok


# Stage-level figures an asset reports in its metadata, printed once per stage.
STAGE_FIGURES = ("files_processed_this_run", "lines_received_this_run", "order_lines_by_status",
                 "rejected_by_reason", "services_active", "numbers_assigned",
                 "files", "records_in", "accepted", "rejected", "duplicates", "quarantined",
                 "top_reject_reasons", "fraud_hits_by_rule", "gate_failed_days",
                 "rated", "suspense_by_reason", "revenue_by_currency", "blocked_days",
                 "drafts", "invoices_finalized", "already_final", "einvoices_valid", "einvoices_blocked",
                 "pdfs_rendered", "call_detail_files",
                 "invoice_totals", "tax_totals", "documents", "emails_sent", "emails_to_outbox",
                 "email_send_failures", "queued_for_print", "portal_accounts", "print_batch",
                 "blocked_by_einvoice_rules",
                 "payment_files", "new_payments", "failed_charges", "debits", "reversals", "pending_entries",
                 "duplicate_payments", "rejected_payment_records", "direct_debit_collections",
                 "invoiced_by_currency", "collected_by_currency", "payment_suspense_by_reason",
                 "aging_by_currency", "dunning_by_state", "dunning_notices_sent",
                 "autopay_charge_requests", "finance_report", "figures_as_images")


def _print_controls(settings: Settings, cycles: list[str]) -> None:
    """The stored results of the audited cycles' revenue-assurance controls."""
    from squak_pipelines.assurance.stage import stored_results
    from squak_pipelines.warehouse import open_warehouse

    warehouse = open_warehouse(settings)
    for cycle in cycles:
        rows = stored_results(warehouse, cycle)
        if not rows:
            continue
        print(f"        revenue-assurance controls, cycle {cycle} (as of {rows[0]['as_of']}):")
        for r in rows:
            verdict = "pass" if r["passed"] else ("FAIL" if r["critical"] else "attention")
            print(f"          {r['number']}. {r['title']:<30} {verdict:<9} {r['summary']}")
        leakage = settings.data_dir / "invoices" / cycle / f"leakage-{cycle}.csv"
        print(f"        leakage report: {leakage} ({sum(r['findings'] for r in rows)} findings)")


def _figure(value) -> str:
    if isinstance(value, dict):
        if all(isinstance(v, int) for v in value.values()):
            return ", ".join(f"{k} {v:,}" for k, v in sorted(value.items(), key=lambda kv: -kv[1])) or "none"
        return "; ".join(f"{k}: {_figure(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _receivables_table(warehouse) -> None:
    """Invoiced vs collected and the aging of what is open, per currency."""
    if not warehouse.table_exists("payments.aging"):
        return
    from decimal import Decimal

    from squak_pipelines.payments.receivables import BUCKETS

    def sums(sql: str) -> dict:
        return {tuple(r[:-1]): Decimal(r[-1]) for r in warehouse.query_df(sql).itertuples(index=False)}

    invoiced = sums("select currency, sum(total) from invoicing.invoices group by 1")
    collected = sums("select p.currency, sum(a.amount) from payments.allocations a "
                     "join payments.payments p using (payment_id) group by 1")
    aged = sums("select currency, bucket, sum(open_amount) from payments.aging group by 1, 2")
    as_of = warehouse.scalar("select cast(max(as_of) as varchar) from payments.aging") or "-"
    print(f"    receivables (aging as of {as_of}):")
    head = f"{'':<5}{'invoiced':>12}{'collected':>12}{'rate':>7}" + "".join(f"{b:>10}" for b in BUCKETS)
    print(f"      {head}")
    for (currency,), total in sorted(invoiced.items()):
        paid = collected.get((currency,), Decimal(0))
        rate = f"{paid / total:.0%}" if total else "-"
        cells = "".join(f"{aged.get((currency, b), Decimal(0)):>10,.2f}" for b in BUCKETS)
        print(f"      {currency:<5}{total:>12,.2f}{paid:>12,.2f}{rate:>7}{cells}")


def _summary(settings: Settings, reports, ok: bool, verbose: bool = False) -> None:
    """Each stage's result, time and what it worked on; receivables; where to look. Every
    table's row count with `--verbose`."""
    from squak_pipelines.runner import STAGE_ROWS
    from squak_pipelines.warehouse import open_warehouse

    print("==> Summary")
    warehouse = open_warehouse(settings)
    for report in reports:
        unit, sql = STAGE_ROWS.get(report.stage.key, ("", ""))
        count = warehouse.scalar(sql) if sql and report.success else None
        figure = f"{count:,} {unit}" if count is not None else ""
        print(f"    {report.stage.key:<10} {'ok' if report.success else 'FAILED':<7}"
              f"{report.seconds:8.1f} s   {figure}")
    where = settings.duckdb_path if settings.warehouse_kind == "duckdb" else "PostgreSQL"
    print(f"    warehouse: {where}" + ("" if verbose else " (row counts of every table: --verbose)"))
    if verbose:
        sql = ("select table_schema || '.' || table_name as t from information_schema.tables "
               "where table_schema in ('raw', 'orders', 'mediation', 'rating', 'invoicing', 'payments', "
               "'assurance', 'staging', 'intermediate', 'marts') "
               "order by table_schema, table_name")
        for table in warehouse.query_df(sql)["t"]:
            print(f"      {table:<40} {warehouse.count(table):>10,} rows")
    _receivables_table(warehouse)
    print(f"    data directory: {settings.data_dir}")
    print(f"      stage logs:      {settings.data_dir / 'logs'}")
    print(f"      invoices:        {settings.data_dir / 'invoices'} (HTML, PDF, JSON and call detail "
          "per invoice; drafts/)")
    for report in sorted((settings.data_dir / "invoices").glob("*/finance-report-*.html")):
        print(f"      finance report:  {report} (open in a browser; leakage CSV beside it)")
    print(f"      customer portal: {settings.data_dir / 'portal'} (index.html per account)")
    print(f"      print batches:   {settings.data_dir / 'print'} (one PDF per cycle, with manifest.csv)")
    print(f"      email outbox:    {settings.data_dir / 'outbox'} (.eml, when SQUAK_SMTP_HOST is unset)")
    print(f"      reference files: {settings.reference_dir}")
    print(f"      CDR drop folder: {settings.cdr_drop_dir}")
    print(f"      order drops:     {settings.orders_drop_dir}")
    print(f"    Dagster runs stored in {os.environ.get('DAGSTER_HOME')}: "
          + ", ".join(r.run_id[:8] for r in reports))
    print("    Browse them with `make ui` (http://127.0.0.1:3000)." if ok
          else "    The pipeline did not finish; see the errors above.")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    return cmd_generate(args, settings) or cmd_run(args, settings)


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    from squak_pipelines.analytics.project import ensure_manifest, venv_tool
    from squak_pipelines.instance import prepare_dagster_home

    prepare_dagster_home(settings)
    os.environ.update(settings.dbt_env())  # derived from the warehouse URL, never inherited
    # Tools the UI's runs start by name (dbt) are this environment's.
    bin_dir = str(Path(venv_tool("dbt")).parent)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    ensure_manifest(settings)
    # The workspace.yaml's code location, started from the Dagster home: the checkout's own
    # dagster.yaml (for `dagster dev` without DAGSTER_HOME) is then not in the way.
    argv = [venv_tool("dagster"), "dev", "-m", "squak_pipelines.definitions", "-d", str(PROJECT_ROOT),
            "-h", args.host, "-p", str(args.port)]
    print(f"==> Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    os.chdir(os.environ["DAGSTER_HOME"])
    os.execv(argv[0], argv)
    return 0  # not reached


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    """Run dagster-celery workers in the foreground until interrupted."""
    import signal
    import time

    from squak_pipelines.analytics.project import ensure_manifest
    from squak_pipelines.celery_workers import start_workers, stop_workers
    from squak_pipelines.instance import prepare_dagster_home
    from squak_pipelines.scale_out import celery_broker

    if settings.warehouse_kind == "duckdb" or not settings.dagster_pg_url:
        print("warning: workers share the run's warehouse and Dagster storage; use PostgreSQL for "
              "both (SQUAK_WAREHOUSE_URL, SQUAK_DAGSTER_PG_URL) when workers are on other machines",
              file=sys.stderr)
    home = prepare_dagster_home(settings)
    os.environ.update(settings.dbt_env())
    ensure_manifest(settings)  # once here, not raced by every worker's first import
    signal.signal(signal.SIGTERM, _interrupted)  # stop the workers on `kill` too, not only Ctrl-C
    workers = start_workers(home, args.count, args.concurrency, settings.data_dir / "logs")
    broker = celery_broker().split("@")[-1]
    print(f"==> {args.count} celery workers ({args.concurrency} step(s) each) on {broker}; logs in "
          f"{settings.data_dir / 'logs'}; launch runs with SQUAK_EXECUTOR=celery; Ctrl-C stops them")
    try:
        while all(w.poll() is None for w in workers):
            time.sleep(1)
        print("error: a worker exited; see its log", file=sys.stderr)
        return 1
    finally:
        stop_workers(workers)


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    """List quarantined events, or record an analyst's release/confirmation."""
    from squak_pipelines.mediation.quarantine import decide
    from squak_pipelines.warehouse import open_warehouse

    warehouse = open_warehouse(settings)
    if not warehouse.table_exists("mediation.quarantine"):
        print("nothing is quarantined (mediation has not run)")
        return 0
    if args.action == "list":
        held = warehouse.query_df(
            "select event_key, fraud_rules, calling_number, called_number, start_utc, billsec, "
            "source_file from mediation.quarantine where decision = 'pending' "
            "order by start_utc limit :n", {"n": args.limit})
        print(held.to_string(index=False) if len(held) else "no pending quarantined events")
        return 0
    if not args.keys or not args.by:
        print("name the event keys and --by ANALYST", file=sys.stderr)
        return 2
    decision = "released" if args.action == "release" else "confirmed_fraud"
    for key, outcome in decide(warehouse, args.keys, decision, args.by, args.note).items():
        print(f"{key}: {outcome}")
    return 0


def cmd_cdr(args: argparse.Namespace, settings: Settings) -> int:
    """Print mediated records with their raw lines, read back from the archived drop files."""
    from squak_pipelines.mediation.raw_records import RecordNotFound, show
    from squak_pipelines.warehouse import open_warehouse

    warehouse = open_warehouse(settings)
    status = 0
    for key in args.keys:
        try:
            records = show(warehouse, settings.data_dir, settings.cdr_drop_dir, key)
        except RecordNotFound as exc:
            print(f"squak cdr show: {exc}", file=sys.stderr)
            status = 2
            continue
        for r in records:
            print(f"{r.event_key}  {r.outcome} ({r.table}), partition {r.partition_day}")
            print(f"  {r.source_file} line {r.source_line} (sha256 {r.source_sha256})"
                  + (f", read from {r.found_in}" if r.raw_line is not None else ""))
            if r.raw_line is None:
                print(f"  raw line not available: {r.found_in}")
                status = 2
            else:
                print(f"  {r.raw_line}")
    return status


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    """Explain an invoice line (its events) or an event (what priced it, where it was billed)."""
    from squak_pipelines.csv_export import write_csv
    from squak_pipelines.invoicing import explain as ex
    from squak_pipelines.rating.plans import PlanFileError, load_plans
    from squak_pipelines.warehouse import open_warehouse

    if bool(args.event) == bool(args.invoice) or (args.invoice and args.line is None):
        print("squak explain: give --invoice NUMBER --line N, or --event KEY", file=sys.stderr)
        return 2
    try:
        plans = load_plans(settings.reference_dir / "plans")
    except PlanFileError as exc:
        print(f"squak explain: {exc}", file=sys.stderr)
        return 2
    banded = sorted(p.plan_id for p in plans.values() if p.show_bands)
    warehouse = open_warehouse(settings)
    try:
        if args.event:
            print(ex.describe_event(ex.explain_event(warehouse, args.event, settings.reference_dir, banded)))
            return 0
        found = ex.explain_line(warehouse, args.invoice, args.line, banded)
    except ex.ExplainError as exc:
        print(f"squak explain: {exc}", file=sys.stderr)
        return 2
    print(ex.describe_line(found, args.limit))
    if args.out and found.events.num_columns:
        write_csv(found.events, Path(args.out))
        print(f"wrote {found.events.num_rows:,} rows to {args.out}")
    return 0 if found.adds_up else 1


def cmd_what_if(args: argparse.Namespace, settings: Settings) -> int:
    """Re-price a closed cycle under proposed plans or decks; report revenue and margin."""
    from squak_pipelines.cycles import CycleError
    from squak_pipelines.invoicing.stage import last_billed_month
    from squak_pipelines.rating.plans import PlanFileError
    from squak_pipelines.rating.what_if import Proposal, WhatIfError
    from squak_pipelines.rating.what_if_report import run_scenario, summary
    from squak_pipelines.warehouse import open_warehouse

    decks = {}
    for item in args.deck or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            print(f"squak what-if: --deck wants CURRENT_NAME=PROPOSED_FILE, got {item!r}", file=sys.stderr)
            return 2
        decks[name] = Path(path)
    if not args.plan and not decks:
        print("squak what-if: give a proposal: --plan PLAN.yaml and/or --deck NAME=FILE.csv", file=sys.stderr)
        return 2
    proposal = Proposal(tuple(Path(p) for p in args.plan or []), decks)
    warehouse = open_warehouse(settings)
    cycle = args.cycle or last_billed_month(warehouse)
    if cycle is None:
        print("squak what-if: no cycle has been billed yet (a what-if re-prices a billed cycle)",
              file=sys.stderr)
        return 2
    try:
        done = run_scenario(warehouse, settings, cycle, proposal, args.name or "",
                            Path(args.out) if args.out else None, args.events_csv)
    except (WhatIfError, PlanFileError, CycleError) as exc:
        print(f"squak what-if: {exc}", file=sys.stderr)
        return 2
    print(summary(done.result, args.top))
    print(f"scenario {done.name!r}: {done.rows:,} rows in rating.what_if (dbt mart what_if_impact); "
          f"report in {done.folder} ({', '.join(p.name for p in done.files)})")
    return 0


def cmd_docs(args: argparse.Namespace, settings: Settings) -> int:
    """The dbt docs of the warehouse models: a page that opens from disk; `--serve` serves it."""
    from squak_pipelines.analytics.docs import DocsError, generate_docs, serve_docs

    try:
        page = generate_docs(settings)
    except DocsError as exc:
        print(f"squak docs: {exc}", file=sys.stderr)
        return 1
    print(f"dbt docs: {page} (open it in a browser; no server needed)")
    if args.serve:
        print(f"serving on http://127.0.0.1:{args.port} (Ctrl-C stops)")
        return serve_docs(settings, args.port)
    return 0


def cmd_rate(args: argparse.Namespace, settings: Settings) -> int:
    from squak_pipelines.rating.plans import PlanFileError
    from squak_pipelines.rating.quote import EventsFileError, explain, quote, write_csv

    try:
        table = quote(Path(args.plan), Path(args.events), allowances=args.allowances,
                      home_country_code=args.home_country_code)
    except (PlanFileError, EventsFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.explain:
        try:
            print(explain(table, args.explain))
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
    if args.out:
        write_csv(table, Path(args.out))
        statuses = table["status"].value_counts().to_pylist()
        print(f"wrote {table.num_rows:,} events to {args.out}: "
              + ", ".join(f"{s['values']} {s['counts']:,}" for s in statuses))
    elif not args.explain:
        print("nothing to do: give --out RATED.csv and/or --explain EVENT_ID", file=sys.stderr)
        return 2
    return 0


def cmd_bill(args: argparse.Namespace, settings: Settings) -> int:
    """Bill one cycle (`--cycle`), or every ended cycle not yet billed, oldest first."""
    from squak_pipelines.assurance.invoice_gate import RevenueAssuranceError
    from squak_pipelines.cycles import CycleError
    from squak_pipelines.invoicing.stage import bill_cycle, check_cycle, cycles_to_bill
    from squak_pipelines.warehouse import open_warehouse

    warehouse = open_warehouse(settings)
    try:
        if not warehouse.table_exists("orders.accounts"):
            raise CycleError("nothing to bill yet: no accounts (run the pipeline first: make run)")
        if args.account and not warehouse.scalar(
                "select count(*) from orders.accounts where account_id = :a", {"a": args.account}):
            raise CycleError(f"unknown account {args.account!r} (no such account in orders.accounts)")
        if args.cycle:
            check_cycle(warehouse, settings, args.cycle, preview=args.preview)
            months = [args.cycle]
        elif args.preview:
            raise CycleError("--preview needs --cycle YYYY-MM")
        else:
            months = cycles_to_bill(warehouse, settings)
            if not months:
                print(f"nothing to bill: every ended cycle is billed (today {clock.today()})")
                return 0
        for month in months:
            report = bill_cycle(warehouse, settings, month, finalize=not args.preview, account=args.account)
            _print_bill(report, args.preview)
    except CycleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RevenueAssuranceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_bill(report, preview: bool) -> None:
    kind = "draft (preview, not numbered)" if preview else "final"
    print(f"cycle {report.cycle}: {report.drafts} {kind} invoice(s) computed"
          + ("" if preview else f", {report.finalized} finalized, {report.already_final} already final"))
    for currency, total in sorted(report.totals.items()):
        print(f"  {currency}: total {total} (taxes {report.tax_totals[currency]})")
    if not preview:
        print(f"  e-invoices (EN 16931, validated): {report.einvoices}")
        for number, errors in sorted(report.einvoice_blocked.items()):
            print(f"  BLOCKED from delivery, e-invoice invalid: {number}: {errors[:300]}")
    print(f"  documents: {report.documents / 'drafts' if preview else report.documents}")


def _demo_customers_pay(settings: Settings) -> None:
    """The demo's customers answer their invoices with payment files (once)."""
    from squak_pipelines.warehouse import open_warehouse

    folder = settings.payments_drop_dir
    if folder.exists() and any(folder.iterdir()):
        return
    if not open_warehouse(settings).table_exists("invoicing.invoices"):
        return
    files = write_demo_payment_files(settings)
    print(f"        demo customers paid: {len(files)} payment file(s) in {folder}")


def cmd_payments(args: argparse.Namespace, settings: Settings) -> int:

    from squak_pipelines.payments.stage import assign, run_payments
    from squak_pipelines.warehouse import open_warehouse

    warehouse = open_warehouse(settings)
    try:
        if args.action == "assign":
            assign(warehouse, args.payment, args.by, args.invoice, args.account)
            print(f"payment {args.payment} assigned to {args.invoice or args.account}")
        if args.action == "demo-files":
            files = write_demo_payment_files(settings)
            print(f"{len(files)} demo payment file(s) in {settings.payments_drop_dir}")
        if args.as_of:
            clock.set_today(args.as_of, "--as-of")
        report = run_payments(warehouse, settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"payments as of {report.as_of}: {report.files} new file(s): {report.new_payments} payment(s), "
          f"{report.failed} failed charge(s), {report.debits} debit(s), {report.reversals} reversal(s) "
          f"(refunds, chargebacks, returns), {report.pending} pending or information entr(ies), "
          f"{report.duplicates} duplicate(s), {report.rejected} rejected record(s)")
    for check in report.file_checks:
        print(f"  check: {check}")
    for currency in sorted(report.invoiced):
        collected = report.collected.get(currency, "0")
        print(f"  {currency}: invoiced {report.invoiced[currency]}, collected {collected}")
    for currency, buckets in sorted(report.aging.items()):
        print(f"  aging {currency}: " + ", ".join(f"{k} {v}" for k, v in buckets.items()))
    print(f"  suspense: {report.suspense or 'none'}; dunning: {report.dunning or 'none'} "
          f"({report.notices} new notice(s)); auto-pay charge requests: {report.charge_requests}; "
          f"direct-debit collections: {report.direct_debits}")
    return 0


def write_demo_payment_files(settings: Settings) -> list:
    from squak_pipelines.demo.payments import write_demo_payments
    from squak_pipelines.warehouse import open_warehouse

    return write_demo_payments(open_warehouse(settings), settings)


def cmd_credit_note(args: argparse.Namespace, settings: Settings) -> int:
    from squak_pipelines.invoicing.credit_notes import issue_credit_note
    from squak_pipelines.warehouse import open_warehouse

    try:
        lines = [int(x) for x in args.lines.split(",")] if args.lines else None
        note = issue_credit_note(open_warehouse(settings), settings, args.invoice, args.reason, lines)
    except ValueError as exc:  # CreditNoteError, or line numbers that are not numbers
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"credit note {note.number} for invoice {note.corrects}: {note.total} {note.currency} "
          f"(taxes {note.tax_total}); applied to the account's next invoice")
    print(f"  documents: {settings.data_dir / 'invoices' / note.cycle / note.number}.html/.json/.pdf")
    return 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from squak_pipelines.doctor import run_checks

    checks = run_checks(settings)
    for c in checks:
        fix = f"\n      fix: {c.fix}" if c.fix and not c.ok else ""
        print(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}{fix}")
    failed = [c.name for c in checks if not c.ok]
    print(f"==> {'all checks pass' if not failed else 'NOT OK: ' + ', '.join(failed)}")
    return 1 if failed else 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from squak_pipelines.migrations import LATEST, migrate
    from squak_pipelines.warehouse import open_warehouse

    done = migrate(open_warehouse(settings))
    for label in done:
        print(f"    applied {label}")
    print(f"==> warehouse at migration {LATEST} ({len(done)} applied now)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squak", description=__doc__)
    parser.add_argument("--as-of", dest="today", metavar="YYYY-MM-DD",
                        help="the business date every date rule reads (default: SQUAK_TODAY, else today)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    def generation_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--customers", type=int, default=300, help="customer accounts (default 300)")
        p.add_argument("--cdrs", type=int, default=100_000, help="CDRs in the month (default 100,000)")
        p.add_argument("--month", help="demo month YYYY-MM (default: the last month that has ended)")
        p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        p.add_argument("--deck-prefixes", type=int, default=0,
                       help="extra carrier-style sub-prefixes per voice deck (benchmarks)")

    gen = sub.add_parser("generate", help="write the deterministic demo data set")
    generation_options(gen)
    gen.add_argument("--payments", action="store_true",
                     help="instead: the demo customers' payment files for the invoices already final "
                          "(make run does this once the month is invoiced)")
    gen.set_defaults(func=cmd_generate)
    run = sub.add_parser("run", help="run the billing pipeline over the data directory")
    run.add_argument("--verbose", action="store_true", help="end with every table's row count")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="generate the demo data, then run the pipeline")
    generation_options(demo)
    demo.add_argument("--verbose", action="store_true", help="end with every table's row count")
    demo.set_defaults(func=cmd_demo)
    quarantine = sub.add_parser("quarantine", help="review events held by fraud screening")
    quarantine.add_argument("action", choices=["list", "release", "confirm"])
    quarantine.add_argument("keys", nargs="*", help="event keys (release/confirm)")
    quarantine.add_argument("--by", default="", help="analyst making the decision")
    quarantine.add_argument("--note", default="", help="why")
    quarantine.add_argument("--limit", type=int, default=50)
    quarantine.set_defaults(func=cmd_quarantine)
    cdr = sub.add_parser("cdr", help="show mediated records with their raw lines")
    cdr.add_argument("action", choices=["show"])
    cdr.add_argument("keys", nargs="+", help="event keys (as in mediation.events.event_key)")
    cdr.set_defaults(func=cmd_cdr)
    docs = sub.add_parser("docs", help="the dbt docs of the warehouse models (a page that opens from disk)")
    docs.add_argument("--serve", action="store_true", help="also serve them with `dbt docs serve`")
    docs.add_argument("--port", type=int, default=8080)
    docs.set_defaults(func=cmd_docs)
    whatif = sub.add_parser("what-if", help="re-price a closed cycle under proposed plans or decks")
    whatif.add_argument("--cycle", help="a closed (billed) cycle, YYYY-MM (default: the last billed)")
    whatif.add_argument("--plan", action="append", help="proposed plan YAML replacing the plan of its "
                        "plan_id (repeatable)")
    whatif.add_argument("--deck", action="append", metavar="NAME=FILE",
                        help="proposed deck replacing the current deck file NAME in every plan (repeatable)")
    whatif.add_argument("--name", help="scenario name (default: from the proposal's file names)")
    whatif.add_argument("--out", help="report folder (default <data dir>/what-if/<cycle>-<scenario>)")
    whatif.add_argument("--events-csv", action="store_true", help="also write every event's before/after")
    whatif.add_argument("--top", type=int, default=10, help="most affected accounts shown")
    whatif.set_defaults(func=cmd_what_if)
    explain = sub.add_parser("explain", help="explain an invoice line (its events) or an event's price")
    explain.add_argument("--invoice", help="final invoice number, e.g. SQK-2026-000123")
    explain.add_argument("--line", type=int, help="line number on that invoice")
    explain.add_argument("--event", help="event key: its CDR, rating trace and invoice line")
    explain.add_argument("--out", help="write the line's events to this CSV")
    explain.add_argument("--limit", type=int, default=20, help="events printed (default 20)")
    explain.set_defaults(func=cmd_explain)
    bill = sub.add_parser("bill", help="draft and finalize billing cycles' invoices")
    bill.add_argument("--cycle", help="YYYY-MM (default: every ended cycle not yet billed, oldest first)")
    bill.add_argument("--account", help="only this account")
    bill.add_argument("--preview", action="store_true", help="drafts only: nothing numbered or finalized")
    bill.set_defaults(func=cmd_bill)
    pay = sub.add_parser("payments", help="payments and receivables: intake, matching, aging, dunning")
    pay.add_argument("action", choices=["run", "assign", "demo-files"],
                     help="run: read new payment files and rebuild; assign: match a payment by hand; "
                          "demo-files: write the demo customers' payment files, then run")
    pay.add_argument("--as-of", help="date of aging and dunning (YYYY-MM-DD; default SQUAK_TODAY or today)")
    pay.add_argument("--payment", help="payment_id to assign")
    pay.add_argument("--invoice", help="assign to this invoice")
    pay.add_argument("--account", help="assign to this account")
    pay.add_argument("--by", default="finance", help="who assigned it")
    pay.set_defaults(func=cmd_payments)
    credit = sub.add_parser("credit-note", help="correct a final invoice with a credit note")
    credit.add_argument("--invoice", required=True, help="the final invoice's number")
    credit.add_argument("--reason", required=True, help="why (printed on the credit note)")
    credit.add_argument("--lines", help="invoice line numbers to credit, e.g. 3,4 (default: all left)")
    credit.set_defaults(func=cmd_credit_note)
    quote = sub.add_parser("rate", help="price a canonical events CSV under one plan (a quote)")
    quote.add_argument("--plan", required=True, help="plan YAML (its decks are read too)")
    quote.add_argument("--events", required=True, help="canonical events CSV")
    quote.add_argument("--out", help="write every event with its charge and breakdown here")
    quote.add_argument("--explain", metavar="EVENT_ID", help="print the breakdown of one event")
    quote.add_argument("--allowances", action="store_true",
                       help="apply the plan's allowances per account_code (default: list prices)")
    quote.add_argument("--home-country-code", help="country code for national vs international "
                       "(when the file has no call_type column), e.g. 1 or 44")
    quote.set_defaults(func=cmd_rate)
    doctor = sub.add_parser("doctor", help="check settings, warehouse, migrations, tools; print the fixes")
    doctor.set_defaults(func=cmd_doctor)
    migrate = sub.add_parser("migrate", help="apply the warehouse's pending migrations")
    migrate.set_defaults(func=cmd_migrate)
    workers = sub.add_parser("workers", help="start dagster-celery workers (runs with SQUAK_EXECUTOR=celery)")
    workers.add_argument("--count", type=int, default=2, help="worker processes (default 2)")
    workers.add_argument("--concurrency", type=int, default=1, help="steps each worker runs at once")
    workers.set_defaults(func=cmd_workers)
    ui = sub.add_parser("ui", help="start the Dagster UI over the same data")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.today:
            clock.set_today(args.today)
        clock.today()
    except clock.ClockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        print("interrupted; what was committed stays, run the command again to go on", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from squak_pipelines.operator_errors import explain

        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        line = explain(exc) or f"{type(exc).__name__}: {message}"
        print(f"error: {line} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
