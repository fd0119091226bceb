"""Operator YAML files read as mappings: a missing file, bad YAML or a non-mapping is one
error naming the file (raised by the caller's own error type)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def read_mapping(path: Path, fail: Callable[[str, str], Exception], missing: str) -> dict[str, Any]:
    """The mapping in `path`; `fail(field, problem)` builds the error to raise."""
    if not path.exists():
        raise fail("(file)", missing)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise fail("(file)", f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise fail("(file)", "must be a mapping of keys")
    return doc
