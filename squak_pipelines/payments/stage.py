"""Payments and receivables stage: intake new payment files, then rebuild matches, suspense,
ledger, aging and dunning from every stored fact (schema `payments`).

Stored facts (appended): `files` (each delivery once, by name and content hash),
`payments` (each payment_id once; a repeat is counted as a duplicate on its file), `rejects`
(file, line or element, field, reason, raw), `assignments` (finance's manual matches) and
`dunning_notices` (each notice sent once). Rebuilt on every run: `matches`, `allocations`,
`suspense`, `ledger` (with a running balance per account), `aging` and `dunning`.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa

from squak_pipelines import clock
from squak_pipelines.card_numbers import redact_table
from squak_pipelines.config import Settings
from squak_pipelines.faults import fault_point
from squak_pipelines.limits import Limits
from squak_pipelines.migrations import migrate
from squak_pipelines.money import money_array
from squak_pipelines.paths import inside
from squak_pipelines.payments.autopay import RetrySchedule, due_requests
from squak_pipelines.payments.intake import PAYMENT_FIELDS, PaymentFile, read_payment_file
from squak_pipelines.payments.matching import Outcome, match
from squak_pipelines.payments.receivables import BUCKETS, DunningRules, aging, dunning
from squak_pipelines.payments.tables import DERIVED
from squak_pipelines.payments.tables import SCHEMAS as TABLES
from squak_pipelines.warehouse import Warehouse


@dataclass
class PaymentsReport:
    as_of: date
    files: int = 0
    new_payments: int = 0
    duplicates: int = 0
    rejected: int = 0
    invoiced: dict[str, str] = field(default_factory=dict)
    collected: dict[str, str] = field(default_factory=dict)
    suspense: dict[str, int] = field(default_factory=dict)
    aging: dict[str, dict[str, str]] = field(default_factory=dict)  # currency -> bucket -> amount
    dunning: dict[str, int] = field(default_factory=dict)
    notices: int = 0
    charge_requests: int = 0


def ensure_tables(warehouse: Warehouse) -> None:
    """The warehouse's tables, created or upgraded by the numbered migrations."""
    migrate(warehouse)


def intake(warehouse: Warehouse, settings: Settings, report: PaymentsReport) -> None:
    """Read every payment file not seen before (by name and content)."""
    folder = settings.payments_drop_dir
    if not folder.exists():
        return
    seen = {
        (r["file_name"], r["sha256"])
        for r in warehouse.query_arrow("select file_name, sha256 from payments.files").to_pylist()
    }
    known = set(warehouse.query_arrow("select payment_id from payments.payments").column(0).to_pylist())
    limits = Limits.load(settings.reference_dir)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if (name, digest) in seen or path.name.startswith("."):  # hidden: a file still being written
            continue
        read = _read_or_reject(path, name, limits)
        fresh, repeats = [], 0
        for p in read.payments:
            if p["payment_id"] in known:
                repeats += 1
                continue
            known.add(p["payment_id"])
            fresh.append(p)
        with warehouse.transaction():
            if fresh:
                columns = {f: [p[f] for p in fresh] for f in PAYMENT_FIELDS}
                columns["amount"] = money_array(columns["amount"])
                rows, _ = redact_table(pa.table(columns, schema=TABLES["payments.payments"]),
                                       keep=_IDENTITY)
                warehouse.load("payments.payments", rows, mode="append")
            if read.rejects:
                rows, _ = redact_table(pa.Table.from_pylist(read.rejects, schema=TABLES["payments.rejects"]),
                                       keep=_IDENTITY)
                warehouse.load("payments.rejects", rows, mode="append")
            warehouse.load(
                "payments.files",
                pa.table(
                    {
                        "file_name": [name],
                        "sha256": [digest],
                        "kind": [read.kind],
                        "records": [len(read.payments) + len(read.rejects)],
                        "new_payments": [len(fresh)],
                        "duplicates": [repeats],
                        "rejected": [len(read.rejects)],
                        "received_at": [clock.now()],
                    },
                    schema=TABLES["payments.files"],
                ),
                mode="append",
            )
            fault_point("payments.before_commit")
        report.files += 1
        report.new_payments += len(fresh)
        report.duplicates += repeats
        report.rejected += len(read.rejects)


_IDENTITY = ("source_file", "location")  # where a record came from is not screened text


def _read_or_reject(path: Path, name: str, limits: Limits) -> PaymentFile:
    """The file's payments and rejects; a file that cannot be read at all (corrupt, not a
    payment format, a reader failure) becomes one reject naming the file and the problem,
    and the run goes on with the other files."""
    try:
        return read_payment_file(path, name, limits)
    except Exception as exc:  # a poison file must never stop the stage
        return PaymentFile(name, "unreadable", payments=[], rejects=[{
            "source_file": name, "location": name, "field": "(file)", "reason": "unreadable_file",
            "raw": f"{type(exc).__name__}: {exc}"[:2000]}])


def _facts(warehouse: Warehouse) -> tuple[list[dict], list[dict], list[dict], dict, dict]:
    invoices = []
    if warehouse.table_exists("invoicing.invoices"):
        for r in warehouse.query_arrow(
            "select number, account_id, currency, issue_date, due_date, total from invoicing.invoices"
        ).to_pylist():
            r["issue_date"] = datetime.combine(r["issue_date"], time(), UTC)
            r["due_date"] = datetime.combine(r["due_date"], time(), UTC)
            invoices.append(r)
    notes = []
    if warehouse.table_exists("invoicing.credit_notes"):
        for r in warehouse.query_arrow(
            "select number, invoice_number, account_id, currency, issue_date, total "
            "from invoicing.credit_notes"
        ).to_pylist():
            r["issued_at"] = datetime.combine(r.pop("issue_date"), time(), UTC)
            notes.append(r)
    payments = warehouse.query_arrow("select * from payments.payments order by received_at, payment_id")
    tokens: dict[str, str] = {}
    if warehouse.table_exists("orders.accounts"):
        for r in warehouse.query_arrow(
            "select account_id, card_token from orders.accounts where card_token is not null "
            "and card_token <> ''"
        ).to_pylist():
            tokens[r["card_token"]] = r["account_id"]
    assignments = {
        r["payment_id"]: r
        for r in warehouse.query_arrow(
            "select payment_id, invoice_number, account_id from payments.assignments order by assigned_at"
        ).to_pylist()
    }
    return invoices, notes, payments.to_pylist(), tokens, assignments


def _ledger(outcome: Outcome) -> pa.Table:
    rows = sorted(
        outcome.ledger,
        key=lambda e: (e["account_id"], e["currency"], e["at"], e["kind"] != "invoice", e["document"]),
    )
    balance: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        key = (row["account_id"], row["currency"])
        balance[key] = balance.get(key, Decimal(0)) + row["amount"]
        row["balance"] = balance[key]
    table = {name: [r[name] for r in rows] for name in DERIVED["payments.ledger"].names}
    table["amount"], table["balance"] = money_array(table["amount"]), money_array(table["balance"])
    return pa.table(table, schema=DERIVED["payments.ledger"])


def rebuild(warehouse: Warehouse, settings: Settings, as_of: date, report: PaymentsReport) -> Outcome:
    """Matches, suspense, ledger, aging and dunning from every stored fact."""
    invoices, notes, payments, tokens, assignments = _facts(warehouse)
    outcome = match(invoices, notes, payments, tokens, assignments)
    by_id = {p["payment_id"]: p for p in payments}
    suspense = [
        {
            **s,
            "amount": by_id[s["payment_id"]]["amount"],
            "currency": by_id[s["payment_id"]]["currency"],
            "received_at": by_id[s["payment_id"]]["received_at"],
            "remittance": by_id[s["payment_id"]]["remittance"],
            "source_file": by_id[s["payment_id"]]["source_file"],
        }
        for s in outcome.suspense
    ]
    aged = aging(outcome, as_of)
    rules = DunningRules.load(settings.reference_dir / "dunning.yaml")
    states = dunning(aged, rules)
    tables = {
        "payments.matches": pa.Table.from_pylist(outcome.matches, schema=DERIVED["payments.matches"]),
        "payments.allocations": pa.table(
            {
                "payment_id": [a["payment_id"] for a in outcome.allocations],
                "invoice_number": [a["invoice_number"] for a in outcome.allocations],
                "amount": money_array([a["amount"] for a in outcome.allocations]),
            },
            schema=DERIVED["payments.allocations"],
        ),
        "payments.suspense": pa.Table.from_pylist(
            [{**s, "amount": Decimal(s["amount"])} for s in suspense], schema=DERIVED["payments.suspense"]
        ),
        "payments.ledger": _ledger(outcome),
        "payments.aging": pa.Table.from_pylist(
            [{**r, "as_of": as_of} for r in aged], schema=DERIVED["payments.aging"]
        ),
        "payments.dunning": pa.Table.from_pylist(
            [{**r, "as_of": as_of} for r in states], schema=DERIVED["payments.dunning"]
        ),
    }
    with warehouse.transaction():
        if warehouse.kind == "postgres":  # two rebuilds at once run one after the other
            warehouse.execute(f"lock table {', '.join(tables)} in exclusive mode")
        for name, table in tables.items():
            warehouse.execute(f"delete from {name}")
            warehouse.load(name, table, mode="append")
        report.notices = _send_notices(warehouse, settings, states, as_of)
        report.charge_requests = _request_charges(warehouse, settings, outcome, payments, as_of)
    _summarize(invoices, outcome, payments, aged, states, report)
    return outcome


def _request_charges(
    warehouse: Warehouse, settings: Settings, outcome: Outcome, payments: list[dict], as_of: date
) -> int:
    """Auto-pay charge requests due by `as_of`, written as the processor's batch file
    (`outgoing/charge-requests-<date>[-n].csv`) and recorded so none is made twice."""
    tokens = (
        {
            r["account_id"]: r["card_token"]
            for r in warehouse.query_arrow(
                "select account_id, card_token from orders.accounts where lower(autopay) = 'true' "
                "and card_token is not null and card_token <> ''"
            ).to_pylist()
        }
        if warehouse.table_exists("orders.accounts")
        else {}
    )
    already = set(
        warehouse.query_arrow("select request_id from payments.charge_requests").column(0).to_pylist()
    )
    schedule = RetrySchedule.load(settings.reference_dir / "autopay.yaml")
    due = due_requests(outcome, tokens, payments, already, as_of, schedule)
    if not due:
        return 0
    folder = settings.data_dir / "outgoing"
    folder.mkdir(parents=True, exist_ok=True)
    path, n = folder / f"charge-requests-{as_of.isoformat()}.csv", 1
    while path.exists():
        n += 1
        path = folder / f"charge-requests-{as_of.isoformat()}-{n}.csv"
    columns = ("request_id", "token", "amount", "currency", "invoice_number", "attempt")
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for r in due:
            writer.writerow(
                [
                    r["request_id"],
                    r["token"],
                    f"{r['amount']:.2f}",
                    r["currency"],
                    r["invoice_number"],
                    r["attempt"],
                ]
            )
    warehouse.load(
        "payments.charge_requests",
        pa.Table.from_pylist(
            [{**r, "file": path.name} for r in due], schema=TABLES["payments.charge_requests"]
        ),
        mode="append",
    )
    return len(due)


def _send_notices(warehouse: Warehouse, settings: Settings, states: list[dict], as_of: date) -> int:
    """A dunning notice per account and state, written once (the same state for the same
    overdue invoices is not sent again)."""
    sent = {
        (r["account_id"], r["currency"], r["state"], r["invoices"])
        for r in warehouse.query_arrow(
            "select account_id, currency, state, invoices from payments.dunning_notices"
        ).to_pylist()
    }
    folder = settings.data_dir / "dunning" / as_of.isoformat()
    new = []
    for s in states:
        key = (s["account_id"], s["currency"], s["state"], s["invoices"])
        if key in sent:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = inside(folder, f"{s['account_id']}-{s['currency']}-{s['state']}.txt")
        path.write_text(_notice_text(s, as_of), encoding="utf-8")
        new.append(
            {
                **dict(zip(("account_id", "currency", "state", "invoices"), key, strict=True)),
                "as_of": as_of,
                "path": str(path),
            }
        )
    if new:
        warehouse.load(
            "payments.dunning_notices",
            pa.Table.from_pylist(new, schema=TABLES["payments.dunning_notices"]),
            mode="append",
        )
    return len(new)


NOTICE = {
    "reminder": "This is a friendly reminder that the invoices below are past due.",
    "warning": "Your account is more than 30 days past due. Please pay the amount below now.",
    "suspension_candidate": "Your account is seriously past due; service may be suspended unless it is paid.",
}


def _notice_text(state: dict, as_of: date) -> str:
    return (
        f"Squak Communications - payment {state['state'].replace('_', ' ')}\n"
        f"Account {state['account_id']}, as of {as_of.isoformat()}\n\n{NOTICE[state['state']]}\n\n"
        f"Overdue invoices: {state['invoices'].replace(',', ', ')}\n"
        f"Overdue amount: {Decimal(state['overdue_amount']).quantize(Decimal('0.01')):f} {state['currency']}"
        f" ({state['days_past_due']} days past due)\n"
    )


def _summarize(
    invoices: list[dict],
    outcome: Outcome,
    payments: list[dict],
    aged: list[dict],
    states: list[dict],
    report: PaymentsReport,
) -> None:
    def add(target: dict[str, str], key: str, amount: Decimal) -> None:
        target[key] = f"{Decimal(target.get(key, '0')) + amount.quantize(Decimal('0.01')):f}"

    for inv in invoices:
        add(report.invoiced, inv["currency"], Decimal(inv["total"]))
    currency = {p["payment_id"]: p["currency"] for p in payments}
    for a in outcome.allocations:
        if a["payment_id"] in currency:
            add(report.collected, currency[a["payment_id"]], Decimal(a["amount"]))
    for s in outcome.suspense:
        report.suspense[s["reason"]] = report.suspense.get(s["reason"], 0) + 1
    for row in aged:
        buckets = report.aging.setdefault(row["currency"], dict.fromkeys(BUCKETS, "0.00"))
        add(buckets, row["bucket"], row["open_amount"])
    for s in states:
        report.dunning[s["state"]] = report.dunning.get(s["state"], 0) + 1


def run_payments(warehouse: Warehouse, settings: Settings, as_of: date | None = None) -> PaymentsReport:
    """Intake new files, then rebuild everything derived (safe to run again)."""
    report = PaymentsReport(as_of or clock.today())
    with warehouse.session():
        ensure_tables(warehouse)
        intake(warehouse, settings, report)
        rebuild(warehouse, settings, report.as_of, report)
    return report


def assign(
    warehouse: Warehouse,
    payment_id: str,
    by: str,
    invoice_number: str | None = None,
    account_id: str | None = None,
) -> None:
    """Finance matches a payment by hand (to an invoice or an account); takes effect on the
    next rebuild."""
    if bool(invoice_number) == bool(account_id):
        raise ValueError("assign a payment to exactly one of an invoice or an account")
    with warehouse.session():
        ensure_tables(warehouse)
        if not warehouse.scalar(
            "select count(*) from payments.payments where payment_id = :p", {"p": payment_id}
        ):
            raise ValueError(f"no payment {payment_id!r}")
        if invoice_number and not warehouse.scalar(
            "select count(*) from invoicing.invoices where number = :n", {"n": invoice_number}
        ):
            raise ValueError(f"no final invoice {invoice_number!r}")
        warehouse.load(
            "payments.assignments",
            pa.table(
                {
                    "payment_id": [payment_id],
                    "invoice_number": [invoice_number],
                    "account_id": [account_id],
                    "assigned_by": [by],
                    "assigned_at": [clock.now()],
                },
                schema=TABLES["payments.assignments"],
            ),
            mode="append",
        )


LEDGER_SQL = """
with inv as (select account_id, currency, sum(total) as amount from invoicing.invoices group by 1, 2),
cn as (select account_id, currency, sum(total) as amount from {credit_notes} group by 1, 2),
pay as (select m.account_id, p.currency,
               sum(case when p.status = 'succeeded' then p.amount else 0 end) as paid,
               sum(case when p.status in ('refunded', 'chargeback') then p.amount else 0 end) as reversed
        from payments.matches m join payments.payments p using (payment_id) group by 1, 2),
closing as (select account_id, currency, sum(amount) as balance from payments.ledger group by 1, 2)
select c.account_id, c.currency, coalesce(i.amount, 0) as invoiced, coalesce(n.amount, 0) as credited,
       coalesce(p.paid, 0) as paid, coalesce(p.reversed, 0) as reversed, c.balance as closing
from closing c
left join inv i on i.account_id = c.account_id and i.currency = c.currency
left join cn n on n.account_id = c.account_id and n.currency = c.currency
left join pay p on p.account_id = c.account_id and p.currency = c.currency
where coalesce(i.amount, 0) + coalesce(n.amount, 0) - coalesce(p.paid, 0) + coalesce(p.reversed, 0)
      <> c.balance
"""
TWICE_SQL = """
select payment_id, count(*) as n from payments.matches group by 1 having count(*) > 1
union all
select a.payment_id, 0 from payments.allocations a join payments.payments p using (payment_id)
group by a.payment_id, p.amount having sum(a.amount) > p.amount
"""


def ledger_differences(warehouse: Warehouse) -> pd.DataFrame:
    """Accounts whose ledger closing balance is not invoiced + credit notes - paid + reversals,
    computed from the source tables (empty when the ledger reconciles)."""
    if not warehouse.table_exists("invoicing.invoices"):
        return pd.DataFrame()
    notes = (
        "invoicing.credit_notes"
        if warehouse.table_exists("invoicing.credit_notes")
        else ("(select '' as account_id, '' as currency, 0 as total where false) x")
    )
    return warehouse.query_df(LEDGER_SQL.format(credit_notes=notes))


def payments_paid_twice(warehouse: Warehouse) -> pd.DataFrame:
    """Payments matched more than once or paying more than their amount (empty when none)."""
    return warehouse.query_df(TWICE_SQL)
