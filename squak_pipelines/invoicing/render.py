"""Invoice documents: HTML from Jinja2 templates (autoescaped) and canonical JSON.

Operators drop templates into `reference/templates/` (`<name>.html.j2`); an account whose
`template` names one gets it, everyone else gets the package's default. A business
customer's brand (logo file under `reference/`, primary and accent colours) is applied by
any template. Rendering is deterministic: the same invoice gives the same bytes.

Every template gets the operator's identity (`reference/operator.yaml`), the customer (with
its VAT id when it is a business), the page-1 summary (previous balance, payments since,
credits, this period's charges, taxes, amount due, due date), the payment link and its QR
code, quantities in customer units (presentation.py) and `money()`, the one formatter of
amounts (money.format_money: the currency's minor units, locale-aware). A final invoice
whose template does not show its amount due is refused (TemplateError) before it is stored.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import jinja2

from squak_pipelines.invoicing.compose import Invoice
from squak_pipelines.invoicing.presentation import allowance_text, payment_qr, quantity_text
from squak_pipelines.money import format_money
from squak_pipelines.operator_identity import Operator, load_operator
from squak_pipelines.payments.links import payment_url

DEFAULT_TEMPLATE = "invoice.html.j2"
PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
LOCALE = "en"  # the language of the package's templates; money follows its conventions
REVERSE_CHARGE_NOTE = ("Reverse charge: VAT is to be accounted for by the recipient "
                       "(Article 196, Council Directive 2006/112/EC).")


class TemplateError(ValueError):
    """An invoice template that cannot be used for a final invoice (names the file and rule)."""


def operator_of(reference_dir: Path | None) -> Operator:
    """The operator's identity (read again when its file changes)."""
    if reference_dir is None:
        raise TemplateError("documents need the operator's identity: no reference directory given")
    path = reference_dir / "operator.yaml"
    stamp = path.stat().st_mtime_ns if path.exists() else 0
    return _operator(reference_dir, stamp)


@lru_cache(maxsize=8)
def _operator(reference_dir: Path, stamp: int) -> Operator:
    return load_operator(reference_dir)


def invoice_link(invoice: Invoice, operator: Operator, data_dir: Path | None) -> str:
    """The final invoice's signed payment link ('' for drafts and credit notes)."""
    if not invoice.number or data_dir is None or invoice.document_type != "invoice":
        return ""
    return payment_url(invoice.number, invoice.amount_due, invoice.currency,
                       date.fromisoformat(invoice.issue_date), data_dir, operator.payment_link)
SECTIONS = (
    ("recurring", "Services"),
    ("one_time", "One-time charges"),
    ("usage", "Usage"),
    ("late_usage", "Late usage from earlier periods"),
    ("adjustment", "Adjustments to earlier invoices"),
    ("discount", "Plan discounts"),
    ("promotion", "Promotions and coupons"),
    ("tax", "Taxes and regulatory fees"),
)


@lru_cache(maxsize=8)
def environment(reference_dir: Path | None) -> jinja2.Environment:
    folders = [
        str(p)
        for p in ((reference_dir / "templates") if reference_dir else None, PACKAGE_TEMPLATES)
        if p is not None  # the operator's folder may appear later: it is searched first
    ]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _logo(reference_dir: Path | None, relative: str) -> str:
    """The brand logo as a data URI (documents stay self-contained)."""
    if not relative or reference_dir is None:
        return ""
    path = (reference_dir / relative).resolve()
    if reference_dir.resolve() not in path.parents or not path.is_file():
        return ""
    kind = "image/svg+xml" if path.suffix == ".svg" else f"image/{path.suffix.lstrip('.') or 'png'}"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def render_html(invoice: Invoice, reference_dir: Path | None, calls: list[dict] | None = None,
                data_dir: Path | None = None) -> str:
    """The invoice as HTML; `calls` (when the customer asked for it) becomes the itemized
    call-detail appendix page; `data_dir` signs the payment link of a final invoice."""
    data = invoice.as_dict()
    customer = data["customer"]
    operator = operator_of(reference_dir)
    env = environment(reference_dir)
    name = f"{customer.get('template')}.html.j2" if customer.get("template") else DEFAULT_TEMPLATE
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        template = env.get_template(DEFAULT_TEMPLATE)
    brand = {
        "primary": customer["brand_primary_color"]
        if COLOUR.match(customer.get("brand_primary_color") or "")
        else "#1f4e79",
        "accent": customer["brand_accent_color"]
        if COLOUR.match(customer.get("brand_accent_color") or "")
        else "#2f855a",
        "logo": _logo(reference_dir, customer.get("brand_logo") or ""),
    }
    for line in data["lines"]:
        line["quantity_text"] = quantity_text(line)
        line["allowance_text"] = allowance_text(line)
        line["show_allowance"] = bool(line["allowance_text"])
    sections = [
        {"title": title, "lines": [line for line in data["lines"] if line["kind"] == kind]}
        for kind, title in SECTIONS
    ]
    title = f"Invoice {invoice.number}" if invoice.number else f"Draft invoice {invoice.key}"
    link = invoice_link(invoice, operator, data_dir)

    def money(value) -> str:
        return format_money(Decimal(value), invoice.currency, LOCALE)

    page = template.render(
        invoice=data,
        customer=customer,
        business=customer.get("segment") == "business",
        brand=brand,
        operator=operator.as_dict(),
        sections=[s for s in sections if s["lines"]],
        title=title,
        period=invoice.cycle,
        calls=calls or [],
        money=money,
        payment_link=link,
        payment_qr=payment_qr(operator, invoice.number or "", invoice.amount_due, invoice.currency, link)
        if invoice.number and invoice.document_type == "invoice" else "",
        reverse_charge_note=REVERSE_CHARGE_NOTE if invoice.reverse_charge else "",
    )
    if invoice.number and invoice.document_type == "invoice" and money(invoice.amount_due) not in page:
        raise TemplateError(f"template {template.filename}: rule 'shows the amount due': invoice "
                            f"{invoice.number} renders without its amount due {money(invoice.amount_due)}")
    return page


def render_json(invoice: Invoice) -> str:
    return json.dumps(invoice.as_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
