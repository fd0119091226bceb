"""Every layout and edge a real switch writes, built from real corpus lines (copied here as
short test strings, one line each): Asterisk 16-21 columns per line, record identity,
FreeSWITCH's default template and B-legs across files, DST fall-back, rotation names, history
before the first CDR day, PBX extensions and feature codes, quoted canonical headers, and one
answered rule for mediation and quotes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from squak_pipelines.mediation.numbering_metadata import classify
from squak_pipelines.mediation.parsers import ASTERISK_WIDTHS
from squak_pipelines.mediation.stage import file_day, pending_days
from tests.corpus import SwitchDrop

DAY = date(2026, 12, 4)
NYC = {"format": "asterisk", "timezone": "America/New_York", "country": "US"}
SEOUL = {
    "format": "freeswitch",
    "timezone": "Asia/Seoul",
    "country": "KR",
    "dialing_rules_added": "KR,82,0,001,112;119",
}

# fafeitsch_smallcdr.csv line 2: the 16 standard fields, then uniqueid and userfield.
BASE16 = (
    '"","917-375-0980","334-442-8436","production","""Leanna Cuphus"" <609-326-2780>",'
    '"NOT_AVAILABLE","NOT_AVAILABLE","Dial","NOT_AVAILABLE","2017-06-27 10:29:03",'
    '"2017-06-27 10:29:14","2017-06-27 10:35:45",402,390,"ANSWERED","DOCUMENTATION"'
)
UID = '"1498559343.3"'


def _line(base: str = BASE16, *tail: str) -> str:
    return ",".join([base, *tail])


def _drop(tmp_path: Path, demo, switch=NYC) -> SwitchDrop:
    return SwitchDrop(tmp_path, demo[0], switch)


def test_every_asterisk_width_in_one_file_per_line(tmp_path: Path, demo) -> None:
    """cdr.conf's three flags give 16-21 columns; a file may change width mid-way (cdr.conf
    edited, files joined). Each line is read with its own width; a cut line alone is rejected."""
    assert sorted(ASTERISK_WIDTHS) == [16, 17, 18, 19, 20, 21]

    def ctx(n: int) -> str:  # another dialplan context: another record
        return BASE16.replace('"production"', f'"ctx{n}"')

    lines = [
        _line(ctx(1)),  # 16
        _line(ctx(2), UID),  # 17 uniqueid
        _line(ctx(3), '"vip-customer"'),  # 17 userfield
        _line(ctx(4), UID, '""'),  # 18
        _line(ctx(5), '"peer"', '"1498559343.3"', "7"),  # 19
        _line(ctx(6), UID, '""', '"1498559343.3"', "8"),  # 20 uniqueid
        _line(ctx(7), '"note"', '""', '"1498559343.3"', "9"),  # 20 userfield
        _line(ctx(8), UID, '"x"', '""', '"1498559343.3"', "10"),  # 21
        '"","917-375-0980","334-442-8436","production"',  # cut short
    ]
    drop = _drop(tmp_path, demo)
    drop.put("Master.csv", ("\n".join(lines) + "\n").encode(), DAY)
    drop.run()
    got = {line: o for (_, line), o in drop.outcomes().items()}
    assert [got[n]["outcome"] for n in range(1, 10)] == ["accepted"] * 8 + ["rejected"]
    assert got[9]["reason"] == "wrong_column_count"
    assert got[2]["native_id"] == "1498559343.3" and got[3]["native_id"] == ""  # userfield is no id
    assert got[6]["native_id"] == "1498559343.3" and got[7]["native_id"] == ""
    assert got[8]["event_key"] == "corpus:1498559343.3:10"  # uniqueid plus sequence
    assert got[3]["event_key"].startswith("h:")  # no id: a hash of the switch and the record
    assert {got[n]["billsec"] for n in range(1, 9)} == {390}


def test_identity_one_record_not_one_call(tmp_path: Path, demo) -> None:
    """Asterisk 12+ writes a CDR per leg with Party A's uniqueid: legs differ, so both count;
    the same record again (another file, CRLF, ints quoted) is the duplicate."""
    ring = _line(
        BASE16.replace('"2017-06-27 10:29:14"', "")
        .replace("402,390", "11,0")
        .replace('"ANSWERED"', '"NO ANSWER"'),
        UID,
        '""',
    )
    answered = _line(BASE16, UID, '""')
    drop = _drop(tmp_path, demo)
    drop.put("a.csv", f"{ring}\n{answered}\n".encode(), DAY)
    requoted = answered.replace(",402,390,", ',"402","390",')
    drop.put("b.csv", (requoted + "\r\n").encode(), DAY)
    # 21 columns: the same uniqueid with another sequence is another record.
    seq = [_line(BASE16, UID, '""', '""', '"1498559343.3"', str(n)) for n in (1, 2, 2)]
    drop.put("c.csv", ("\n".join(seq) + "\n").encode(), DAY)
    drop.run()
    got = drop.outcomes()
    assert got[("a.csv", 1)]["outcome"] == got[("a.csv", 2)]["outcome"] == "accepted"
    assert got[("b.csv", 1)]["outcome"] == "duplicate"
    assert [got[("c.csv", n)]["outcome"] for n in (1, 2, 3)] == ["accepted", "accepted", "duplicate"]


def test_dst_fall_back_is_resolved_from_the_record(tmp_path: Path, demo) -> None:
    """2017-11-05 01:00-02:00 happens twice in New York. A call from 01:50 EDT to 01:10 EST
    is 20 minutes, not rejected; the uniqueid's epoch (or, without one, the duration) says
    which 01:xx each time is."""
    start_edt = 1509861000  # 2017-11-05T05:50:00Z = 01:50 EDT
    call = (
        BASE16.replace("2017-06-27 10:29:03", "2017-11-05 01:50:00")
        .replace("2017-06-27 10:29:14", "2017-11-05 01:50:10")
        .replace("2017-06-27 10:35:45", "2017-11-05 01:10:00")
        .replace("402,390", "1200,1190")
    )
    second = (
        BASE16.replace("2017-06-27 10:29:03", "2017-11-05 01:20:00")
        .replace("2017-06-27 10:29:14", "2017-11-05 01:20:05")
        .replace("2017-06-27 10:35:45", "2017-11-05 01:25:00")
        .replace("402,390", "300,295")
    )
    lines = [
        _line(call, f'"{start_edt}.7"', '""'),  # epoch: the EDT 01:50
        _line(call),  # 16 columns: the duration decides
        _line(second, f'"{start_edt + 1800 + 3600}.9"', '""'),
    ]  # 01:20 EST, by its epoch
    drop = _drop(tmp_path, demo)
    drop.put("dst.csv", ("\n".join(lines) + "\n").encode(), DAY)
    drop.run()
    got = {line: o for (_, line), o in drop.outcomes().items()}
    for n in (1, 2):
        assert got[n]["outcome"] == "accepted", got[n].get("reason")
        assert got[n]["start_utc"].isoformat() == "2017-11-05T05:50:00+00:00"
        assert got[n]["answer_utc"].isoformat() == "2017-11-05T05:50:10+00:00"
        assert got[n]["end_utc"].isoformat() == "2017-11-05T06:10:00+00:00"
    assert got[3]["start_utc"].isoformat() == "2017-11-05T06:20:00+00:00"


def test_freeswitch_default_template_and_b_leg_in_a_later_file(tmp_path: Path, demo, monkeypatch) -> None:
    """mod_cdr_csv.c's built-in `default` template writes `, "${accountcode}"` (a space).
    A B-leg whose A-leg was mediated from an earlier file is still a leg, not a call."""
    monkeypatch.setenv("SQUAK_FIRST_CDR_DAY", "2023-01-01")
    a_leg = (
        '"1001","1001","1002","default","2023-10-10 23:44:11","2023-10-10 23:44:13",'
        '"2023-10-10 23:44:19","8","6","NORMAL_CLEARING","a03307a6-3658-4dde-a25b-bb6aecb96945",'
        '"515f34c7-35d4-4b65-99f2-edaad9411fa7", "1001"'
    )
    b_leg = (
        '"Extension 1001","1001","1002","default","2023-10-10 23:44:11","2023-10-10 23:44:13",'
        '"2023-10-10 23:44:19","8","6","NORMAL_CLEARING","515f34c7-35d4-4b65-99f2-edaad9411fa7",'
        '"", "1002"'
    )
    drop = _drop(tmp_path, demo, SEOUL)
    drop.put("Master.csv.2023-10-10-23-44-30", f"{a_leg}\n".encode())
    drop.put("Master.csv.2023-10-10-23-59-59", f"{b_leg}\n".encode())
    drop.run()
    got = drop.outcomes()
    a = got[("Master.csv.2023-10-10-23-44-30", 1)]
    b = got[("Master.csv.2023-10-10-23-59-59", 1)]
    assert a["outcome"] == "accepted" and a["account_code"] == "1001" and a["call_type"] == "internal"
    assert b["outcome"] == "b_leg" and b["a_leg_id"] == "a03307a6-3658-4dde-a25b-bb6aecb96945"
    files = drop.warehouse.query_df("select format, partition_day, b_legs from mediation.files order by 1")
    assert set(files["format"]) == {"freeswitch"}
    assert {str(d)[:10] for d in files["partition_day"]} == {"2023-10-10"}  # the rotation stamp
    assert file_day(Path("Master.csv.2023-10-10-23-44-30")) == date(2023, 10, 10)


def test_files_before_the_first_cdr_day_are_held_not_a_crash(tmp_path: Path, demo, monkeypatch) -> None:
    drop = _drop(tmp_path, demo)
    drop.put("cdr_20170627.csv", (_line(BASE16, UID, '""') + "\n").encode())
    drop.put(
        "Master.csv",
        (_line(BASE16.replace('"production"', '"hq"'), '"1498559344.4"', '""') + "\n").encode(),
        DAY,
    )
    report = drop.run()
    assert report.held_files == ["corpus/cdr_20170627.csv"]
    assert "SQUAK_FIRST_CDR_DAY=2017-06-27" in report.held_hint
    held = drop.warehouse.query_df(
        "select status, records_in from mediation.files where status = 'before_first_day'"
    )
    assert held["records_in"].tolist() == [1]
    assert pending_days(drop.warehouse, drop.settings) == []  # nothing Dagster has no partition for
    monkeypatch.setenv("SQUAK_FIRST_CDR_DAY", "2017-06-27")
    assert pending_days(drop.warehouse, drop.settings) == ["2017-06-27"]
    drop.run()
    files = drop.warehouse.query_df("select file_name, status, accepted from mediation.files order by 1")
    assert files["status"].tolist() == ["processed", "processed"] and files["accepted"].tolist() == [1, 1]


def test_pbx_numbers_and_reject_fields(tmp_path: Path, demo) -> None:
    """Extensions and feature codes are internal calls; a bad number names its own field;
    a '+' number of an impossible length is rejected, an unassigned range is typed invalid."""
    rows = [
        BASE16.replace('"917-375-0980","334-442-8436"', '"1001","*1001"'),
        BASE16.replace('"917-375-0980","334-442-8436"', '"1001","1002"'),
        BASE16.replace('"917-375-0980"', '"test"'),
        BASE16.replace('"334-442-8436"', '"Bob"'),
        BASE16.replace('"334-442-8436"', '"+88161234567"'),
        BASE16.replace('"334-442-8436"', '"153-585-7133"'),
        BASE16.replace('"917-375-0980"', '""'),
    ]
    drop = _drop(tmp_path, demo)
    drop.put("pbx.csv", ("\n".join(_line(r) for r in rows) + "\n").encode(), DAY)
    drop.run()
    got = {line: o for (_, line), o in drop.outcomes().items()}
    assert got[1]["call_type"] == got[2]["call_type"] == "internal"
    assert got[1]["called_number"] == "*1001" and got[2]["calling_number"] == "1001"
    assert (got[3]["reason"], got[3]["field"]) == ("non_numeric_number", "calling_number")
    assert (got[4]["reason"], got[4]["field"]) == ("non_numeric_number", "called_number")
    assert (got[5]["reason"], got[5]["field"]) == ("invalid_number", "called_number")
    assert got[6]["outcome"] == "accepted" and got[6]["destination_kind"] == "invalid"
    assert (got[7]["reason"], got[7]["field"]) == ("missing_field", "calling_number")


def test_library_types_numbers_of_every_country() -> None:
    c = classify(
        pa.array(
            [
                "+18779115347",
                "+19005551234",
                "+15148261358",
                "+447911123456",
                "+821012345678",
                "+33612345678",
                "+13978152211",
                "1002",
            ]
        )
    )
    assert c.kind.to_pylist() == [
        "tollfree",
        "premium",
        "fixed",
        "mobile",
        "mobile",
        "mobile",
        "invalid",
        None,
    ]
    assert c.region.to_pylist()[:6] == ["US", "US", "CA", "GG", "KR", "FR"]


def test_quoted_canonical_header_is_read(tmp_path: Path, demo) -> None:
    switch = {"format": "canonical", "timezone": "UTC", "country": "GB"}
    header = (
        '"event_id","source","service","calling_number","called_number","start_time","answer_time",'
        '"end_time","duration","billsec","disposition","account_code"'
    )
    row = (
        "q-1,pbx,voice,+442079400152,+442079400199,2026-12-03T09:00:00Z,2026-12-03T09:00:05Z,"
        "2026-12-03T09:01:05Z,65,60,ANSWERED,"
    )
    drop = _drop(tmp_path, demo, switch)
    drop.put("cdr_20261203.csv", f"{header}\n{row}\n".encode())
    drop.run()
    got = drop.outcomes()
    assert got[("cdr_20261203.csv", 2)]["outcome"] == "accepted"


@pytest.mark.parametrize(
    "disposition, billsec, answered",
    [("NO ANSWER", 25, False), ("ANSWERED", 25, True), ("ANSWERED", 0, False), ("BUSY", 3, False)],
)
def test_one_answered_rule_for_mediation_and_quotes(
    tmp_path: Path, demo, disposition, billsec, answered
) -> None:
    from squak_pipelines.rating.quote import read_events

    record = BASE16.replace('"ANSWERED"', f'"{disposition}"').replace("402,390", f"402,{billsec}")
    drop = _drop(tmp_path, demo)
    drop.put("a.csv", (_line(record, UID, '""') + "\n").encode(), DAY)
    drop.run()
    assert bool(drop.outcomes()[("a.csv", 1)]["answered"]) is answered
    quote = tmp_path / "quote.csv"
    quote.write_text(
        "event_id,called_number,start_time,answer_time,billsec,disposition\n"
        f"e1,+13344428436,2017-06-27T14:29:03Z,2017-06-27T14:29:14Z,{billsec},{disposition}\n"
    )
    assert bool(read_events(quote, "1")["answered"][0].as_py()) is answered


def _with_layout(drop: SwitchDrop, name: str, text: str) -> None:
    """A layout file in reference/layouts/ and the switch pointed at it."""
    import csv

    folder = drop.settings.reference_dir / "layouts"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    path = drop.settings.reference_dir / "switches.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["layout"] = name
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, [*rows[0].keys()])
        writer.writeheader()
        writer.writerows(rows)


def test_asterisk_cdr_custom_layout_with_epoch_times(tmp_path: Path, demo) -> None:
    """cdr_custom.conf.sample's Master.csv mapping with ${CDR(start,u)}-style epoch times and
    ${CDR(billsec,f)} fractions; the record id is uniqueid-sequence."""
    drop = _drop(tmp_path, demo)
    _with_layout(drop, "cdr_custom", """
fields: [clid, calling_number, called_number, dcontext, channel, dstchannel, lastapp, lastdata,
         start_time, answer_time, end_time, duration, billsec, disposition, amaflags,
         account_code, record_id, userfield]
quoting: csv
time_format: epoch
disposition: asterisk
""")
    line = ('"""Leanna Cuphus"" <609-326-2780>","917-375-0980","334-442-8436","production",'
            '"NOT_AVAILABLE","NOT_AVAILABLE","Dial","NOT_AVAILABLE","1498573743.120","1498573754.000",'
            '"1498574145.750","402.630","390.750","ANSWERED","DOCUMENTATION","ACC-7","1498559343.3-4",""')
    ringing = line.replace('"1498573754.000"', '""').replace('"390.750","ANSWERED"', '"0","NO ANSWER"') \
        .replace("1498559343.3-4", "1498559343.3-3")
    drop.put("Master.csv", f"{ringing}\n{line}\n{line}\n".encode(), DAY)
    drop.run()
    got = {n: o for (_, n), o in drop.outcomes().items()}
    assert [got[n]["outcome"] for n in (1, 2, 3)] == ["accepted", "accepted", "duplicate"]
    two = got[2]
    assert two["event_key"] == "corpus:1498559343.3-4" and two["account_code"] == "ACC-7"
    assert two["start_utc"].isoformat() == "2017-06-27T14:29:03+00:00"
    assert (int(two["duration"]), int(two["billsec"]), bool(two["answered"])) == (402, 390, True)
    assert two["calling_number"] == "+19173750980"


def test_freeswitch_custom_template_unescaped_values(tmp_path: Path, demo, monkeypatch) -> None:
    """cdr_csv.conf.xml's `asterisk` template on FreeSWITCH, pipe-separated with quoting off
    (FreeSWITCH does not escape values: a caller name with a quote is still one field)."""
    monkeypatch.setenv("SQUAK_FIRST_CDR_DAY", "2023-01-01")
    drop = _drop(tmp_path, demo, SEOUL)
    _with_layout(drop, "fs_asterisk", """
fields: [account_code, calling_number, called_number, context, caller_id, channel_name,
         bridge_channel, last_app, last_arg, start_time, answer_time, end_time, duration,
         billsec, disposition, amaflags, record_id, userfield]
quoting: none
delimiter: "|"
disposition: freeswitch
""")
    line = ('1001|1001|1002|default|"Bob "The Boss"" <1001>|sofia/internal/1001|sofia/internal/1002|'
            'bridge|user/1002|2023-10-10 23:26:08|2023-10-10 23:26:10|2023-10-10 23:26:15|7|5|'
            'NORMAL_CLEARING|default|7866825d-f38c-449e-a562-95250032e426|')
    drop.put("Master.csv.2023-10-10-23-30-00", f"{line}\n".encode())
    drop.run()
    got = drop.outcomes()[("Master.csv.2023-10-10-23-30-00", 1)]
    assert got["outcome"] == "accepted" and got["native_id"] == "7866825d-f38c-449e-a562-95250032e426"
    assert got["start_utc"].isoformat() == "2023-10-10T14:26:08+00:00" and bool(got["answered"])
    assert got["call_type"] == "internal"


def test_a_layout_file_that_cannot_be_used_names_its_key(tmp_path: Path) -> None:
    from squak_pipelines.mediation.layouts import LayoutError, load_layout

    path = tmp_path / "bad.yaml"
    path.write_text("fields: [calling_number, called_number]\n")
    with pytest.raises(LayoutError, match="fields: must include start_time"):
        load_layout(path)
    path.write_text("fields: [calling_number, called_number, start_time, end_time, duration, billsec]\n"
                    "quoting: single\n")
    with pytest.raises(LayoutError, match="quoting"):
        load_layout(path)
