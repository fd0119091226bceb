"""`squak explain`: every amount traced back. An invoice line lists the events it sums and they
add up to it; an event shows the deck row, band, increment, allowance and rounding that priced
it and the invoice line that billed it."""

from __future__ import annotations

import csv
import io
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from decimal import Decimal
from pathlib import Path

import pytest

from squak_pipelines import cli
from squak_pipelines.invoicing.explain import (
    describe_event,
    describe_line,
    explain_event,
    explain_line,
)
from squak_pipelines.money import round_to_currency
from squak_pipelines.rating.plans import load_plans


def _banded(settings) -> list[str]:
    return sorted(p.plan_id for p in load_plans(settings.reference_dir / "plans").values() if p.show_bands)


def test_every_usage_line_lists_the_events_that_add_up_to_it(billed_demo) -> None:
    warehouse, settings = billed_demo
    banded = _banded(settings)
    lines = warehouse.query_arrow(
        "select i.number, l.line_no, l.kind, l.amount from invoicing.invoice_lines l "
        "join invoicing.invoices i on i.invoice_key = l.invoice_key "
        "where l.kind in ('usage', 'late_usage', 'discount', 'adjustment') order by 1, 2").to_pylist()
    assert Counter(r["kind"] for r in lines)["usage"] > 20
    on_lines: Counter[str] = Counter()
    for row in lines:
        found = explain_line(warehouse, row["number"], row["line_no"], banded)
        assert found.adds_up, describe_line(found)
        assert found.amount == row["amount"]
        if row["kind"] in ("usage", "late_usage"):
            assert found.events.num_rows > 0
            keys = found.events["event_key"].to_pylist()
            on_lines.update((row["number"], k) for k in keys)
            exact = sum((Decimal(c) for c in found.events["charge"].to_pylist()), Decimal(0))
            assert round_to_currency(exact, found.currency) == row["amount"]
    billed = warehouse.query_arrow(
        "select invoice_number, event_key from invoicing.billed_events").to_pylist()
    assert sorted(on_lines) == sorted((b["invoice_number"], b["event_key"]) for b in billed), \
        "each billed event is on exactly one usage line of its invoice"
    assert set(on_lines.values()) == {1}


def test_a_line_not_priced_from_events_says_what_it_is(billed_demo) -> None:
    warehouse, settings = billed_demo
    row = warehouse.query_arrow(
        "select i.number, l.line_no, l.amount from invoicing.invoice_lines l "
        "join invoicing.invoices i on i.invoice_key = l.invoice_key where l.kind = 'recurring' "
        "order by 1, 2 limit 1").to_pylist()[0]
    found = explain_line(warehouse, row["number"], row["line_no"], _banded(settings))
    assert found.basis == "" and found.adds_up and found.amount == row["amount"]
    assert "not priced from events" in describe_line(found)


def test_an_event_shows_what_priced_it_and_the_line_that_billed_it(billed_demo) -> None:
    warehouse, settings = billed_demo
    banded = _banded(settings)
    row = warehouse.query_arrow(
        "select b.invoice_number, r.event_key, r.deck_file, r.deck_line, r.rate, r.final_charge "
        "from invoicing.billed_events b join rating.rated_events r on r.event_key = b.event_key "
        "where r.charge > 0 order by r.event_key limit 1").to_pylist()[0]
    found = explain_event(warehouse, row["event_key"], settings.reference_dir, banded)
    assert found.record and found.record["source_file"] and found.record["source_line"]
    assert found.rated["deck_file"] == row["deck_file"] and found.rated["deck_line"] == row["deck_line"]
    assert found.deck_row and found.deck_row["rate"] == row["rate"], "the deck row that priced it"
    assert found.plan and found.plan["rounding"] and found.plan["rating_decimals"] >= 0
    assert found.invoice["number"] == row["invoice_number"]
    line = explain_line(warehouse, row["invoice_number"], found.invoice["line"]["line_no"], banded)
    assert row["event_key"] in line.events["event_key"].to_pylist()
    text = describe_event(found)
    assert f"{row['deck_file']} line {row['deck_line']}" in text and row["invoice_number"] in text


def test_an_event_in_suspense_says_why(billed_demo) -> None:
    warehouse, settings = billed_demo
    key = warehouse.scalar("select min(event_key) from rating.suspense")
    assert key is not None
    found = explain_event(warehouse, key, settings.reference_dir, [])
    assert found.suspense["reason"] and found.rated is None
    assert "not priced (suspense)" in describe_event(found)


def _cli(settings, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["explain", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("billed_demo", ["duckdb"], indirect=True)
def test_the_command_line_explains_and_refuses_in_one_line(billed_demo, monkeypatch, tmp_path: Path) -> None:
    warehouse, settings = billed_demo
    monkeypatch.setenv("SQUAK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SQUAK_WAREHOUSE_URL", f"duckdb:///{warehouse.path}")
    row = warehouse.query_arrow(
        "select i.number, i.currency, l.line_no, l.amount from invoicing.invoice_lines l "
        "join invoicing.invoices i on i.invoice_key = l.invoice_key where l.kind = 'usage' "
        "order by l.calls desc limit 1").to_pylist()[0]
    out_csv = tmp_path / "line.csv"
    code, out, _ = _cli(settings, "--invoice", row["number"], "--line", str(row["line_no"]),
                        "--out", str(out_csv), "--limit", "3")
    assert code == 0 and "= the line" in out
    with out_csv.open(encoding="utf-8") as handle:
        charges = [Decimal(r["charge"]) for r in csv.DictReader(handle)]
    assert round_to_currency(sum(charges, Decimal(0)), row["currency"]) == row["amount"]
    for args, message in ((("--invoice", "SQK-1999-000001", "--line", "1"), "is not a final invoice"),
                          (("--invoice", row["number"], "--line", "999"), "has no line 999"),
                          (("--event", "no-such-key"), "is not in the warehouse"),
                          (("--invoice", row["number"]), "give --invoice NUMBER --line N")):
        code, out, err = _cli(settings, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err

