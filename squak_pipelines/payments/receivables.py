"""Receivables from the matching outcome: balances, aging buckets and dunning states.

Aging (as of a date): each invoice's open amount by days past its due date: `current`
(not yet due), `1-30`, `31-60`, `61-90`, `90+`. An invoice is due on its due date and
overdue from the day after.
Dunning (thresholds in `reference/dunning.yaml`, days past due of the account's oldest
overdue invoice with at least `min_amount` open): `reminder`, `warning`,
`suspension_candidate`; below the first threshold, none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml

from squak_pipelines.payments.matching import Outcome

BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
DEFAULT_DUNNING = {"reminder": 1, "warning": 31, "suspension_candidate": 61, "min_amount": "1.00"}
STATES = ("reminder", "warning", "suspension_candidate")


def bucket(days_past_due: int) -> str:
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "1-30"
    if days_past_due <= 60:
        return "31-60"
    if days_past_due <= 90:
        return "61-90"
    return "90+"


def aging(outcome: Outcome, as_of: date) -> list[dict]:
    """One row per invoice with an open amount: account, currency, due date, days past due,
    bucket and open amount."""
    rows = []
    for inv in sorted(outcome.invoices.values(), key=lambda i: i.number):
        if inv.open <= 0:
            continue
        days = (as_of - _day(inv.due_date)).days
        rows.append(
            {
                "invoice_number": inv.number,
                "account_id": inv.account_id,
                "currency": inv.currency,
                "due_date": _day(inv.due_date),
                "days_past_due": max(days, 0),
                "bucket": bucket(days),
                "open_amount": inv.open,
            }
        )
    return rows


def _day(value) -> date:
    return value.date() if hasattr(value, "date") else value


@dataclass(frozen=True)
class DunningRules:
    reminder: int
    warning: int
    suspension_candidate: int
    min_amount: Decimal

    @classmethod
    def load(cls, path: Path) -> DunningRules:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
        merged = {**DEFAULT_DUNNING, **(loaded or {})}
        try:
            rules = cls(
                int(merged["reminder"]),
                int(merged["warning"]),
                int(merged["suspension_candidate"]),
                Decimal(str(merged["min_amount"])),
            )
        except (ValueError, ArithmeticError) as exc:
            raise ValueError(f"{path}: dunning thresholds must be numbers ({exc})") from None
        if not 0 < rules.reminder < rules.warning < rules.suspension_candidate:
            raise ValueError(f"{path}: thresholds must rise: 0 < reminder < warning < suspension_candidate")
        return rules

    def state(self, days_past_due: int) -> str | None:
        for name in reversed(STATES):
            if days_past_due >= getattr(self, name):
                return name
        return None


def dunning(aged: list[dict], rules: DunningRules) -> list[dict]:
    """Accounts in a dunning state, with their overdue invoices and amount."""
    by_account: dict[tuple[str, str], list[dict]] = {}
    for row in aged:
        if row["days_past_due"] > 0 and row["open_amount"] >= rules.min_amount:
            by_account.setdefault((row["account_id"], row["currency"]), []).append(row)
    out = []
    for (account, currency), rows in sorted(by_account.items()):
        oldest = max(r["days_past_due"] for r in rows)
        state = rules.state(oldest)
        if state:
            out.append(
                {
                    "account_id": account,
                    "currency": currency,
                    "state": state,
                    "days_past_due": oldest,
                    "overdue_amount": sum(r["open_amount"] for r in rows),
                    "invoices": ",".join(r["invoice_number"] for r in rows),
                }
            )
    return out
