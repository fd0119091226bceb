"""CSV files people open in spreadsheets: no cell can start a formula.

A text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with a
single quote (OWASP's advice against CSV injection), unless it is a plain number such as
`-12.50` or a `+` phone number, which spreadsheets read as the number it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

_FORMULA_START = r"^[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?[0-9]+(\.[0-9]+)?$"


def escape_cell(value: object) -> object:
    """One cell, made inert when it is text that a spreadsheet would run as a formula."""
    if isinstance(value, str) and re.match(_FORMULA_START, value) and not re.match(_PLAIN_NUMBER, value):
        return "'" + value
    return value


def escape_row(values: Iterable[object]) -> list[object]:
    return [escape_cell(v) for v in values]


def escape_table(table: pa.Table) -> pa.Table:
    """Every string column with formula-like cells escaped (vectorized)."""
    for i, name in enumerate(table.column_names):
        column = table.column(i)
        if not pa.types.is_string(column.type):
            continue
        risky = pc.and_(pc.match_substring_regex(column, _FORMULA_START),
                        pc.invert(pc.match_substring_regex(column, _PLAIN_NUMBER)))
        risky = pc.fill_null(risky, False)
        if pc.any(risky).as_py():
            quoted = pc.binary_join_element_wise("'", column, "")
            table = table.set_column(i, name, pc.if_else(risky, quoted, column))
    return table


def write_csv(table: pa.Table, path: Path, escaped: bool = False) -> None:
    """An Arrow table as a spreadsheet-safe CSV file (`escaped`: escape_table was applied
    already, e.g. once to a table written as many slices)."""
    pacsv.write_csv(table if escaped else escape_table(table), path)
