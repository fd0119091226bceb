"""Acceptance: real ISO 20022 statements (`../shared/corpus/camt053`, open-source importers'
fixtures, never copied into the repo) through the real payments stage, against each file's
`expected.json`. Skips when the corpus is absent; fails under CI=true."""

from __future__ import annotations

import shutil
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from squak_pipelines.config import Settings
from squak_pipelines.payments.stage import run_payments
from squak_pipelines.warehouse import DuckDBWarehouse
from tests.corpus import expectation_ids, expectations

KIND = "camt053"
AS_OF = date(2026, 12, 5)


def _stage(tmp_path: Path) -> tuple[Settings, DuckDBWarehouse]:
    settings = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path / "squak")})
    settings.payments_drop_dir.mkdir(parents=True)
    return settings, DuckDBWarehouse(tmp_path / "w.duckdb")


def _rows(warehouse: DuckDBWarehouse, table: str) -> list[dict]:
    return warehouse.query_df(f"select * from {table}").to_dict("records")


def _by_status(payments: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in payments:
        out.setdefault(p["status"], []).append(p)
    return out


@pytest.mark.parametrize("name", expectation_ids(KIND))
def test_camt_corpus_file_through_the_payments_stage(name: str, tmp_path: Path) -> None:
    path, expected = dict(zip(expectation_ids(KIND), expectations(KIND), strict=True))[name]
    settings, warehouse = _stage(tmp_path)
    shutil.copy(path, settings.payments_drop_dir / path.name)
    report = run_payments(warehouse, settings, AS_OF)
    payments = _rows(warehouse, "payments.payments")
    status = _by_status(payments)
    rejects = _rows(warehouse, "payments.rejects")
    [file_row] = _rows(warehouse, "payments.files")
    assert file_row["records"] == len(payments) + len(rejects) + file_row["duplicates"], "nothing vanishes"
    want = expected["expected"]
    if "if_zip_unpacked_or_members_dropped_as_xml" in want:  # the ZIP is now read as banks send it
        want = want["if_zip_unpacked_or_members_dropped_as_xml"]
        assert len(payments) == want["records"] and file_row["duplicates"] == want["duplicates"] == 0
        booked = sorted(f"{Decimal(p['amount']):.2f} {p['currency']} booked {p['received_at']:%Y-%m-%d}"
                        for p in status["succeeded"])
        assert booked == sorted(want["payments_amounts"]), "March's credit is not a repeat of February's"
        assert {p["source_file"] for p in payments} == {
            f"{path.name}!{s['member']}" for s in expected["statements"]}
        ids = {f"{s['statement_id']}#2" for s in expected["statements"]}  # Id # LglSeqNb
        assert {p["statement_id"] for p in payments} == ids
    if "if_camt054_supported" in want:
        want = want["if_camt054_supported"]
        [paid] = status["succeeded"]
        assert (Decimal(paid["amount"]), paid["currency"]) == (Decimal(want["amount"]), want["currency"])
        assert paid["end_to_end_id"] == expected["entry"]["end_to_end_id"]
        assert paid["reference"] == expected["entry"]["acct_svcr_ref"]
        assert file_row["kind"].startswith("camt.054")
    assert len(status.get("succeeded", [])) == want.get("payments", 0)
    assert report.new_payments == want.get("payments", 0), "debits and returns are not counted as payments"
    assert len(rejects) == want.get("rejects", 0) == report.rejected
    if "not_a_payment" in want:
        assert len(status["not_a_payment"]) == want["not_a_payment"]
    if "reversals" in want:  # reversal entries; each returned TxDtls is a record of its own
        returned = status["returned"]
        entries = {p["location"].split("/NtryDtls")[0] + p["source_file"] for p in returned}
        assert len(entries) == want["reversals"]
        if "reversed_amount" in want:
            assert sum(Decimal(p["amount"]) for p in returned) == Decimal(want["reversed_amount"])
            assert {p["return_reason"] for p in returned} == {"AC06"}
            detail = next(e for e in expected["entries_detail"] if e.get("RvslInd"))
            assert sorted(p["end_to_end_id"] for p in returned) == sorted(
                t["end_to_end_id"] for t in detail["transactions"])
            mandates = sorted(t["mandate"] for t in detail["transactions"])
            assert sorted(p["mandate_id"] for p in returned) == mandates
    for entry in expected.get("entries_detail", []):
        if entry.get("status") == "succeeded":
            [paid] = [p for p in status["succeeded"] if p["location"] == entry["where"]]
            assert paid["payer"] == entry["payer"] and paid["payer_iban"] == entry["payer_iban"]
            assert paid["end_to_end_id"] == entry["end_to_end_id"]
            assert entry["additional_info"] in paid["remittance"]
        if "received_at" in entry:
            [row] = [p for p in payments if p["location"] == entry["where"]]
            assert row["received_at"] == datetime.fromisoformat(entry["received_at"]).astimezone(UTC)
        if entry.get("counterparty"):
            [row] = [p for p in payments if p["location"] == entry["where"]]
            assert row["payer"] == entry["counterparty"] and row["status"] == "not_a_payment"
    for i, want_paid in enumerate(expected.get("expected_payments", []), 1):
        [paid] = [p for p in status["succeeded"] if p["location"].endswith(f"TxDtls[{i}]")]
        assert Decimal(paid["amount"]) == Decimal(want_paid["amount"])
        assert paid["currency"] == want_paid["currency"]
        assert paid["payer"] == want_paid["payer"] and paid["payer_iban"] == want_paid["payer_iban"]
        assert paid["creditor_reference"] == want_paid["creditor_reference"]
        assert paid["creditor_reference_type"] == want_paid["creditor_reference_type"]
        assert paid["received_at"].date().isoformat() == want_paid["booked"]
    if expected.get("expected_payments"):
        assert sum(Decimal(p["amount"]) for p in status["succeeded"]) == Decimal(want["sum"])
        assert len({p["payment_id"] for p in status["succeeded"]}) == want["payments"]
    if "do not reconcile" in expected.get("note", ""):
        assert "balances do not add up" in (file_row["checks"] or "")
        assert "closing balance says 15121.12" in file_row["checks"]
    # Delivered again under another name: every record is a duplicate naming the first one.
    shutil.copy(path, settings.payments_drop_dir / f"resent-{path.name}")
    again = run_payments(warehouse, settings, AS_OF)
    assert again.new_payments == again.debits == again.reversals == 0
    assert again.duplicates == len(payments) and len(_rows(warehouse, "payments.payments")) == len(payments)
    firsts = {(d["first_file"], d["first_location"]) for d in _rows(warehouse, "payments.duplicates")}
    assert firsts == {(p["source_file"], p["location"]) for p in payments}


def test_zip_members_dropped_as_separate_statements_lose_nothing(tmp_path: Path) -> None:
    """The two daily statements of the ZIP share EndToEndId '115' on different credits: both
    are payments, in whichever order and shape they arrive."""
    [(path, expected)] = [(p, e) for p, e in expectations(KIND) if p.suffix == ".zip"]
    settings, warehouse = _stage(tmp_path)
    with zipfile.ZipFile(path) as archive:
        for member in reversed(archive.namelist()):  # March first, then February
            (settings.payments_drop_dir / member).write_bytes(archive.read(member))
    report = run_payments(warehouse, settings, AS_OF)
    want = expected["expected"]["if_zip_unpacked_or_members_dropped_as_xml"]
    assert (report.new_payments, report.debits, report.reversals, report.duplicates) == (
        want["payments"], want["not_a_payment"], want["reversals"], 0)
    (settings.payments_drop_dir / "statements.zip").write_bytes(path.read_bytes())
    again = run_payments(warehouse, settings, AS_OF)
    assert (again.new_payments, again.duplicates) == (0, want["records"]), "the ZIP repeats the members"
