"""Normalize parsed records to Squak's event schema and enrich them, column-wise.

Event schema: native_id, switch_id, source_file, source_line, service, calling_number,
called_number (E.164, or a short code), dialed_number, start_utc, answer_utc, end_utc,
duration, billsec, disposition (ANSWERED, NO ANSWER, BUSY, FAILED, DELIVERED), answered,
account_code, origin_country, destination_country, destination_prefix, destination_name,
destination_kind, call_type, event_day (UTC date of start), raw_line; plus `reject_reason`
and `reject_field` for records that fail a rule.

Reject reasons (each names its field): missing_field, non_numeric_number, invalid_number (a
'+' number of a country code or length libphonenumber does not know), unparseable_time,
negative_duration, call_too_long (past `max_call_seconds` of reference/limits.yaml),
end_before_start (also answer before start, or billsec longer than the call).
Call types: emergency, internal (an extension or feature code such as `1002` or `*1001`,
kept as dialled), onnet, tollfree, premium, international, mobile, local, national.

Identity (`record_id`; `stage._with_keys` makes the event key of it): Asterisk's uniqueid
plus `sequence` where the 21-column layout writes it, else none, and the key is a hash of the
record's own fields (Asterisk 12+ writes one CDR per leg and dial attempt, all with Party A's
uniqueid); FreeSWITCH's uuid, with `bleg_uuid` kept as `b_leg_id`; canonical `event_id`.

Times: a zone-less local time that a DST change makes ambiguous (or that falls in the gap) is
read at the offset that fits the record: the start nearest the Asterisk uniqueid's epoch, the
end that makes end - start = duration, the answer that makes end - answer = billsec.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.limits import Limits
from squak_pipelines.mediation.answered import answered_mask
from squak_pipelines.mediation.layouts import ROLES
from squak_pipelines.mediation.numbering import (
    DialingRules,
    NumberingPlan,
    clean,
    is_internal,
    is_numeric,
    to_e164,
)
from squak_pipelines.mediation.numbering_metadata import classify
from squak_pipelines.mediation.parsers import UNIQUEID_SHAPE, ParsedFile

LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EPOCH = "epoch"
FS_DISPOSITION = {
    "NORMAL_CLEARING": "ANSWERED",
    "NO_ANSWER": "NO ANSWER",
    "ORIGINATOR_CANCEL": "NO ANSWER",
    "NO_USER_RESPONSE": "NO ANSWER",
    "USER_BUSY": "BUSY",
}
TS = pa.timestamp("s", tz="UTC")


@dataclass(frozen=True)
class Switch:
    switch_id: str
    format: str
    timezone: str
    country: str
    layout: str = ""  # a layout file of reference/layouts/ (custom CDR templates)


def _col(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names:
        return table.column(name).combine_chunks()
    return _repeat("", table.num_rows)


def _id(values: pa.Array) -> pa.Array:
    """A switch's record id, null where the switch wrote none."""
    return pc.if_else(pc.equal(values, ""), None, values)


def _fs_disposition(cause: pa.Array) -> pa.Array:
    """FreeSWITCH hangup cause -> disposition (anything else: FAILED)."""
    position = pc.index_in(cause, value_set=pa.array(list(FS_DISPOSITION)))
    return pc.fill_null(pc.take(pa.array(list(FS_DISPOSITION.values())), position), "FAILED")


def _layout_fields(parsed: ParsedFile) -> dict[str, pa.Array]:
    """The roles of a switch's layout file (`layouts.ROLES`); "" where the layout has none."""
    t, layout = parsed.table, parsed.layout
    role = {name: _col(t, name) for name in ROLES}
    for name in ("duration", "billsec"):  # ${CDR(billsec,f)}: whole seconds as Asterisk counts them
        role[name] = pc.replace_substring_regex(role[name], r"^(-?[0-9]+)\.[0-9]*$", r"\1")
    disposition = pc.utf8_upper(role["disposition"])
    if layout.disposition == "freeswitch":
        disposition = _fs_disposition(role["disposition"])
    service = pc.utf8_lower(role["service"])
    return {
        "record_id": _id(role["record_id"]),
        "b_leg_id": role["b_leg_id"],
        "native_id": role["record_id"],
        "calling": role["calling_number"],
        "called": role["called_number"],
        "start": role["start_time"],
        "answer": role["answer_time"],
        "end": role["end_time"],
        "duration": role["duration"],
        "billsec": role["billsec"],
        "disposition": disposition,
        "service": pc.if_else(pc.equal(service, ""), "voice", service),
        "account_code": role["account_code"],
    }


def _fields(parsed: ParsedFile) -> dict[str, pa.Array]:
    t = parsed.table
    if parsed.layout is not None:
        return _layout_fields(parsed)
    if parsed.format == "asterisk":
        uniqueid, sequence = _col(t, "uniqueid"), _col(t, "sequence")
        sequenced = pc.and_(pc.not_equal(uniqueid, ""), pc.not_equal(sequence, ""))
        return {
            "record_id": pc.if_else(sequenced, pc.binary_join_element_wise(uniqueid, sequence, ":"), None),
            "native_id": uniqueid,
            "calling": _col(t, "src"),
            "called": _col(t, "dst"),
            "start": _col(t, "start"),
            "answer": _col(t, "answer"),
            "end": _col(t, "end"),
            "duration": _col(t, "duration"),
            "billsec": _col(t, "billsec"),
            "disposition": _col(t, "disposition"),
            "service": _repeat("voice", t.num_rows),
            "account_code": _col(t, "accountcode"),
        }
    if parsed.format == "freeswitch":
        mapped = _fs_disposition(_col(t, "hangup_cause"))
        return {
            "record_id": _id(_col(t, "uuid")),
            "b_leg_id": _col(t, "bleg_uuid"),
            "native_id": _col(t, "uuid"),
            "calling": _col(t, "caller_id_number"),
            "called": _col(t, "destination_number"),
            "start": _col(t, "start_stamp"),
            "answer": _col(t, "answer_stamp"),
            "end": _col(t, "end_stamp"),
            "duration": _col(t, "duration"),
            "billsec": _col(t, "billsec"),
            "disposition": mapped,
            "service": _repeat("voice", t.num_rows),
            "account_code": _col(t, "accountcode"),
        }
    return {
        "record_id": _id(_col(t, "event_id")),
        "native_id": _col(t, "event_id"),
        "calling": _col(t, "calling_number"),
        "called": _col(t, "called_number"),
        "start": _col(t, "start_time"),
        "answer": _col(t, "answer_time"),
        "end": _col(t, "end_time"),
        "duration": _col(t, "duration"),
        "billsec": _col(t, "billsec"),
        "disposition": pc.utf8_upper(_col(t, "disposition")),
        "service": pc.utf8_lower(_col(t, "service")),
        "account_code": _col(t, "account_code"),
    }


def _times(values: pa.Array, fmt: str, tz: str) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(UTC timestamps at the offset before a DST change, at the offset after it, bad mask):
    the two differ only where the change makes the local time ambiguous or non-existent.
    Empty -> null and not bad; unparseable -> bad."""
    empty = pc.equal(values, "")
    if fmt == EPOCH:  # seconds since 1970 (cdr_custom's ${CDR(start,u)}): UTC by definition
        whole = pc.extract_regex(values, r"^(?P<s>[0-9]{1,11})(?:\.[0-9]*)?$")
        utc = pc.cast(pc.struct_field(whole, "s"), pa.int64()).cast(pa.timestamp("s")).cast(TS)
        return utc, utc, pc.and_(pc.invert(empty), pc.is_null(utc))
    naive = pc.strptime(pc.if_else(empty, None, values), format=fmt, unit="s", error_is_null=True)
    bad = pc.and_(pc.invert(empty), pc.is_null(naive))
    if fmt == ISO_FORMAT:
        utc = naive.cast(TS) if pa.types.is_timestamp(naive.type) and naive.type.tz else pc.assume_timezone(
            naive, timezone="UTC"
        ).cast(TS)
        return utc, utc, bad
    if not _near_transition(naive, tz):  # the usual file: one reading (a day far from DST)
        utc = pc.assume_timezone(naive, timezone=tz, ambiguous="earliest", nonexistent="earliest").cast(TS)
        return utc, utc, bad
    seconds = naive.cast(pa.int64())
    out = []
    for side in ("earliest", "latest"):
        instant = pc.assume_timezone(naive, timezone=tz, ambiguous=side, nonexistent=side)
        offset = pc.subtract(pc.local_timestamp(instant).cast(pa.int64()), instant.cast(pa.int64()))
        out.append(pc.subtract(seconds, offset).cast(pa.timestamp("s")).cast(TS))
    return out[0], out[1], bad


@lru_cache(maxsize=256)
def _transitions(tz: str, year: int) -> tuple[int, ...]:
    """Local wall-clock instants (naive epoch seconds) of the zone's offset changes in a year."""
    zone = ZoneInfo(tz)
    found, day = [], datetime(year, 1, 1, tzinfo=UTC)
    offset = day.astimezone(zone).utcoffset()
    for hour in range(0, 366 * 24, 1):
        at = day + timedelta(hours=hour)
        now = at.astimezone(zone).utcoffset()
        if now != offset:
            found.append(int((at.replace(tzinfo=None) + (now or timedelta())).timestamp()
                             - datetime(1970, 1, 1).timestamp()))
            offset = now
    return tuple(found)


def _near_transition(naive: pa.Array, tz: str) -> bool:
    """Whether any of these local times is within a few hours of a DST change in `tz`."""
    span = pc.min_max(naive).as_py()
    if span["min"] is None:
        return False
    low, high = span["min"], span["max"]
    margin = 3 * 3600
    lo_s = int((low - datetime(1970, 1, 1)).total_seconds()) - margin
    hi_s = int((high - datetime(1970, 1, 1)).total_seconds()) + margin
    for year in range(low.year, min(high.year, low.year + 40) + 1):
        if any(lo_s <= t <= hi_s for t in _transitions(tz, year)):
            return True
    return high.year - low.year > 40  # a file spanning decades: read every time both ways


def _nearest(a: pa.Array, b: pa.Array, target: pa.Array) -> pa.Array:
    """a, or b where b is strictly nearer `target` (a where target is null)."""
    da = pc.abs(pc.subtract(a.cast(pa.int64()), target))
    db = pc.abs(pc.subtract(b.cast(pa.int64()), target))
    return pc.if_else(pc.fill_null(pc.less(db, da), False), b, a)


def _resolve_dst(start, end, answer, duration, billsec, epoch_of) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Each time at the side of a DST change the record itself supports (see module doc).
    `epoch_of()` gives the Asterisk uniqueid epochs (only computed when a time is ambiguous)."""
    (s1, s2), (e1, e2), (a1, a2) = start, end, answer
    if s1 is s2 and e1 is e2 and a1 is a2:
        return s1, e1, a1  # no time of this file is near a change (the usual case: one pass)
    if pc.all(pc.and_(pc.equal(s1, s2), pc.and_(pc.equal(e1, e2), pc.equal(a1, a2)))).as_py() is not False:
        return s1, e1, a1
    epoch = epoch_of()
    s = _nearest(s1, s2, epoch)
    # Without an epoch the start is the one that gives some end the stated duration.
    def misfit(start_at: pa.Array) -> pa.Array:
        gaps = [pc.subtract(pc.subtract(x.cast(pa.int64()), start_at.cast(pa.int64())), duration)
                for x in (e1, e2)]
        return pc.min_element_wise(pc.abs(gaps[0]), pc.abs(gaps[1]))

    fits = pc.fill_null(pc.less(misfit(s2), misfit(s1)), False)
    s = pc.if_else(pc.is_null(epoch), pc.if_else(fits, s2, s1), s)
    e = _nearest(e1, e2, pc.add(s.cast(pa.int64()), duration))
    a = _nearest(a1, a2, pc.subtract(e.cast(pa.int64()), billsec))
    return s, e, a


def _uniqueid_epoch(native_id: pa.Array, fmt: str) -> pa.Array:
    """The channel's creation second an Asterisk uniqueid carries ([system-]epoch.counter)."""
    if fmt != "asterisk":
        return pa.nulls(len(native_id), pa.int64())
    digits = pc.extract_regex(native_id, UNIQUEID_SHAPE)
    return pc.cast(pc.struct_field(digits, "epoch"), pa.int64())


def _ints(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    ok = pc.match_substring_regex(values, r"^-?[0-9]{1,18}$")
    return pc.cast(pc.if_else(ok, values, None), pa.int64()), pc.invert(ok)


def normalize(
    parsed: ParsedFile,
    switch: Switch,
    rules: dict[str, DialingRules],
    plan: NumberingPlan,
    onnet_numbers: pa.Array,
    source_file: str,
    max_call_seconds: int = Limits().max_call_seconds,
) -> pa.Table:
    """One file's records as events (with reject_reason set on the bad ones)."""
    f = _fields(parsed)
    n = parsed.table.num_rows
    home = rules.get(switch.country) or next(iter(rules.values()))
    if parsed.layout is not None:
        fmt, tz = parsed.layout.time_format, parsed.layout.timezone or switch.timezone
    else:
        fmt, tz = (ISO_FORMAT, "UTC") if parsed.format == "canonical" else (LOCAL_FORMAT, switch.timezone)
    *start, bad_start = _times(f["start"], fmt, tz)
    *answer, bad_answer = _times(f["answer"], fmt, tz)
    *end, bad_end = _times(f["end"], fmt, tz)
    duration, bad_duration = _ints(f["duration"])
    billsec, bad_billsec = _ints(f["billsec"])
    start, end, answer = _resolve_dst(start, end, answer, duration, billsec,
                                      lambda: _uniqueid_epoch(f["native_id"], parsed.format))
    calling_clean, called_clean = clean(f["calling"]), clean(f["called"])
    calling = to_e164(calling_clean, home, cleaned=True)
    calling_info = plan.lookup(calling)
    origin = pc.fill_null(calling_info["country"], switch.country)
    called = _called_e164(called_clean, origin, rules, home)
    called_info = plan.lookup(called)
    # The operator's numbering plan names destinations; where it is more specific than the
    # country code it is the operator's override. libphonenumber's metadata gives the country
    # and type of every other number (an unassigned range: `invalid`).
    override = pc.fill_null(called_info["specific"], False)
    library = classify(called, typed=pc.invert(override))
    emergency = _is_emergency(called, origin, switch.country, rules)
    derived = (parsed.layout.disposition == "freeswitch") if parsed.layout else parsed.format == "freeswitch"
    answered = answered_mask(f["service"], f["disposition"], answer, billsec, derived=derived)
    disposition = pc.if_else(
        pc.and_(pc.equal(f["disposition"], "ANSWERED"), pc.invert(answered)), "NO ANSWER", f["disposition"]
    )
    calling_ok, called_ok = _number_ok(calling_clean), _number_ok(called_clean)
    e164_called = pc.starts_with(called, "+")

    reasons = [
        (pc.equal(f["calling"], ""), "missing_field", "calling_number"),
        (pc.equal(f["called"], ""), "missing_field", "called_number"),
        (pc.equal(f["start"], ""), "missing_field", "start_time"),
        (pc.invert(calling_ok), "non_numeric_number", "calling_number"),
        (pc.invert(called_ok), "non_numeric_number", "called_number"),
        (pc.and_(pc.and_(e164_called, pc.invert(library.possible)), pc.invert(emergency)),
         "invalid_number", "called_number"),
        (bad_start, "unparseable_time", "start_time"),
        (bad_answer, "unparseable_time", "answer_time"),
        (pc.or_(bad_end, pc.is_null(end)), "unparseable_time", "end_time"),
        (bad_duration, "negative_duration", "duration"),
        (bad_billsec, "negative_duration", "billsec"),
        (pc.less(pc.fill_null(duration, 0), 0), "negative_duration", "duration"),
        (pc.less(pc.fill_null(billsec, 0), 0), "negative_duration", "billsec"),
        (pc.greater(pc.fill_null(duration, 0), max_call_seconds), "call_too_long", "duration"),
        (pc.greater(pc.fill_null(billsec, 0), max_call_seconds), "call_too_long", "billsec"),
        (pc.less(end, start), "end_before_start", "end_time"),
        (pc.less(pc.fill_null(answer, start), start), "end_before_start", "answer_time"),
        (pc.greater(billsec, duration), "end_before_start", "billsec"),
    ]
    reason = pa.nulls(n, pa.string())
    field = pa.nulls(n, pa.string())
    for mask, code, name in reversed(reasons):  # the first rule in the list wins
        mask = pc.fill_null(mask, False)
        if not pc.any(mask).as_py():  # most rules hold for every record of a file
            continue
        reason = pc.if_else(mask, code, reason)
        field = pc.if_else(mask, name, field)

    dest_country = pc.coalesce(called_info["country"], library.region)
    kind = pc.if_else(override, called_info["kind"], pc.coalesce(library.kind, called_info["kind"]))
    none = pa.array([False] * n, pa.bool_())
    onnet = pc.is_in(called, value_set=onnet_numbers) if len(onnet_numbers) else none
    internal = pc.and_(pc.invert(e164_called), pc.invert(emergency))
    local = pc.and_(
        pc.equal(called_info["prefix"], calling_info["prefix"]),
        pc.greater(
            pc.utf8_length(pc.fill_null(called_info["prefix"], "")),
            pc.utf8_length(pc.fill_null(_cc(origin, rules), "")),
        ),
    )
    call_type = pc.case_when(
        pc.make_struct(
            emergency,
            internal,
            onnet,
            pc.equal(kind, "tollfree"),
            pc.equal(kind, "premium"),
            pc.not_equal(dest_country, origin),
            pc.equal(kind, "mobile"),
            local,
        ),
        "emergency",
        "internal",
        "onnet",
        "tollfree",
        "premium",
        "international",
        "mobile",
        "local",
        "national",
    )
    record_id = f["record_id"]  # null where the switch wrote no id of its own
    content = _content(parsed.table) if pc.any(pc.is_null(record_id)).as_py() else pa.nulls(n, pa.string())
    return pa.table(
        {
            "record_id": record_id,
            "record_content": content,
            "native_id": f["native_id"],
            "switch_id": _repeat(switch.switch_id, n),
            "source_file": _repeat(source_file, n),
            "source_line": pa.array(parsed.line_no, pa.int64()),
            "service": f["service"],
            "calling_number": calling,
            "called_number": called,
            "dialed_number": f["called"],
            "start_utc": start,
            "answer_utc": answer,
            "end_utc": end,
            "duration": duration,
            "billsec": billsec,
            "disposition": disposition,
            "answered": answered,
            "account_code": f["account_code"],
            "origin_country": origin,
            "destination_country": dest_country,
            "destination_prefix": called_info["prefix"],
            "destination_name": called_info["destination"],
            "destination_kind": kind,
            "call_type": call_type,
            "event_day": pc.cast(start, pa.date32()),
            "raw_line": parsed.raw,
            "b_leg_id": f.get("b_leg_id", _repeat("", n)),
            "reject_reason": reason,
            "reject_field": field,
        }
    )


def _repeat(value: str, n: int) -> pa.Array:
    """`value` n times (one take in C, not a Python list of n strings)."""
    return pc.take(pa.array([value], pa.string()), pa.array(np.zeros(n, dtype=np.int32)))


def _number_ok(cleaned: pa.Array) -> pa.Array:
    """Digits (an optional '+'), or an extension or feature code (looked at only when needed)."""
    numeric = is_numeric(cleaned)
    if pc.all(pc.fill_null(numeric, False)).as_py() is not False:
        return numeric
    return pc.or_(numeric, is_internal(cleaned))


def _content(table: pa.Table) -> pa.Array:
    """Every field of each record as parsed (quotes undone), joined: its identity when the
    switch writes no id of its own. A re-delivery (another file name, line, line ending or
    quoting) leaves it unchanged."""
    columns = [table.column(c).combine_chunks() for c in table.column_names]
    return pc.binary_join_element_wise(*columns, "\x1f")


def _cc(origin: pa.Array, rules: dict[str, DialingRules]) -> pa.Array:
    countries = list(rules)
    return pc.take(
        pa.array([rules[c].country_code for c in countries]),
        pc.index_in(origin, value_set=pa.array(countries)),
    )


def _called_e164(
    called: pa.Array, origin: pa.Array, rules: dict[str, DialingRules], home: DialingRules
) -> pa.Array:
    """Dialled numbers (cleaned) are read with the caller's country rules (E.164 passes
    through)."""
    out = to_e164(called, home, cleaned=True)
    for country, rule in rules.items():
        if rule is home:
            continue
        mask = pc.equal(origin, country)
        if pc.any(mask).as_py():
            out = pc.if_else(mask, to_e164(called, rule, cleaned=True), out)
    return out


def _is_emergency(called: pa.Array, origin: pa.Array, switch_country: str,
                  rules: dict[str, DialingRules]) -> pa.Array:
    """An emergency short code of the caller's number's country or of the country the switch
    is in (where the phone is: a roaming or foreign number dialling 112 in London is an
    emergency call there)."""
    result = pa.array([False] * len(called), pa.bool_())
    for country, rule in rules.items():
        if rule.emergency:
            where = pc.or_(pc.equal(origin, country), pa.scalar(switch_country == country))
            hit = pc.and_(where, pc.is_in(called, value_set=pa.array(rule.emergency)))
            result = pc.or_(result, pc.fill_null(hit, False))
    return result
