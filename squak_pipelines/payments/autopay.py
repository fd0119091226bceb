"""Auto-pay: charge requests for the card processor, and retries of declined charges.

For each final invoice of an account with auto-pay on and a card token on file, while the
invoice has an open amount: the first charge is requested on its issue date; after a
declined charge (a `failed` settlement whose description names the invoice) the next one
is requested the configured number of days after the first decline (`reference/autopay.yaml`,
`retry_days: [3, 7, 14]`), until the retries run out. Requests are the standard batch
hand-off: request_id, token, amount, currency, invoice number (never a card number); each
request is made once. The processor's settlement report brings the results back through
intake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

from squak_pipelines.payments.matching import Outcome
from squak_pipelines.payments.references import invoice_numbers_in


@dataclass(frozen=True)
class RetrySchedule:
    retry_days: tuple[int, ...]

    @classmethod
    def load(cls, path: Path) -> RetrySchedule:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
        days = (loaded or {}).get("retry_days", [3, 7, 14])
        if (
            not isinstance(days, list)
            or not all(isinstance(d, int) and d > 0 for d in days)
            or days != sorted(days)
        ):
            raise ValueError(f"{path}: retry_days must be rising whole numbers of days, got {days!r}")
        return cls(tuple(days))


def due_requests(
    outcome: Outcome,
    autopay_tokens: dict[str, str],
    payments: list[dict],
    already: set[str],
    today: date,
    schedule: RetrySchedule,
) -> list[dict]:
    """Charge requests due by `today` and not made before.

    autopay_tokens: account_id -> card token, for accounts with auto-pay on;
    payments: the intake's records (failed card settlements count as declines);
    already: request_ids made before."""
    declines: dict[str, list[date]] = {}
    for p in payments:
        if p["method"] == "card" and p["status"] == "failed":
            for number in invoice_numbers_in(f"{p.get('invoice_hint') or ''} {p.get('remittance') or ''}"):
                declines.setdefault(number, []).append(_day(p["received_at"]))
    out = []
    for inv in sorted(outcome.invoices.values(), key=lambda i: i.number):
        token = autopay_tokens.get(inv.account_id)
        if not token or inv.open <= 0:
            continue
        failed = sorted(declines.get(inv.number, []))
        attempt = len(failed) + 1
        if attempt == 1:
            when = _day(inv.issue_date)
        elif attempt - 2 < len(schedule.retry_days):
            when = failed[0] + timedelta(days=schedule.retry_days[attempt - 2])
        else:
            continue  # retries exhausted: dunning takes over
        request_id = f"{inv.number}-A{attempt}"
        if when > today or request_id in already:
            continue
        out.append(
            {
                "request_id": request_id,
                "invoice_number": inv.number,
                "account_id": inv.account_id,
                "token": token,
                "amount": Decimal(inv.open),
                "currency": inv.currency,
                "attempt": attempt,
                "due_on": when,
            }
        )
    return out


def _day(value) -> date:
    return value.date() if hasattr(value, "date") else value
