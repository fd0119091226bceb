"""Invoice documents: HTML from Jinja2 templates (autoescaped) and canonical JSON.

Operators drop templates into `reference/templates/` (`<name>.html.j2`); an account whose
`template` names one gets it, everyone else gets the package's default. A business
customer's brand (logo file under `reference/`, primary and accent colours) is applied by
any template. Rendering is deterministic: the same invoice gives the same bytes.
"""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import jinja2

from squak_pipelines.invoicing.compose import Invoice
from squak_pipelines.money import round_to_currency

DEFAULT_TEMPLATE = "invoice.html.j2"
PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
OPERATOR = {
    "name": "Squak Communications",
    "address": "100 Example Street, New York, NY 10001",
    "support": "billing@squak.example",
}
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


def render_html(invoice: Invoice, reference_dir: Path | None, calls: list[dict] | None = None) -> str:
    """The invoice as HTML; `calls` (when the customer asked for it) becomes the itemized
    call-detail appendix page."""
    data = invoice.as_dict()
    customer = data["customer"]
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
        line["show_allowance"] = (
            line["kind"] in ("usage", "late_usage") and Decimal(line["allowance_used"]) > 0
        )
    sections = [
        {"title": title, "lines": [line for line in data["lines"] if line["kind"] == kind]}
        for kind, title in SECTIONS
    ]
    title = f"Invoice {invoice.number}" if invoice.number else f"Draft invoice {invoice.key}"
    return template.render(
        invoice=data,
        customer=customer,
        brand=brand,
        operator=OPERATOR,
        sections=[s for s in sections if s["lines"]],
        title=title,
        period=invoice.cycle,
        calls=calls or [],
        money=lambda value: f"{round_to_currency(Decimal(value), invoice.currency):,} {invoice.currency}",
    )


def render_json(invoice: Invoice) -> str:
    return json.dumps(invoice.as_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
