"""Inventory of the CDR drop folder: one row per delivered file.

Each file is identified by its content hash, so a re-delivered file (same bytes, any name)
is recognisable, and a changed file with the same name is a new delivery. The line count
is the number of records the file carries ("records in" for conservation).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from squak_pipelines.capture.tables import DROP_FILES
from squak_pipelines.mediation.parsers import is_canonical_header


@dataclass(frozen=True)
class DropFile:
    switch_id: str
    format: str
    relative_path: str
    bytes: int
    sha256: str
    compressed: bool
    records: int
    modified_at: datetime


def count_records(data: bytes, fmt: str) -> int:
    """Records in a CDR file's (decompressed) bytes: its non-empty lines, less the canonical
    header. The same count mediation reconciles against (a whitespace-only line is a record
    that will be rejected, as the CSV reader sees it)."""
    lines = data.split(b"\n")
    records = len(lines) - lines.count(b"") - lines.count(b"\r")
    if fmt == "canonical" and is_canonical_header(data[:512].split(b"\n", 1)[0]):
        records -= 1
    return max(0, records)


def inspect_file(path: Path, switch_id: str, fmt: str, root: Path) -> DropFile:
    """Hash a delivered file and count its records (gzip read transparently)."""
    raw = path.read_bytes()
    compressed = raw[:2] == b"\x1f\x8b"
    try:
        records = count_records(gzip.decompress(raw) if compressed else raw, fmt)
    except (OSError, EOFError, gzip.BadGzipFile):  # truncated or corrupt gzip: mediation keeps it
        records = 0  # as an unreadable file with no readable records, so both sides count 0
    stat = path.stat()
    return DropFile(switch_id=switch_id, format=fmt, relative_path=str(path.relative_to(root)),
                    bytes=stat.st_size, sha256=hashlib.sha256(raw).hexdigest(), compressed=compressed,
                    records=records,
                    modified_at=datetime.fromtimestamp(stat.st_mtime, UTC).replace(microsecond=0))


def switch_files(root: Path, switches: pa.Table) -> Iterator[tuple[dict, Path]]:
    """(switch row, file) for every file under each switch's folder, in a stable order;
    hidden files (a switch still writing `.Master.csv`) are left for later."""
    for sw in switches.to_pylist():
        folder = root / sw["folder"]
        if folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
                yield sw, path


def scan_drop_folder(root: Path, switches: pa.Table) -> list[DropFile]:
    """Every file under each switch's folder, inspected."""
    return [inspect_file(path, sw["switch_id"], sw["format"], root)
            for sw, path in switch_files(root, switches)]


def to_table(files: list[DropFile]) -> pa.Table:
    return pa.Table.from_pylist([f.__dict__ for f in files], schema=DROP_FILES)
