"""The demo generator: deterministic, real switch formats, and every fault it promises."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

import yaml

from squak_pipelines.config import Settings
from squak_pipelines.demo.generate import FraudSize, generate
from squak_pipelines.demo.switch_formats import (
    ASTERISK_COLUMNS,
    CANONICAL_COLUMNS,
    FREESWITCH_COLUMNS,
)
from tests.conftest import SMALL


def _lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8").splitlines()


def _fields(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)))


def _all_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_same_seed_same_bytes(demo, tmp_path: Path) -> None:
    settings, _ = demo
    again = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path / "again")})
    generate(again, SMALL)
    assert _all_hashes(settings.drop_dir) == _all_hashes(again.drop_dir)
    assert _all_hashes(settings.reference_dir) == _all_hashes(again.reference_dir)


def test_files_per_switch_per_day_in_three_formats(demo) -> None:
    _, manifest = demo
    files = manifest["cdr"]["files"]
    assert {f["format"] for f in files} == {"asterisk", "freeswitch", "canonical"}
    days = {f["local_day"] for f in files}
    assert len(days) == 31
    assert len(files) == 31 * 4
    assert any(f["file"].endswith(".gz") for f in files)
    total = sum(f["records"] for f in files)
    assert 0.8 * SMALL.cdrs < total < 1.25 * SMALL.cdrs


def _good_lines(settings: Settings, entry: dict) -> list[list[str]]:
    bad = {n for lines in entry["malformed"].values() for n in lines}
    lines = _lines(settings.cdr_drop_dir / entry["file"])
    return [_fields(line) for n, line in enumerate(lines, 1) if n not in bad]


def test_asterisk_master_csv_shape(demo) -> None:
    settings, manifest = demo
    entry = next(f for f in manifest["cdr"]["files"] if f["format"] == "asterisk")
    raw = _lines(settings.cdr_drop_dir / entry["file"])
    rows = _good_lines(settings, entry)
    assert all(len(r) == len(ASTERISK_COLUMNS) for r in rows)
    # Strings quoted, duration/billsec/sequence bare, clid with escaped quotes.
    sample = next(line for line in raw if '"ANSWERED"' in line)
    assert sample.startswith('"') and ',"""' in sample
    assert any(r[14] != "ANSWERED" and r[10] == "" for r in rows), "unanswered calls have no answer time"
    assert all(r[12].lstrip("-").isdigit() and r[13].isdigit() for r in rows)
    assert all(int(r[13]) <= int(r[12]) for r in rows)


def test_freeswitch_default_template_shape(demo) -> None:
    settings, manifest = demo
    entry = next(f for f in manifest["cdr"]["files"] if f["format"] == "freeswitch")
    assert entry["file"].endswith(".gz")
    raw = _lines(settings.cdr_drop_dir / entry["file"])
    rows = _good_lines(settings, entry)
    assert all(len(r) == len(FREESWITCH_COLUMNS) for r in rows)
    assert all(line.startswith('"') and line.endswith('"') for line in raw)
    assert {r[9] for r in rows} >= {"NORMAL_CLEARING", "NO_ANSWER"}


def test_canonical_csv_shape(demo) -> None:
    settings, manifest = demo
    entry = next(f for f in manifest["cdr"]["files"] if f["file"].startswith("sqk-lon1"))
    raw = _lines(settings.cdr_drop_dir / entry["file"])
    assert raw[0].split(",") == list(CANONICAL_COLUMNS)
    rows = [r for r in _good_lines(settings, entry)[1:]]
    assert all(r[3].startswith("+") and r[5].endswith("Z") for r in rows)


def test_malformed_lines_are_where_the_manifest_says(demo) -> None:
    settings, manifest = demo
    seen = set()
    width = {"asterisk": len(ASTERISK_COLUMNS), "freeswitch": len(FREESWITCH_COLUMNS),
             "canonical": len(CANONICAL_COLUMNS)}
    for entry in manifest["cdr"]["files"]:
        lines = _lines(settings.cdr_drop_dir / entry["file"])
        for kind, numbers in entry["malformed"].items():
            for n in numbers:
                fields = _fields(lines[n - 1])
                seen.add(kind)
                if kind == "wrong_column_count":
                    assert len(fields) != width[entry["format"]]
                elif kind == "non_numeric_number":
                    assert "CALL-ME-NOW" in fields
                elif kind == "negative_duration":
                    assert "-42" in fields
                elif kind == "unparseable_time":
                    assert "2026-13-45 25:61:00" in fields
    assert seen == {"wrong_column_count", "unparseable_time", "negative_duration",
                    "end_before_start", "non_numeric_number"}


def test_duplicates_resend_late_unknown_and_fraud(demo) -> None:
    settings, manifest = demo
    files = manifest["cdr"]["files"]
    assert sum(f["duplicates_within"] for f in files) > 0
    assert sum(f["duplicates_across"] for f in files) > 0
    resent = manifest["cdr"]["resent_file"]
    copy = settings.cdr_drop_dir / resent["copy"]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == resent["sha256"]
    first_day = [f for f in files if f["local_day"].endswith("-01") and f["late_previous_month"]]
    assert first_day, "late records from the previous month are in the first day's files"
    lines = _lines(settings.cdr_drop_dir / first_day[0]["file"])
    assert any("2026-09-30" in line for line in lines)
    assert sum(f["unknown_caller"] for f in files) > 0
    fraud = manifest["cdr"]["fraud"]
    size = FraudSize.of(SMALL)  # planted fraud scales with the demo's volume
    assert fraud["fraud_burst"]["calls"] == size.burst_calls
    assert fraud["fraud_irsf"]["calls"] == size.irsf_calls
    irsf_file = next(f for f in files if f["fraud"].get("fraud_irsf"))
    assert irsf_file["fraud"]["fraud_irsf"] == size.irsf_calls


def test_reference_data_is_decimal_and_complete(demo) -> None:
    settings, _ = demo
    ref = settings.reference_dir
    plans = {p.stem: yaml.safe_load(p.read_text()) for p in (ref / "plans").glob("*.yaml")}
    expected = {"RES-US-BASIC", "RES-US-PLUS", "BIZ-US-UCAAS", "BIZ-UK", "BIZ-EU", "RES-MX", "FAX-US"}
    assert expected <= set(plans)
    for plan in plans.values():
        assert plan["currency"] and plan["timezone"] and plan["decks"]["voice"]
        for fee in plan["fees"]["recurring"] + plan["fees"]["one_time"]:
            assert isinstance(fee["amount"], str), "money in YAML is a decimal string"
    with (ref / "decks" / "usd_voice.csv").open() as fh:
        deck = list(csv.DictReader(fh))
    assert all(r["prefix"].isdigit() for r in deck)
    assert {r["time_band"] for r in deck} >= {"", "peak"}
    assert len({r["effective_from"] for r in deck}) == 2, "a mid-month price change"
    assert any(r["destination"] == "Satellite - Iridium" for r in deck)
    inventory = list(csv.DictReader((ref / "number_inventory.csv").open()))
    assert all(r["number"].startswith("+") for r in inventory)


def test_orders_carry_the_faults_the_order_stage_must_reject(demo) -> None:
    settings, manifest = demo
    reasons = {e["reason"] for e in manifest["orders"]["expected_rejections"]}
    assert reasons >= {"unknown_product", "unknown_plan", "quantity_out_of_range",
                       "feature_not_offered", "card_number_in_input", "disconnect_not_active",
                       "missing_payment_method", "expired_card", "invalid_country",
                       "duplicate_order_id", "area_exhausted", "activation_failed"}
    orders = [json.loads(line) for line in
              (settings.orders_drop_dir / "orders-2026-10.jsonl").read_text().splitlines()]
    kinds = {line["kind"] for o in orders for line in o["lines"]}
    assert kinds >= {"new", "disconnect", "change_plan"}
    ids = [o["order_id"] for o in orders]
    assert len(ids) != len(set(ids)), "a duplicate order id is delivered"


def test_generate_refuses_to_wipe_foreign_data(tmp_path: Path) -> None:
    settings = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path)})
    (settings.reference_dir).mkdir(parents=True)
    (settings.reference_dir / "my_deck.csv").write_text("prefix\n1\n")
    try:
        generate(settings, SMALL)
    except FileExistsError as exc:
        assert "not made by `squak generate`" in str(exc)
    else:
        raise AssertionError("generate overwrote a folder it did not create")
    assert (settings.reference_dir / "my_deck.csv").exists()
