"""Delivery of final invoices by each customer's chosen method, recorded so nothing is sent twice.

- every invoice is published to the customer portal folder: `portal/<account>/index.html`
  lists the account's invoices (HTML, PDF, call detail) with a signed, expiring payment link
  (`SQUAK_PAYMENT_URL` with `{token}`; payments/links.py);
- `email` customers get a message (HTML body; PDF, JSON and call detail attached) through the SMTP
  server of `SQUAK_SMTP_HOST`/`SQUAK_SMTP_PORT` (`SQUAK_SMTP_USER`/`SQUAK_SMTP_PASSWORD`
  from the environment, STARTTLS when `SQUAK_SMTP_TLS=1`); without a host, messages are
  written to `outbox/` as .eml files (a development mode);
- `post` customers go into the cycle's print batch: `print/<cycle>/batch-<cycle>.pdf`, one PDF
  of their invoices in mailing order (country, postal code, account), and a `manifest.csv`
  giving the print house each invoice's address and first page.
An invoice whose EN 16931 e-invoice failed validation when it was finalized is not delivered
by any method: it is recorded `blocked` with the rules it breaks (`squak bill` printed them).
Amounts are shown through money.format_money (the currency's minor units); emails carry the
UBL e-invoice (and, for EUR, the PDF is itself Factur-X).
`invoicing.deliveries` holds one row per invoice and method. E-mails go in batches (mail.py):
a batch is recorded `sending` in one commit, sent over one SMTP connection, and each outcome
recorded in the next commit. A message recorded `sending` to an SMTP server is never retried
automatically (it may have gone out); one bound for the outbox that is not there is written
(files are written whole or not at all); `failed` ones are retried next run.
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.csv_export import escape_row
from squak_pipelines.faults import fault_point
from squak_pipelines.invoicing.einvoice import blocked_rules
from squak_pipelines.invoicing.mail import (
    PARALLEL_FROM,
    SEND_ERRORS,
    build_messages,
    channel,
    outbox_path,
    payment_link,
    sender,
)
from squak_pipelines.invoicing.pdf import combine, pdfs_wanted
from squak_pipelines.invoicing.tables import DELIVERIES
from squak_pipelines.migrations import migrate
from squak_pipelines.money import format_money
from squak_pipelines.paths import inside
from squak_pipelines.progress import Progress
from squak_pipelines.warehouse import Warehouse
from squak_pipelines.workers import Workers, shared_workers


@dataclass
class DeliveryReport:
    sent: int = 0
    outbox: int = 0
    failed: int = 0
    printed: int = 0
    portal_accounts: int = 0
    print_batch: Path | None = None
    errors: list[str] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)  # number -> e-invoice rules it breaks


def _invoices(warehouse: Warehouse, cycle: str) -> list[dict]:
    return warehouse.query_arrow(
        "select i.number, i.account_id, i.currency, i.amount_due, i.issue_date, i.due_date, "
        "i.einvoice_errors, a.name, a.email, a.delivery_method, a.street, a.city, a.state, "
        "a.postal_code, a.country "
        "from invoicing.invoices i left join orders.accounts a on a.account_id = i.account_id "
        "where substr(i.cycle, 1, 7) = :cycle order by i.number",
        {"cycle": cycle},
    ).to_pylist()


def _stored(warehouse: Warehouse, numbers: list[str]) -> dict[str, dict]:
    """The stored HTML and JSON of these invoices, by number (read a batch at a time: a month
    of them does not fit in memory at scale)."""
    rows = warehouse.query_arrow("select number, html, document from invoicing.invoices "
                                 "where number = any(:numbers)", {"numbers": numbers}).to_pylist()
    return {r["number"]: r for r in rows}


def _status(warehouse: Warehouse) -> dict[tuple[str, str], dict]:
    rows = warehouse.query_arrow("select * from invoicing.deliveries").to_pylist()
    return {(r["number"], r["method"]): r for r in rows}


EMAIL_BATCH = 500  # messages built, then committed `sending` together, sent, and committed again


@dataclass(frozen=True)
class State:
    """One delivery's row in invoicing.deliveries."""

    number: str
    method: str
    status: str
    attempts: int
    detail: str


def _record(warehouse: Warehouse, states: list[State]) -> None:
    """The states of many deliveries, replacing their earlier rows, in one transaction."""
    if not states:
        return
    with warehouse.transaction():
        for method in sorted({s.method for s in states}):
            warehouse.execute("delete from invoicing.deliveries where method = :m and number = any(:n)",
                              {"m": method, "n": [s.number for s in states if s.method == method]})
        now = clock.now()
        warehouse.load("invoicing.deliveries", pa.table({
            "number": [s.number for s in states],
            "method": [s.method for s in states],
            "status": [s.status for s in states],
            "attempts": [s.attempts for s in states],
            "detail": [s.detail for s in states],
            "updated_at": [now] * len(states),
        }, schema=DELIVERIES), mode="append")


def deliver_cycle(warehouse: Warehouse, settings: Settings, cycle: str) -> DeliveryReport:
    """Publish, email and print the cycle's final invoices; safe to run again. One warehouse
    session for the whole stage."""
    with warehouse.session():
        return _deliver(warehouse, settings, cycle)


def _deliver(warehouse: Warehouse, settings: Settings, cycle: str) -> DeliveryReport:
    migrate(warehouse)
    report = DeliveryReport()
    invoices = _invoices(warehouse, cycle)
    done = _status(warehouse)
    blocked = []
    for inv in [i for i in invoices if i["einvoice_errors"]]:
        rules = ", ".join(blocked_rules(inv["einvoice_errors"])) or "EN 16931"
        report.blocked[inv["number"]] = rules
        method = inv["delivery_method"] or "email"
        if (inv["number"], method) not in done:
            blocked.append(State(inv["number"], method, "blocked", 0,
                                 f"e-invoice invalid ({rules}): {inv['einvoice_errors']}"[:2000]))
    _record(warehouse, blocked)
    invoices = [i for i in invoices if not i["einvoice_errors"]]
    report.portal_accounts = publish_portal(warehouse, settings, cycle)
    by_email = [i for i in invoices if (i["delivery_method"] or "email") == "email"]
    queue, confirmed = _emails_due(settings, by_email, done)
    _record(warehouse, confirmed)
    report.outbox += len(confirmed)
    documents = settings.data_dir / "invoices" / cycle
    progress = Progress("invoice e-mails", len(queue), "e-mails")
    with shared_workers(PARALLEL_FROM) as workers:
        for start in range(0, len(queue), EMAIL_BATCH):
            _send_batch(warehouse, settings, documents, queue[start:start + EMAIL_BATCH], report, workers)
            progress.advance(len(queue[start:start + EMAIL_BATCH]))
    postal = [i for i in invoices if i["delivery_method"] == "post"]
    report.printed = print_batch(warehouse, settings, cycle, postal, done)
    if postal:
        report.print_batch = settings.data_dir / "print" / cycle / f"batch-{cycle}.pdf"
    return report


def _emails_due(settings: Settings, invoices: list[dict], done: dict[tuple[str, str], dict]
                ) -> tuple[list[tuple[dict, int]], list[State]]:
    """The e-mails to send now, each with its attempt number, and those a killed run wrote
    but did not record (confirmed, not written again). At most once: a message recorded
    `sending` to an SMTP server may have gone out, so it is left for an operator to check; one
    bound for the outbox that is not there was never written (files are written atomically),
    so it is written now, as the same attempt."""
    queue, confirmed = [], []
    to_outbox = channel() == "outbox"
    for inv in invoices:
        previous = done.get((inv["number"], "email"))
        if previous is None or previous["status"] not in ("sent", "outbox", "sending"):
            queue.append((inv, (previous["attempts"] if previous else 0) + 1))  # new, failed, unblocked
        elif previous["status"] == "sending":
            path = outbox_path(settings.data_dir, inv["number"])
            if path.exists():
                confirmed.append(State(inv["number"], "email", "outbox", previous["attempts"],
                                       f"outbox:{path}"))
            elif previous["detail"] == "outbox" and to_outbox:
                queue.append((inv, previous["attempts"]))
    return queue, confirmed


def _send_batch(warehouse: Warehouse, settings: Settings, documents: Path, batch: list[tuple[dict, int]],
                report: DeliveryReport, workers: Workers) -> None:
    """Build the batch's messages, record them `sending` (one commit), send them (one SMTP
    connection), record each outcome (one commit)."""
    attempts = {inv["number"]: n for inv, n in batch}
    stored = _stored(warehouse, list(attempts))
    invoices = [{**inv, **stored[inv["number"]]} for inv, _ in batch]
    built = build_messages(invoices, documents, settings.data_dir, settings.reference_dir, workers)
    outcomes = [State(b.number, "email", "failed", attempts[b.number], b.error)
                for b in built if b.data is None]
    ready = [b for b in built if b.data is not None]
    where_to = channel()
    _record(warehouse, [State(b.number, "email", "sending", attempts[b.number], where_to) for b in ready])
    try:
        with sender(settings.data_dir) as send:
            for b in ready:
                try:
                    where = send(b)
                except SEND_ERRORS as exc:
                    outcomes.append(State(b.number, "email", "failed", attempts[b.number],
                                          f"{type(exc).__name__}: {exc}"))
                    continue
                fault_point("delivery.after_send")
                status = "outbox" if where.startswith("outbox:") else "sent"
                outcomes.append(State(b.number, "email", status, attempts[b.number], where))
    except SEND_ERRORS as exc:  # no connection: none of the batch went out
        tried = {o.number for o in outcomes}
        outcomes += [State(b.number, "email", "failed", attempts[b.number], f"{type(exc).__name__}: {exc}")
                     for b in ready if b.number not in tried]
    _record(warehouse, outcomes)
    for state in outcomes:
        report.outbox += state.status == "outbox"
        report.sent += state.status == "sent"
        if state.status == "failed":
            report.failed += 1
            report.errors.append(f"{state.number}: {state.detail}")


def publish_portal(warehouse: Warehouse, settings: Settings, month: str | None = None) -> int:
    """Each account's portal page lists all its final invoices (newest first). With `month`,
    the accounts billed that month are refreshed and that month's documents copied (earlier
    months' documents were copied in their own month); returns the accounts refreshed."""
    rows = warehouse.query_arrow(
        "select i.number, i.account_id, i.cycle, i.currency, i.amount_due, i.issue_date, i.due_date, "
        "case when :month = '' or substr(i.cycle, 1, 7) = :month then i.html end as html, a.name "
        "from invoicing.invoices i left join orders.accounts a on a.account_id = i.account_id "
        "where coalesce(i.einvoice_errors, '') = '' and (:month = '' or i.account_id in "
        "(select account_id from invoicing.invoices where substr(cycle, 1, 7) = :month)) "
        "order by i.account_id, i.cycle desc, i.number",
        {"month": month or ""},
    ).to_pylist()
    by_account: dict[str, list[dict]] = {}
    for r in rows:
        by_account.setdefault(r["account_id"], []).append(r)
    root = settings.data_dir / "portal"
    for account, invoices in by_account.items():
        folder = inside(root, account)
        folder.mkdir(parents=True, exist_ok=True)
        items = []
        for inv in invoices:
            link = payment_link(inv, settings.data_dir, settings.reference_dir)
            calls = settings.data_dir / "invoices" / inv["cycle"] / f"{inv['number']}-calls.csv"
            pdf = calls.with_name(f"{inv['number']}.pdf")
            if inv["html"] is not None:  # this month's: its documents are copied now
                inside(folder, f"{inv['number']}.html").write_text(inv["html"], encoding="utf-8")
                for document in (pdf, calls):
                    if document.exists():
                        (folder / document.name).write_bytes(document.read_bytes())
            detail = ""
            if pdf.exists():
                detail += f' &middot; <a href="{html.escape(pdf.name)}">PDF</a>'
            if calls.exists():
                detail += f' &middot; <a href="{html.escape(calls.name)}">call detail (CSV)</a>'
            items.append(
                f'<li><a href="{html.escape(inv["number"])}.html">{html.escape(inv["number"])}</a> '
                f"({html.escape(inv['cycle'])}): "
                f"{html.escape(format_money(Decimal(inv['amount_due']), inv['currency']))} "
                f"due {inv['due_date']}{detail} &middot; "
                f'<a href="{html.escape(link)}">pay now</a></li>'
            )
        name = html.escape(invoices[0]["name"] or account)
        (folder / "index.html").write_text(
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Invoices of {name}'
            f"</title></head>\n<body><h1>Invoices of {name}</h1>\n<ul>\n"
            + "\n".join(items)
            + "\n</ul></body></html>\n",
            encoding="utf-8",
        )
    return len(by_account)


def print_batch(
    warehouse: Warehouse,
    settings: Settings,
    cycle: str,
    invoices: list[dict],
    done: dict[tuple[str, str], dict],
) -> int:
    """The cycle's postal invoices in mailing order, with a manifest; each printed once."""
    order = sorted(invoices, key=lambda i: (i["country"] or "", i["postal_code"] or "", i["account_id"]))
    folder = settings.data_dir / "print" / cycle
    folder.mkdir(parents=True, exist_ok=True)
    if not order:
        return 0
    documents = settings.data_dir / "invoices" / cycle
    pdfs = [documents / f"{inv['number']}.pdf" for inv in order]
    if pdfs_wanted() and all(p.exists() for p in pdfs):
        batch, starts = combine(pdfs)
        (folder / f"batch-{cycle}.pdf").write_bytes(batch)
        names = [f"batch-{cycle}.pdf" for _ in order]
    else:  # PDFs off (SQUAK_INVOICE_PDF=off): the print house gets each invoice's HTML
        starts = [""] * len(order)
        names = [f"{inv['number']}.html" for inv in order]
        for start in range(0, len(order), EMAIL_BATCH):
            stored = _stored(warehouse, [inv["number"] for inv in order[start:start + EMAIL_BATCH]])
            for number, row in stored.items():
                (folder / f"{number}.html").write_text(row["html"], encoding="utf-8")
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sequence", "invoice", "document", "first_page", "name", "street", "city", "state",
                         "postal_code", "country"])
        for sequence, (inv, page, name) in enumerate(zip(order, starts, names, strict=True), 1):
            writer.writerow(escape_row(
                [
                    sequence,
                    inv["number"],
                    name,
                    page,
                    inv["name"],
                    inv["street"],
                    inv["city"],
                    inv["state"],
                    inv["postal_code"],
                    inv["country"],
                ]
            ))
    new = [i["number"] for i in order if (i["number"], "post") not in done]
    if new:
        now = clock.now()
        warehouse.load(
            "invoicing.deliveries",
            pa.table(
                {
                    "number": new,
                    "method": ["post"] * len(new),
                    "status": ["queued_for_print"] * len(new),
                    "attempts": [1] * len(new),
                    "detail": [f"print/{cycle}"] * len(new),
                    "updated_at": [now] * len(new),
                },
                schema=DELIVERIES,
            ),
            mode="append",
        )
    return len(new)
