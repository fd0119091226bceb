"""Parse switch CDR files into string columns, keeping each record's line and raw text.

Formats:
- `asterisk`: cdr_csv Master.csv, no header, as `cdr/cdr_csv.c` build_csv_record writes it:
  16 standard columns, then uniqueid if `loguniqueid`, userfield if `loguserfield`, then
  peeraccount, linkedid, sequence if `newcdrcolumns` (`ASTERISK_WIDTHS`: 16 to 21 columns).
  The three flags are independent, so 17 and 20 columns are either uniqueid or userfield:
  a value shaped like a uniqueid (`[system-]epoch.counter`) is the uniqueid, anything else
  the userfield. Strings are quoted, ints bare, an unset time is a bare empty field.
- `freeswitch`: mod_cdr_csv's built-in `default` template (13 fields; the last is written
  `, "${accountcode}"` with a space, which is read as the quoted value) or the shipped
  `example` template (15: adds read_codec, write_codec).
- `canonical`: Squak's CSV with a header row (`event_id,source,service,...`), quoted or not.

Widths are per line, not per file: the file is read with its most common width, and the
lines of another width the format knows are read with theirs; only a line of a width the
format does not know is a `wrong_column_count` reject. Parsing is pyarrow's multi-threaded
CSV reader. Every format's table has the same columns (`COLUMNS`), "" where a layout has no
such field. Good rows are matched back to their physical lines so the raw line is kept.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from squak_pipelines.mediation.layouts import Layout

ASTERISK_BASE = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
)
UNIQUEID_OR_USERFIELD = "uniqueid_or_userfield"  # 17 or 20 columns: one of the two flags is on
NEW_CDR_COLUMNS = ("peeraccount", "linkedid", "sequence")
ASTERISK_LAYOUTS = {
    16: ASTERISK_BASE,
    17: (*ASTERISK_BASE, UNIQUEID_OR_USERFIELD),
    18: (*ASTERISK_BASE, "uniqueid", "userfield"),
    19: (*ASTERISK_BASE, *NEW_CDR_COLUMNS),
    20: (*ASTERISK_BASE, UNIQUEID_OR_USERFIELD, *NEW_CDR_COLUMNS),
    21: (*ASTERISK_BASE, "uniqueid", "userfield", *NEW_CDR_COLUMNS),
}
# Which cdr.conf [csv] flags give each width.
ASTERISK_WIDTHS = {
    16: "none of loguniqueid, loguserfield, newcdrcolumns",
    17: "loguniqueid or loguserfield",
    18: "loguniqueid and loguserfield",
    19: "newcdrcolumns",
    20: "newcdrcolumns and one of loguniqueid, loguserfield",
    21: "loguniqueid, loguserfield and newcdrcolumns",
}
# A uniqueid as Asterisk makes it: [systemname-]epoch.counter.
UNIQUEID_SHAPE = r"^(?:[^\s,]+-)?(?P<epoch>[0-9]{9,11})\.[0-9]+$"
FREESWITCH_DEFAULT = (
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "uuid",
    "bleg_uuid",
    "accountcode",
)
FREESWITCH_LAYOUTS = {13: FREESWITCH_DEFAULT, 15: (*FREESWITCH_DEFAULT, "read_codec", "write_codec")}
ASTERISK_COLUMNS = (*ASTERISK_BASE, "uniqueid", "userfield", *NEW_CDR_COLUMNS)
FREESWITCH_COLUMNS = FREESWITCH_LAYOUTS[15]
CANONICAL_COLUMNS = (
    "event_id",
    "source",
    "service",
    "calling_number",
    "called_number",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "billsec",
    "disposition",
    "account_code",
)
FORMATS = ("asterisk", "freeswitch", "canonical")
COLUMNS = {"asterisk": ASTERISK_COLUMNS, "freeswitch": FREESWITCH_COLUMNS, "canonical": CANONICAL_COLUMNS}
LAYOUTS = {"asterisk": ASTERISK_LAYOUTS, "freeswitch": FREESWITCH_LAYOUTS,
           "canonical": {len(CANONICAL_COLUMNS): CANONICAL_COLUMNS}}
MAX_QUOTE_REPAIRS = 1000  # lines with broken quoting repaired in one file before it is refused


class FileFormatError(ValueError):
    """The file is not in a format Squak can read; names the file and the problem."""


@dataclass
class ParsedFile:
    """String columns of the readable records, with their line numbers and raw lines."""

    format: str
    table: pa.Table  # one string column per field of the layout
    line_no: np.ndarray  # physical line of each row (1-based)
    raw: pa.ChunkedArray  # raw text of each row
    bad_lines: list[tuple[int, str, str]]  # (line, reason, raw text) of unreadable rows
    records_in: int  # non-empty lines that are records (header excluded)
    encoding: str
    layout: Layout | None = None  # the switch's layout file, when it has one


def read_bytes(path: Path) -> bytes:
    return decompressed(path.read_bytes())


def decompressed(data: bytes) -> bytes:
    """A file's content as delivered, gunzipped when it is gzip."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def as_utf8(data: bytes) -> tuple[bytes, str]:
    """The file as UTF-8 (validated by Arrow); anything that is not UTF-8 is read as
    Latin-1 (switches that write ISO-8859-1 names)."""
    try:
        pa.array([data], pa.binary()).cast(pa.string())
        return data, "utf-8"
    except pa.ArrowInvalid:
        return data.decode("latin-1").encode("utf-8"), "latin-1"


def physical_lines(data: bytes) -> pa.Array:
    """Every physical line of UTF-8 `data`, without its line end. pyarrow's multi-threaded
    reader does the split (quoting off, one column); a file with a lone CR or a 0x1F byte,
    which that reader would split differently, is split on LF in one pass instead."""
    if not data:
        return pa.array([], pa.string())
    if b"\x1f" in data or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n")):
        text = pa.array([data], pa.binary()).cast(pa.string())
        return pc.utf8_rtrim(pc.list_flatten(pc.split_pattern(text, pattern="\n")), characters="\r")
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=["line"], block_size=16 << 20),
        parse_options=pacsv.ParseOptions(
            delimiter="\x1f", quote_char=False, double_quote=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={"line": pa.string()}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    return table.column(0).combine_chunks()


def _first_fields(lines: list[bytes]) -> list[list[str]]:
    """The fields of the first records (for the layout); lone CRs and NULs do not count."""
    sample = [line.decode("utf-8", errors="replace").replace("\r", "").replace("\x00", "")
              for line in lines[:50] if line.strip()]
    try:
        return list(csv.reader(sample))
    except csv.Error:
        return []


def is_canonical_header(line: bytes | str) -> bool:
    """The canonical CSV's header row, its names quoted or not (a BOM is ignored)."""
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    return text.lstrip("\ufeff").replace('"', "").startswith("event_id,source")


def detect_format(data: bytes) -> str:
    """Fallback when a switch's format is not configured: look at the first records."""
    head = data[:65536].replace(b"\r\n", b"\n").split(b"\n")
    rows = _first_fields(head)
    if not rows:
        raise FileFormatError("empty file")
    if is_canonical_header(",".join(rows[0][:2])):
        return "canonical"
    counts = [len(r) for r in rows]
    width = max(set(counts), key=counts.count)
    if width in ASTERISK_LAYOUTS and any(_looks_like_time(r[9]) for r in rows if len(r) == width):
        return "asterisk"
    if width in FREESWITCH_LAYOUTS and any(_looks_like_time(r[4]) for r in rows if len(r) == width):
        return "freeswitch"
    raise FileFormatError(f"unrecognised CDR layout ({width} columns)")


def _looks_like_time(text: str) -> bool:
    return len(text) >= 19 and text[4] == "-" and text[7] == "-" and text[13] == ":"


def _main_width(fmt: str, lines: list[bytes]) -> int:
    """The width the file is read with: its most common known width among the first records."""
    layouts = LAYOUTS[fmt]
    if fmt == "canonical":
        return len(CANONICAL_COLUMNS)
    counts = [len(r) for r in _first_fields(lines) if len(r) in layouts]
    if not counts:
        widths = sorted({len(r) for r in _first_fields(lines)})
        raise FileFormatError(f"{fmt} records have {sorted(layouts)} columns, this file has {widths}")
    return max(sorted(set(counts)), key=counts.count)


def parse_file(path: Path, fmt: str | None, layout: Layout | None = None) -> ParsedFile:
    """Parse one CDR file (plain or gzip) in the given format (None: detect), or in the
    switch's layout file when it has one (`layouts.py`)."""
    data, encoding = as_utf8(read_bytes(path))
    fmt = detect_format(data) if fmt in (None, "", "auto") and layout is None else (fmt or "custom")
    if fmt not in FORMATS and layout is None:
        raise FileFormatError(f"{path.name}: unknown format {fmt!r}")
    lines = physical_lines(data)
    header = 1 if fmt == "canonical" or (layout is not None and layout.header) else 0
    canonical = fmt == "canonical" and layout is None
    if canonical and (len(lines) == 0 or not is_canonical_header(lines[0].as_py())):
        raise FileFormatError(f"{path.name}: canonical CSV must start with its header row")
    if layout is not None:
        width, columns = len(layout.columns), layout.columns
        quote, delimiter = ('"' if layout.quoting == "csv" else None), layout.delimiter
    else:
        width = _main_width(fmt, [x.encode() for x in lines.slice(header, 50).to_pylist()])
        columns, quote, delimiter = LAYOUTS[fmt][width], '"', ","
    data, broken = _blank_unreadable_lines(data, lines, quoted=quote is not None)
    for _ in range(MAX_QUOTE_REPAIRS):
        table, bad = _read_csv(data, columns, header, quote, delimiter)
        # A row pyarrow skipped that spans lines began with broken quoting on its first line
        # and swallowed the next: reject that first line, blank it, and read the file again.
        spans = [t.split("\n", 1)[0] for t in bad if "\n" in t.rstrip("\r\n")]
        if not spans:
            break
        firsts = _locate(lines, spans)
        broken += [(n, "broken_quoting", lines[n - 1].as_py()) for n in firsts]
        data = _blank(data, [n - 1 for n in firsts])
    else:
        raise FileFormatError(f"{path.name}: more than {MAX_QUOTE_REPAIRS} lines with broken quoting")
    # pyarrow skips only truly empty lines; any other line is a record (or a reject).
    nonempty = pc.greater(pc.binary_length(lines), 0).to_numpy(zero_copy_only=False)
    nonempty[:header] = False
    readable = nonempty.copy()
    readable[[n - 1 for n, _, _ in broken]] = False
    candidates = np.flatnonzero(readable) + 1
    skipped = _locate(lines, bad)
    good = candidates[~np.isin(candidates, skipped)] if skipped else candidates
    if len(good) != table.num_rows:
        raise FileFormatError(
            f"{path.name}: records could not be matched to lines "
            f"({table.num_rows} parsed, {len(good)} lines); a quoted field spans lines?"
        )
    tables, numbers = [_unquoted(table) if layout is not None else _unified(fmt, table)], [good]
    for _width, rows, group in ([] if layout is not None else _other_widths(fmt, width, lines, skipped)):
        tables.append(_unified(fmt, rows))
        numbers.append(np.asarray(group, dtype=np.int64))
    if len(tables) > 1:
        merged = np.concatenate(numbers)
        order = np.argsort(merged, kind="stable")
        good = merged[order]
        table = pa.concat_tables(tables).take(pa.array(order))
        skipped = sorted(set(skipped) - set(good.tolist()))
    else:
        table = tables[0]
    raw = _select_lines(lines, good - 1)
    bad_lines = sorted([(int(n), "wrong_column_count", lines[n - 1].as_py()) for n in skipped] + broken)
    return ParsedFile(
        format=fmt,
        table=table,
        line_no=good,
        raw=raw,
        bad_lines=bad_lines,
        records_in=int(nonempty.sum()),
        encoding=encoding,
        layout=layout,
    )


def _other_widths(fmt: str, width: int, lines: pa.Array, skipped: list[int]):
    """(width, table, line numbers) for the skipped lines of another width the format knows:
    a switch whose cdr.conf changed mid-file, or a file joined from two. Only the lines the
    main read skipped are looked at (one csv pass over those few)."""
    if not skipped or fmt == "canonical":
        return
    texts = [lines[n - 1].as_py() for n in skipped]
    widths = [len(next(csv.reader([t]), [])) for t in texts]
    for other in sorted(set(widths) - {width}):
        if other not in LAYOUTS[fmt]:
            continue
        group = [n for n, w in zip(skipped, widths, strict=True) if w == other]
        body = "\n".join(t for t, w in zip(texts, widths, strict=True) if w == other).encode()
        rows, bad = _read_csv(body, LAYOUTS[fmt][other], 0)
        if not bad and rows.num_rows == len(group):
            yield other, rows, group


def _unquote_spaced(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A template's `, "${var}"` (a space before the quote, as FreeSWITCH's default and snom
    templates write it) read as the quoted value."""
    if not pc.any(pc.starts_with(values, ' "')).as_py():
        return values
    return pc.replace_substring_regex(values, r'^ "(.*)"$', r"\1")


def _unquoted(table: pa.Table) -> pa.Table:
    """Every field of a layout file's records with `_unquote_spaced` applied."""
    return pa.table({name: _unquote_spaced(table.column(name)) for name in table.column_names})


def _unified(fmt: str, table: pa.Table) -> pa.Table:
    """The format's full column set (`COLUMNS`): fields a layout lacks are "", the 17/20-column
    uniqueid-or-userfield field goes to the one its value is shaped like, and the FreeSWITCH
    default template's `, "${accountcode}"` (a space before the quote) is unquoted."""
    n = table.num_rows
    names = table.column_names
    if tuple(names) == COLUMNS[fmt] and fmt != "freeswitch":
        return table  # the format's full layout (21-column Asterisk, canonical): nothing to do
    cols = {c: table.column(c) for c in names}
    if UNIQUEID_OR_USERFIELD in cols:
        value = cols.pop(UNIQUEID_OR_USERFIELD).combine_chunks()
        is_uid = pc.match_substring_regex(value, UNIQUEID_SHAPE)
        cols["uniqueid"] = pc.if_else(is_uid, value, "")
        cols["userfield"] = pc.if_else(is_uid, "", value)
    if fmt == "freeswitch" and "accountcode" in cols:
        cols["accountcode"] = _unquote_spaced(cols["accountcode"])
    empty = pa.chunked_array([pa.array([""] * n, pa.string())])
    return pa.table({c: cols.get(c, empty) for c in COLUMNS[fmt]})


def _read_csv(data: bytes, columns: tuple[str, ...], header: int, quote: str | None = '"',
              delimiter: str = ",") -> tuple[pa.Table, list[str]]:
    """The records pyarrow can read, and the text of the rows it skipped."""
    bad: list[str] = []

    def on_invalid(row) -> str:  # pyarrow calls this for each unreadable row
        bad.append(row.text)
        return "skip"

    empty = pa.schema([(c, pa.string()) for c in columns]).empty_table()
    if not data.strip(b"\r\n"):
        return empty, bad
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=list(columns), skip_rows=header, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, delimiter=delimiter,
                                             quote_char=quote or False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):  # every line was blanked as a reject
            return empty, bad
        raise FileFormatError(f"not readable as CSV: {exc}") from None
    return table, bad


def _blank(data: bytes, positions: list[int]) -> bytes:
    """`data` with the given physical lines (0-based) emptied; line numbers stay."""
    physical = data.split(b"\n")
    for i in positions:
        physical[i] = b""
    return b"\n".join(physical)


def _blank_unreadable_lines(data: bytes, lines: pa.Array, quoted: bool = True
                            ) -> tuple[bytes, list[tuple[int, str, str]]]:
    """Lines no CSV reading can use become rejects and are blanked before the file is parsed
    (line numbers stay): an odd number of double quotes (`unbalanced_quote`: the reader would
    run the quoted field on into the following lines and lose them all; on the file's last
    record `truncated_record`: a record still being written when the file was copied), else a NUL byte
    (`nul_byte`). Their raw text is kept with U+FFFD for each NUL (no text column holds one)."""
    odd = pc.equal(pc.bit_wise_and(pc.count_substring(lines, '"'), 1), 1).to_numpy(zero_copy_only=False)
    odd &= quoted  # without quoting a '"' is text
    nul = pc.match_substring(lines, "\x00").to_numpy(zero_copy_only=False)
    positions = [int(i) for i in np.flatnonzero(odd | nul)]
    if not positions:
        return data, []
    last = int(np.flatnonzero(pc.greater(pc.binary_length(lines), 0).to_numpy(zero_copy_only=False))[-1])
    rejects = [(i + 1, ("truncated_record" if i == last else "unbalanced_quote") if odd[i] else "nul_byte",
                lines[i].as_py().replace("\x00", "\ufffd")) for i in positions]
    return _blank(data, positions), rejects


def _select_lines(lines: pa.Array, rows: np.ndarray) -> pa.ChunkedArray:
    """The given lines (sorted 0-based positions): zero-copy slices of the runs of
    consecutive lines when there are few gaps, else one filtered copy."""
    gaps = np.flatnonzero(np.diff(rows) != 1)
    if len(gaps) > 64:
        mask = np.zeros(len(lines), dtype=bool)
        mask[rows] = True
        return pa.chunked_array([lines.filter(pa.array(mask))], pa.string())
    starts = np.r_[0, gaps + 1]
    ends = np.r_[gaps + 1, len(rows)]
    runs = [lines.slice(int(rows[a]), int(b - a)) for a, b in zip(starts, ends, strict=True) if b > a]
    return pa.chunked_array(runs, pa.string())


def _locate(lines: pa.Array, texts: list[str]) -> list[int]:
    """Physical lines of the rows pyarrow skipped, matched by text in file order."""
    found: list[int] = []
    for text in dict.fromkeys(t.rstrip("\r\n") for t in texts):
        positions = np.flatnonzero(pc.equal(lines, text).to_numpy(zero_copy_only=False)) + 1
        found.extend(int(p) for p in positions[: sum(t.rstrip("\r\n") == text for t in texts)])
    return sorted(found)
