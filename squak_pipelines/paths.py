"""Paths built from data (account ids, invoice numbers, cycles) stay inside the data directory.

Every value that becomes part of a file name passes `safe_part` (a strict pattern: letters,
digits, `.`, `_`, `-`, no leading dot, no `..`, at most 64 characters), and `inside()` proves
the joined path resolves under its root before anything is written there.
"""

from __future__ import annotations

import re
from pathlib import Path

SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ACCOUNT_ID_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, no '..'"


class UnsafePathError(ValueError):
    """A value that would make a path leave its folder (names the value)."""


def is_safe_part(value: object) -> bool:
    return isinstance(value, str) and bool(SAFE_PART.fullmatch(value)) and ".." not in value


def safe_part(value: str, what: str = "name") -> str:
    """`value` if it can be one path component, else `UnsafePathError`."""
    if not is_safe_part(value):
        raise UnsafePathError(f"{what} {value!r} cannot be used in a file name ({ACCOUNT_ID_RULE})")
    return value


def inside(root: Path, *parts: str) -> Path:
    """`root / parts...`, each part checked, the result proven to resolve under `root`."""
    path = root.joinpath(*(safe_part(p, "path part") for p in parts))
    base = root.resolve()
    if not path.resolve().is_relative_to(base):
        raise UnsafePathError(f"{path} is outside {base}")
    return path
