"""Find and redact full card numbers (PANs) in any input: orders, CDRs, payment files.

Only a processor token, brand, last four digits and expiry may ever be stored. A PAN is
13-19 digits that pass the Luhn check, written in any common spelling: together, or in the
groups cards print separated by up to two spaces, dots, dashes or slashes
(`4111 1111 1111 1111`, `4111.1111.1111.1111`, `4111  1111  1111  1111`, `3782 822463 10005`),
with or without a word before it (`cc4111111111111111`, `card:4111...`). It is not part of a
longer run of digits (an IBAN, a longer reference), not a `+` phone number and does not start
with 0 (a dialled international number).
"""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_S = r"[ .\-/]{1,2}"
# A card number is written together (13-19 digits) or in the groups cards print: 4-4-4-4
# (and 4-4-4-4-1..3 for 19 digits) or 4-6-4/5 (Amex, Diners). It never starts with 0 (no
# issuer number does), which keeps dialled international numbers (00.., 011..) out.
_SHAPES = (r"[1-9]\d{12,18}", rf"[1-9]\d{{3}}(?:{_S}\d{{4}}){{3}}(?:{_S}\d{{1,3}})?",
           rf"[1-9]\d{{3}}{_S}\d{{6}}{_S}\d{{4,5}}")
PAN = re.compile(r"(?<![\d+])(?<!\d[ .\-/])(?<!\d[ .\-/]{2})(?:" + "|".join(_SHAPES) + r")(?![ .\-/]{0,2}\d)")
# The same shapes for Arrow's RE2 (no look-behind there: the character before is matched
# instead, so a dialled 011... number is no candidate): finds the few values worth a look.
CANDIDATE = r"(?:^|[^0-9+])(?:" + "|".join(_SHAPES) + ")"
REDACTED = "[REDACTED CARD NUMBER]"


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def has_card_number(text: str) -> bool:
    return any(luhn_valid(_digits(m.group())) for m in PAN.finditer(text))


def redact(text: str) -> str:
    return PAN.sub(lambda m: REDACTED if luhn_valid(_digits(m.group())) else m.group(), text)


def redact_table(table: pa.Table, keep: tuple[str, ...] = (),
                 only: tuple[str, ...] | None = None) -> tuple[pa.Table, int]:
    """Every string column (but `keep`; or just the columns `only` names) with card numbers
    redacted, and how many values changed. Vectorized: RE2 finds the candidates, Python's Luhn
    check runs on those only."""
    changed = 0
    for i, name in enumerate(table.column_names):
        column = table.column(i)
        if name in keep or (only is not None and name not in only) or not pa.types.is_string(column.type):
            continue
        hit = pc.fill_null(pc.match_substring_regex(column, CANDIDATE), False)
        if not pc.any(hit).as_py():
            continue
        values = column.to_pylist()
        flagged = hit.to_pylist()
        new = [redact(v) if f else v for v, f in zip(values, flagged, strict=True)]
        changed += sum(a != b for a, b in zip(values, new, strict=True))
        table = table.set_column(i, name, pa.array(new, pa.string()))
    return table, changed


def card_number_fields(frame: pd.DataFrame) -> pd.Series:
    """Per row, the first column holding a card number ('' when none). Vectorized screen,
    Luhn only on the few candidates."""
    found = pd.Series("", index=frame.index, dtype=object)
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        text = values.fillna("").astype(str)
        candidates = text.str.contains(PAN, regex=True) & (found == "")
        for idx in candidates[candidates].index:
            if has_card_number(text[idx]):
                found[idx] = column
    return found


def redact_frame(frame: pd.DataFrame, rows: pd.Series) -> pd.DataFrame:
    """Copy of `frame` with card numbers replaced in the flagged rows."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out.loc[rows, column] = out.loc[rows, column].fillna("").astype(str).map(redact)
    return out
