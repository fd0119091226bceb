"""Warehouse table of CDR capture (schema `raw`): the drop-folder inventory."""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.schema import BOOL, INT, TEXT, table

TABLES = (
    table("raw.cdr_drop_files", "Every CDR file in the drop folder: switch, format, size, content hash "
          "and record count (the 'records in' of conservation).", [
              ("switch_id", TEXT), ("format", TEXT), ("relative_path", TEXT), ("bytes", INT),
              ("sha256", TEXT), ("compressed", BOOL), ("records", INT),
              ("modified_at", pa.timestamp("s", tz="UTC"))], unique=["relative_path"], rewritten=True),
)
DROP_FILES = TABLES[0].columns
