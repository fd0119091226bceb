"""PDF invoices from the stored HTML, with WeasyPrint (system Pango, installed by `make`).

PDFs are reproducible: the document ID is the invoice number, the creation date comes from
the HTML (`dcterms.created`, the issue date), and the embedded font subsets carry the issue
date as their timestamp (fontTools reads SOURCE_DATE_EPOCH), so rendering the same HTML
again gives the same bytes. Many documents are rendered in worker processes (rendering is
pure Python and holds the GIL).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from squak_pipelines.workers import map_in_workers

PARALLEL_FROM = 16  # fewer documents than this are rendered in-process


@dataclass(frozen=True)
class PdfJob:
    path: Path
    html: str
    issued: date
    identifier: str
    cii: str = ""  # an EUR invoice's CII: the PDF becomes Factur-X (PDF/A-3 with it embedded)
    author: str = ""


@contextmanager
def _fixed_clock(issued: date) -> Iterator[None]:
    epoch = int(datetime(issued.year, issued.month, issued.day, tzinfo=UTC).timestamp())
    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before


def render_pdf(html: str, issued: date, identifier: str, cii: str = "", author: str = "") -> bytes:
    """One HTML document as PDF bytes (reproducible, see the module docstring); with `cii`,
    a Factur-X PDF/A-3 carrying it (einvoice/facturx_pdf.py)."""
    from weasyprint import HTML  # imported late: it loads the system's Pango

    with _fixed_clock(issued):
        if not cii:
            return HTML(string=html).write_pdf(pdf_identifier=identifier.encode())
        pdf = HTML(string=html).write_pdf(pdf_identifier=identifier.encode(), pdf_variant="pdf/a-3b")
    from squak_pipelines.invoicing.einvoice.facturx_pdf import embed

    return embed(pdf, cii, issued, identifier, author)


def combine(paths: list[Path]) -> tuple[bytes, list[int]]:
    """Existing PDFs joined into one (a print batch), and the first page (1-based) of each."""
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    starts = []
    for path in paths:
        starts.append(len(writer.pages) + 1)
        writer.append(PdfReader(path))
    writer.add_metadata({"/Producer": "Squak Billing"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue(), starts


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a temporary beside it, then renamed over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pdf_complete(path: Path) -> bool:
    """Whether a PDF file is whole: a PDF header and the end-of-file marker in its tail (a
    render killed half-way, or a truncated copy, is rendered again)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(5)
            fh.seek(max(0, size - 1024))
            tail = fh.read()
    except OSError:
        return False
    return head == b"%PDF-" and b"%%EOF" in tail


def _write(job: PdfJob) -> str:
    write_atomically(job.path, render_pdf(job.html, job.issued, job.identifier, job.cii, job.author))
    return job.path.name


def write_pdfs(jobs: list[PdfJob], workers: int | None = None) -> int:
    """Write every job's PDF; with many jobs, in worker processes (squak_pipelines.workers)."""
    map_in_workers(_write, jobs, PARALLEL_FROM, workers)
    return len(jobs)


def pdfs_wanted() -> bool:
    """PDF invoices are on unless SQUAK_INVOICE_PDF is off (operators who send HTML only)."""
    return os.environ.get("SQUAK_INVOICE_PDF", "on").lower() not in ("off", "0", "false", "no")
