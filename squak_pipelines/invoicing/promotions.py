"""Promotions and coupons: their own negative invoice lines, never hidden inside a rate.

`reference/promotions.csv` is the catalogue: promotion_id, description, kind (`percent` or
`fixed`), value, currency (fixed amounts only), applies_to (`all`, `recurring`, `usage`),
duration (`once`, `cycles`, `forever`) and cycles (how many, for `cycles`).
`reference/coupons.csv` gives them to accounts: account_id, promotion_id, first_cycle
(YYYY-MM). A coupon applies in its first cycle and, by its duration, the cycles after it.

Rules (README): a percentage is taken of the lines in scope (`recurring`: recurring and
one-time charges; `usage`: usage, late usage, re-rating adjustments and usage discounts;
`all`: every line but taxes), rounded once; a fixed amount applies to invoices in its
currency; a promotion never takes more than what is left of its scope after the promotions
before it (in coupon order), so an invoice never goes negative through one. A promotion
lowers the taxable base of taxes on its own scope (and of taxes on `all`).
Both files are optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from squak_pipelines.money import MINOR_UNITS, round_to_currency
from squak_pipelines.reference.files import ReferenceFileError, _check, _decimal, _unique, read_rows

KINDS = ("percent", "fixed")
SCOPES = ("all", "recurring", "usage")
DURATIONS = ("once", "cycles", "forever")
USAGE_KINDS = ("usage", "late_usage", "adjustment")


@dataclass(frozen=True)
class Promotion:
    promotion_id: str
    description: str
    kind: str
    value: Decimal
    currency: str
    applies_to: str
    duration: str
    cycles: int | None

    def runs_in(self, first_cycle: str, cycle: str) -> bool:
        """Whether a coupon of this promotion first used in `first_cycle` applies in `cycle`."""
        elapsed = _month_index(cycle) - _month_index(first_cycle)
        if elapsed < 0:
            return False
        if self.duration == "once":
            return elapsed == 0
        if self.duration == "cycles":
            return elapsed < (self.cycles or 0)
        return True


@dataclass(frozen=True)
class Coupon:
    account_id: str
    promotion: Promotion
    first_cycle: str


def _month_index(label: str) -> int:
    """Month number of a cycle label (YYYY-MM, or YYYY-MM-DD for a bill-day cycle: its month)."""
    year, month = label[:7].split("-")
    return int(year) * 12 + int(month) - 1


def _is_cycle(text: str) -> bool:
    parts = text.split("-")
    return (
        len(parts) == 2 and len(parts[0]) == 4 and parts[0].isdigit() and parts[1].isdigit()
        and 1 <= int(parts[1]) <= 12
    )


def load_promotions(path: Path) -> dict[str, Promotion]:
    if not path.exists():
        return {}
    rows = read_rows(path, ("promotion_id", "description", "kind", "value", "currency", "applies_to",
                            "duration", "cycles"))
    _unique(path, rows, "promotion_id")
    out = {}
    for line, row in rows:
        _check(path, line, "kind", row["kind"] in KINDS, f"{row['kind']!r} is not percent or fixed")
        _check(path, line, "applies_to", row["applies_to"] in SCOPES,
               f"{row['applies_to']!r} is not one of {', '.join(SCOPES)}")
        _check(path, line, "duration", row["duration"] in DURATIONS,
               f"{row['duration']!r} is not one of {', '.join(DURATIONS)}")
        value = _decimal(path, line, "value", row["value"])
        assert value is not None
        if row["kind"] == "percent":
            _check(path, line, "value", 0 < value <= 100, "a percentage must be above 0 and at most 100")
        else:
            _check(path, line, "currency", row["currency"] in MINOR_UNITS,
                   f"{row['currency']!r} is not a known ISO 4217 currency (fixed amounts need one)")
        cycles = None
        if row["duration"] == "cycles":
            _check(path, line, "cycles", row["cycles"].isdigit() and int(row["cycles"]) > 0,
                   f"not a whole number of cycles above 0: {row['cycles']!r}")
            cycles = int(row["cycles"])
        out[row["promotion_id"]] = Promotion(
            row["promotion_id"], row["description"] or row["promotion_id"], row["kind"], value,
            row["currency"], row["applies_to"], row["duration"], cycles,
        )
    return out


def load_coupons(reference_dir: Path) -> dict[str, list[Coupon]]:
    """Coupons by account, in file order (the order promotions apply in)."""
    promotions = load_promotions(reference_dir / "promotions.csv")
    path = reference_dir / "coupons.csv"
    if not path.exists():
        return {}
    out: dict[str, list[Coupon]] = {}
    for line, row in read_rows(path, ("account_id", "promotion_id", "first_cycle")):
        _check(path, line, "account_id", bool(row["account_id"]), "must not be empty")
        if row["promotion_id"] not in promotions:
            raise ReferenceFileError(path, line, "promotion_id",
                                     f"{row['promotion_id']!r} is not in promotions.csv")
        _check(path, line, "first_cycle", _is_cycle(row["first_cycle"]),
               f"not a cycle (YYYY-MM): {row['first_cycle']!r}")
        out.setdefault(row["account_id"], []).append(
            Coupon(row["account_id"], promotions[row["promotion_id"]], row["first_cycle"]))
    return out


def in_scope(kind: str, call_type: str, scope: str) -> bool:
    """Whether a line of `kind` belongs to a promotion's scope."""
    if kind in ("tax", "promotion"):
        return False
    if scope == "all":
        return True
    if scope == "recurring":
        return kind in ("recurring", "one_time")
    return kind in USAGE_KINDS or (kind == "discount" and call_type != "")


def promotion_amounts(
    coupons: list[Coupon], cycle: str, currency: str, scope_totals: dict[str, Decimal]
) -> list[tuple[Coupon, Decimal]]:
    """The (negative) amount of each coupon running in the cycle, given the invoice's
    totals per scope (`all`, `recurring`, `usage`)."""
    left = dict(scope_totals)
    out = []
    for coupon in coupons:
        promo = coupon.promotion
        if not promo.runs_in(coupon.first_cycle, cycle):
            continue
        if promo.kind == "fixed" and promo.currency != currency:
            continue
        base = max(left.get(promo.applies_to, Decimal(0)), Decimal(0))
        wanted = base * promo.value / 100 if promo.kind == "percent" else promo.value
        amount = min(round_to_currency(wanted, currency), base)
        if amount <= 0:
            continue
        out.append((coupon, -amount))
        for scope in left:  # what is left for the promotions after this one
            if scope == promo.applies_to or scope == "all" or promo.applies_to == "all":
                left[scope] -= amount
    return out
