"""Ordinary bad files never stop mediation: each is recorded with its reason, the run goes
on with the other files, and one bad record never takes its file's good records with it."""

from __future__ import annotations

import gzip

import pytest

from squak_pipelines.mediation.raw_records import show
from tests.test_mediation import CANON_HEADER, Drop, canon
from tests.test_mediation import drop as drop

DAY = "2026-10-05"
GOOD = [canon(f"ok-{i}", f"+4420794001{i:02d}", f"{DAY}T{9 + i:02d}:00:00Z") for i in range(10)]


def _text(lines: list[str], end: str = "\n") -> str:
    return end.join([CANON_HEADER, *lines]) + end


def _conserved(drop: Drop) -> None:
    files = drop.df("select file_name, status, records_in, accepted, rejected, duplicates, quarantined, "
                    "detail from mediation.files")
    for row in files.to_dict("records"):
        out = row["accepted"] + row["rejected"] + row["duplicates"] + row["quarantined"]
        assert row["records_in"] == out, row


def _run(drop: Drop) -> None:
    drop.write(f"cdr_sqk-lon1_{DAY.replace('-', '')}.csv", GOOD)
    drop.run()
    _conserved(drop)
    accepted = drop.df("select count(*) as n from mediation.events "
                       "where source_file like '%cdr_sqk-lon1_20261005.csv'")["n"].iloc[0]
    assert accepted == len(GOOD), "the good file's records all went through"


def test_a_crlf_copy_and_a_regzipped_copy_are_duplicates_not_a_crash(drop: Drop) -> None:
    (drop.folder / "copy-crlf.csv").write_bytes(_text(GOOD, "\r\n").encode())
    (drop.folder / "copy.csv.gz").write_bytes(gzip.compress(_text(GOOD).encode(), mtime=1))
    _run(drop)
    dups = drop.df("select count(*) as n from mediation.duplicates")["n"].iloc[0]
    assert dups == 2 * len(GOOD)


@pytest.mark.parametrize("name,content", [
    ("header-only.csv", (CANON_HEADER + "\n").encode()),
    ("empty.csv", b""),
    ("truncated.csv.gz", gzip.compress(_text(GOOD).encode(), mtime=0)[:40]),
    ("bad-crc.csv.gz", gzip.compress(_text(GOOD).encode(), mtime=0)[:-8] + b"\0\0\0\0\0\0\0\0"),
    ("binary.csv", bytes(range(256)) * 10),
])
def test_an_unreadable_file_is_recorded_and_the_run_goes_on(drop: Drop, name: str, content: bytes) -> None:
    (drop.folder / name).write_bytes(content)
    _run(drop)
    status = drop.df(f"select status, detail from mediation.files where file_name like '%{name}'")
    assert len(status) == 1, f"{name} is recorded"


def test_one_bad_record_does_not_take_its_files_good_records(drop: Drop) -> None:
    others = [canon(f"q-{i}", f"+4420794002{i:02d}", f"{DAY}T{9 + i:02d}:30:00Z") for i in range(10)]
    lines = [*others[:5], '"broken,"sqk-lon1","voice', *others[5:]]
    (drop.folder / "quote.csv").write_text(_text(lines))
    huge = canon("huge-1", "+442079400188", f"{DAY}T20:00:00Z").replace('"ACC-1"', '"' + "x" * 200_000 + '"')
    nul = canon("nul-1", "+442079400188", f"{DAY}T20:01:00Z").replace("ACC-1", "AC\x00C-1")
    fine = canon("fine-1", "+442079400188", f"{DAY}T20:02:00Z")
    (drop.folder / "odd.csv").write_text(_text([huge, nul, fine]))
    _run(drop)
    q = drop.df("select accepted, rejected from mediation.files where file_name like '%quote.csv'")
    assert q["accepted"].iloc[0] >= 9 and q["rejected"].iloc[0] >= 1
    odd = drop.df("select accepted, rejected from mediation.files where file_name like '%odd.csv'")
    assert odd["accepted"].iloc[0] + odd["rejected"].iloc[0] == 3
    raw = drop.df("select raw_line from mediation.rejects union all select raw_line from mediation.events")
    assert not raw["raw_line"].str.contains("\x00").any(), "no NUL byte is stored"


def test_card_numbers_in_cdrs_are_redacted_before_they_are_stored(drop: Drop) -> None:
    pan = canon("pan-1", "+442079400177", f"{DAY}T21:00:00Z").replace('"ACC-1"', '"card 4111 1111 1111 1111"')
    bad = '"pan-2","sqk-lon1","voice","4111.1111.1111.1111"'
    (drop.folder / "pan.csv").write_text(_text([pan, bad]))
    _run(drop)
    for table in ("events", "rejects", "quarantine", "duplicates"):
        text = drop.df(f"select * from mediation.{table}").astype(str).to_csv()
        clean = text.replace("[REDACTED CARD NUMBER]", "")
        assert "4111" not in clean, f"a card number reached mediation.{table}"
    key = drop.df("select event_key from mediation.events where native_id like '%pan-1%'")
    key = key["event_key"].iloc[0]
    [record] = show(drop.warehouse, drop.settings.data_dir, drop.settings.cdr_drop_dir, key)
    assert "[REDACTED CARD NUMBER]" in record.raw_line and "4111" not in record.raw_line, \
        "the line read back from the archive is redacted too"


def test_a_file_name_that_looks_like_a_card_number_is_still_accounted(drop: Drop) -> None:
    """File names are identities (accounting joins on them), never screened text."""
    (drop.folder / "cdr_20261005090000.csv").write_text(_text(GOOD[:3]))
    drop.run()
    _conserved(drop)
    counted = drop.df("select count(*) as n from mediation.events where source_file like '%20261005090000%'")
    assert counted["n"].iloc[0] == 3


def test_sql_metacharacters_in_file_names_and_a_10_mb_line(drop: Drop) -> None:
    """File names reach SQL only as parameters; a 10 MB line is one record, kept."""
    mine = [canon(f"sql-{i}", f"+4420794003{i:02d}", f"{DAY}T{9 + i:02d}:40:00Z") for i in range(2)]
    (drop.folder / "x'; drop table mediation.events; --.csv").write_text(_text(mine))
    big = '"' + "y" * 10_000_000 + '"'
    ten_mb = canon("big-1", "+442079400166", f"{DAY}T22:00:00Z").replace('"ACC-1"', big)
    (drop.folder / "big.csv").write_text(_text([ten_mb]))
    _run(drop)
    names = set(drop.df("select file_name from mediation.files")["file_name"])
    assert any("drop table" in n for n in names) and any(n.endswith("big.csv") for n in names)
    mediated = drop.df("select count(*) as n from mediation.events where source_file like '%drop table%'")
    assert mediated["n"][0] == 2
