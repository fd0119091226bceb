"""Promotions and coupons: their own negative invoice lines, never hidden inside a rate.

`reference/promotions.csv` is the catalogue: promotion_id, description, kind (`percent` or
`fixed`), value, currency (fixed amounts only), applies_to (`all`, `recurring`, `usage`),
duration (`once`, `cycles`, `forever`) and cycles (how many, for `cycles`).
`reference/coupons.csv` gives them to accounts: account_id, promotion_id, first_cycle
(YYYY-MM). A coupon applies in its first cycle and, by its duration, the cycles after it.

Rules (docs/billing-rules.md, README): a promotion's scope names line kinds exactly (`scopes.py`:
`recurring` is recurring charges only, `one_time` one-time fees, `usage` usage lines with
their plan discounts, `all` every charge line). A percentage is taken of the lines in its
scope and rounded once, whatever promotions came before it; a fixed amount applies to
invoices in its currency. What earlier promotions left of the scope (and of the whole
invoice) only caps an amount, so the order of coupons matters only where the cap bites, and
no promotion makes a scope, a taxable base or a tax negative. A promotion lowers the taxable
base of taxes on its own scope (and of taxes on `all`).
Both files are optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from squak_pipelines.invoicing.scopes import PROMOTION_SCOPES as SCOPES
from squak_pipelines.money import MINOR_UNITS, round_to_currency
from squak_pipelines.reference.files import ReferenceFileError, _check, _decimal, _unique, read_rows

KINDS = ("percent", "fixed")
DURATIONS = ("once", "cycles", "forever")


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


def promotion_amounts(
    coupons: list[Coupon], cycle: str, currency: str, scope_totals: dict[str, Decimal]
) -> list[tuple[Coupon, Decimal]]:
    """The (negative) amount of each coupon running in the cycle, given the invoice's
    totals per scope (`scopes.PROMOTION_SCOPES`, `all` included)."""
    left = dict(scope_totals)
    out = []
    for coupon in coupons:
        promo = coupon.promotion
        if not promo.runs_in(coupon.first_cycle, cycle):
            continue
        if promo.kind == "fixed" and promo.currency != currency:
            continue
        scope = promo.applies_to
        total = scope_totals.get(scope, Decimal(0))
        wanted = round_to_currency(total * promo.value / 100, currency) if promo.kind == "percent" \
            else round_to_currency(promo.value, currency)
        cap = min(left.get(scope, Decimal(0)), left.get("all", Decimal(0)))
        amount = min(wanted, cap)
        if amount <= 0:
            continue
        out.append((coupon, -amount))
        left[scope] -= amount
        if scope != "all":
            left["all"] -= amount
    return out
