"""A mediated record's raw text, kept by reference: the archived drop file and the line.

Every record the parsers accept is one physical line of its file, so `(source_sha256,
source_line)` names it exactly. Mediation archives each file it reads under its content hash
(`<data dir>/archive/cdr/ab/abcd…`, a hard link to the drop file where the file system allows,
else a copy), so the line can be read back after the drop folder is cleaned (a file is checked
against its hash before a line is read: one rewritten in place is reported, not trusted), and events,
quarantine, B-legs and duplicates do not carry a copy of the line in every row (their
`raw_line` column stays for rows mediated before, and is null since). Rejected lines keep
their text: a line that did not parse may not be readable back the same way.

`squak cdr show KEY` prints a record's provenance and its line, card numbers redacted as
they are everywhere else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from squak_pipelines.card_numbers import redact
from squak_pipelines.mediation.parsers import as_utf8, decompressed, physical_lines
from squak_pipelines.warehouse import Warehouse

# Where a record with an event key is kept, and what its row says about it.
KEYED_TABLES = {
    "mediation.events": "accepted",
    "mediation.quarantine": "quarantined",
    "mediation.b_legs": "B-leg",
    "mediation.duplicates": "duplicate",
}


class RecordNotFound(LookupError):
    """No mediated record has that key."""


@dataclass(frozen=True)
class RawRecord:
    table: str
    outcome: str
    event_key: str
    source_file: str
    source_sha256: str
    source_line: int
    partition_day: str
    raw_line: str | None  # None when no copy of the file with its mediated content is left
    found_in: str  # where the line was read: archive, drop folder, stored row, or why not


def archive_dir(data_dir: Path) -> Path:
    return data_dir / "archive" / "cdr"


def archived_path(data_dir: Path, sha256: str) -> Path:
    return archive_dir(data_dir) / sha256[:2] / sha256


def archive(path: Path, sha256: str, data_dir: Path) -> Path:
    """Keep the drop file's content under its hash (once; a hard link where possible)."""
    target = archived_path(data_dir, sha256)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{sha256}.{os.getpid()}.part")
    try:
        os.link(path, partial)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(path, partial)
    os.replace(partial, target)
    return target


def read_line(content: bytes, name: str, line: int) -> str:
    """Physical line `line` (1-based) of a drop file's content, split and decoded as the
    parsers do."""
    data, _ = as_utf8(decompressed(content))
    lines = physical_lines(data)
    if not 1 <= line <= len(lines):
        raise ValueError(f"{name} has {len(lines)} lines, not line {line}")
    return lines[line - 1].as_py()


def show(warehouse: Warehouse, data_dir: Path, cdr_drop_dir: Path, key: str) -> list[RawRecord]:
    """Every mediated row with this event key (the record, and any duplicate deliveries of
    it), each with its raw line read back. Raises RecordNotFound when there is none."""
    found: list[RawRecord] = []
    for table, outcome in KEYED_TABLES.items():
        if not warehouse.table_exists(table):
            continue
        rows = warehouse.query_arrow(
            f"select source_file, source_sha256, source_line, partition_day, raw_line from {table} "
            "where event_key = :key order by partition_day, source_file, source_line",
            {"key": key}).to_pylist()
        for row in rows:
            text, where = _line_of(row, data_dir, cdr_drop_dir)
            found.append(RawRecord(table, outcome, key, row["source_file"], row["source_sha256"],
                                   int(row["source_line"]), str(row["partition_day"]), text, where))
    if not found:
        raise RecordNotFound(f"no mediated record has the event key {key!r} "
                             "(events, quarantine, B-legs and duplicates searched)")
    return found


def _line_of(row: dict, data_dir: Path, cdr_drop_dir: Path) -> tuple[str | None, str]:
    if row["raw_line"] is not None:  # mediated before raw lines were kept by reference
        return row["raw_line"], "stored row"
    candidates = [(archived_path(data_dir, row["source_sha256"]), "archive"),
                  (cdr_drop_dir / row["source_file"], "drop folder")]
    changed = []
    for path, where in candidates:
        if not path.is_file():
            continue
        # A hard-linked archive entry shares the drop file's inode: a drop file rewritten in
        # place changes it too, and then its lines are not the ones mediated.
        content = path.read_bytes()  # read once: checked against its hash, then its line
        if hashlib.sha256(content).hexdigest() != row["source_sha256"]:
            changed.append(where)
            continue
        return redact(read_line(content, path.name, int(row["source_line"]))), where
    if changed:
        return None, (f"the file was changed after it was mediated (the {' and '.join(changed)} copy "
                      f"no longer has sha256 {row['source_sha256'][:12]}…): its line is not shown")
    return None, f"the file is in neither {archive_dir(data_dir)} nor the drop folder"

