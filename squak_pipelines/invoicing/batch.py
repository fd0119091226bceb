"""The documents of many invoices at once: each one's HTML page and, for final invoices, its
validated e-invoices, in worker processes when there are many (squak_pipelines.workers).

Rendering an invoice is pure Python (Jinja, the payment QR code, the EN 16931 schematron in
Saxon), so one process renders about one invoice at a time whatever the cores; workers give
each core its share, and the pages come back in the invoices' order, byte for byte what one
process would have rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from squak_pipelines.invoicing.compose import Invoice
from squak_pipelines.invoicing.einvoice import EDocuments
from squak_pipelines.invoicing.einvoice import make as make_einvoice
from squak_pipelines.invoicing.render import operator_of, render_html
from squak_pipelines.workers import Workers, map_in_workers

PARALLEL_FROM = 64  # fewer invoices than this are rendered in the calling process


@dataclass(frozen=True)
class Rendered:
    html: str
    einvoice: EDocuments | None  # None for drafts


def _render(job: tuple[Invoice, list[dict] | None], reference_dir: Path | None, data_dir: Path | None,
            taxes: dict[str, dict] | None) -> Rendered:
    invoice, calls = job
    html = render_html(invoice, reference_dir, calls, data_dir)
    if taxes is None:
        return Rendered(html, None)
    return Rendered(html, make_einvoice(invoice, operator_of(reference_dir), taxes))


def render_documents(invoices: list[Invoice], reference_dir: Path | None, data_dir: Path | None,
                     calls: dict[str, list[dict]] | None = None, taxes: dict[str, dict] | None = None,
                     workers: int | Workers | None = None) -> list[Rendered]:
    """Each invoice's page (with its call-detail appendix from `calls`, by number) and, when
    `taxes` is given (final invoices), its e-invoices; in the invoices' order. `workers`: how
    many processes, or shared `Workers` (a stage rendering in chunks spawns them once)."""
    calls = calls or {}
    jobs = [(invoice, calls.get(invoice.number or "")) for invoice in invoices]
    render = partial(_render, reference_dir=reference_dir, data_dir=data_dir, taxes=taxes)
    if isinstance(workers, Workers):
        return workers.map(render, jobs)
    return map_in_workers(render, jobs, PARALLEL_FROM, workers)
