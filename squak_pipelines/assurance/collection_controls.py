"""Control 8, invoiced vs collected: the ledger reconciles with invoices, credit notes and
payments; no payment waits unmatched or is applied twice; the cycle's collection rate."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd

from squak_pipelines.assurance.controls import Scope, empty_findings, findings, money
from squak_pipelines.payments.stage import ledger_differences, payments_paid_twice

COLLECTED_SQL = """
select i.currency, sum(i.total) as invoiced, coalesce(sum(a.paid), 0) as collected
from invoicing.invoices i
left join (select invoice_number, sum(amount) as paid from payments.allocations group by 1) a
  on a.invoice_number = i.number
where substr(i.cycle, 1, 7) = :cycle
group by 1 order by 1
"""


def invoiced_vs_collected(scope: Scope) -> tuple[bool, str, dict[str, Any], pd.DataFrame]:
    if not scope.has("invoicing.invoices", "payments.ledger", "payments.suspense", "payments.allocations"):
        return True, "no payments processed", {}, empty_findings()
    wh, limits = scope.warehouse, scope.limits("invoiced_vs_collected")
    found: list[dict] = []
    differences = ledger_differences(wh)
    for r in differences.itertuples():
        expected = money(r.invoiced) + money(r.credited) - money(r.paid) + money(r.reversed)
        found.append(
            {
                "kind": "ledger_out_of_balance",
                "record": r.account_id,
                "account_id": r.account_id,
                "currency": r.currency,
                "amount": money(r.closing) - expected,
                "detail": f"closing balance {r.closing}, invoices and payments say {expected}",
            }
        )
    suspense = wh.query_df(
        "select payment_id, reason, amount, currency, received_at, remittance, source_file "
        "from payments.suspense order by received_at, payment_id"
    )
    for r in suspense.itertuples():
        found.append(
            {
                "kind": "unmatched_payment",
                "record": r.payment_id,
                "currency": r.currency,
                "amount": money(r.amount),
                "detail": f"{r.reason}: received {str(r.received_at)[:10]} in {r.source_file}, "
                f"remittance {r.remittance!r}",
            }
        )
    for r in payments_paid_twice(wh).itertuples():
        found.append(
            {
                "kind": "payment_applied_twice",
                "record": r.payment_id,
                "detail": "matched more than once or allocated beyond its amount",
            }
        )
    rates = {}
    for r in wh.query_df(COLLECTED_SQL, scope.params).itertuples():
        invoiced, collected = money(r.invoiced), money(r.collected)
        rate = (collected / invoiced) if invoiced else Decimal(1)
        rates[r.currency] = {"invoiced": str(invoiced), "collected": str(collected), "rate": f"{rate:.4f}"}
    low = [c for c, v in rates.items() if Decimal(v["rate"]) < Decimal(str(limits["min_collection_rate"]))]
    passed = (
        len(suspense) <= int(limits["max_unmatched_payments"])
        and len(differences) <= int(limits["max_ledger_differences"])
        and not any(f["kind"] == "payment_applied_twice" for f in found)
        and not low
    )
    figures = {
        "collection_by_currency": rates,
        "unmatched_payments": len(suspense),
        "ledger_differences": len(differences),
        "below_min_collection_rate": low,
    }
    rate_text = ", ".join(f"{c} {Decimal(v['rate']) * 100:.0f}%" for c, v in rates.items()) or "none"
    summary = (
        f"collected {rate_text}; {len(suspense)} unmatched payments, {len(differences)} ledger differences"
    )
    return passed, summary, figures, findings(found) if found else empty_findings()
