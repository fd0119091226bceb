"""E.164 validity, region and number type from Google's libphonenumber metadata (the
`phonenumbers` package), applied column-wise.

The metadata's patterns (per region: the general pattern, the possible lengths, the pattern
of each number type, and for regions sharing a country code the leading digits) are read
once into `REGIONS` and then matched with Arrow's RE2 over each country code's numbers: no
library call per number on the hot path, and each distinct number is classified once. The
region is chosen as libphonenumber chooses it: the first region of the country code whose
leading digits match, else whose type patterns know the number (so +1 514... is CA).

Kinds: fixed, mobile (NANP's fixed-or-mobile ranges are `fixed`), tollfree, premium,
shared_cost, voip, personal, pager, uan, voicemail; `invalid` for a number of a possible
length that no range of its country holds (an unassigned area code).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# libphonenumber's type order (phonenumberutil._number_type_helper), with Squak's names.
TYPES = (
    ("premium_rate", "premium"),
    ("toll_free", "tollfree"),
    ("shared_cost", "shared_cost"),
    ("voip", "voip"),
    ("personal_number", "personal"),
    ("pager", "pager"),
    ("uan", "uan"),
    ("voicemail", "voicemail"),
    ("fixed_line", "fixed"),
    ("mobile", "mobile"),
)


@dataclass(frozen=True)
class Region:
    region: str
    leading_digits: str | None
    general: str
    lengths: frozenset[int]
    types: tuple[tuple[str, str], ...]  # (Squak kind, anchored pattern)


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


@lru_cache(maxsize=1)
def regions() -> dict[str, tuple[Region, ...]]:
    """Country code (digits) -> its regions in libphonenumber's order."""
    import phonenumbers
    from phonenumbers import PhoneMetadata

    out: dict[str, tuple[Region, ...]] = {}
    for code, names in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        found = []
        for name in names:
            md = PhoneMetadata.metadata_for_region_or_calling_code(code, name)
            if md is None or md.general_desc is None or not md.general_desc.national_number_pattern:
                continue
            types = []
            for attr, kind in TYPES:
                desc = getattr(md, attr, None)
                if desc is not None and desc.national_number_pattern:
                    types.append((kind, _anchored(desc.national_number_pattern)))
            lengths = set(md.general_desc.possible_length or ())
            found.append(Region(name, f"^(?:{md.leading_digits})" if md.leading_digits else None,
                                _anchored(md.general_desc.national_number_pattern),
                                frozenset(x for x in lengths if x > 0), tuple(types)))
        if found:
            out[str(code)] = tuple(found)
    return out


@dataclass
class Classified:
    """Per number: a known country code and a possible length, valid, region and kind."""

    possible: pa.Array
    valid: pa.Array
    region: pa.Array
    kind: pa.Array
    country_code: pa.Array


def classify(e164: pa.Array) -> Classified:
    """Classify '+' numbers (others: not possible, nulls). Distinct numbers are classified
    once and the results taken back."""
    encoded = pc.dictionary_encode(e164.combine_chunks() if isinstance(e164, pa.ChunkedArray) else e164)
    unique = encoded.dictionary.cast(pa.string())
    possible, valid, region, kind, code = _classify_unique(unique)
    idx = encoded.indices
    return Classified(
        possible=pc.fill_null(pc.take(pa.array(possible), idx), False),
        valid=pc.fill_null(pc.take(pa.array(valid), idx), False),
        region=pc.take(pa.array(region, pa.string()), idx),
        kind=pc.take(pa.array(kind, pa.string()), idx),
        country_code=pc.take(code, idx),
    )


def _classify_unique(numbers: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    n = len(numbers)
    possible = np.zeros(n, dtype=bool)
    valid = np.zeros(n, dtype=bool)
    region = np.full(n, None, dtype=object)
    kind = np.full(n, None, dtype=object)
    if not n:
        return possible, valid, region, kind, pa.array([], pa.string())
    table = regions()
    plus = pc.fill_null(pc.starts_with(numbers, "+"), False)
    digits = pc.utf8_slice_codeunits(numbers, 1)
    code = pa.nulls(n, pa.string())
    for length in (1, 2, 3):  # country codes are prefix-free
        head = pc.utf8_slice_codeunits(digits, 0, length)
        known = pc.is_in(head, value_set=pa.array([c for c in table if len(c) == length]))
        code = pc.coalesce(code, pc.if_else(pc.and_(known, plus), head, None))
    for cc in pc.unique(code).drop_null().to_pylist():
        rows = np.flatnonzero(pc.fill_null(pc.equal(code, cc), False).to_numpy(zero_copy_only=False))
        nsn = pc.utf8_slice_codeunits(digits.take(pa.array(rows)), len(cc))
        members = table[cc]
        lengths = sorted(set().union(*(r.lengths for r in members)))
        possible[rows] = pc.is_in(pc.utf8_length(nsn), value_set=pa.array(lengths, pa.int32())).to_numpy(
            zero_copy_only=False)
        open_rows = np.ones(len(rows), dtype=bool)
        for member in members:
            if not open_rows.any():
                break
            sub = np.flatnonzero(open_rows)
            values = nsn.take(pa.array(sub))
            if member.leading_digits:
                chosen = pc.match_substring_regex(values, member.leading_digits).to_numpy(
                    zero_copy_only=False)
                types = _types(values.filter(pa.array(chosen)), member)
            else:
                types = _types(values, member)
                chosen = pc.is_valid(types).to_numpy(zero_copy_only=False)
                types = types.filter(pa.array(chosen))
            hit = sub[chosen]
            region[rows[hit]] = member.region
            kind[rows[hit]] = types.to_numpy(zero_copy_only=False)
            open_rows[hit] = False
        rest = rows[open_rows]
        region[rest] = members[0].region  # a number no region knows: the code's main region
    valid = np.array([k is not None for k in kind], dtype=bool)
    kind = np.where(valid | ~possible, kind, "invalid")
    kind[~possible] = None
    return possible, valid, region, kind, code


def _types(nsn: pa.Array, member: Region) -> pa.Array:
    """The first kind whose pattern matches each national number (null: none, or outside the
    region's general pattern)."""
    out = pa.nulls(len(nsn), pa.string())
    todo = pc.match_substring_regex(nsn, member.general)
    for kind, pattern in member.types:
        if not pc.any(todo).as_py():
            break
        try:
            hit = pc.and_(todo, pc.match_substring_regex(nsn, pattern))
        except pa.ArrowInvalid:  # a pattern RE2 cannot compile: that type is not told apart
            continue
        out = pc.if_else(hit, kind, out)
        todo = pc.and_not(todo, hit)
    return out
