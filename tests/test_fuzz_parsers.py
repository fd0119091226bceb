"""Hostile input, property-based: every parser, fed mutated and random files, never crashes,
never hangs (each example is bounded), and keeps every record as accepted or as a reject
with a reason. CI runs a fixed number of examples (SQUAK_FUZZ_EXAMPLES, default 25);
`make fuzz` runs many more."""

from __future__ import annotations

import gzip
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squak_pipelines.card_numbers import has_card_number
from squak_pipelines.mediation.parsers import FileFormatError, parse_file
from squak_pipelines.orders.intake import ACCOUNT_FIELDS, LINE_FIELDS, read_drops
from squak_pipelines.payments.intake import read_payment_file
from squak_pipelines.rating.plans import PlanFileError, load_plan
from squak_pipelines.reference.files import ReferenceFileError, load_products, load_switches, load_tax_rates

EXAMPLES = int(os.environ.get("SQUAK_FUZZ_EXAMPLES", "25"))
EACH_CASE_SECONDS = 30  # a parser that takes longer on one small file is hanging
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SQUAK_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NASTY = ["\x00", "\ufeff", '"', '""', ",", "\n", "\r\n", "\r", "\t", "=cmd|'/c calc'!A1", "+SUM(1)", "-1",
         "@x",
         "<script>alert(1)</script>", "'; drop table x; --", "../../etc/passwd", "4111 1111 1111 1111", "\\",
         "é", "\xff", "💥", "9" * 40, "-" * 5, " ", "", "x" * 5000]

ASTERISK = ('"ACC-1","2125550100","18005550199","from-internal","""Ann"" <2125550100>","SIP/100-0001",'
            '"SIP/trunk-0002","Dial","SIP/trunk/18005550199","2026-10-05 09:00:00","2026-10-05 09:00:05",'
            '"2026-10-05 09:01:05",65,60,"ANSWERED","DOCUMENTATION","1791000000.1"')
FREESWITCH = ('"Ann","2125550100","18005550199","default","2026-10-05 09:00:00","2026-10-05 09:00:05",'
              '"2026-10-05 09:01:05","65","60","NORMAL_CLEARING","a3b2dd65-670c-c441-3af8-8b1528838781","",'
              '"ACC-1"')
CANONICAL_HEADER = ("event_id,source,service,calling_number,called_number,start_time,answer_time,end_time,"
                    "duration,billsec,disposition,account_code")
CANONICAL = ('"e-1","sqk-lon1","voice","+442079400100","+442079400199","2026-10-05T09:00:00Z",'
             '"2026-10-05T09:00:05Z","2026-10-05T09:01:05Z",65,60,"ANSWERED","ACC-1"')


@contextmanager
def bounded(seconds: int = EACH_CASE_SECONDS) -> Iterator[None]:
    """Fail (not wait forever) when one example takes longer than `seconds`."""
    def hang(*_: object) -> None:
        raise AssertionError(f"the parser hung on this input (> {seconds} s)")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def mutated(draw: st.DrawFn, good: str, header: str | None = None) -> bytes:
    """A file of good records with some lines mutated: nasty strings spliced in, fields cut,
    lines doubled or dropped; sometimes raw bytes, a wrong encoding or a broken gzip."""
    lines = [good] * draw(st.integers(1, 8))
    for i in range(len(lines)):
        if draw(st.booleans()):
            at = draw(st.integers(0, len(lines[i])))
            piece = draw(st.sampled_from(NASTY) | st.text(max_size=20))
            cut = draw(st.integers(0, 10))
            lines[i] = lines[i][:at] + piece + lines[i][at + cut:]
    text = "\n".join(([header] if header and draw(st.integers(0, 9)) else []) + lines)
    ending = draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))
    data = (text + ending).encode(draw(st.sampled_from(["utf-8", "latin-1", "utf-16"])), errors="replace")
    wrapper = draw(st.sampled_from(["plain", "plain", "plain", "gzip", "truncated-gzip", "binary"]))
    if wrapper == "gzip":
        return gzip.compress(data, mtime=0)
    if wrapper == "truncated-gzip":
        return gzip.compress(data, mtime=0)[: draw(st.integers(2, 30))]
    if wrapper == "binary":
        return draw(st.binary(max_size=2000))
    return data


def _file(name: str, data: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="squak-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(st.sampled_from([("asterisk", ASTERISK, None), ("freeswitch", FREESWITCH, None),
                        ("canonical", CANONICAL, CANONICAL_HEADER)]).flatmap(
    lambda f: st.tuples(st.just(f[0]), mutated(f[1], f[2]))))
def test_cdr_parsers_keep_every_record_or_refuse_the_file(case: tuple[str, bytes]) -> None:
    fmt, data = case
    path = _file(f"cdr.{fmt}.csv", data)
    with bounded():
        try:
            parsed = parse_file(path, fmt)
        except (FileFormatError, OSError, EOFError):
            return  # recorded by mediation as an unreadable file, with the reason
    assert parsed.table.num_rows + len(parsed.bad_lines) == parsed.records_in, "every record is kept"
    assert all(reason for _, reason, _ in parsed.bad_lines)


@FUZZ
@given(st.sampled_from(["accounts.csv", "orders.csv", "orders.jsonl"]).flatmap(
    lambda name: st.tuples(st.just(name), mutated(
        ",".join(["ACC-1", "Ann", "smb", "a@b.c", "1 Main St", "NYC", "NY", "10001", "US", "USD", "1", "card",
                  "tok_a", "visa", "4242", "12/2030", "true", "email", "", "", "", "", "", "", "", ""])
        if name.startswith("accounts") else
        '{"order_id": "O-1", "lines": [{"line_no": "1", "kind": "new", "product_id": "P"}]}'
        if name.endswith("jsonl") else
        "O-1,1,ACC-1,new,PHONE,RES,1,212,,,,2026-10-01T00:00:00Z,,",
        ",".join(ACCOUNT_FIELDS) if name.startswith("accounts") else
        None if name.endswith("jsonl") else ",".join(LINE_FIELDS)))))
def test_order_intake_keeps_every_record_with_a_reason(case: tuple[str, bytes]) -> None:
    name, data = case
    path = _file(name, data)
    with bounded():
        batch = read_drops([(path, name)])
    assert (batch.rejections["reason"].astype(str) != "").all()
    stored = batch.rejections.astype(str).to_csv() + batch.accounts.astype(str).to_csv()
    assert not has_card_number(stored), "card numbers are redacted before anything is kept"


SETTLEMENT_HEADER = "processor_reference,token,amount,currency,status,settled_at,description"
SETTLEMENT = "ch_1,tok_a,25.73,USD,succeeded,2026-11-20T10:00:00Z,SQK-2026-000004"
CAMT = ('<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'
        '<BkToCstmrStmt>'
        '<Stmt><Id>S1</Id><Ntry><Amt Ccy="EUR">12.50</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-11-02'
        '</Dt></BookgDt><NtryDtls><TxDtls><RmtInf><Ustrd>SQK-2026-000001</Ustrd></RmtInf></TxDtls></NtryDtls>'
        '</Ntry></Stmt></BkToCstmrStmt></Document>')


@FUZZ
@given(st.sampled_from([("settlement-x.csv", SETTLEMENT, SETTLEMENT_HEADER), ("camt053-x.xml", CAMT, None)])
       .flatmap(lambda f: st.tuples(st.just(f[0]), mutated(f[1], f[2]))))
def test_payment_files_never_crash_and_keep_every_record(case: tuple[str, bytes]) -> None:
    name, data = case
    path = _file(name, data)
    with bounded():
        try:
            read = read_payment_file(path, name)
        except (OSError, EOFError, ValueError):
            return  # the stage records the whole file as unreadable_file, with the reason
    assert all(r["reason"] for r in read.rejects)


def test_xml_entity_expansion_and_external_entities_are_refused(tmp_path: Path) -> None:
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                        for i in range(1, 10))
              + ']><Document><BkToCstmrStmt>&lol9;</BkToCstmrStmt></Document>')
    external = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                '<Document><BkToCstmrStmt>&x;</BkToCstmrStmt></Document>')
    for i, text in enumerate((laughs, external)):
        path = tmp_path / f"camt053-{i}.xml"
        path.write_text(text)
        with bounded(10):
            read = read_payment_file(path)
        assert not read.payments and read.rejects, "refused, with a reason"
        assert "root:" not in str(read.rejects)


@FUZZ
@given(st.text(max_size=400), st.sampled_from(["plan", "deck", "products", "switches", "tax_rates"]))
def test_reference_files_fail_only_with_file_line_and_field(text: str, kind: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="squak-fuzz-ref-"))
    (folder / "plans").mkdir()
    (folder / "decks").mkdir()
    deck = folder / "decks" / "d.csv"
    plan = folder / "plans" / "p.yaml"
    deck.write_text("prefix,destination,rate\n1,US,0.01\n")
    plan.write_text("plan_id: P\ncurrency: USD\ntimezone: UTC\ndecks: {voice: ../decks/d.csv}\n")
    if kind == "plan":
        plan.write_text(plan.read_text() + text)
    elif kind == "deck":
        deck.write_text("prefix,destination,rate\n" + text)
    with bounded():
        try:
            if kind in ("plan", "deck"):
                load_plan(plan)
            else:
                path = folder / f"{kind}.csv"
                path.write_text(text)
                loaders = {"products": load_products, "switches": load_switches, "tax_rates": load_tax_rates}
                loaders[kind](path)
        except (PlanFileError, ReferenceFileError) as exc:
            assert str(exc), "the error names the file, line and field"
