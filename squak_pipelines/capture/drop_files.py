"""Inventory of the CDR drop folder: one row per delivered file.

Each file is identified by its content hash, so a re-delivered file (same bytes, any name)
is recognisable, and a changed file with the same name is a new delivery. The line count
is the number of records the file carries ("records in" for conservation).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

CHUNK = 1 << 20


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


def _has_header(fmt: str) -> bool:
    return fmt == "canonical"


def inspect_file(path: Path, switch_id: str, fmt: str, root: Path) -> DropFile:
    """Hash a delivered file and count its records (gzip read transparently)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    compressed = path.suffix == ".gz"
    opener = gzip.open if compressed else open
    lines, last = 0, b"\n"
    with opener(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # final record without a newline
    records = max(0, lines - (1 if _has_header(fmt) and lines else 0))
    stat = path.stat()
    return DropFile(switch_id=switch_id, format=fmt, relative_path=str(path.relative_to(root)),
                    bytes=stat.st_size, sha256=digest.hexdigest(), compressed=compressed,
                    records=records,
                    modified_at=datetime.fromtimestamp(stat.st_mtime, UTC).replace(microsecond=0))


def scan_drop_folder(root: Path, switches: pa.Table) -> list[DropFile]:
    """Every file under each switch's folder, in a stable order."""
    found: list[DropFile] = []
    for sw in switches.to_pylist():
        folder = root / sw["folder"]
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            found.append(inspect_file(path, sw["switch_id"], sw["format"], root))
    return found


def to_table(files: list[DropFile]) -> pa.Table:
    schema = pa.schema([("switch_id", pa.string()), ("format", pa.string()),
                        ("relative_path", pa.string()), ("bytes", pa.int64()),
                        ("sha256", pa.string()), ("compressed", pa.bool_()),
                        ("records", pa.int64()), ("modified_at", pa.timestamp("s", tz="UTC"))])
    return pa.Table.from_pylist([f.__dict__ for f in files], schema=schema)
