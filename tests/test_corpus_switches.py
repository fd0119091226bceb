"""Acceptance: every real Asterisk and FreeSWITCH file of `../shared/corpus/` through the real
mediation stage, checked against its `*.expected.json` (worked out by hand from the file).

One deliberate difference from those files: a feature code (`*1001`) as the destination is
kept as an `internal` call, never rejected (issue 16's rule, as for 4-digit extensions); the
expected files, written before that rule, list it as a `non_numeric_number` reject. Here
such a line must be accepted with call_type `internal` and the counts move by one.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from squak_pipelines.warehouse import DuckDBWarehouse
from tests.corpus import SwitchDrop, expectation_ids, expectations

DAY = date(2026, 12, 4)  # the drop day the copied file is given (its mtime): inside the partitions


def _cases(kind: str) -> list[str]:
    return expectation_ids(kind)


def _load(kind: str, name: str) -> tuple[Path, dict]:
    for path, expected in expectations(kind):
        if path.name.removesuffix(".csv") == name.removesuffix(".csv") or expected["file"].startswith(name):
            return path, expected
    pytest.fail(f"{name}: no expected.json")


def _mediate(tmp_path: Path, demo, path: Path, switch: dict) -> tuple[DuckDBWarehouse, dict[int, dict]]:
    """The file dropped for a one-switch operator (the demo's reference data otherwise), in
    the test's temporary data directory only; line -> outcome."""
    drop = SwitchDrop(tmp_path, demo[0], switch)
    drop.put(path.name, path.read_bytes(), DAY)
    drop.run()
    return drop.warehouse, {line: o for (_, line), o in drop.outcomes().items()}


def _feature_code_lines(path: Path, expected: dict) -> set[int]:
    """Expected rejects that are feature codes: kept as internal calls here (module doc)."""
    rejects = expected.get("rejects") or expected.get("expected", {}).get("rejects") or {}
    return {int(line) for line, r in rejects.items() if str(r.get("value", "")).startswith("*")}


def _check_conservation(warehouse: DuckDBWarehouse) -> None:
    files = warehouse.query_df("select * from mediation.files")
    assert len(files) == 1
    f = files.iloc[0]
    assert f["records_in"] == f["accepted"] + f["rejected"] + f["duplicates"] + f["quarantined"] + f["b_legs"]
    assert f["format"] in {"asterisk", "freeswitch"} and f["status"] == "processed"


def _check_normalized(outcomes: dict[int, dict], expected: dict) -> None:
    for line, values in expected.get("normalized_by_line", {}).items():
        got = outcomes[int(line)]
        assert got["outcome"] in {"accepted", "b_leg"}, (line, got["outcome"])
        for key, want in values.items():
            if key == "note":
                continue
            if key in {"calling", "called", "calling_e164_under_KR_rules"}:
                have = got["calling_number" if key.startswith("calling") else "called_number"]
            elif key.endswith("_utc"):
                stamp = got[key]
                have = None if stamp is None or str(stamp) == "NaT" else stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                have = got[key]
            if isinstance(want, int) and not isinstance(want, bool):
                have = int(have)
            assert have == want, f"line {line} {key}: {have!r} != {want!r}"


@pytest.mark.parametrize("name", _cases("asterisk"))
def test_real_asterisk_file(name: str, tmp_path: Path, demo) -> None:
    path, expected = _load("asterisk", name)
    warehouse, outcomes = _mediate(tmp_path, demo, path, expected["switch"])
    _check_conservation(warehouse)
    assert len(outcomes) == expected["lines"], "every line is accounted for"
    counts = {
        k: sum(o["outcome"] == k for o in outcomes.values()) for k in ("accepted", "duplicate", "rejected")
    }
    assert counts == {
        "accepted": expected["accepted"],
        "duplicate": expected["duplicates"],
        "rejected": expected["rejected"],
    }
    for line in expected.get("must_accept_lines", []):
        assert outcomes[line]["outcome"] == "accepted", f"line {line} must be accepted"
    allowed = set(expected.get("duplicate_lines", []))
    duplicates = {line for line, o in outcomes.items() if o["outcome"] == "duplicate"}
    assert duplicates <= allowed, f"lines {sorted(duplicates - allowed)} may not be duplicates"
    for line, spec in (expected.get("rejects") or {}).items():
        got = outcomes[int(line)]
        assert got["outcome"] == "rejected"
        reasons = spec.get("reason_any_of") or [spec["reason"]]
        assert got["reason"] in reasons, (line, got["reason"])
        if "field" in spec:
            assert got["field"] == spec["field"], (line, got["field"])
    if "answered_billable_calls" in expected:
        answered = [o for o in outcomes.values() if o["outcome"] == "accepted" and o["answered"]]
        assert len(answered) == expected["answered_billable_calls"]
        assert sum(int(o["billsec"]) for o in answered) == expected["answered_billsec_total"]
    _check_normalized(outcomes, expected)


@pytest.mark.parametrize("name", _cases("freeswitch"))
def test_real_freeswitch_file(name: str, tmp_path: Path, demo) -> None:
    path, expected = _load("freeswitch", name)
    warehouse, outcomes = _mediate(tmp_path, demo, path, expected["switch"])
    _check_conservation(warehouse)
    internal = _feature_code_lines(path, expected)
    for line in internal:
        assert outcomes[line]["outcome"] == "accepted" and outcomes[line]["call_type"] == "internal"
    records = expected.get("records", expected.get("lines"))
    assert len(outcomes) == records, "every record is accounted for (a blank line is none)"
    summary = expected.get("expected", expected)
    b_legs = {line for line, o in outcomes.items() if o["outcome"] == "b_leg"}
    assert b_legs == set(summary.get("b_legs_not_billed_separately", [])), "B-legs are legs, not calls"
    calls = {line for line, o in outcomes.items() if o["outcome"] == "accepted"}
    billable = summary.get("billable_records", summary.get("accepted"))
    assert len(calls) == billable + len(internal)
    rejected = {line for line, o in outcomes.items() if o["outcome"] == "rejected"}
    assert len(rejected) == summary.get("rejected", 0) - len(internal)
    for a_leg in ("legs" in expected and [expected["legs"]]) or []:
        pairs = a_leg.values() if "a_leg_line" not in a_leg else [a_leg]
        for pair in pairs:
            b = outcomes[pair["b_leg_line"]]
            assert b["a_leg_id"] == outcomes[pair["a_leg_line"]]["native_id"]
    _check_normalized(outcomes, expected)
    for o in outcomes.values():
        if o["outcome"] in {"accepted", "b_leg"} and o["called_number"].isdigit():
            assert o["call_type"] == "internal", "extensions are internal calls"
