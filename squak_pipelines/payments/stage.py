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
from squak_pipelines.money import format_money, money_array
from squak_pipelines.operator_identity import Operator, load_operator
from squak_pipelines.paths import inside
from squak_pipelines.payments.autopay import RetrySchedule, due_requests
from squak_pipelines.payments.direct_debit import Creditor, due_collections, pain008
from squak_pipelines.payments.intake import PAYMENT_FIELDS, PaymentFile, read_payment_bytes
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
    failed: int = 0
    debits: int = 0
    reversals: int = 0
    pending: int = 0
    duplicates: int = 0
    rejected: int = 0
    file_checks: list[str] = field(default_factory=list)
    invoiced: dict[str, str] = field(default_factory=dict)
    collected: dict[str, str] = field(default_factory=dict)
    suspense: dict[str, int] = field(default_factory=dict)
    aging: dict[str, dict[str, str]] = field(default_factory=dict)  # currency -> bucket -> amount
    dunning: dict[str, int] = field(default_factory=dict)
    notices: int = 0
    charge_requests: int = 0
    direct_debits: int = 0


# What a record counts as, by status (a file's records add up to these plus duplicates and rejects).
OUTCOME = {"succeeded": "new_payments", "failed": "failed", "not_a_payment": "debits",
           "refunded": "reversals", "chargeback": "reversals", "returned": "reversals",
           "pending": "pending", "information": "pending"}


def ensure_tables(warehouse: Warehouse) -> None:
    """The warehouse's tables, created or upgraded by the numbered migrations."""
    migrate(warehouse)


@dataclass
class _Seen:
    """Payment ids already stored, with where they came from and what they said."""

    where: dict[str, tuple[str, str]]
    said: dict[str, tuple[Decimal, str, str]]

    @classmethod
    def load(cls, warehouse: Warehouse) -> _Seen:
        rows = warehouse.query_arrow(
            "select payment_id, source_file, location, amount, currency, status from payments.payments"
        ).to_pylist()
        return cls({r["payment_id"]: (r["source_file"], r["location"]) for r in rows},
                   {r["payment_id"]: (Decimal(r["amount"]), r["currency"], r["status"]) for r in rows})

    def sort(self, read: PaymentFile, at: datetime) -> tuple[list[dict], list[dict]]:
        """New records, and repeats of stored ones (as duplicates rows). A repeat that says
        something else (another amount, currency or status: a correction) is a reject naming
        the earlier record, never silently dropped."""
        fresh, repeats = [], []
        for p in read.payments:
            pid = p["payment_id"]
            if pid not in self.where:
                self.where[pid] = (p["source_file"], p["location"])
                self.said[pid] = (Decimal(p["amount"]), p["currency"], p["status"])
                fresh.append(p)
                continue
            first_file, first_location = self.where[pid]
            amount, code, status = self.said[pid]
            if (amount, code, status) != (Decimal(p["amount"]), p["currency"], p["status"]):
                read.rejects.append({
                    "source_file": p["source_file"], "location": p["location"], "field": "(record)",
                    "reason": f"conflicting_record: {pid} was read from {first_file} {first_location} as "
                              f"{status} {amount:f} {code}, here {p['status']} {Decimal(p['amount']):f} "
                              f"{p['currency']}; a correction must come as a record of its own "
                              f"(a refund, an adjustment) or be assigned by finance",
                    "raw": f"{p['status']} {p['amount']} {p['currency']} {p.get('remittance') or ''}"[:2000]})
                continue
            repeats.append({"source_file": p["source_file"], "location": p["location"], "payment_id": pid,
                            "first_file": first_file, "first_location": first_location, "received_at": at})
        return fresh, repeats


def intake(warehouse: Warehouse, settings: Settings, report: PaymentsReport) -> None:
    """Read every payment file not seen before (by name and content)."""
    folder = settings.payments_drop_dir
    if not folder.exists():
        return
    seen = {
        (r["file_name"], r["sha256"])
        for r in warehouse.query_arrow("select file_name, sha256 from payments.files").to_pylist()
    }
    known = _Seen.load(warehouse)
    limits = Limits.load(settings.reference_dir)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if (name, digest) in seen or path.name.startswith("."):  # hidden: a file still being written
            continue
        read = _read_or_reject(data, name, limits)
        now = clock.now()
        fresh, repeats = known.sort(read, now)
        counts = dict.fromkeys(set(OUTCOME.values()), 0)
        for p in fresh:
            counts[OUTCOME[p["status"]]] += 1
        with warehouse.transaction():
            if fresh:
                columns = {f: [p[f] for p in fresh] for f in PAYMENT_FIELDS}
                columns["amount"] = money_array(columns["amount"])
                rows, _ = redact_table(pa.table(columns, schema=TABLES["payments.payments"]),
                                       keep=_IDENTITY)
                warehouse.load("payments.payments", rows, mode="append")
            if repeats:
                duplicates = pa.Table.from_pylist(repeats, schema=TABLES["payments.duplicates"])
                warehouse.load("payments.duplicates", duplicates, mode="append")
            if read.rejects:
                rows, _ = redact_table(pa.Table.from_pylist(read.rejects, schema=TABLES["payments.rejects"]),
                                       keep=_IDENTITY)
                warehouse.load("payments.rejects", rows, mode="append")
            warehouse.load(
                "payments.files",
                pa.Table.from_pylist([{
                    "file_name": name, "sha256": digest, "kind": read.kind,
                    "records": len(fresh) + len(repeats) + len(read.rejects), **counts,
                    "duplicates": len(repeats), "rejected": len(read.rejects), "received_at": now,
                    "checks": "\n".join(read.checks) or None}], schema=TABLES["payments.files"]),
                mode="append",
            )
            fault_point("payments.before_commit")
        report.files += 1
        for key, n in counts.items():
            setattr(report, key, getattr(report, key) + n)
        report.duplicates += len(repeats)
        report.rejected += len(read.rejects)
        report.file_checks += [f"{name}: {c}" for c in read.checks]


_IDENTITY = ("source_file", "location", "first_file", "first_location", "payment_id", "statement_id",
             "bank_account", "payer_iban", "end_to_end_id", "mandate_id", "creditor_reference", "reverses")
# where a record came from and what identifies it is not screened text (an IBAN is no card number)


def _read_or_reject(data: bytes, name: str, limits: Limits) -> PaymentFile:
    """The file's payments and rejects; a file that cannot be read at all (corrupt, not a
    payment format, a reader failure) becomes one reject naming the file and the problem,
    and the run goes on with the other files."""
    try:
        return read_payment_bytes(data, name, limits)
    except Exception as exc:  # a poison file must never stop the stage
        return PaymentFile(name, "unreadable", payments=[], rejects=[{
            "source_file": name, "location": name, "field": "(file)", "reason": "unreadable_file",
            "raw": f"{type(exc).__name__}: {exc}"[:2000]}])


def _facts(warehouse: Warehouse) -> tuple[list[dict], list[dict], list[dict], dict, dict, dict]:
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
    collections = {
        r["end_to_end_id"]: r["invoice_number"]
        for r in warehouse.query_arrow(
            "select end_to_end_id, invoice_number from payments.direct_debits").to_pylist()
    }
    return invoices, notes, payments.to_pylist(), tokens, assignments, collections


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
    invoices, notes, payments, tokens, assignments, collections = _facts(warehouse)
    outcome = match(invoices, notes, payments, tokens, assignments, collections)
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
    _settle_staged(warehouse, settings)  # what a run that died left staged
    with warehouse.transaction():
        if warehouse.kind == "postgres":  # two rebuilds at once run one after the other
            warehouse.execute(f"lock table {', '.join(tables)} in exclusive mode")
        for name, table in tables.items():
            warehouse.execute(f"delete from {name}")
            warehouse.load(name, table, mode="append")
        report.notices = _send_notices(warehouse, settings, states, as_of)
        report.charge_requests = _request_charges(warehouse, settings, outcome, payments, as_of)
        report.direct_debits = _request_direct_debits(warehouse, settings, outcome, as_of)
        fault_point("payments.before_outgoing_commit")
    _settle_staged(warehouse, settings)
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
    path = _outgoing(settings, f"charge-requests-{as_of.isoformat()}", "csv")
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


STAGED = ".staged"  # outgoing files written inside the rebuild's transaction, until it commits


def _outgoing(settings: Settings, stem: str, suffix: str) -> Path:
    """Where to write a new outgoing file: in `outgoing/.staged/`, under a name not yet used
    in `outgoing/` (`<stem>.<suffix>`, else `<stem>-2.<suffix>`, ...). `_settle_staged` moves
    it out once the requests it carries are committed."""
    folder = settings.data_dir / "outgoing"
    staged = folder / STAGED
    staged.mkdir(parents=True, exist_ok=True)
    name, n = f"{stem}.{suffix}", 1
    while (folder / name).exists() or (staged / name).exists():
        n += 1
        name = f"{stem}-{n}.{suffix}"
    return staged / name


def _settle_staged(warehouse: Warehouse, settings: Settings) -> None:
    """Staged outgoing files whose requests are recorded go out to `outgoing/`; the others
    were written by a run that died before its commit, so they are removed (their requests
    are made again, once, by this run). A charge or collection is never sent twice."""
    staged = settings.data_dir / "outgoing" / STAGED
    if not staged.exists():
        return
    recorded = set(warehouse.query_arrow(
        "select file from payments.charge_requests union select file from payments.direct_debits"
    ).column(0).to_pylist())
    for path in sorted(staged.iterdir()):
        if path.name in recorded:
            path.replace(staged.parent / path.name)
        else:
            path.unlink()


def _request_direct_debits(warehouse: Warehouse, settings: Settings, outcome: Outcome, as_of: date) -> int:
    """SEPA direct-debit collections of the open invoices of mandate accounts, written as one
    pain.008 batch (`outgoing/pain008-<date>[-n].xml`) and recorded so none is made twice."""
    creditor = Creditor.load(settings.reference_dir / "direct_debit.yaml")
    if creditor is None:
        return 0
    mandates = {
        r["account_id"]: r
        for r in warehouse.query_arrow(
            "select account_id, name, iban, bic, mandate_id, mandate_date from orders.accounts "
            "where payment_method = 'ach' and currency = 'EUR' and coalesce(mandate_id, '') <> '' "
            "and billing_issue is null").to_pylist()
    }
    if not mandates:
        return 0
    done = warehouse.query_arrow("select end_to_end_id, mandate_id from payments.direct_debits").to_pylist()
    open_invoices = [
        {"number": i.number, "account_id": i.account_id, "currency": i.currency,
         "due_date": i.due_date.date(), "open": i.open}
        for i in outcome.invoices.values() if i.open > 0 and i.account_id in mandates
    ]
    due = due_collections(open_invoices, mandates, {r["end_to_end_id"] for r in done},
                          {r["mandate_id"] for r in done}, as_of, creditor.lead_days)
    if not due:
        return 0
    path = _outgoing(settings, f"pain008-{as_of.isoformat()}", "xml")
    path.write_bytes(pain008(creditor, due, f"SQK-{path.stem}", clock.now()))  # unique: one file a name
    rows = [{**c, "amount": Decimal(c["amount"]), "file": path.name} for c in due]
    requested = pa.Table.from_pylist(rows, schema=TABLES["payments.direct_debits"])
    warehouse.load("payments.direct_debits", requested, mode="append")
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
    operator = None
    for s in states:
        key = (s["account_id"], s["currency"], s["state"], s["invoices"])
        if key in sent:
            continue
        operator = operator or load_operator(settings.reference_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = inside(folder, f"{s['account_id']}-{s['currency']}-{s['state']}.txt")
        path.write_text(_notice_text(s, as_of, operator), encoding="utf-8")
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


def _notice_text(state: dict, as_of: date, operator: Operator) -> str:
    return (
        f"{operator.legal_name} - payment {state['state'].replace('_', ' ')}\n"
        f"Account {state['account_id']}, as of {as_of.isoformat()}\n\n{NOTICE[state['state']]}\n\n"
        f"Overdue invoices: {state['invoices'].replace(',', ', ')}\n"
        f"Overdue amount: {format_money(state['overdue_amount'], state['currency'])} {state['currency']}"
        f" ({state['days_past_due']} days past due)\n\n"
        f"Pay by bank transfer to {operator.bank_name} IBAN {operator.iban} BIC {operator.bic}, or ask "
        f"{operator.email}.\n{operator.footer}\n"
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


class AssignError(ValueError):
    """Finance's assignment cannot be taken (one line naming what and why)."""


def assign(
    warehouse: Warehouse,
    payment_id: str,
    by: str,
    invoice_number: str | None = None,
    account_id: str | None = None,
) -> None:
    """Finance matches a payment by hand (to an invoice or an account); takes effect on the
    next rebuild. Refused, with one line: an unknown payment, invoice or account, a record
    that is not a payment received, a payment already assigned, a currency mismatch."""
    if bool(invoice_number) == bool(account_id):
        raise AssignError("assign a payment to exactly one of an invoice (--invoice) or an account "
                          "(--account)")
    with warehouse.session():
        ensure_tables(warehouse)
        found = warehouse.query_arrow(
            "select status, currency, amount from payments.payments where payment_id = :p", {"p": payment_id}
        ).to_pylist()
        if not found:
            raise AssignError(f"no payment {payment_id!r} (see payments.payments or payments.suspense)")
        payment = found[0]
        if payment["status"] != "succeeded":
            raise AssignError(f"{payment_id} is a {payment['status']} record, not a payment received: "
                              "only payments can be assigned")
        earlier = warehouse.query_arrow(
            "select invoice_number, account_id, assigned_by from payments.assignments where payment_id = :p",
            {"p": payment_id}).to_pylist()
        if earlier:
            e = earlier[0]
            raise AssignError(f"{payment_id} is already assigned to {e['invoice_number'] or e['account_id']} "
                              f"by {e['assigned_by']}")
        if invoice_number:
            invoice = warehouse.query_arrow(
                "select currency from invoicing.invoices where number = :n", {"n": invoice_number}
            ).to_pylist() if warehouse.table_exists("invoicing.invoices") else []
            if not invoice:
                raise AssignError(f"no final invoice {invoice_number!r}")
            if invoice[0]["currency"] != payment["currency"]:
                raise AssignError(f"currency mismatch: {payment_id} is {payment['currency']}, invoice "
                                  f"{invoice_number} is {invoice[0]['currency']}")
        else:
            currencies = set(warehouse.query_arrow(
                "select currency from orders.accounts where account_id = :a union "
                "select currency from invoicing.invoices where account_id = :a", {"a": account_id}
            ).column(0).to_pylist()) if warehouse.table_exists("orders.accounts") else set()
            if not currencies:
                raise AssignError(f"no account {account_id!r}")
            if payment["currency"] not in currencies:
                raise AssignError(f"currency mismatch: {payment_id} is {payment['currency']}, account "
                                  f"{account_id} bills in {', '.join(sorted(currencies))}")
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
               sum(case when p.status in ('refunded', 'chargeback', 'returned') then p.amount else 0 end)
                   as reversed
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
