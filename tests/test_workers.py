"""Worker processes render exactly what one process renders, in the same order."""

from __future__ import annotations

from pathlib import Path

import pytest

from squak_pipelines.workers import map_in_workers, shared_workers, worker_count
from tests.test_invoice_documents import TAXES, _invoice, reference  # noqa: F401  (a fixture)


def _square(n: int) -> int:
    return n * n


def test_map_in_workers_keeps_the_order_in_and_out_of_process(monkeypatch) -> None:
    items = list(range(50))
    assert map_in_workers(_square, items, parallel_from=10, workers=2) == [n * n for n in items]
    assert map_in_workers(_square, items[:3], parallel_from=10, workers=2) == [0, 1, 4]
    monkeypatch.setenv("SQUAK_WORKERS", "3")
    assert worker_count() == 3
    monkeypatch.setenv("SQUAK_WORKERS", "many")
    with pytest.raises(ValueError, match="SQUAK_WORKERS='many'"):
        worker_count()


def _pid(_: int) -> int:
    import os
    import time

    time.sleep(0.01)
    return os.getpid()


def test_shared_workers_are_spawned_once_for_many_maps() -> None:
    """A stage that renders in chunks spawns its workers once, not once per chunk."""
    import os

    with shared_workers(parallel_from=10, workers=2) as workers:
        assert set(workers.map(_pid, range(3))) == {os.getpid()}, "small maps stay in this process"
        first = set(workers.map(_pid, range(40)))
        second = set(workers.map(_pid, range(40)))
    assert os.getpid() not in first and len(first | second) <= 2, "the same two processes"


def test_invoices_rendered_in_workers_are_byte_identical(reference: Path, tmp_path: Path,  # noqa: F811
                                                         monkeypatch) -> None:
    import squak_pipelines.invoicing.batch as batch

    taxes = TAXES
    currencies = ["EUR", "USD", "EUR"]
    invoices = [_invoice(currency, f"SQK-2026-{n:06d}") for n, currency in enumerate(currencies, 1)]
    here = batch.render_documents(invoices, reference, tmp_path, taxes=taxes, workers=1)
    monkeypatch.setattr(batch, "PARALLEL_FROM", 1)
    there = batch.render_documents(invoices, reference, tmp_path, taxes=taxes, workers=2)
    assert [r.html for r in here] == [r.html for r in there]
    assert [r.einvoice for r in here] == [r.einvoice for r in there]
    assert "SQK-2026-000002" in there[1].html and there[0].einvoice.cii and not there[1].einvoice.cii
