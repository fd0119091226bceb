"""Find and redact full card numbers (PANs) in any input field.

Only a processor token, brand, last four digits and expiry may ever be stored. A value is
a PAN when it is 13-19 digits (spaces or dashes allowed between them), not part of a
longer word or a '+' phone number, and passes the Luhn check.
"""

from __future__ import annotations

import re

import pandas as pd

PAN = re.compile(r"(?<![\w+])(?:\d[ -]?){12,18}\d(?!\w)")
REDACTED = "[REDACTED CARD NUMBER]"


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def has_card_number(text: str) -> bool:
    return any(luhn_valid(re.sub(r"[ -]", "", m.group())) for m in PAN.finditer(text))


def redact(text: str) -> str:
    return PAN.sub(lambda m: REDACTED if luhn_valid(re.sub(r"[ -]", "", m.group())) else m.group(),
                   text)


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
