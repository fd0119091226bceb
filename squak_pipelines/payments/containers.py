"""Payment files as banks deliver them: plain, gzip-compressed, or a ZIP of several files.

`unpack` turns one delivered file into its members (name, bytes). A member's name is the
file's name, or `file.zip!member.xml` inside a ZIP, so every record and reject names where
it came from. A truncated or corrupt archive, a member that would unpack past the size
bound (a "zip bomb"), or an encrypted member is one problem naming the file and member; the
archive's other members are still read.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass, field

MAX_MEMBER_BYTES = 256 * 1024 * 1024  # a day's statements are megabytes, never hundreds
MAX_RATIO = 200  # unpacked bytes per packed byte beyond which a member is refused


@dataclass
class Unpacked:
    """The members of one delivered file, and what could not be unpacked (name, problem)."""

    members: list[tuple[str, bytes]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _gunzip(data: bytes, name: str) -> bytes:
    out = bytearray()
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
        while chunk := fh.read(1 << 20):
            out += chunk
            if len(out) > MAX_MEMBER_BYTES:
                raise ValueError(f"{name}: unpacks past {MAX_MEMBER_BYTES} bytes")
    return bytes(out)


def _unzip(data: bytes, name: str, out: Unpacked) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        out.problems.append((name, f"not a readable ZIP archive (truncated or corrupt): {exc}"))
        return
    with archive:
        for info in archive.infolist():
            where = f"{name}!{info.filename}"
            if info.is_dir() or info.filename.rsplit("/", 1)[-1].startswith("."):
                continue
            if info.flag_bits & 0x1:
                out.problems.append((where, "encrypted ZIP member"))
                continue
            if info.file_size > MAX_MEMBER_BYTES or info.file_size > MAX_RATIO * max(info.compress_size, 1):
                out.problems.append((where, f"member would unpack to {info.file_size} bytes from "
                                            f"{info.compress_size}: refused as a ZIP bomb"))
                continue
            try:
                member = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                out.problems.append((where, f"ZIP member cannot be read (truncated or corrupt): {exc}"))
                continue
            _add(member, where, out)


def _add(data: bytes, name: str, out: Unpacked) -> None:
    """A member, unpacked once more if it is itself a gzip or ZIP (banks nest them)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = _gunzip(data, name)
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            out.problems.append((name, f"not a readable gzip file (truncated or corrupt): {exc}"))
            return
        name = name[:-3] if name.lower().endswith(".gz") else name
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        _unzip(data, name, out)
        return
    out.members.append((name, data))


def unpack(data: bytes, name: str) -> Unpacked:
    """The members of a delivered file (see the module docstring)."""
    out = Unpacked()
    _add(data, name, out)
    return out
