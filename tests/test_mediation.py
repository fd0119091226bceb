"""Mediation: parsers on real-format samples, rejects, de-duplication, fraud rules, the
gate, analyst release, conservation and the drop-folder sensor."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from squak_pipelines.config import Settings
from squak_pipelines.mediation.defs import cdr_drop_sensor, conservation_result, gate_result, mediated_cdrs
from squak_pipelines.mediation.normalize import Switch, normalize
from squak_pipelines.mediation.numbering import NumberingPlan, load_dialing_rules
from squak_pipelines.mediation.parsers import FileFormatError, detect_format, parse_file, physical_lines
from squak_pipelines.mediation.quarantine import decide
from squak_pipelines.mediation.stage import mediate
from squak_pipelines.resources import SquakResource
from squak_pipelines.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

NYC = Switch("ast-nyc1", "asterisk", "America/New_York", "US")
CHI = Switch("fs-chi1", "freeswitch", "America/Chicago", "US")
LON = Switch("sqk-lon1", "canonical", "UTC", "GB")
CANON_HEADER = (
    "event_id,source,service,calling_number,called_number,start_time,answer_time,"
    "end_time,duration,billsec,disposition,account_code"
)

# Asterisk Master.csv as cdr_csv writes it: 21 columns, strings quoted, ints bare; quoted ints,
# a comma and escaped quotes in clid, an unanswered call, a UTF-8 name, CRLF line ends.
ASTERISK = (
    "\r\n".join(
        [
            '"ACC-1","2125550100","2125550199","from-internal","""Smith, Jones & Co"" <2125550100>",'
            '"PJSIP/2125550100-00000001","PJSIP/trunk-00000002","Dial","PJSIP/2125550199@trunk,60",'
            '"2026-10-05 09:00:00","2026-10-05 09:00:05","2026-10-05 09:01:05",65,60,"ANSWERED",'
            '"DOCUMENTATION","1759669200.1","","","1759669200.1",1',
            '"ACC-1","2125550100","011447700900123","from-internal","""Zoë Müller"" <2125550100>",'
            '"PJSIP/2125550100-00000003","PJSIP/trunk-00000004","Dial","PJSIP/011447700900123@trunk,60",'
            '"2026-10-05 09:10:00","","2026-10-05 09:10:20","20","0","NO ANSWER","DOCUMENTATION",'
            '"1759669800.2","","","1759669800.2",2',
            '"ACC-1","2125550100","911","from-internal","""A"" <2125550100>","PJSIP/x","","Dial","",'
            '"2026-10-05 09:20:00","2026-10-05 09:20:01","2026-10-05 09:22:01",121,120,"ANSWERED",'
            '"DOCUMENTATION","1759670400.3","","","1759670400.3",3',
            '"ACC-1","2125550100","2125550199","from-internal"',  # truncated: wrong column count
        ]
    )
    + "\r\n"
)


@pytest.fixture
def refs(demo) -> tuple[dict, NumberingPlan]:
    settings, _ = demo
    return (
        load_dialing_rules(settings.reference_dir / "dialing_rules.csv"),
        NumberingPlan.load(settings.reference_dir / "numbering_plan.csv"),
    )


def _events(path: Path, switch: Switch, refs, fmt: str | None = "asterisk") -> tuple[pa.Table, list]:
    rules, plan = refs
    parsed = parse_file(path, fmt or None)
    return normalize(parsed, switch, rules, plan, pa.array([], pa.string()), path.name), parsed.bad_lines


def test_asterisk_master_csv_edge_cases(tmp_path: Path, refs) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(ASTERISK.encode("utf-8"))
    events, bad = _events(path, NYC, refs)
    assert bad == [(4, "wrong_column_count", '"ACC-1","2125550100","2125550199","from-internal"')]
    rows = events.to_pylist()
    assert [r["source_line"] for r in rows] == [1, 2, 3]
    first, second, third = rows
    assert first["start_utc"] == datetime(2026, 10, 5, 13, 0, tzinfo=UTC), "New York time (EDT) to UTC"
    assert (first["duration"], first["billsec"], first["answered"]) == (65, 60, True)
    assert first["calling_number"] == "+12125550100" and first["called_number"] == "+12125550199"
    assert first["call_type"] == "local" and first["native_id"] == "1759669200.1"
    assert "Smith, Jones & Co" in first["raw_line"] and first["raw_line"].endswith(",1")
    assert second["answer_utc"] is None and second["disposition"] == "NO ANSWER" and not second["answered"]
    assert second["called_number"] == "+447700900123" and second["call_type"] == "international"
    assert second["destination_name"] == "United Kingdom - Mobile"
    assert "Zoë Müller" in second["raw_line"]
    assert third["called_number"] == "911" and third["call_type"] == "emergency"
    assert all(r["reject_reason"] is None for r in rows)
    # The same file gzipped reads the same.
    gz = tmp_path / "Master.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert (
        _events(gz, NYC, refs)[0].drop_columns(["source_file"]).equals(events.drop_columns(["source_file"]))
    )


@pytest.mark.parametrize(
    "data",
    [
        b"a,1\nb,2\n",
        b"a,1\r\n\r\nb,2",  # CRLF, a blank line, no final line end
        b"\n\na\n",
        b'"x\ry",1\nb\n',  # a lone CR inside a field stays in its line
        b"a\x1fb\nc\n",
        "Zo\u00eb,\u00fc\n".encode(),
    ],
)
def test_physical_lines_match_a_plain_split(data: bytes) -> None:
    expected = data.decode("utf-8").split("\n")
    expected = [line.removesuffix("\r") for line in expected]
    got = physical_lines(data).to_pylist()
    assert got == expected[: len(got)] and all(x == "" for x in expected[len(got) :])


def test_asterisk_16_column_layout_and_latin1(tmp_path: Path, refs) -> None:
    line = (
        '"","2125550100","2125550199","from-internal","""Jos\xe9"" <2125550100>","SIP/a","SIP/b",'
        '"Dial","","2026-10-05 09:00:00","2026-10-05 09:00:05","2026-10-05 09:01:05",65,60,'
        '"ANSWERED","DOCUMENTATION"\n'
    )
    path = tmp_path / "Master.csv"
    path.write_bytes(line.encode("latin-1"))
    events, _ = _events(path, NYC, refs)
    assert events.num_rows == 1 and events["native_id"][0].as_py() == ""
    assert "José" in events["raw_line"][0].as_py()


def test_freeswitch_default_and_example_templates(tmp_path: Path, refs) -> None:
    default = (
        '"Ana Lopez","3125550100","+13125550199","default","2026-10-05 09:00:00",'
        '"2026-10-05 09:00:04","2026-10-05 09:02:04","124","120","NORMAL_CLEARING",'
        '"a8d1c2e0-0000-4000-8000-000000000001","b8d1c2e0-0000-4000-8000-000000000002","ACC-2"\n'
        '"Ana Lopez","3125550100","13125550198","default","2026-10-05 10:00:00","",'
        '"2026-10-05 10:00:09","9","0","USER_BUSY","a8d1c2e0-0000-4000-8000-000000000003","","ACC-2"\n'
    )
    path = tmp_path / "Master.csv"
    path.write_text(default)
    events, _ = _events(path, CHI, refs, "freeswitch")
    rows = events.to_pylist()
    assert rows[0]["start_utc"] == datetime(2026, 10, 5, 14, 0, tzinfo=UTC), "Chicago (CDT) to UTC"
    assert rows[0]["disposition"] == "ANSWERED" and rows[1]["disposition"] == "BUSY"
    assert rows[1]["called_number"] == "+13125550198"
    example = default.replace('"ACC-2"\n', '"ACC-2","PCMU","PCMU"\n')
    path.write_text(example)
    assert _events(path, CHI, refs, "freeswitch")[0].num_rows == 2
    assert detect_format(example.encode()) == "freeswitch"
    assert detect_format(ASTERISK.encode()) == "asterisk"


def test_canonical_detection_and_unreadable_layout(tmp_path: Path) -> None:
    assert detect_format((CANON_HEADER + "\n").encode()) == "canonical"
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(FileFormatError):
        parse_file(path, None)


# --- warehouse-backed mediation -------------------------------------------------


def canon(
    event_id: str,
    called: str,
    start: str,
    billsec: int = 60,
    *,
    calling: str = "+442079400100",
    ring: int = 5,
    service: str = "voice",
    disposition: str = "ANSWERED",
    duration: int | None = None,
    end: str | None = None,
) -> str:
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    ts = int(t0.timestamp())
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    answer = "" if disposition != "ANSWERED" else datetime.fromtimestamp(ts + ring, UTC).strftime(fmt)
    dur = duration if duration is not None else ring + billsec
    end = end or datetime.fromtimestamp(ts + dur, UTC).strftime(fmt)
    fields = [f'"{v}"' for v in (event_id, "sqk-lon1", service, calling, called, start, answer, end)]
    return ",".join([*fields, str(dur), str(billsec), f'"{disposition}"', '"ACC-1"'])


class Drop:
    """A data directory with the demo's reference files and hand-made CDR files."""

    def __init__(self, root: Path, demo_settings: Settings, warehouse: Warehouse):
        self.settings = Settings.from_env({"SQUAK_DATA_DIR": str(root)})
        shutil.copytree(demo_settings.reference_dir, self.settings.reference_dir)
        self.warehouse = warehouse
        self.folder = self.settings.cdr_drop_dir / "sqk-lon1"
        self.folder.mkdir(parents=True)

    def write(self, name: str, lines: list[str]) -> Path:
        path = self.folder / name
        path.write_text("\n".join([CANON_HEADER, *lines]) + "\n")
        return path

    def run(self, days: list[date] | None = None):
        return mediate(self.warehouse, self.settings, days)

    def df(self, sql: str):
        return self.warehouse.query_df(sql)


@pytest.fixture(params=["duckdb", "postgres"])
def drop(request: pytest.FixtureRequest, tmp_path: Path, demo) -> Drop:
    settings, _ = demo
    if request.param == "duckdb":
        warehouse: Warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    else:
        warehouse = PostgresWarehouse(request.getfixturevalue("fresh_pg_url"))
    return Drop(tmp_path / "squak", settings, warehouse)


def test_each_reject_reason_with_file_line_and_raw(drop: Drop) -> None:
    drop.write(
        "cdr_sqk-lon1_20261005.csv",
        [
            canon("ok-1", "+442079400199", "2026-10-05T09:00:00Z"),
            canon("r-missing", "", "2026-10-05T09:01:00Z"),
            canon("r-number", "CALL-ME", "2026-10-05T09:02:00Z"),
            canon("r-time", "+442079400199", "2026-10-05T09:03:00Z").replace(
                "2026-10-05T09:03:00Z", "2026-10-32T25:00:00Z", 1
            ),
            canon("r-negative", "+442079400199", "2026-10-05T09:04:00Z", duration=-5),
            canon("r-end", "+442079400199", "2026-10-05T09:05:00Z", end="2026-10-05T08:00:00Z"),
            canon("r-billsec", "+442079400199", "2026-10-05T09:06:00Z", billsec=100, duration=50),
            '"r-columns","sqk-lon1","voice"',
        ],
    )
    report = drop.run()
    rejects = drop.df("select source_line, reason, raw_line from mediation.rejects order by source_line")
    assert list(zip(rejects["source_line"], rejects["reason"], strict=True)) == [
        (3, "missing_field"),
        (4, "non_numeric_number"),
        (5, "unparseable_time"),
        (6, "negative_duration"),
        (7, "end_before_start"),
        (8, "end_before_start"),
        (9, "wrong_column_count"),
    ]
    assert rejects["raw_line"].str.contains("r-number").any()
    assert (report.records_in, report.accepted, report.rejected) == (8, 1, 7)


def test_duplicates_within_across_files_days_and_redelivery(drop: Drop) -> None:
    a = canon("e-1", "+442079400199", "2026-10-05T09:00:00Z")
    b = canon("e-2", "+442079400198", "2026-10-05T10:00:00Z")
    c = canon("e-3", "+442079400197", "2026-10-06T10:00:00Z")
    drop.write("cdr_sqk-lon1_20261005.csv", [a, b, a])  # repeat within the file
    drop.run()
    drop.write("cdr_sqk-lon1_20261006.csv", [b, c])  # yesterday's record again
    shutil.copy(drop.folder / "cdr_sqk-lon1_20261005.csv", drop.folder / "cdr_sqk-lon1_20261005-again.csv")
    report = drop.run()
    assert (report.accepted, report.duplicates) == (1, 4), "c is new; b repeated; the copy's 3 records"
    files = drop.df(
        "select file_name, status, records_in, accepted, duplicates from mediation.files order by file_name"
    ).set_index("file_name")
    assert files.loc["sqk-lon1/cdr_sqk-lon1_20261005-again.csv", "status"] == "duplicate_delivery"
    assert files.loc["sqk-lon1/cdr_sqk-lon1_20261005.csv", "duplicates"] == 1
    dups = drop.df("select duplicate_of, count(*) as n from mediation.duplicates group by 1").set_index(
        "duplicate_of"
    )
    assert dups.loc["same batch", "n"] == 1 and dups.loc["earlier delivery", "n"] == 1
    # Nothing new: nothing happens. A changed file under a known name is a new delivery.
    assert drop.run().files == 0
    drop.write("cdr_sqk-lon1_20261006.csv", [b, c, canon("e-4", "+442079400196", "2026-10-06T11:00:00Z")])
    again = drop.run()
    assert (again.files, again.accepted, again.duplicates) == (1, 1, 2)
    assert drop.df("select count(*) as n from mediation.events")["n"][0] == 4
    assert conservation_result(drop.warehouse, [date(2026, 10, 5), date(2026, 10, 6)]).passed


def _fraud_day() -> list[str]:
    lines = [
        canon(
            f"ok-{i}",
            "+442079400199",
            f"2026-10-07T{8 + i // 60:02d}:{i % 60:02d}:00Z",
            calling=f"+4420794001{i % 50:02d}",
        )
        for i in range(0, 600, 1)
    ]
    lines += [
        canon(
            f"burst-{i}",
            "+442079400198",
            f"2026-10-07T12:{i // 6:02d}:{(i % 6) * 10:02d}Z",
            billsec=30,
            calling="+442079400150",
        )
        for i in range(35)
    ]
    lines += [
        canon(
            f"short-{i}",
            "+442079400197",
            f"2026-10-07T14:{i * 2:02d}:00Z",
            billsec=3,
            calling="+442079400151",
        )
        for i in range(25)
    ]
    lines += [canon("irsf-1", "+881612345678", "2026-10-07T15:00:00Z", calling="+442079400152")]
    lines += [
        canon(
            f"night-{i}",
            "+12125550100",
            f"2026-10-07T02:{i * 4:02d}:00Z",
            billsec=120,
            calling="+442079400153",
        )
        for i in range(12)
    ]
    return lines


def test_each_fraud_rule_quarantines_its_calls(drop: Drop) -> None:
    drop.write("cdr_sqk-lon1_20261007.csv", _fraud_day())
    report = drop.run()
    q = drop.df("select native_id, fraud_rules from mediation.quarantine")
    rules = dict(zip(q["native_id"], q["fraud_rules"], strict=True))
    assert all("burst" in rules[f"burst-{i}"] for i in range(35))
    assert all("short_calls" in rules[f"short-{i}"] for i in range(25))
    assert rules["irsf-1"] == "high_risk"
    assert all("night_international" in rules[f"night-{i}"] for i in range(12))
    assert not any(k.startswith("ok-") for k in rules), "normal traffic passes"
    assert report.quarantined == 35 + 25 + 1 + 12 and report.accepted == 600
    assert conservation_result(drop.warehouse, [date(2026, 10, 7)]).passed


def test_concurrency_rule_uses_the_accounts_lines(drop: Drop) -> None:
    drop.warehouse.load(
        "orders.services",
        pa.table(
            {
                "service_id": ["S1"],
                "period": [1],
                "account_id": ["ACC-1"],
                "order_id": ["O1"],
                "line_no": ["1"],
                "product_id": ["RES-LINE"],
                "plan_id": ["BIZ-UK"],
                "number": ["+442079400100"],
                "features": ["voice"],
                "active_from": pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
                "active_to": pa.array([None], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    drop.write(
        "cdr_sqk-lon1_20261008.csv",
        [canon(f"par-{i}", f"+44207940019{i}", f"2026-10-08T10:00:0{i}Z", billsec=600) for i in range(3)]
        + [
            canon(
                f"fill-{i}",
                "+442079400199",
                f"2026-10-08T{11 + i // 60:02d}:{i % 60:02d}:00Z",
                calling=f"+4420794002{i % 40:02d}",
            )
            for i in range(200)
        ],
    )
    drop.run()
    q = drop.df("select native_id, fraud_rules from mediation.quarantine")
    assert dict(zip(q["native_id"], q["fraud_rules"], strict=True)) == {"par-2": "concurrency"}, (
        "one line allows two calls at once; the third is held"
    )


def _short_call_burst() -> list[str]:
    """40 two-second calls from one line within 7 minutes at night, on 2026-10-09."""
    return [
        canon(
            f"burst-{i}",
            "+442079400198",
            f"2026-10-09T03:{i // 6:02d}:{(i % 6) * 10:02d}Z",
            billsec=2,
            calling="+442079400150",
        )
        for i in range(40)
    ]


def test_gate_blocks_a_poisoned_day_and_release_reopens_it(drop: Drop, demo) -> None:
    poisoned = _short_call_burst()
    clean = [
        canon(
            f"ok-{i}",
            "+442079400199",
            f"2026-10-09T{8 + i // 60:02d}:{i % 60:02d}:00Z",
            calling=f"+4420794001{i % 50:02d}",
        )
        for i in range(200)
    ]
    drop.write("cdr_sqk-lon1_20261009.csv", clean + poisoned)
    drop.run()
    status = drop.df("select gate_passed, quarantine_share from mediation.partition_status")
    assert not bool(status["gate_passed"][0]) and float(status["quarantine_share"][0]) > 0.05
    assert not gate_result(drop.warehouse, [date(2026, 10, 9)]).passed
    # An analyst releases what is not fraud: the gate is recomputed and passes.
    keys = drop.df("select event_key from mediation.quarantine order by native_id")["event_key"].tolist()
    outcome = decide(drop.warehouse, keys[:35], "released", "analyst@squak", "test traffic")
    assert set(outcome.values()) == {"released"}
    assert decide(drop.warehouse, keys[:1], "released", "analyst@squak")[keys[0]] == "already released"
    assert (
        decide(drop.warehouse, keys[35:36], "confirmed_fraud", "analyst@squak")[keys[35]] == "confirmed_fraud"
    )
    released = drop.df("select count(*) as n from mediation.events where released")["n"][0]
    assert released == 35
    assert gate_result(drop.warehouse, [date(2026, 10, 9)]).passed
    assert conservation_result(drop.warehouse, [date(2026, 10, 9)]).passed
    decisions = drop.df("select decision, count(*) as n from mediation.quarantine group by 1").set_index(
        "decision"
    )
    assert decisions.loc["released", "n"] == 35 and decisions.loc["confirmed_fraud", "n"] == 1


def test_conservation_check_finds_a_lost_record(drop: Drop) -> None:
    drop.write(
        "cdr_sqk-lon1_20261005.csv",
        [canon(f"e-{i}", "+442079400199", f"2026-10-05T09:{i:02d}:00Z") for i in range(5)],
    )
    drop.run()
    drop.warehouse.execute("delete from mediation.events where native_id = 'e-3'")
    result = conservation_result(drop.warehouse, [date(2026, 10, 5)])
    assert not result.passed
    assert "cdr_sqk-lon1_20261005.csv" in str(result.metadata["files_out_of_balance"].value)


def test_dagster_gate_blocks_the_poisoned_partition(tmp_path: Path, demo) -> None:
    settings, _ = demo
    drop = Drop(tmp_path / "squak", settings, DuckDBWarehouse(tmp_path / "squak" / "warehouse.duckdb"))
    drop.write(
        "cdr_sqk-lon1_20261009.csv",
        _short_call_burst(),
    )
    resource = SquakResource(
        data_dir=str(drop.settings.data_dir),
        warehouse_url=f"duckdb:///{drop.settings.data_dir / 'warehouse.duckdb'}",
    )
    with dg.build_sensor_context(resources={"squak": resource}) as ctx:
        requests = cdr_drop_sensor(ctx)
        cursor = ctx.cursor
    assert [r.partition_key for r in requests] == ["2026-10-09"]
    assert "sqk-lon1/cdr_sqk-lon1_20261009.csv" in cursor, "hashes are remembered between ticks"
    result = dg.materialize(
        [mediated_cdrs], partition_key="2026-10-09", resources={"squak": resource}, raise_on_error=False
    )
    assert not result.success, "a failed blocking gate stops the run"
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["gx_fraud_gate"] is False and checks["conservation"] is True
    with dg.build_sensor_context(resources={"squak": resource}, cursor=cursor) as ctx:
        assert isinstance(cdr_drop_sensor(ctx), dg.SkipReason)


def test_sms_and_called_number_rules(drop: Drop) -> None:
    drop.write(
        "cdr_sqk-lon1_20261010.csv",
        [
            canon(
                "sms-1",
                "+447700900123",
                "2026-10-10T09:00:00Z",
                billsec=0,
                ring=0,
                service="sms",
                disposition="DELIVERED",
                duration=0,
            ).replace(',"",', ',"2026-10-10T09:00:00Z",', 1),
            canon("free-1", "+448001234567", "2026-10-10T09:05:00Z"),
            canon("emerg-1", "999", "2026-10-10T09:06:00Z"),
            # A Mexican number on the London switch dialling 112: an emergency call in the UK,
            # where the phone is, though 112 is no emergency code in Mexico.
            canon("emerg-2", "112", "2026-10-10T09:07:00Z", calling="+525541000304"),
            canon("ext-1", "1002", "2026-10-10T09:08:00Z"),
        ],
    )
    drop.run()
    events = drop.df("select native_id, service, call_type, answered from mediation.events").set_index(
        "native_id"
    )
    assert events.loc["sms-1", "service"] == "sms" and bool(events.loc["sms-1", "answered"])
    assert events.loc["free-1", "call_type"] == "tollfree"
    assert events.loc["emerg-1", "call_type"] == "emergency"
    assert events.loc["emerg-2", "call_type"] == "emergency"
    assert events.loc["ext-1", "call_type"] == "internal", "an extension passes the events suite"
    assert pc.sum(pa.array([1])).as_py() == 1


def test_quarantine_cli(tmp_path: Path, demo, capsys) -> None:
    from squak_pipelines.cli import main

    settings, _ = demo
    drop = Drop(tmp_path / "squak", settings, DuckDBWarehouse(tmp_path / "squak" / "warehouse.duckdb"))
    drop.write("cdr_sqk-lon1_20261011.csv", [canon("irsf-1", "+881612345678", "2026-10-11T15:00:00Z")])
    drop.run()
    key = drop.df("select event_key from mediation.quarantine")["event_key"][0]
    import os

    os.environ["SQUAK_DATA_DIR"] = str(drop.settings.data_dir)
    try:
        assert main(["quarantine", "list"]) == 0
        assert key in capsys.readouterr().out
        assert main(["quarantine", "release", key]) == 2, "an analyst must be named"
        assert main(["quarantine", "confirm", key, "--by", "ana", "--note", "IRSF"]) == 0
        assert f"{key}: confirmed_fraud" in capsys.readouterr().out
    finally:
        del os.environ["SQUAK_DATA_DIR"]
    row = drop.df("select decision, decided_by, note from mediation.quarantine").iloc[0]
    assert (row["decision"], row["decided_by"], row["note"]) == ("confirmed_fraud", "ana", "IRSF")


def test_cdr_show_reads_each_record_back_from_the_archived_file(tmp_path: Path, demo, capsys,
                                                                 monkeypatch) -> None:
    from squak_pipelines.cli import main

    settings, _ = demo
    drop = Drop(tmp_path / "squak", settings, DuckDBWarehouse(tmp_path / "squak" / "warehouse.duckdb"))
    first = canon("show-1", "+442079400199", "2026-10-12T09:00:00Z", calling="+442079400101")
    irsf = canon("show-2", "+881612345678", "2026-10-12T15:00:00Z", calling="+442079400102")
    drop.write("cdr_sqk-lon1_20261012.csv", [first, irsf, first])  # the repeat is line 4
    (drop.folder / "cdr_sqk-lon1_20261012.csv.gz").write_bytes(
        gzip.compress((drop.folder / "cdr_sqk-lon1_20261012.csv").read_bytes().replace(b"show-2", b"show-3")))
    drop.run()
    stored = drop.df("select count(*) as n from mediation.events where raw_line is not null")["n"][0]
    assert stored == 0, "accepted rows keep their line by reference, not a copy"
    key = drop.df("select event_key from mediation.events where native_id = 'show-1'")["event_key"][0]
    held = drop.df("select event_key from mediation.quarantine where native_id = 'show-2'")["event_key"][0]
    for path in drop.folder.iterdir():  # the drop folder cleaned: the archive still has every file
        path.unlink()
    monkeypatch.setenv("SQUAK_DATA_DIR", str(drop.settings.data_dir))
    assert main(["cdr", "show", key, held]) == 0
    out = capsys.readouterr().out
    assert out.count(first) == 4, "the record, its repeat in the file, its two in the gzip copy"
    assert "line 2 " in out and "line 4 " in out and "accepted (mediation.events)" in out
    assert "duplicate (mediation.duplicates)" in out and "read from archive" in out
    assert irsf in out and "quarantined (mediation.quarantine)" in out
    assert main(["cdr", "show", "sqk-lon1:nope"]) == 2
    assert "no mediated record has the event key 'sqk-lon1:nope'" in capsys.readouterr().err
    for path in (drop.settings.data_dir / "archive").rglob("*"):  # rewritten in place
        if path.is_file():
            path.write_bytes(path.read_bytes() + b"\n")
    assert main(["cdr", "show", key]) == 2
    out = capsys.readouterr().out
    assert "was changed after it was mediated" in out and first not in out


def test_auto_detected_switch_format(tmp_path: Path, demo) -> None:
    settings, _ = demo
    drop = Drop(tmp_path / "squak", settings, DuckDBWarehouse(tmp_path / "w.duckdb"))
    switches = drop.settings.reference_dir / "switches.csv"
    switches.write_text(switches.read_text().replace(",asterisk,", ",auto,"))
    folder = drop.settings.cdr_drop_dir / "ast-nyc1"
    folder.mkdir(parents=True)
    (folder / "Master-20261005.csv").write_bytes(ASTERISK.encode("utf-8"))
    report = drop.run()
    assert (report.records_in, report.accepted + report.quarantined, report.rejected) == (4, 3, 1)


def test_mediated_events_suite_runs_a_few_whole_days_at_a_time(demo, tmp_path: Path, monkeypatch) -> None:
    """A month is validated a few days at a time (a 10M-CDR month in one DataFrame took 3.9 GiB);
    the check covers every row, and a bad row in any part fails it."""
    from squak_pipelines.mediation import defs as mediation_defs
    from tests.stage_helpers import copy_demo, mediated

    settings = copy_demo(demo, tmp_path / "squak")
    warehouse = DuckDBWarehouse(settings.duckdb_path)
    days = mediated(warehouse, settings)
    monkeypatch.setattr(mediation_defs, "GX_PART_ROWS", 800)
    whole = mediation_defs.events_result(warehouse, days)
    assert whole.passed and whole.metadata["rows"].value == warehouse.count("mediation.events")
    assert whole.metadata["parts"].value > 3
    warehouse.execute("update mediation.events set call_type = 'bogus' where event_key = "
                      "(select max(event_key) from mediation.events where partition_day = :day)",
                      {"day": max(days)})
    broken = mediation_defs.events_result(warehouse, days)
    assert not broken.passed
    failures = broken.metadata["failures"].value
    assert [(f["column"], f["unexpected_count"]) for f in failures] == [("call_type", 1)]
