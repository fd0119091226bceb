"""Normalize parsed records to Squak's event schema and enrich them, column-wise.

Event schema: native_id, switch_id, source_file, source_line, service, calling_number,
called_number (E.164, or a short code), dialed_number, start_utc, answer_utc, end_utc,
duration, billsec, disposition (ANSWERED, NO ANSWER, BUSY, FAILED, DELIVERED), answered,
account_code, origin_country, destination_country, destination_prefix, destination_name,
destination_kind, call_type, event_day (UTC date of start), raw_line; plus `reject_reason`
and `reject_field` for records that fail a rule.

Reject reasons: missing_field, non_numeric_number, unparseable_time, negative_duration,
call_too_long (past `max_call_seconds` of reference/limits.yaml), end_before_start (also
answer before start, or billsec longer than the call).
Call types: emergency, onnet, tollfree, premium, international, mobile, local, national.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.limits import Limits
from squak_pipelines.mediation.numbering import DialingRules, NumberingPlan, is_numeric, to_e164
from squak_pipelines.mediation.parsers import ParsedFile

LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
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


def _col(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names:
        return table.column(name).combine_chunks()
    return pa.array([""] * table.num_rows, pa.string())


def _fields(parsed: ParsedFile) -> dict[str, pa.Array]:
    t = parsed.table
    if parsed.format == "asterisk":
        return {
            "native_id": _col(t, "uniqueid"),
            "calling": _col(t, "src"),
            "called": _col(t, "dst"),
            "start": _col(t, "start"),
            "answer": _col(t, "answer"),
            "end": _col(t, "end"),
            "duration": _col(t, "duration"),
            "billsec": _col(t, "billsec"),
            "disposition": _col(t, "disposition"),
            "service": pa.array(["voice"] * t.num_rows),
            "account_code": _col(t, "accountcode"),
        }
    if parsed.format == "freeswitch":
        cause = _col(t, "hangup_cause")
        mapped = pc.fill_null(
            pc.take(
                pa.array(list(FS_DISPOSITION.values())),
                pc.index_in(cause, value_set=pa.array(list(FS_DISPOSITION))),
            ),
            "FAILED",
        )
        return {
            "native_id": _col(t, "uuid"),
            "calling": _col(t, "caller_id_number"),
            "called": _col(t, "destination_number"),
            "start": _col(t, "start_stamp"),
            "answer": _col(t, "answer_stamp"),
            "end": _col(t, "end_stamp"),
            "duration": _col(t, "duration"),
            "billsec": _col(t, "billsec"),
            "disposition": mapped,
            "service": pa.array(["voice"] * t.num_rows),
            "account_code": _col(t, "accountcode"),
        }
    return {
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


def _times(values: pa.Array, fmt: str, tz: str) -> tuple[pa.Array, pa.Array]:
    """(UTC timestamps, bad mask): empty -> null and not bad; unparseable -> bad."""
    empty = pc.equal(values, "")
    naive = pc.strptime(pc.if_else(empty, None, values), format=fmt, unit="s", error_is_null=True)
    bad = pc.and_(pc.invert(empty), pc.is_null(naive))
    if fmt == ISO_FORMAT:
        return naive.cast(TS) if pa.types.is_timestamp(naive.type) and naive.type.tz else pc.assume_timezone(
            naive, timezone="UTC"
        ).cast(TS), bad
    return pc.assume_timezone(naive, timezone=tz, ambiguous="earliest", nonexistent="earliest").cast(TS), bad


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
    fmt, tz = (ISO_FORMAT, "UTC") if parsed.format == "canonical" else (LOCAL_FORMAT, switch.timezone)
    start, bad_start = _times(f["start"], fmt, tz)
    answer, bad_answer = _times(f["answer"], fmt, tz)
    end, bad_end = _times(f["end"], fmt, tz)
    duration, bad_duration = _ints(f["duration"])
    billsec, bad_billsec = _ints(f["billsec"])
    calling = to_e164(f["calling"], home)
    calling_info = plan.lookup(calling)
    origin = pc.fill_null(calling_info["country"], switch.country)
    called = _called_e164(f["called"], origin, rules, home)
    called_info = plan.lookup(called)
    emergency = _is_emergency(called, origin, rules)
    answered = pc.and_(pc.is_valid(answer), pc.greater(pc.fill_null(billsec, 0), 0))
    is_sms = pc.equal(f["service"], "sms")
    answered = pc.if_else(is_sms, pc.equal(f["disposition"], "DELIVERED"), answered)
    disposition = pc.if_else(
        pc.and_(pc.equal(f["disposition"], "ANSWERED"), pc.invert(answered)), "NO ANSWER", f["disposition"]
    )

    reasons = [
        (
            pc.or_(pc.equal(f["calling"], ""), pc.or_(pc.equal(f["called"], ""), pc.equal(f["start"], ""))),
            "missing_field",
            "calling/called/start",
        ),
        (
            pc.or_(
                pc.invert(is_numeric(pc.replace_substring_regex(f["calling"], r"[\s().\-]", ""))),
                pc.invert(is_numeric(pc.replace_substring_regex(f["called"], r"[\s().\-]", ""))),
            ),
            "non_numeric_number",
            "called_number",
        ),
        (
            pc.or_(bad_start, pc.or_(bad_answer, pc.or_(bad_end, pc.is_null(end)))),
            "unparseable_time",
            "start/answer/end",
        ),
        (pc.or_(bad_duration, bad_billsec), "negative_duration", "duration/billsec"),
        (
            pc.or_(pc.less(pc.fill_null(duration, 0), 0), pc.less(pc.fill_null(billsec, 0), 0)),
            "negative_duration",
            "duration/billsec",
        ),
        (
            pc.or_(pc.greater(pc.fill_null(duration, 0), max_call_seconds),
                   pc.greater(pc.fill_null(billsec, 0), max_call_seconds)),
            "call_too_long",
            "duration/billsec",
        ),
        (
            pc.or_(
                pc.less(end, start),
                pc.or_(pc.less(pc.fill_null(answer, start), start), pc.greater(billsec, duration)),
            ),
            "end_before_start",
            "end",
        ),
    ]
    reason = pa.nulls(n, pa.string())
    field = pa.nulls(n, pa.string())
    for mask, code, name in reversed(reasons):  # the first rule in the list wins
        mask = pc.fill_null(mask, False)
        reason = pc.if_else(mask, code, reason)
        field = pc.if_else(mask, name, field)

    dest_country = called_info["country"]
    kind = called_info["kind"]
    none = pa.array([False] * n, pa.bool_())
    onnet = pc.is_in(called, value_set=onnet_numbers) if len(onnet_numbers) else none
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
            onnet,
            pc.equal(kind, "tollfree"),
            pc.equal(kind, "premium"),
            pc.not_equal(dest_country, origin),
            pc.equal(kind, "mobile"),
            local,
        ),
        "emergency",
        "onnet",
        "tollfree",
        "premium",
        "international",
        "mobile",
        "local",
        "national",
    )
    return pa.table(
        {
            "native_id": f["native_id"],
            "switch_id": pa.array([switch.switch_id] * n),
            "source_file": pa.array([source_file] * n),
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
            "reject_reason": reason,
            "reject_field": field,
        }
    )


def _cc(origin: pa.Array, rules: dict[str, DialingRules]) -> pa.Array:
    countries = list(rules)
    return pc.take(
        pa.array([rules[c].country_code for c in countries]),
        pc.index_in(origin, value_set=pa.array(countries)),
    )


def _called_e164(
    called: pa.Array, origin: pa.Array, rules: dict[str, DialingRules], home: DialingRules
) -> pa.Array:
    """Dialled numbers are read with the caller's country rules (E.164 passes through)."""
    out = to_e164(called, home)
    for country, rule in rules.items():
        if rule is home:
            continue
        mask = pc.equal(origin, country)
        if pc.any(mask).as_py():
            out = pc.if_else(mask, to_e164(called, rule), out)
    return out


def _is_emergency(called: pa.Array, origin: pa.Array, rules: dict[str, DialingRules]) -> pa.Array:
    result = pa.array([False] * len(called))
    for country, rule in rules.items():
        if rule.emergency:
            hit = pc.and_(pc.equal(origin, country), pc.is_in(called, value_set=pa.array(rule.emergency)))
            result = pc.or_(result, pc.fill_null(hit, False))
    return result
