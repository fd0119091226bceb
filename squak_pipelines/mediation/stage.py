"""Mediation of CDR drop files for one day partition, end to end.

Per file: parse -> normalize/enrich -> reject bad records -> de-duplicate (within the
batch, and against every key the warehouse already holds) -> fraud screen -> write.
A file whose content was processed before (same sha256, any name) is recorded as a
duplicate delivery: all its records count as duplicates and nothing is parsed again.

Conservation, per file and per day: records_in = accepted + rejected + duplicates +
quarantined + b_legs. Tables (schema `mediation`): files, events, rejects, duplicates,
quarantine, b_legs, event_keys, partition_status.

Only the same record seen again is a duplicate (see `normalize` for each switch's identity).
A FreeSWITCH record whose uuid is another record's `bleg_uuid` (in the batch, or an A-leg
mediated before) is that call's B-leg: kept in `mediation.b_legs`, never rated.

A file whose day is before the first CDR partition (SQUAK_FIRST_CDR_DAY) is recorded whole as
`before_first_day` and the run goes on; it is mediated once the partitions reach its day.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines import clock
from squak_pipelines.capture.drop_files import count_records, switch_files
from squak_pipelines.card_numbers import redact_table
from squak_pipelines.config import Settings
from squak_pipelines.faults import fault_point
from squak_pipelines.limits import Limits
from squak_pipelines.mediation.fraud import SCREEN_COLUMNS, FraudRules, screen
from squak_pipelines.mediation.layouts import Layout, layout_path, load_layout
from squak_pipelines.mediation.normalize import Switch, normalize
from squak_pipelines.mediation.numbering import NumberingPlan, load_dialing_rules
from squak_pipelines.mediation.parsers import FileFormatError, ParsedFile, parse_file, read_bytes
from squak_pipelines.mediation.raw_records import archive
from squak_pipelines.mediation.tables import FILES_SCHEMA, TABLE_SCHEMAS
from squak_pipelines.migrations import migrate
from squak_pipelines.orders.lookup import owners_at
from squak_pipelines.progress import Progress
from squak_pipelines.reference.files import load_switches
from squak_pipelines.warehouse import Warehouse

# YYYYMMDD, or YYYY-mm-dd as in FreeSWITCH's rotated `Master.csv.YYYY-mm-dd-HH-MM-SS`.
DAY_STAMP = re.compile(r"((?:19|20)\d{2})-?(\d{2})-?(\d{2})")
HELD = "before_first_day"


@dataclass(frozen=True)
class DropRef:
    path: Path
    name: str  # relative to the CDR drop folder
    switch: Switch
    sha256: str
    day: date


@dataclass
class MediationReport:
    days: list[str] = field(default_factory=list)
    files: int = 0
    records_in: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    quarantined: int = 0
    b_legs: int = 0
    held_files: list[str] = field(default_factory=list)
    held_hint: str = ""
    reject_reasons: dict[str, int] = field(default_factory=dict)
    fraud_hits: dict[str, int] = field(default_factory=dict)
    gate_failed_days: list[str] = field(default_factory=list)

    def add_counts(self, key: str, values: pa.Array) -> None:
        target = self.reject_reasons if key == "reject" else self.fraud_hits
        for item in pc.value_counts(values).to_pylist():
            for name in str(item["values"]).split(","):
                target[name] = target.get(name, 0) + int(item["counts"])


def file_day(path: Path) -> date:
    """The day a file covers: the YYYYMMDD (or YYYY-mm-dd) stamp in its name, else its
    modification date."""
    match = DAY_STAMP.search(path.name)
    if match:
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            pass
    from datetime import UTC, datetime

    return datetime.fromtimestamp(path.stat().st_mtime, UTC).date()


def scan_drops(
    settings: Settings, days: list[date] | None = None, hash_cache: dict[str, list] | None = None,
    before: date | None = None,
) -> list[DropRef]:
    """CDR files in the drop folder (of the given days; or stamped before `before`), with
    switch, content hash and day.
    Only the files of the requested days are read and hashed; `hash_cache` (name ->
    [size, mtime_ns, sha256]) spares re-reading files that have not changed, and is updated."""
    switches = load_switches(settings.reference_dir / "switches.csv")
    wanted = set(days) if days is not None else None
    refs = []
    for sw, path in switch_files(settings.cdr_drop_dir, switches):
        day = file_day(path)
        if (wanted is not None and day not in wanted) or (before is not None and day >= before):
            continue
        name = str(path.relative_to(settings.cdr_drop_dir))
        stat = path.stat()
        cached = (hash_cache or {}).get(name)
        if cached and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            digest = cached[2]
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if hash_cache is not None:
                hash_cache[name] = [stat.st_size, stat.st_mtime_ns, digest]
        switch = Switch(sw["switch_id"], sw["format"], sw["timezone"], sw["country"], sw.get("layout") or "")
        refs.append(DropRef(path, name, switch, digest, day))
    return refs


@dataclass
class PreparedDay:
    """A day's files parsed and normalized, ready to be de-duplicated, screened and written."""

    day: date
    events: pa.Table | None
    rejects: pa.Table | None
    file_rows: list[dict]
    redelivered: int
    a_legs: pa.Table | None = None  # (switch_id, b_leg_id, a_leg_id) of every record read
    legged: frozenset[str] = frozenset()  # switches whose records link their legs (FreeSWITCH)


# The columns that carry the switch's free text: the raw line (caller names, user fields,
# dial strings) and the account code. The others are numbers, identities (a file name with a
# date and time in it is not a card number, and accounting joins on it) or values Squak
# derived from reference data.
_FREE_TEXT = ("raw_line", "account_code")


def _screened(table: pa.Table) -> pa.Table:
    """Card numbers in a CDR's free text redacted before anything is stored."""
    return redact_table(table, only=_FREE_TEXT)[0]


def _links_legs(parsed: ParsedFile) -> bool:
    """Whether the file's records name their other leg (FreeSWITCH's bleg_uuid)."""
    return "b_leg_id" in parsed.layout.fields if parsed.layout else parsed.format == "freeswitch"


def _lines_or_nothing(path: Path) -> list[tuple[int, str]]:
    """The file's non-empty lines for its rejects; none when not even that can be read (a
    truncated or corrupt gzip), so the file is still recorded, with its reason."""
    try:
        return nonempty_lines(path)
    except Exception:
        return []


class Mediator:
    """Reference data loaded once; `prepare_day` then `write_day` process one partition."""

    def __init__(self, warehouse: Warehouse, settings: Settings):
        self.warehouse = warehouse
        ref = settings.reference_dir
        self.rules = load_dialing_rules(ref / "dialing_rules.csv")
        self.plan = NumberingPlan.load(ref / "numbering_plan.csv")
        self.fraud = FraudRules.load(ref / "fraud_rules.yaml")
        self.limits = Limits.load(ref)
        self.reference_dir = ref
        self.data_dir = settings.data_dir
        self.layouts: dict[str, Layout] = {}
        self.held: set[tuple[str, str]] = set()  # (name, sha256) of files held before_first_day
        self.has_orders = warehouse.table_exists("orders.services")
        self.scratch = duckdb.connect()  # in-memory, for set-based work on Arrow batches
        ensure_tables(warehouse)
        self.onnet = (
            warehouse.query_arrow("select distinct number from orders.services where number is not null")
            .column(0)
            .combine_chunks()
            if self.has_orders
            else pa.array([], pa.string())
        )

    def prepare_day(self, day: date, items: list[tuple[DropRef, bool]]) -> PreparedDay:
        """Parse and normalize a day's files (pure Arrow work, safe in a worker thread).
        `items` pairs each file with whether its content was delivered before."""
        file_rows, batches, rejects, links, legged = [], [], [], [], set()
        redelivered = 0
        for order, (ref, seen_before) in enumerate(items):
            base = {
                "file_name": ref.name,
                "sha256": ref.sha256,
                "switch_id": ref.switch.switch_id,
                "format": ref.switch.format,
                "partition_day": day,
            }
            if seen_before:
                records = _count_records(ref)
                file_rows.append(
                    {
                        **base,
                        "status": "duplicate_delivery",
                        "records_in": records,
                        "accepted": 0,
                        "rejected": 0,
                        "duplicates": records,
                        "quarantined": 0,
                        "detail": "same content as a file already processed",
                    }
                )
                redelivered += records
                continue
            archive(ref.path, ref.sha256, self.data_dir)  # its lines are read back from here
            try:
                layout = self._layout(ref.switch.layout) if ref.switch.layout else None
                parsed = parse_file(ref.path, ref.switch.format, layout)
                events = normalize(parsed, ref.switch, self.rules, self.plan, self.onnet, ref.name,
                                   self.limits.max_call_seconds)
            except Exception as exc:
                detail = str(exc) if isinstance(exc, FileFormatError) else f"{type(exc).__name__}: {exc}"
                lines = _lines_or_nothing(ref.path)
                rejects.append(
                    _reject_table(ref, day, [(n, "unreadable_file", t) for n, t in lines], detail[:2000])
                )
                file_rows.append(
                    {**base, "status": "unreadable", "records_in": len(lines), "detail": detail[:2000]}
                )
                continue
            base["format"] = parsed.format
            if _links_legs(parsed):
                legged.add(ref.switch.switch_id)
            linked = pc.not_equal(events["b_leg_id"], "")
            if pc.any(linked).as_py():  # rejected A-legs too: their B-leg is still not a call
                links.append(events.filter(linked).select(["switch_id", "b_leg_id", "native_id"])
                             .rename_columns(["switch_id", "b_leg_id", "a_leg_id"]))
            # A delivery is its name and its content: a changed file under a known name is new.
            events = events.add_column(
                4, "source_sha256", pa.array([ref.sha256] * events.num_rows, pa.string())
            )
            bad = pc.is_valid(events["reject_reason"])
            rejects.append(_reject_table(ref, day, parsed.bad_lines, None))
            rejects.append(
                pa.table(
                    {
                        "source_file": events.filter(bad)["source_file"],
                        "source_sha256": events.filter(bad)["source_sha256"],
                        "source_line": events.filter(bad)["source_line"],
                        "switch_id": events.filter(bad)["switch_id"],
                        "reason": events.filter(bad)["reject_reason"],
                        "field": events.filter(bad)["reject_field"],
                        "raw_line": events.filter(bad)["raw_line"],
                        "partition_day": pa.array([day] * int(pc.sum(bad).as_py() or 0), pa.date32()),
                    }
                )
            )
            # A good record's line is kept by reference (file hash and line), not in its row.
            good = events.filter(pc.invert(bad)).drop_columns(["reject_reason", "reject_field", "raw_line"])
            good = good.append_column("file_order", pa.array([order] * good.num_rows, pa.int32()))
            batches.append(good.append_column("local_minute", _local_minute(good, ref.switch.timezone)))
            file_rows.append({**base, "status": "processed", "records_in": parsed.records_in})
        return PreparedDay(
            day=day,
            events=pa.concat_tables(batches) if batches else None,
            rejects=pa.concat_tables(rejects) if rejects else None,
            file_rows=file_rows,
            redelivered=redelivered,
            a_legs=pa.concat_tables(links) if links else None,
            legged=frozenset(legged),
        )

    def write_day(self, prepared: PreparedDay, report: MediationReport) -> None:
        """De-duplicate, screen and write a prepared day in one transaction."""
        report.duplicates += prepared.redelivered
        report.records_in += prepared.redelivered
        with self.warehouse.transaction():
            # Runs of other days in parallel: one at a time from the key look-up to the commit,
            # so a record delivered on two days is kept once (by whichever day comes first).
            self.warehouse.serialize("mediation writes")
            self._classify_and_write(prepared, report)

    def _classify_and_write(self, prepared: PreparedDay, report: MediationReport) -> None:
        day, events, rejects, file_rows = prepared.day, prepared.events, prepared.rejects, prepared.file_rows
        wh = self.warehouse
        outcome = {"accepted": {}, "duplicates": {}, "quarantined": {}, "rejected": {}, "b_legs": {}}
        if rejects is not None and rejects.num_rows:
            wh.load("mediation.rejects", _screened(rejects), mode="append")
            report.add_counts("reject", rejects["reason"])
            outcome["rejected"] = _per_file(rejects["source_file"])
        report.rejected += rejects.num_rows if rejects is not None else 0
        if events is not None and events.num_rows:
            events = _with_keys(events, self.scratch).drop_columns(["record_id", "record_content"])
            known = self._known_keys(events["event_key"], events["event_day"])
            con = self.scratch
            try:
                con.register("ev", events)
                con.register("known", pa.table({"event_key": known}))
                dup = _arrow(
                    con.execute("""
                    select rid, case when k.event_key is not null then 'earlier delivery'
                                     else 'same batch' end as duplicate_of
                    from (select rid, event_key, row_number() over (
                              partition by event_key order by file_order, source_line) as n from ev) e
                    left join known k using (event_key)
                    where n > 1 or k.event_key is not null""")
                )
            finally:
                con.unregister("ev")
                con.unregister("known")
            is_dup = pc.is_in(events["rid"], value_set=dup["rid"])
            duplicates = events.filter(is_dup)
            fresh = events.filter(pc.invert(is_dup))
            fresh, b_legs = self._split_b_legs(fresh, prepared)
            # Only the columns the rules read (not the raw lines: less for DuckDB to scan and copy).
            screened = self._with_accounts(fresh.select(list(SCREEN_COLUMNS))) if fresh.num_rows else None
            flagged = screen(screened, self.fraud, self.scratch) if screened is not None else None
            is_bad = (
                pc.is_in(fresh["rid"], value_set=flagged["rid"])
                if flagged is not None
                else pa.array([False] * fresh.num_rows, pa.bool_())
            )
            accepted = fresh.filter(pc.invert(is_bad))
            quarantined = fresh.filter(is_bad)
            if quarantined.num_rows:
                position = pc.index_in(quarantined["rid"], value_set=flagged["rid"])
                quarantined = quarantined.append_column(
                    "fraud_rules", pc.take(flagged["fraud_rules"], position).cast(pa.string())
                )
                report.add_counts("fraud", quarantined["fraud_rules"])
            dup_rows = pa.table(
                {
                    "event_key": duplicates["event_key"],
                    "switch_id": duplicates["switch_id"],
                    "source_file": duplicates["source_file"],
                    "source_sha256": duplicates["source_sha256"],
                    "source_line": duplicates["source_line"],
                    "duplicate_of": pc.take(
                        dup["duplicate_of"], pc.index_in(duplicates["rid"], value_set=dup["rid"])
                    ),
                    "raw_line": pa.nulls(duplicates.num_rows, pa.string()),
                    "partition_day": pa.array([day] * duplicates.num_rows, pa.date32()),
                }
            )
            events_out = _screened(_event_columns(accepted, day, released=False))
            wh.load("mediation.events", events_out, mode="append")
            wh.load("mediation.quarantine", _screened(_quarantine_columns(quarantined, day)), mode="append")
            wh.load("mediation.duplicates", _screened(dup_rows), mode="append")
            if b_legs.num_rows:
                wh.load("mediation.b_legs", _screened(_b_leg_columns(b_legs, day)), mode="append")
            keys = pa.concat_tables(
                [
                    accepted.select(["event_key", "switch_id", "event_day"]),
                    quarantined.select(["event_key", "switch_id", "event_day"]),
                    b_legs.select(["event_key", "switch_id", "event_day"]),
                ]
            )
            wh.load("mediation.event_keys", keys, mode="append")
            outcome["accepted"] = _per_file(accepted["source_file"])
            outcome["duplicates"] = _per_file(duplicates["source_file"])
            outcome["quarantined"] = _per_file(quarantined["source_file"])
            outcome["b_legs"] = _per_file(b_legs["source_file"])
            report.b_legs += b_legs.num_rows
            report.accepted += accepted.num_rows
            report.duplicates += duplicates.num_rows
            report.quarantined += quarantined.num_rows
        for row in file_rows:
            if row["status"] == "duplicate_delivery":
                continue
            for key in ("accepted", "rejected", "duplicates", "quarantined", "b_legs"):
                row[key] = outcome[key].get(row["file_name"], 0)
            row.setdefault("detail", "")
            report.records_in += row["records_in"]
        report.files += len(file_rows)
        for row in file_rows:  # a file held before its day was a partition is mediated now
            if (row["file_name"], row["sha256"]) in self.held:
                wh.execute("delete from mediation.files where status = :held and file_name = :name "
                           "and sha256 = :sha",
                           {"held": HELD, "name": row["file_name"], "sha": row["sha256"]})
        if file_rows:
            wh.load("mediation.files", pa.Table.from_pylist(file_rows, schema=FILES_SCHEMA), mode="append")
        self._gate(day, report)
        fault_point("mediation.before_commit")

    def _layout(self, name: str) -> Layout:
        if name not in self.layouts:
            self.layouts[name] = load_layout(layout_path(self.reference_dir, name))
        return self.layouts[name]

    def _split_b_legs(self, events: pa.Table, prepared: PreparedDay) -> tuple[pa.Table, pa.Table]:
        """(calls, B-legs): a record of a switch that links legs (FreeSWITCH's bleg_uuid) is a
        B-leg when its uuid is the bleg_uuid of a record of this batch or of an A-leg mediated
        before (looked for around the batch's call days: both legs end at the same hangup)."""
        empty = events.slice(0, 0).append_column("a_leg_id", pa.array([], pa.string()))
        if not prepared.legged:
            return events, empty
        legged = pc.is_in(events["switch_id"], value_set=pa.array(sorted(prepared.legged)))
        candidates = events.filter(pc.and_(legged, pc.not_equal(events["native_id"], "")))
        links = [prepared.a_legs] if prepared.a_legs is not None else []
        if candidates.num_rows and self.warehouse.table_exists("mediation.events"):
            probe = pa.table({"switch_id": candidates["switch_id"], "b_leg_id": candidates["native_id"]})
            days = pc.min_max(candidates["event_day"]).as_py()
            stored = self.warehouse.query_arrow_with(
                "select distinct e.switch_id, e.b_leg_id, e.native_id as a_leg_id from ("
                "select switch_id, b_leg_id, native_id, event_day from mediation.events union all "
                "select switch_id, b_leg_id, native_id, event_day from mediation.quarantine) e "
                "join {probe} p on p.switch_id = e.switch_id and p.b_leg_id = e.b_leg_id "
                "where e.event_day between :first and :last",
                "probe", probe, {"first": days["min"] - timedelta(days=1),
                                 "last": days["max"] + timedelta(days=1)})
            links.append(stored.cast(pa.schema([(c, pa.string()) for c in stored.column_names])))
        if not links or not candidates.num_rows:
            return events, empty
        link = pa.concat_tables(links)
        con = self.scratch
        try:
            con.register("ev", events.select(["rid", "switch_id", "native_id"]))
            con.register("link", link)
            found = _arrow(con.execute("""
                select ev.rid, any_value(link.a_leg_id) as a_leg_id from ev
                join link on link.switch_id = ev.switch_id and link.b_leg_id = ev.native_id
                where ev.native_id <> '' and link.a_leg_id <> ev.native_id
                group by ev.rid"""))
        finally:
            con.unregister("ev")
            con.unregister("link")
        if not found.num_rows:
            return events, empty
        is_b = pc.is_in(events["rid"], value_set=found["rid"])
        b_legs = events.filter(is_b)
        b_legs = b_legs.append_column(
            "a_leg_id", pc.take(found["a_leg_id"], pc.index_in(b_legs["rid"], value_set=found["rid"])))
        return events.filter(pc.invert(is_b)), b_legs

    def _known_keys(self, keys: pa.ChunkedArray, days: pa.ChunkedArray) -> pa.Array:
        """The batch's keys already mediated. The same record has the same start, so the same
        event day: only those days of `event_keys` are read (its zone maps skip the rest)."""
        if not self.warehouse.table_exists("mediation.event_keys"):
            return pa.array([], pa.string())
        span = pc.min_max(days).as_py()
        found = self.warehouse.query_arrow_with(
            "select distinct e.event_key from mediation.event_keys e "
            "join {keys} k on k.event_key = e.event_key "
            "where e.event_day between :first and :last",
            "keys",
            pa.table({"event_key": pc.unique(keys.combine_chunks())}),
            {"first": span["min"], "last": span["max"]},
        )
        return found.column(0).combine_chunks().cast(pa.string())

    def _with_accounts(self, events: pa.Table) -> pa.Table:
        """Account and its active lines for each call (for the concurrency rule)."""
        n = events.num_rows
        if not self.has_orders:
            return events.append_column("account_id", pa.nulls(n, pa.string())).append_column(
                "lines", pa.nulls(n, pa.int64())
            )
        owners = owners_at(
            self.warehouse,
            pa.table({"rid": events["rid"], "number": events["calling_number"], "at": events["start_utc"]}),
        )
        lines = self.warehouse.query_arrow(
            "select account_id, count(*) as lines from orders.services where number is not null "
            "and active_to is null group by account_id"
        )
        con = self.scratch
        try:
            con.register("owners", owners.select(["rid", "account_id"]))
            con.register("acct_lines", lines)
            found = _arrow(
                con.execute("""
                select rid, any_value(o.account_id) as account_id, coalesce(any_value(l.lines), 1) as lines
                from owners o left join acct_lines l on l.account_id = o.account_id
                group by rid""")
            )
        finally:
            con.unregister("owners")
            con.unregister("acct_lines")
        idx = pc.index_in(events["rid"], value_set=found["rid"])
        return events.append_column("account_id", pc.take(found["account_id"], idx)).append_column(
            "lines", pc.fill_null(pc.take(found["lines"], idx), 1)
        )

    def _gate(self, day: date, report: MediationReport) -> None:
        """Quarantine share of the day; above the limit the day is blocked for rating."""
        wh = self.warehouse
        stats = wh.query_df(
            "select sum(records_in) as records_in, sum(accepted) as accepted, "
            "sum(quarantined) as quarantined from mediation.files where partition_day = :day",
            {"day": day},
        )
        accepted = int(stats["accepted"][0] or 0)
        quarantined = int(stats["quarantined"][0] or 0)
        share = quarantined / (accepted + quarantined) if accepted + quarantined else 0.0
        limit = self.fraud.day_limit(accepted + quarantined)
        row = pa.table(
            {
                "partition_day": pa.array([day], pa.date32()),
                "records_in": [int(stats["records_in"][0] or 0)],
                "accepted": [accepted],
                "quarantined": [quarantined],
                "quarantine_share": [share],
                "max_quarantine_share": [limit],
                "gate_passed": [share <= limit],
            }
        )
        if wh.table_exists("mediation.partition_status"):
            wh.execute("delete from mediation.partition_status where partition_day = :day", {"day": day})
        wh.load("mediation.partition_status", row, mode="append")
        if share > limit:
            report.gate_failed_days.append(day.isoformat())


def ensure_tables(warehouse: Warehouse) -> None:
    """The warehouse's tables, created or upgraded by the numbered migrations."""
    migrate(warehouse)


def _arrow(result) -> pa.Table:
    fetch = getattr(result, "fetch_arrow_table", None) or result.arrow
    table = fetch()
    return table if isinstance(table, pa.Table) else table.read_all()


def _with_keys(events: pa.Table, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Stable event key: `switch:record id` (the switch's own id for one record: Asterisk
    uniqueid:sequence, FreeSWITCH uuid, canonical event_id), else `h:` and a hash of the
    switch and the record's own fields. Adds `rid` (row id in the batch) and `event_key`."""
    record = events["record_id"]
    key = pc.binary_join_element_wise(events["switch_id"], ":", pc.fill_null(record, ""), "")
    missing = pc.is_null(record)
    if pc.any(missing).as_py():
        subset = events.filter(missing).select(["switch_id", "record_content"])
        try:
            con.register("ev", subset)
            hashed = _arrow(
                con.execute("select 'h:' || md5(switch_id || chr(31) || record_content) as k from ev")
            ).column(0)
        finally:
            con.unregister("ev")
        positions = pa.array(pc.cumulative_sum(pc.cast(missing, pa.int64())).to_numpy() - 1)
        key = pc.if_else(missing, pc.take(hashed, pc.if_else(missing, positions, 0)), key)
    rid = pa.array(range(1, events.num_rows + 1), pa.int64())
    return events.add_column(0, "event_key", key).add_column(0, "rid", rid)


def _local_minute(events: pa.Table, tz: str) -> pa.Array:
    local = events["start_utc"].cast(pa.timestamp("s", tz=tz))
    return pc.add(pc.multiply(pc.hour(local), 60), pc.minute(local))


def _per_file(column: pa.ChunkedArray) -> dict[str, int]:
    return {item["values"]: int(item["counts"]) for item in pc.value_counts(column).to_pylist()}


EVENT_COLUMNS = (
    "event_key",
    "native_id",
    "switch_id",
    "source_file",
    "source_sha256",
    "source_line",
    "service",
    "calling_number",
    "called_number",
    "dialed_number",
    "start_utc",
    "answer_utc",
    "end_utc",
    "duration",
    "billsec",
    "disposition",
    "answered",
    "account_code",
    "origin_country",
    "destination_country",
    "destination_prefix",
    "destination_name",
    "destination_kind",
    "call_type",
    "event_day",
    "raw_line",
    "partition_day",
    "b_leg_id",
)


def _with_day(events: pa.Table, day: date) -> pa.Table:
    """The event columns in the declared order, with the partition day (`raw_line` null: the
    line is read back from the archived file, see `raw_records`)."""
    n = events.num_rows
    table = events.append_column("partition_day", pa.array([day] * n, pa.date32()))
    table = table.append_column("raw_line", pa.nulls(n, pa.string()))
    return table.select(list(EVENT_COLUMNS))


def _event_columns(events: pa.Table, day: date, released: bool) -> pa.Table:
    table = _with_day(events, day)
    table = table.append_column("released", pa.array([released] * table.num_rows, pa.bool_()))
    return table.cast(TABLE_SCHEMAS["mediation.events"])


def _b_leg_columns(events: pa.Table, day: date) -> pa.Table:
    table = _with_day(events, day).append_column("a_leg_id", events["a_leg_id"].cast(pa.string()))
    return table.cast(TABLE_SCHEMAS["mediation.b_legs"])


def _quarantine_columns(events: pa.Table, day: date) -> pa.Table:
    n = events.num_rows
    rules = events["fraud_rules"] if "fraud_rules" in events.column_names else pa.nulls(n, pa.string())
    table = _with_day(events, day)
    table = (
        table.append_column("fraud_rules", rules.cast(pa.string()))
        .append_column("decision", pa.array(["pending"] * n, pa.string()))
        .append_column("decided_by", pa.nulls(n, pa.string()))
        .append_column("decided_at", pa.nulls(n, pa.timestamp("us", tz="UTC")))
        .append_column("note", pa.nulls(n, pa.string()))
    )
    return table.cast(TABLE_SCHEMAS["mediation.quarantine"])


def nonempty_lines(path: Path) -> list[tuple[int, str]]:
    """A drop file's non-empty lines with their line numbers (gzip read transparently)."""
    text = read_bytes(path).decode("utf-8", errors="replace").splitlines()
    return [(i, line) for i, line in enumerate(text, 1) if line.strip()]


def _count_records(ref: DropRef) -> int:
    return count_records(read_bytes(ref.path), ref.switch.format)


def _reject_table(ref: DropRef, day: date, bad: list[tuple[int, str, str]], detail: str | None) -> pa.Table:
    return pa.table(
        {
            "source_file": pa.array([ref.name] * len(bad), pa.string()),
            "source_sha256": pa.array([ref.sha256] * len(bad), pa.string()),
            "source_line": pa.array([b[0] for b in bad], pa.int64()),
            "switch_id": pa.array([ref.switch.switch_id] * len(bad), pa.string()),
            "reason": pa.array([b[1] for b in bad], pa.string()),
            "field": pa.array([detail or "(record)"] * len(bad), pa.string()),
            "raw_line": pa.array([b[2] for b in bad], pa.string()),
            "partition_day": pa.array([day] * len(bad), pa.date32()),
        }
    )


def mediate(warehouse: Warehouse, settings: Settings, days: list[date] | None = None) -> MediationReport:
    """Mediate every new file of the given days (all days with new files when None).

    Days are processed in order. While one day is de-duplicated, screened and written, the
    next day's files are parsed and normalized in a worker thread (Arrow releases the GIL),
    so both cores work. Which deliveries repeat earlier content is decided up front, in order.
    """
    first = clock.first_cdr_day()
    refs = [r for r in scan_drops(settings, days) if r.day >= first]
    report = MediationReport()
    with warehouse.bulk_session():
        mediator = Mediator(warehouse, settings)  # migrates the warehouse first
        _hold_early_files(warehouse, settings, first, report)
        mediator.held = _recorded_files(warehouse, held=True)
        seen = _recorded_files(warehouse)
        by_day: dict[date, list[DropRef]] = {}
        for ref in refs:
            if (ref.name, ref.sha256) not in seen:
                by_day.setdefault(ref.day, []).append(ref)
        known = {sha for _, sha in seen}  # contents already mediated, under any name
        plan = []
        for day in sorted(by_day):
            items = []
            for ref in by_day[day]:
                items.append((ref, ref.sha256 in known))
                known.add(ref.sha256)
            plan.append((day, items))
        progress = Progress("mediation", len(plan), "days")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="squak-parse") as pool:
            ahead = pool.submit(mediator.prepare_day, *plan[0]) if plan else None
            for index, (day, _) in enumerate(plan):
                prepared = ahead.result()
                ahead = pool.submit(mediator.prepare_day, *plan[index + 1]) if index + 1 < len(plan) else None
                report.days.append(day.isoformat())
                mediator.write_day(prepared, report)
                progress.advance()
    return report


def pending_days(warehouse: Warehouse, settings: Settings) -> list[str]:
    """Days (ISO) of the CDR partitions that have files not yet mediated."""
    seen = _recorded_files(warehouse)
    first = clock.first_cdr_day()
    return sorted({r.day.isoformat() for r in scan_drops(settings)
                   if (r.name, r.sha256) not in seen and r.day >= first})


def backfill_hint(first: date, early: list[DropRef]) -> str:
    """The one line that says how to mediate files stamped before the first partition ("" when
    there are none)."""
    if not early:
        return ""
    earliest = min(r.day for r in early)
    return (f"{len(early)} CDR file(s) are stamped before SQUAK_FIRST_CDR_DAY={first} (earliest {earliest}); "
            f"they are kept as `before_first_day` in mediation.files. To mediate them set "
            f"SQUAK_FIRST_CDR_DAY={earliest} and run `squak run` (or backfill the mediation "
            f"partitions from {earliest} in Dagster)")


def early_files_hint(settings: Settings) -> str:
    """The backfill line when the drop folder has files stamped before the first partition."""
    first = clock.first_cdr_day()
    return backfill_hint(first, scan_drops(settings, before=first))


def _hold_early_files(warehouse: Warehouse, settings: Settings, first: date, report: MediationReport) -> None:
    """Record each new file stamped before the first partition day once, whole, as held."""
    early = scan_drops(settings, before=first)
    if not early:
        return
    held = _recorded_files(warehouse, held=True)
    new = [r for r in early if (r.name, r.sha256) not in held]
    report.held_files = sorted(r.name for r in early)
    report.held_hint = backfill_hint(first, early)
    if not new:
        return
    rows = [{"file_name": r.name, "sha256": r.sha256, "switch_id": r.switch.switch_id,
             "format": r.switch.format, "partition_day": r.day, "status": HELD,
             "records_in": _count_records(r), "accepted": 0, "rejected": 0, "duplicates": 0,
             "quarantined": 0, "b_legs": 0, "detail": report.held_hint} for r in new]
    with warehouse.transaction():
        warehouse.load("mediation.files", pa.Table.from_pylist(rows, schema=FILES_SCHEMA), mode="append")


def mediated_days(warehouse: Warehouse) -> list[str]:
    """Days (ISO) that mediation has processed (whatever the gate said)."""
    if not warehouse.table_exists("mediation.partition_status"):
        return []
    frame = warehouse.query_df("select distinct partition_day from mediation.partition_status order by 1")
    return [str(d)[:10] for d in frame["partition_day"]]


def _recorded_files(warehouse: Warehouse, held: bool = False) -> set[tuple[str, str]]:
    """(name, sha256) of every delivery already handled (a file is handled once per content);
    a file held `before_first_day` is not handled yet. `held`: those held files instead."""
    if not warehouse.table_exists("mediation.files"):
        return set()
    table = warehouse.query_arrow(
        f"select file_name, sha256 from mediation.files where status {'=' if held else '<>'} :s", {"s": HELD})
    return set(zip(table["file_name"].to_pylist(), table["sha256"].to_pylist(), strict=True))
