"""Render truth frames as each switch writes its CDR file.

- Asterisk `cdr_csv` Master.csv: 16 standard columns plus the uniqueid, userfield,
  peeraccount, linkedid, sequence tail; strings quoted, duration/billsec/sequence bare;
  local time of the switch; empty answer time for unanswered calls.
- FreeSWITCH `mod_cdr_csv` `default` template: 13 quoted fields, local time.
- Squak canonical CSV: header row, E.164 numbers, ISO 8601 UTC times.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ASTERISK_COLUMNS = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel",
                    "lastapp", "lastdata", "start", "answer", "end", "duration", "billsec",
                    "disposition", "amaflags", "uniqueid", "userfield", "peeraccount",
                    "linkedid", "sequence")
FREESWITCH_COLUMNS = ("caller_id_name", "caller_id_number", "destination_number", "context",
                      "start_stamp", "answer_stamp", "end_stamp", "duration", "billsec",
                      "hangup_cause", "uuid", "bleg_uuid", "accountcode")
CANONICAL_COLUMNS = ("event_id", "source", "service", "calling_number", "called_number",
                     "start_time", "answer_time", "end_time", "duration", "billsec",
                     "disposition", "account_code")
# Field positions the fault injector edits, per format.
FIELD_POS = {
    "asterisk": {"called": 2, "start": 9, "end": 11, "duration": 12},
    "freeswitch": {"called": 2, "start": 4, "end": 6, "duration": 7},
    "canonical": {"called": 4, "start": 5, "end": 7, "duration": 8},
}
HANGUP_CAUSE = {"ANSWERED": "NORMAL_CLEARING", "NO ANSWER": "NO_ANSWER", "BUSY": "USER_BUSY",
                "FAILED": "NO_ROUTE_DESTINATION"}


def _cat(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _local(epoch: np.ndarray, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> pa.Array:
    arr = pa.array(np.where(epoch < 0, 0, epoch), pa.timestamp("s", tz="UTC"))
    text = pc.strftime(arr.cast(pa.timestamp("s", tz=tz)), format=fmt)
    return pc.if_else(pa.array(epoch < 0), "", text)


def _digits(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(str) if values.dtype != object else values, pa.string())


def _nanp_national(e164: pa.Array) -> pa.Array:
    """+1 NXX NXX XXXX written as the 10-digit national number."""
    nanp = pc.and_(pc.starts_with(e164, "1"), pc.equal(pc.utf8_length(e164), 11))
    return pc.if_else(nanp, pc.utf8_slice_codeunits(e164, 1), e164)


def _dialed_us(rng: np.random.Generator, e164: pa.Array, ten_digit_share: float) -> pa.Array:
    """What a US caller dials: 10 or 11 digits in NANP, 011 + number abroad, short codes."""
    nanp = pc.and_(pc.starts_with(e164, "1"), pc.equal(pc.utf8_length(e164), 11))
    short = pc.less_equal(pc.utf8_length(e164), 4)
    ten = pa.array(rng.random(len(e164)) < ten_digit_share)
    national = pc.if_else(ten, pc.utf8_slice_codeunits(e164, 1), e164)
    return pc.if_else(short, e164, pc.if_else(nanp, national, _cat("011", e164)))


def _uuids(rng: np.random.Generator, n: int) -> pa.Array:
    raw = np.frombuffer(rng.bytes(16 * n).hex().encode(), dtype="S32")
    h = pa.array(raw).cast(pa.string())
    cut = [pc.utf8_slice_codeunits(h, a, b) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return pc.binary_join_element_wise(*cut, "-")


def render_asterisk(df: pd.DataFrame, tz: str, rng: np.random.Generator, seq0: int) -> pa.Table:
    n = len(df)
    seq = np.arange(seq0, seq0 + n)
    src = _nanp_national(_digits(df["calling"].to_numpy()))
    dst = _dialed_us(rng, _digits(df["called"].to_numpy()), 0.6)
    hexseq = pc.utf8_lpad(pa.array(np.char.mod("%x", seq % 0xFFFFFFFF)), 8, "0")
    start = df["start"].to_numpy().astype(np.int64)
    uniqueid = _cat(pa.array(start.astype(str)), ".", pa.array(seq.astype(str)))
    names = pa.array(df["display_name"].to_numpy().astype(str))
    answered = pa.array(df["disposition"].to_numpy() == "ANSWERED")
    acct = pa.array(np.where(rng.random(n) < 0.85, df["account_id"].to_numpy(), ""), pa.string())
    return pa.table({
        "accountcode": acct, "src": src, "dst": dst, "dcontext": pa.array(["from-internal"] * n),
        "clid": _cat('"', names, '" <', src, ">"),
        "channel": _cat("PJSIP/", src, "-", hexseq),
        "dstchannel": pc.if_else(pc.equal(pa.array(df["disposition"].to_numpy()), "FAILED"), "",
                                 _cat("PJSIP/trunk-out-", hexseq)),
        "lastapp": pa.array(["Dial"] * n), "lastdata": _cat("PJSIP/", dst, "@trunk-out,60,T"),
        "start": _local(start, tz),
        "answer": pc.if_else(answered, _local(df["answer"].to_numpy().astype(np.int64), tz), ""),
        "end": _local(df["end"].to_numpy().astype(np.int64), tz),
        "duration": pa.array(df["end"].to_numpy().astype(np.int64) - start),
        "billsec": pa.array(df["billsec"].to_numpy().astype(np.int64)),
        "disposition": pa.array(df["disposition"].to_numpy().astype(str)),
        "amaflags": pa.array(["DOCUMENTATION"] * n), "uniqueid": uniqueid,
        "userfield": pa.array([""] * n), "peeraccount": pa.array([""] * n),
        "linkedid": uniqueid, "sequence": pa.array(seq),
    })


def render_freeswitch(df: pd.DataFrame, tz: str, rng: np.random.Generator, seq0: int) -> pa.Table:
    n = len(df)
    start = df["start"].to_numpy().astype(np.int64)
    e164 = _digits(df["called"].to_numpy())
    plus = pa.array(rng.random(n) < 0.3)
    dialed = _dialed_us(rng, e164, 0.0)
    nanp = pc.and_(pc.starts_with(e164, "1"), pc.equal(pc.utf8_length(e164), 11))
    dialed = pc.if_else(pc.and_(nanp, plus), _cat("+", e164), dialed)
    answered = pa.array(df["disposition"].to_numpy() == "ANSWERED")
    uuid = _uuids(rng, n)
    as_text = lambda a: pa.array(a.astype(np.int64).astype(str))  # noqa: E731 - all quoted
    return pa.table({
        "caller_id_name": pa.array(df["display_name"].to_numpy().astype(str)),
        "caller_id_number": _nanp_national(_digits(df["calling"].to_numpy())),
        "destination_number": dialed, "context": pa.array(["default"] * n),
        "start_stamp": _local(start, tz),
        "answer_stamp": pc.if_else(answered, _local(df["answer"].to_numpy().astype(np.int64), tz), ""),
        "end_stamp": _local(df["end"].to_numpy().astype(np.int64), tz),
        "duration": as_text(df["end"].to_numpy().astype(np.int64) - start),
        "billsec": as_text(df["billsec"].to_numpy()),
        "hangup_cause": pa.array(df["disposition"].map(HANGUP_CAUSE).to_numpy().astype(str)),
        "uuid": uuid, "bleg_uuid": pc.if_else(answered, _uuids(rng, n), ""),
        "accountcode": pa.array(df["account_id"].to_numpy().astype(str)),
    })


def render_canonical(df: pd.DataFrame, switch_id: str, day_tag: str, seq0: int) -> pa.Table:
    n = len(df)
    seq = pa.array(np.arange(seq0, seq0 + n).astype(str))
    iso = "%Y-%m-%dT%H:%M:%SZ"
    answer = df["answer"].to_numpy().astype(np.int64)
    answered = pa.array((df["disposition"].to_numpy() == "ANSWERED") | (df["service"] == "sms").to_numpy())
    called = _digits(df["called"].to_numpy())
    short = pc.less_equal(pc.utf8_length(called), 4)
    start = df["start"].to_numpy().astype(np.int64)
    return pa.table({
        "event_id": _cat(f"{switch_id}-{day_tag}-", pc.utf8_lpad(seq, 8, "0")),
        "source": pa.array([switch_id] * n), "service": pa.array(df["service"].to_numpy().astype(str)),
        "calling_number": _cat("+", _digits(df["calling"].to_numpy())),
        "called_number": pc.if_else(short, called, _cat("+", called)),
        "start_time": _local(start, "UTC", iso),
        "answer_time": pc.if_else(answered, _local(answer, "UTC", iso), ""),
        "end_time": _local(df["end"].to_numpy().astype(np.int64), "UTC", iso),
        "duration": pa.array(df["end"].to_numpy().astype(np.int64) - start),
        "billsec": pa.array(df["billsec"].to_numpy().astype(np.int64)),
        "disposition": pa.array(df["disposition"].to_numpy().astype(str)),
        "account_code": pa.array(df["account_id"].to_numpy().astype(str)),
    })


def to_lines(table: pa.Table) -> np.ndarray:
    """CSV lines (bytes, no newline) of a rendered table, quoted as the switch quotes."""
    if table.num_rows == 0:
        return np.array([], dtype=object)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return np.array(buf.getvalue().split(b"\n")[:-1], dtype=object)


def canonical_header() -> bytes:
    return ",".join(CANONICAL_COLUMNS).encode()
