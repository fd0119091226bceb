"""Factur-X / ZUGFeRD: the invoice PDF as PDF/A-3 with its CII XML embedded (`factur-x.xml`,
relationship Data), made by the `factur-x` package. Reproducible: the package stamps the
current time into the PDF and XMP metadata, so its clock is set to the issue date while it
writes, as WeasyPrint's is (pdf.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime


@contextmanager
def _clock_at(issued: date) -> Iterator[None]:
    import facturx.facturx as module

    fixed = datetime(issued.year, issued.month, issued.day, tzinfo=UTC)

    class _Fixed(datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed if tz is None else fixed.astimezone(tz)

    before = module.datetime
    module.datetime = _Fixed
    try:
        yield
    finally:
        module.datetime = before


def embed(pdf: bytes, cii: str, issued: date, title: str, author: str) -> bytes:
    """The PDF/A-3 `pdf` with `cii` embedded as its Factur-X EN 16931 XML."""
    from facturx import generate_from_binary

    with _clock_at(issued):
        return generate_from_binary(
            pdf, cii.encode("utf-8"), flavor="factur-x", level="en16931", check_xsd=True,
            pdf_metadata={"author": author, "keywords": "Factur-X, invoice", "title": title,
                          "subject": title},
            lang="en", attachments=None,
        )
