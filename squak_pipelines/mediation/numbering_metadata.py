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


@lru_cache(maxsize=1)
def _code_lengths() -> pa.Array:
    """Every `cc:length` pair libphonenumber knows (length of the national number)."""
    return pa.array(sorted({f"{cc}:{n}" for cc, members in regions().items()
                            for member in members for n in member.lengths}))


@lru_cache(maxsize=1)
def _codes_by_length() -> tuple[pa.Array, pa.Array, pa.Array]:
    table = regions()
    return tuple(pa.array(sorted(c for c in table if len(c) == n)) for n in (1, 2, 3))  # type: ignore[return-value]


def country_codes(e164: pa.Array) -> pa.Array:
    """The country calling code (digits) of each '+' number; null for others or unknown.
    Codes are prefix-free: one slice of the first three digits, then its 1- and 2-digit heads."""
    ones, twos, threes = _codes_by_length()
    head3 = pc.utf8_slice_codeunits(e164, 1, 4)
    head2, head1 = pc.utf8_slice_codeunits(head3, 0, 2), pc.utf8_slice_codeunits(head3, 0, 1)
    plus = pc.fill_null(pc.starts_with(e164, "+"), False)
    heads = ((head1, ones), (head2, twos), (head3, threes))
    hits = [pc.and_(plus, pc.is_in(head, value_set=codes)) for head, codes in heads]
    return pc.case_when(pc.make_struct(*hits), head1, head2, head3)


def classify(e164: pa.Array, typed: pa.Array | None = None) -> Classified:
    """Classify '+' numbers (others: not possible, nulls). Every number gets its country code
    and whether its length is possible, column-wise; region, kind and validity only the rows
    of `typed` (all when None: the regex work is spared where the operator's plan decides)."""
    e164 = e164.combine_chunks() if isinstance(e164, pa.ChunkedArray) else e164
    n = len(e164)
    code = country_codes(e164)
    nsn_length = pc.subtract(pc.subtract(pc.utf8_length(e164), 1), pc.utf8_length(code))
    key = pc.binary_join_element_wise(code, pc.cast(nsn_length, pa.string()), ":")
    possible = pc.fill_null(pc.is_in(key, value_set=_code_lengths()), False)
    wanted = possible if typed is None else pc.and_(possible, pc.fill_null(typed, False))
    rows = np.flatnonzero(wanted.to_numpy(zero_copy_only=False))
    if len(rows):
        sub_region, sub_kind = _type_rows(e164.take(pa.array(rows)), code.take(pa.array(rows)))
        # Scatter back: row i of the input takes result position[i] (null where not typed).
        position = np.full(n, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        index = pa.array(position, mask=position < 0)
        region, kind = pc.take(sub_region, index), pc.take(sub_kind, index)
    else:
        region = kind = pa.nulls(n, pa.string())
    valid = pc.and_(wanted, pc.fill_null(pc.not_equal(kind, "invalid"), False))
    return Classified(possible=possible, valid=valid, region=region, kind=kind, country_code=code)


def _type_rows(numbers: pa.Array, code: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(region, kind) of possible numbers, per country code, as libphonenumber decides them:
    the first region whose leading digits match, else whose type patterns know the number;
    a number no region's ranges hold is `invalid` (region: the code's main region)."""
    n = len(numbers)
    table = regions()
    positions: list[np.ndarray] = []
    regions_out: list[pa.Array] = []
    kinds_out: list[pa.Array] = []
    for cc in pc.unique(code).drop_null().to_pylist():
        rows = np.flatnonzero(pc.fill_null(pc.equal(code, cc), False).to_numpy(zero_copy_only=False))
        nsn = pc.utf8_slice_codeunits(numbers.take(pa.array(rows)), 1 + len(cc))
        members = table[cc]
        open_rows = np.ones(len(rows), dtype=bool)
        for member in members:
            if not open_rows.any():
                break
            sub = np.flatnonzero(open_rows)
            values = nsn.take(pa.array(sub))
            if member.leading_digits:
                chosen = pc.match_substring_regex(values, member.leading_digits).to_numpy(
                    zero_copy_only=False)
                types = pc.fill_null(_types(values.filter(pa.array(chosen)), member), "invalid")
            else:
                types = _types(values, member)
                chosen = pc.is_valid(types).to_numpy(zero_copy_only=False)
                types = types.filter(pa.array(chosen))
            hit = sub[chosen]
            positions.append(rows[hit])
            regions_out.append(pa.array([member.region] * len(hit), pa.string()))
            kinds_out.append(types.cast(pa.string()))
            open_rows[hit] = False
        rest = rows[open_rows]
        positions.append(rest)
        regions_out.append(pa.array([members[0].region] * len(rest), pa.string()))
        kinds_out.append(pa.array(["invalid"] * len(rest), pa.string()))
    order = np.empty(n, dtype=np.int64)
    order[np.concatenate(positions)] = np.arange(n)
    take = pa.array(order)
    return pc.take(pa.concat_arrays(regions_out), take), pc.take(pa.concat_arrays(kinds_out), take)


def _types(nsn: pa.Array, member: Region) -> pa.Array:
    """The first kind whose pattern matches each national number, in libphonenumber's order
    (null: none, or outside the region's general pattern). Measured faster than one RE2 pass
    with a group per kind: plain matches run as DFAs and stop once every number has a kind."""
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

