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
`invoicing.deliveries` holds one row per invoice and method. A delivery marked `sending` is
never retried automatically (it may have gone out); `failed` ones are retried next run.
"""

from __future__ import annotations

import csv
import html
import os
import smtplib
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pyarrow as pa

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.csv_export import escape_row
from squak_pipelines.faults import fault_point
from squak_pipelines.invoicing.einvoice import blocked_rules
from squak_pipelines.invoicing.pdf import combine, pdfs_wanted, write_atomically
from squak_pipelines.invoicing.render import operator_of
from squak_pipelines.invoicing.tables import DELIVERIES
from squak_pipelines.migrations import migrate
from squak_pipelines.money import format_money
from squak_pipelines.paths import inside
from squak_pipelines.payments.links import payment_url
from squak_pipelines.warehouse import Warehouse


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
        "select i.number, i.account_id, i.currency, i.amount_due, i.issue_date, i.due_date, i.html, "
        "i.document, i.einvoice_errors, a.name, a.email, a.delivery_method, a.street, a.city, a.state, "
        "a.postal_code, a.country "
        "from invoicing.invoices i left join orders.accounts a on a.account_id = i.account_id "
        "where substr(i.cycle, 1, 7) = :cycle order by i.number",
        {"cycle": cycle},
    ).to_pylist()


def _status(warehouse: Warehouse) -> dict[tuple[str, str], dict]:
    rows = warehouse.query_arrow("select * from invoicing.deliveries").to_pylist()
    return {(r["number"], r["method"]): r for r in rows}


def _record(warehouse: Warehouse, number: str, method: str, status: str, attempts: int, detail: str) -> None:
    """One message's state, committed before and after it is sent (at most once). One row by
    parameterized statements, not a bulk load: a load's table and key checks cost four times
    the commit itself, twice per message."""
    with warehouse.transaction():
        warehouse.execute(
            "delete from invoicing.deliveries where number = :n and method = :m", {"n": number, "m": method}
        )
        warehouse.execute(
            "insert into invoicing.deliveries (number, method, status, attempts, detail, updated_at) "
            "values (:n, :m, :s, :a, :d, :t)",
            {"n": number, "m": method, "s": status, "a": attempts, "d": detail, "t": clock.now()},
        )


def deliver_cycle(warehouse: Warehouse, settings: Settings, cycle: str) -> DeliveryReport:
    """Publish, email and print the cycle's final invoices; safe to run again. One warehouse
    session for the whole stage: each message's state is still committed before and after it
    is sent, without opening (and checkpointing) the DuckDB file twice per message."""
    with warehouse.session():
        return _deliver(warehouse, settings, cycle)


def _deliver(warehouse: Warehouse, settings: Settings, cycle: str) -> DeliveryReport:
    migrate(warehouse)
    report = DeliveryReport()
    invoices = _invoices(warehouse, cycle)
    done = _status(warehouse)
    documents = settings.data_dir / "invoices" / cycle
    for inv in [i for i in invoices if i["einvoice_errors"]]:
        rules = ", ".join(blocked_rules(inv["einvoice_errors"])) or "EN 16931"
        report.blocked[inv["number"]] = rules
        method = inv["delivery_method"] or "email"
        if (inv["number"], method) not in done:
            _record(warehouse, inv["number"], method, "blocked", 0,
                    f"e-invoice invalid ({rules}): {inv['einvoice_errors']}"[:2000])
    invoices = [i for i in invoices if not i["einvoice_errors"]]
    report.portal_accounts = publish_portal(warehouse, settings)
    for inv in invoices:
        if (inv["delivery_method"] or "email") != "email":
            continue
        previous = done.get((inv["number"], "email"))
        if previous and previous["status"] == "sending" and _outbox_path(settings, inv["number"]).exists():
            # Died between writing the message and recording it: the message is whole (written
            # atomically), so it is confirmed, not written again.
            where = f"outbox:{_outbox_path(settings, inv['number'])}"
            _record(warehouse, inv["number"], "email", "outbox", previous["attempts"], where)
            report.outbox += 1
            continue
        if previous and previous["status"] in ("sent", "outbox", "sending"):
            continue  # at most once: a `sending` left by a crash mid-SMTP is for an operator to check
        attempts = (previous["attempts"] if previous else 0) + 1
        _record(warehouse, inv["number"], "email", "sending", attempts, "")
        try:
            where = send_email(inv, documents, settings)
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            _record(warehouse, inv["number"], "email", "failed", attempts, f"{type(exc).__name__}: {exc}")
            report.failed += 1
            report.errors.append(f"{inv['number']}: {exc}")
            continue
        fault_point("delivery.after_send")
        status = "outbox" if where.startswith("outbox:") else "sent"
        _record(warehouse, inv["number"], "email", status, attempts, where)
        report.outbox += status == "outbox"
        report.sent += status == "sent"
    postal = [i for i in invoices if i["delivery_method"] == "post"]
    report.printed = print_batch(warehouse, settings, cycle, postal, done)
    if postal:
        report.print_batch = settings.data_dir / "print" / cycle / f"batch-{cycle}.pdf"
    return report


def _message(inv: dict, documents: Path, link: str, sender: str = "") -> EmailMessage:
    if not inv["email"] or "@" not in inv["email"]:
        raise ValueError(f"account {inv['account_id']} has no email address")
    message = EmailMessage()
    message["From"] = os.environ.get("SQUAK_SMTP_FROM") or sender or "billing@localhost"
    message["To"] = inv["email"]
    due = format_money(Decimal(inv["amount_due"]), inv["currency"])
    message["Subject"] = f"Your Squak invoice {inv['number']}: {due} due {inv['due_date']}"
    message.set_content(
        f"Dear {inv['name']},\n\nyour invoice {inv['number']} is attached. Amount due: "
        f"{due} by {inv['due_date']}.\nPay online: {link}\n"
    )
    message.add_alternative(inv["html"], subtype="html")
    pdf = documents / f"{inv['number']}.pdf"
    if pdf.exists():
        message.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename=pdf.name)
    message.add_attachment(
        inv["document"].encode(), maintype="application", subtype="json", filename=f"{inv['number']}.json"
    )
    ubl = documents / f"{inv['number']}.xml"
    if ubl.exists():  # the EN 16931 e-invoice (UBL 2.1)
        message.add_attachment(ubl.read_bytes(), maintype="application", subtype="xml", filename=ubl.name)
    calls = documents / f"{inv['number']}-calls.csv"
    if calls.exists():
        message.add_attachment(calls.read_bytes(), maintype="text", subtype="csv", filename=calls.name)
    # Boundaries from the invoice number, not random: the same invoice gives the same bytes.
    for i, part in enumerate(p for p in message.walk() if p.is_multipart()):
        part.set_boundary(f"squak-{inv['number']}-{i}")
    return message


def _outbox_path(settings: Settings, number: str) -> Path:
    return inside(settings.data_dir / "outbox", f"{number}.eml")


def send_email(inv: dict, documents: Path, settings: Settings) -> str:
    """Send one invoice; returns where it went (`smtp:host` or `outbox:path`)."""
    message = _message(inv, documents, payment_link(inv, settings), operator_of(settings.reference_dir).email)
    host = os.environ.get("SQUAK_SMTP_HOST", "")
    if not host:
        path = _outbox_path(settings, inv["number"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, bytes(message))
        return f"outbox:{path}"
    port = int(os.environ.get("SQUAK_SMTP_PORT", "25"))
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        if os.environ.get("SQUAK_SMTP_TLS") == "1":
            smtp.starttls()
        if os.environ.get("SQUAK_SMTP_USER"):
            smtp.login(os.environ["SQUAK_SMTP_USER"], os.environ.get("SQUAK_SMTP_PASSWORD", ""))
        smtp.send_message(message)
    return f"smtp:{host}:{port}"


def payment_link(inv: dict, settings: Settings) -> str:
    """The invoice's signed, expiring payment link (squak_pipelines/payments/links.py), as
    printed on the invoice."""
    amount = Decimal(inv["amount_due"])
    return payment_url(inv["number"], amount, inv["currency"], inv["issue_date"], settings.data_dir,
                       operator_of(settings.reference_dir).payment_link)


def publish_portal(warehouse: Warehouse, settings: Settings) -> int:
    """Each account's portal page lists all its final invoices (newest first)."""
    rows = warehouse.query_arrow(
        "select i.number, i.account_id, i.cycle, i.currency, i.amount_due, i.issue_date, i.due_date, i.html, "
        "a.name "
        "from invoicing.invoices i left join orders.accounts a on a.account_id = i.account_id "
        "where coalesce(i.einvoice_errors, '') = '' "
        "order by i.account_id, i.cycle desc, i.number"
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
            inside(folder, f"{inv['number']}.html").write_text(inv["html"], encoding="utf-8")
            calls = settings.data_dir / "invoices" / inv["cycle"] / f"{inv['number']}-calls.csv"
            detail = ""
            pdf = calls.with_name(f"{inv['number']}.pdf")
            if pdf.exists():
                (folder / pdf.name).write_bytes(pdf.read_bytes())
                detail += f' &middot; <a href="{html.escape(pdf.name)}">PDF</a>'
            if calls.exists():
                (folder / calls.name).write_bytes(calls.read_bytes())
                detail += f' &middot; <a href="{html.escape(calls.name)}">call detail (CSV)</a>'
            items.append(
                f'<li><a href="{html.escape(inv["number"])}.html">{html.escape(inv["number"])}</a> '
                f"({html.escape(inv['cycle'])}): "
                f"{html.escape(format_money(Decimal(inv['amount_due']), inv['currency']))} "
                f"due {inv['due_date']}{detail} &middot; "
                f'<a href="{html.escape(payment_link(inv, settings))}">pay now</a></li>'
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
        names = []
        for inv in order:
            (folder / f"{inv['number']}.html").write_text(inv["html"], encoding="utf-8")
            names.append(f"{inv['number']}.html")
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
