"""Invoice e-mails: each message built (in worker processes when there are many) and sent in
batches, over one SMTP connection per batch or, without an SMTP host, into `outbox/`.

A message is the same bytes whoever builds it: boundaries come from the invoice number, and
the payment link is signed from the invoice (payments/links.py). SMTP settings come from the
environment: `SQUAK_SMTP_HOST`/`SQUAK_SMTP_PORT`, `SQUAK_SMTP_USER`/`SQUAK_SMTP_PASSWORD`,
STARTTLS when `SQUAK_SMTP_TLS=1`, `SQUAK_SMTP_FROM`.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from functools import partial
from pathlib import Path

from squak_pipelines.invoicing.pdf import write_atomically
from squak_pipelines.invoicing.render import operator_of
from squak_pipelines.money import format_money
from squak_pipelines.paths import inside
from squak_pipelines.payments.links import payment_url
from squak_pipelines.workers import Workers

PARALLEL_FROM = 200  # fewer messages than this are built in the calling process
SEND_ERRORS = (OSError, smtplib.SMTPException)


@dataclass(frozen=True)
class Built:
    """One invoice's message (`data`: the bytes as written to the outbox), or why it has none."""

    number: str
    sender: str
    recipient: str
    data: bytes | None
    error: str = ""


def smtp_host() -> str:
    return os.environ.get("SQUAK_SMTP_HOST", "")


def channel() -> str:
    """Where messages go now: `smtp:host:port`, or `outbox` (development mode)."""
    host = smtp_host()
    return f"smtp:{host}:{os.environ.get('SQUAK_SMTP_PORT', '25')}" if host else "outbox"


def outbox_path(data_dir: Path, number: str) -> Path:
    return inside(data_dir / "outbox", f"{number}.eml")


def payment_link(inv: dict, data_dir: Path, reference_dir: Path) -> str:
    """The invoice's signed, expiring payment link, as printed on the invoice."""
    return payment_url(inv["number"], Decimal(inv["amount_due"]), inv["currency"], inv["issue_date"],
                       data_dir, operator_of(reference_dir).payment_link)


def message(inv: dict, documents: Path, link: str, sender: str = "") -> EmailMessage:
    """The invoice's e-mail: text and HTML body, the PDF, JSON, UBL and call detail attached
    when they exist. ValueError when the account has no e-mail address."""
    if not inv["email"] or "@" not in inv["email"]:
        raise ValueError(f"account {inv['account_id']} has no email address")
    mail = EmailMessage()
    mail["From"] = os.environ.get("SQUAK_SMTP_FROM") or sender or "billing@localhost"
    mail["To"] = inv["email"]
    due = format_money(Decimal(inv["amount_due"]), inv["currency"])
    mail["Subject"] = f"Your Squak invoice {inv['number']}: {due} due {inv['due_date']}"
    mail.set_content(
        f"Dear {inv['name']},\n\nyour invoice {inv['number']} is attached. Amount due: "
        f"{due} by {inv['due_date']}.\nPay online: {link}\n"
    )
    mail.add_alternative(inv["html"], subtype="html")
    pdf = documents / f"{inv['number']}.pdf"
    if pdf.exists():
        mail.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename=pdf.name)
    mail.add_attachment(
        inv["document"].encode(), maintype="application", subtype="json", filename=f"{inv['number']}.json"
    )
    ubl = documents / f"{inv['number']}.xml"
    if ubl.exists():  # the EN 16931 e-invoice (UBL 2.1)
        mail.add_attachment(ubl.read_bytes(), maintype="application", subtype="xml", filename=ubl.name)
    calls = documents / f"{inv['number']}-calls.csv"
    if calls.exists():
        mail.add_attachment(calls.read_bytes(), maintype="text", subtype="csv", filename=calls.name)
    # Boundaries from the invoice number, not random: the same invoice gives the same bytes.
    for i, part in enumerate(p for p in mail.walk() if p.is_multipart()):
        part.set_boundary(f"squak-{inv['number']}-{i}")
    return mail


def _build(inv: dict, documents: Path, data_dir: Path, reference_dir: Path) -> Built:
    try:
        mail = message(inv, documents, payment_link(inv, data_dir, reference_dir),
                       operator_of(reference_dir).email)
    except ValueError as exc:
        return Built(inv["number"], "", "", None, f"{type(exc).__name__}: {exc}")
    return Built(inv["number"], mail["From"], mail["To"], bytes(mail))


def build_messages(invoices: list[dict], documents: Path, data_dir: Path, reference_dir: Path,
                   workers: Workers) -> list[Built]:
    """The invoices' messages, in their order (the workers share the work when there are many)."""
    build = partial(_build, documents=documents, data_dir=data_dir, reference_dir=reference_dir)
    return workers.map(build, invoices)


Send = Callable[[Built], str]  # sends one message, returns where it went; raises SEND_ERRORS


@contextmanager
def sender(data_dir: Path) -> Iterator[Send]:
    """A function that sends one built message: over one SMTP connection (opened here, closed
    at the end) or into the outbox (each file written atomically)."""
    host = smtp_host()
    if not host:
        def to_outbox(built: Built) -> str:
            path = outbox_path(data_dir, built.number)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, built.data or b"")
            return f"outbox:{path}"

        yield to_outbox
        return
    port = int(os.environ.get("SQUAK_SMTP_PORT", "25"))
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        if os.environ.get("SQUAK_SMTP_TLS") == "1":
            smtp.starttls()
        if os.environ.get("SQUAK_SMTP_USER"):
            smtp.login(os.environ["SQUAK_SMTP_USER"], os.environ.get("SQUAK_SMTP_PASSWORD", ""))

        def over_smtp(built: Built) -> str:
            wire = (built.data or b"").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            smtp.sendmail(built.sender, [built.recipient], wire)
            return f"smtp:{host}:{port}"

        yield over_smtp
