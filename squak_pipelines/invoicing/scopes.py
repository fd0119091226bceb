"""Which invoice lines a promotion or a tax applies to: one definition for both.

Line kinds: recurring, one_time, usage, late_usage, adjustment (re-rating differences on
usage), discount (a plan's usage discount carries its call type), promotion, tax.
- `all`: every charge line (recurring, one-time, usage of any kind, discounts);
- `recurring`: recurring charges only, never one-time fees;
- `one_time`: one-time fees (activation);
- `usage`: usage, late usage, re-rating adjustments and the plan discounts on usage;
- `international_usage` (taxes only): the usage and usage discounts of international calls.
A tax's base also takes the promotions of its own scope, and every promotion when it is on
`all`, so a promotion lowers exactly the bases it belongs to.
"""

from __future__ import annotations

CHARGE_KINDS = ("recurring", "one_time", "usage", "late_usage", "adjustment", "discount")
USAGE_KINDS = ("usage", "late_usage", "adjustment")
PROMOTION_SCOPES = ("all", "recurring", "one_time", "usage")
TAX_SCOPES = ("all", "recurring", "usage", "international_usage")


def is_usage(kind: str, call_type: str) -> bool:
    return kind in USAGE_KINDS or (kind == "discount" and call_type != "")


def charge_in_scope(kind: str, call_type: str, scope: str) -> bool:
    """Whether a charge line (not a promotion, not a tax) belongs to `scope`."""
    if kind not in CHARGE_KINDS:
        return False
    if scope == "all":
        return True
    if scope in ("recurring", "one_time"):
        return kind == scope
    if scope == "usage":
        return is_usage(kind, call_type)
    if scope == "international_usage":
        return is_usage(kind, call_type) and call_type == "international"
    raise ValueError(f"unknown scope {scope!r}")


def in_tax_base(kind: str, call_type: str, applies_to: str, scope: str) -> bool:
    """Whether a line (`applies_to`: a promotion line's own scope) enters the base of a tax
    on `scope`."""
    if kind == "tax":
        return False
    if kind == "promotion":
        return scope == "all" or applies_to == scope
    return charge_in_scope(kind, call_type, scope)
