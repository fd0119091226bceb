"""Numbers: dialled strings to E.164 by the caller's country rules, and the numbering plan
(longest-prefix lookup of country, kind and destination name), all column-wise in Arrow.

Dialling rules (reference/dialing_rules.csv): country code, trunk prefix (0 in GB/DE/FR),
international prefix (011 in NANP, 00 elsewhere) and emergency numbers. A number that
starts with '+' is already E.164. Up to 6 digits is a short code (kept as dialled).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.reference.files import read_rows

SHORT_CODE_MAX = 6


@dataclass(frozen=True)
class DialingRules:
    country: str
    country_code: str
    trunk_prefix: str
    international_prefix: str
    emergency: tuple[str, ...]


def load_dialing_rules(path: Path) -> dict[str, DialingRules]:
    rows = read_rows(
        path, ("country", "country_code", "trunk_prefix", "international_prefix", "emergency_numbers")
    )
    return {
        r["country"]: DialingRules(
            r["country"],
            r["country_code"],
            r["trunk_prefix"],
            r["international_prefix"],
            tuple(x for x in r["emergency_numbers"].split(";") if x),
        )
        for _, r in rows
    }


def clean(numbers: pa.Array) -> pa.Array:
    """Drop the spaces, dots, dashes and brackets people and switches put in numbers."""
    return pc.replace_substring_regex(numbers, r"[\s().\-]", "")


def is_numeric(numbers: pa.Array) -> pa.Array:
    return pc.match_substring_regex(numbers, r"^\+?[0-9]+$")


def is_internal(numbers: pa.Array) -> pa.Array:
    """A PBX extension or feature code (`1002`, `*1001`, `*72`, `#31#`): up to
    `SHORT_CODE_MAX` digits, `*` and `#`, at least one digit. Kept as dialled."""
    return pc.and_(pc.match_substring_regex(numbers, rf"^[0-9*#]{{1,{SHORT_CODE_MAX}}}$"),
                   pc.match_substring_regex(numbers, r"[0-9]"))


def to_e164(numbers: pa.Array, rules: DialingRules, cleaned: bool = False) -> pa.Array:
    """E.164 ('+' and digits) for full numbers; short codes, '+' numbers and anything that is
    not all digits (feature codes, letters) stay as dialled. `cleaned`: already `clean()`ed."""
    s = numbers if cleaned else clean(numbers)
    length = pc.utf8_length(s)
    intl = rules.international_prefix
    rest_after_intl = pc.utf8_slice_codeunits(s, len(intl))
    national = pc.binary_join_element_wise("+" + rules.country_code, s, "")
    if rules.country_code == "1":  # NANP: 10 digits, or 11 starting with 1
        national = pc.if_else(
            pc.and_(pc.equal(length, 11), pc.starts_with(s, "1")),
            pc.binary_join_element_wise("+", s, ""),
            national,
        )
    elif rules.trunk_prefix:
        national = pc.if_else(
            pc.starts_with(s, rules.trunk_prefix),
            pc.binary_join_element_wise(
                "+" + rules.country_code, pc.utf8_slice_codeunits(s, len(rules.trunk_prefix)), ""
            ),
            national,
        )
    return pc.case_when(
        pc.make_struct(
            pc.invert(pc.ascii_is_decimal(s)),
            pc.starts_with(s, intl) if intl else pa.array([False] * len(s), pa.bool_()),
            pc.less_equal(length, SHORT_CODE_MAX),
        ),
        s,
        pc.binary_join_element_wise("+", rest_after_intl, ""),
        s,
        national,
    )


class NumberingPlan:
    """Prefix table (reference/numbering_plan.csv) for longest-prefix lookups."""

    FIELDS = ("prefix", "country", "kind", "destination")

    def __init__(self, rows: list[dict[str, str]]):
        import phonenumbers

        ordered = sorted(rows, key=lambda r: -len(r["prefix"]))
        self.columns = {k: pa.array([r[k] for r in ordered], pa.string()) for k in self.FIELDS}
        # A row more specific than its country's calling code is the operator's own range.
        codes = [str(phonenumbers.country_code_for_region(r["country"]) or "") for r in ordered]
        self.columns["specific"] = pa.array(
            [len(r["prefix"]) > len(c) if c != "0" else False for r, c in zip(ordered, codes, strict=True)],
            pa.bool_())
        # Per prefix length (longest first): the prefixes and where they start in `columns`.
        self.by_length: list[tuple[int, pa.Array, int]] = []
        start = 0
        for length in sorted({len(r["prefix"]) for r in rows}, reverse=True):
            group = [r["prefix"] for r in ordered if len(r["prefix"]) == length]
            self.by_length.append((length, pa.array(group, pa.string()), start))
            start += len(group)

    @classmethod
    def load(cls, path: Path) -> NumberingPlan:
        return cls([r for _, r in read_rows(path, ("prefix", "country", "kind", "destination"))])

    def lookup(self, e164: pa.Array) -> dict[str, pa.Array]:
        """prefix, country, kind, destination of each '+' number (nulls when no match):
        one hash lookup per prefix length, the longest match kept, one take per field."""
        digits = pc.utf8_slice_codeunits(e164, 1)
        found = pa.nulls(len(e164), pa.int64())
        for length, prefixes, start in self.by_length:
            idx = pc.index_in(pc.utf8_slice_codeunits(digits, 0, length), value_set=prefixes)
            found = pc.coalesce(found, pc.add(pc.cast(idx, pa.int64()), start))
        found = pc.if_else(pc.starts_with(e164, "+"), found, None)
        return {k: pc.take(values, found) for k, values in self.columns.items()}
