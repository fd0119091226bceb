"""Match payments to invoices and keep every account's receivable, in date order.

Plain Python over one account history (a month has thousands of payments, not millions).
Everything is replayed from the stored facts on every run, so results are reproducible:
invoices (their total is owed from the issue date), credit notes (they reduce the invoice
they correct), payments, refunds and chargebacks, and finance's manual assignments.

How a payment finds its invoice, in order:
1. finance assigned it (to an invoice or an account);
2. direct debit: a bank credit carrying the end-to-end id of one of our SEPA collections
   (ids we chose, so they are unique) pays that collection's invoice;
3. creditor reference: a valid ISO 11649 reference of one of our invoices;
4. reference: an invoice number in the remittance text or description, tolerant of case and
   spacing (`sqk 2026 000011`); the first known number wins;
5. token: a card token on file for one account, and an open invoice of exactly that amount;
6. manual payments name their account: the oldest open invoices first.
Otherwise it goes to suspense with the reason. A matched payment pays its invoice up to
the open amount, then the account's other open invoices, oldest first; what is left is
account credit, which pays the next invoices as they are issued. A refund or chargeback of
a card payment (the charge it names), or a bank return (a returned direct debit or reversed
credit: the earlier credit with its end-to-end id and currency, and mandate where both name
one) takes back what that payment paid: the invoices reopen, and dunning sees them again.
Failed card payments, debits, pending and information entries change nothing. The same
payment_id is only ever counted once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from squak_pipelines.payments.records import REVERSALS
from squak_pipelines.payments.references import invoice_numbers_in, invoice_of_reference

ZERO = Decimal(0)


@dataclass
class OpenInvoice:
    number: str
    account_id: str
    currency: str
    issue_date: datetime
    due_date: datetime
    total: Decimal
    open: Decimal


@dataclass
class Outcome:
    """What matching found: allocations, suspense, per-account credit and the ledger."""

    allocations: list[dict] = field(default_factory=list)  # payment_id, invoice_number, amount
    matches: list[dict] = field(default_factory=list)  # payment_id, how, account_id, invoice_number
    suspense: list[dict] = field(default_factory=list)  # payment_id, reason
    ledger: list[dict] = field(default_factory=list)
    invoices: dict[str, OpenInvoice] = field(default_factory=dict)
    credit: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # unallocated, per account


class _Book:
    def __init__(self, invoices: list[dict]):
        self.out = Outcome()
        self.by_account: dict[tuple[str, str], list[OpenInvoice]] = {}
        for inv in invoices:
            item = OpenInvoice(
                inv["number"],
                inv["account_id"],
                inv["currency"],
                inv["issue_date"],
                inv["due_date"],
                Decimal(inv["total"]),
                Decimal(inv["total"]),
            )
            self.out.invoices[item.number] = item
        self.paid_by: dict[str, list[tuple[str, Decimal]]] = {}  # payment -> allocations

    def post(
        self, at: datetime, account: str, currency: str, kind: str, document: str, amount: Decimal
    ) -> None:
        self.out.ledger.append(
            {
                "account_id": account,
                "currency": currency,
                "at": at,
                "kind": kind,
                "document": document,
                "amount": amount,
            }
        )

    def issue(self, inv: OpenInvoice) -> None:
        """An invoice comes due: existing account credit pays it first."""
        key = (inv.account_id, inv.currency)
        self.by_account.setdefault(key, []).append(inv)
        self.post(inv.issue_date, inv.account_id, inv.currency, "invoice", inv.number, inv.total)
        credit = self.out.credit.get(key, ZERO)
        if credit > 0 and inv.open > 0:
            used = min(credit, inv.open)
            inv.open -= used
            self.out.credit[key] = credit - used
            self.out.allocations.append(
                {
                    "payment_id": f"credit:{inv.account_id}:{inv.currency}",
                    "invoice_number": inv.number,
                    "amount": used,
                }
            )

    def pay(self, payment: dict, first: OpenInvoice | None, account: str, currency: str) -> None:
        key = (account, currency)
        left = Decimal(payment["amount"])
        self.post(payment["received_at"], account, currency, "payment", payment["payment_id"], -left)
        queue = ([first] if first is not None else []) + sorted(
            (i for i in self.by_account.get(key, []) if i is not first and i.open > 0),
            key=lambda i: (i.due_date, i.number),
        )
        done = self.paid_by.setdefault(payment["payment_id"], [])
        for inv in queue:
            if left <= 0:
                break
            used = min(left, inv.open)
            if used <= 0:
                continue
            inv.open -= used
            left -= used
            done.append((inv.number, used))
            self.out.allocations.append(
                {"payment_id": payment["payment_id"], "invoice_number": inv.number, "amount": used}
            )
        if left > 0:
            self.out.credit[key] = self.out.credit.get(key, ZERO) + left
            done.append(("", left))

    def reverse(self, payment: dict, original: dict, account: str, currency: str) -> None:
        """A refund or chargeback takes back what the original payment paid, newest first."""
        key = (account, currency)
        left = Decimal(payment["amount"])
        self.post(payment["received_at"], account, currency, payment["status"], payment["payment_id"], left)
        for number, amount in reversed(self.paid_by.get(original["payment_id"], [])):
            if left <= 0:
                break
            back = min(left, amount)
            if number:
                self.out.invoices[number].open += back
                self.out.allocations.append(
                    {"payment_id": payment["payment_id"], "invoice_number": number, "amount": -back}
                )
            else:
                self.out.credit[key] = self.out.credit.get(key, ZERO) - back
            left -= back
        if left > 0:  # more taken back than the payment had paid here: owed by the account
            self.out.credit[key] = self.out.credit.get(key, ZERO) - left


def match(
    invoices: list[dict],
    credit_notes: list[dict],
    payments: list[dict],
    tokens: dict[str, str],
    assignments: dict[str, dict],
    collections: dict[str, str] | None = None,
) -> Outcome:
    """Replay invoices, credit notes and payments in date order (see the module docstring).

    invoices: number, account_id, currency, issue_date, due_date, total (datetimes, Decimal);
    credit_notes: number, invoice_number, account_id, currency, issued_at, total (negative);
    payments: the intake's records (payment_id, method, status, amount, currency,
    received_at, token, account_id, invoice_hint, remittance);
    tokens: card token -> account_id; assignments: payment_id -> {invoice_number | account_id};
    collections: end-to-end id of our direct-debit collections -> invoice_number.
    """
    book = _Book(invoices)
    events: list[tuple[datetime, int, str, dict]] = []
    for inv in invoices:
        events.append((inv["issue_date"], 0, inv["number"], inv))
    for note in credit_notes:
        events.append((note["issued_at"], 1, note["number"], note))
    seen: set[str] = set()
    for p in payments:
        if p["payment_id"] in seen:
            continue
        seen.add(p["payment_id"])
        events.append((p["received_at"], 2, p["payment_id"], p))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    matched: dict[str, tuple[str, str]] = {}  # payment_id -> (account, currency)
    originals = _Originals(payments)
    for _, order, _, item in events:
        if order == 0:
            book.issue(book.out.invoices[item["number"]])
        elif order == 1:
            _credit_note(book, item)
        elif item["status"] == "succeeded":
            _payment(book, item, tokens, assignments, matched, collections or {})
        elif item["status"] in REVERSALS:
            original = originals.of(item)
            if original is None or original["payment_id"] not in matched:
                book.out.suspense.append(
                    {"payment_id": item["payment_id"], "reason": "reversal_of_unmatched_payment"}
                )
                continue
            account, currency = matched[original["payment_id"]]
            book.reverse(item, original, account, currency)
            book.out.matches.append(
                {
                    "payment_id": item["payment_id"],
                    "how": "reversal",
                    "account_id": account,
                    "invoice_number": None,
                }
            )
    return book.out


class _Originals:
    """The payment a reversal takes back: a card charge by the reference the refund or
    chargeback names; a bank credit by end-to-end id and currency (and mandate where both
    carry one), the latest received before the return that is not yet wholly taken back."""

    def __init__(self, payments: list[dict]):
        self.card = {p["reference"]: p for p in payments
                     if p["method"] == "card" and p["status"] == "succeeded" and p.get("reference")}
        self.bank: dict[tuple[str, str], list[dict]] = {}
        for p in payments:
            if p["method"] == "bank" and p["status"] == "succeeded" and p.get("end_to_end_id"):
                self.bank.setdefault((p["end_to_end_id"], p["currency"]), []).append(p)
        self.taken: dict[str, Decimal] = {}

    def of(self, item: dict) -> dict | None:
        if item["method"] != "bank":
            return self.card.get(item.get("reverses") or item.get("reference") or "")
        candidates = [
            p for p in self.bank.get((item.get("end_to_end_id") or "", item["currency"]), [])
            if p["received_at"] <= item["received_at"]
            and _same_mandate(p.get("mandate_id"), item.get("mandate_id"))
            and Decimal(p["amount"]) - self.taken.get(p["payment_id"], ZERO) >= Decimal(item["amount"])
        ]
        if not candidates:
            return None
        original = max(candidates, key=lambda p: (p["received_at"], p["payment_id"]))
        key = original["payment_id"]
        self.taken[key] = self.taken.get(key, ZERO) + Decimal(item["amount"])
        return original


def _same_mandate(first: str | None, second: str | None) -> bool:
    return not first or not second or first == second


def _credit_note(book: _Book, note: dict) -> None:
    inv = book.out.invoices.get(note["invoice_number"])
    amount = -Decimal(note["total"])  # positive: what the customer no longer owes
    book.post(note["issued_at"], note["account_id"], note["currency"], "credit_note", note["number"], -amount)
    key = (note["account_id"], note["currency"])
    used = min(amount, inv.open) if inv is not None and inv.open > 0 else ZERO
    if inv is not None and used > 0:
        inv.open -= used
        book.out.allocations.append(
            {"payment_id": f"credit_note:{note['number']}", "invoice_number": inv.number, "amount": used}
        )
    if amount - used > 0:
        book.out.credit[key] = book.out.credit.get(key, ZERO) + amount - used


def _payment(
    book: _Book,
    p: dict,
    tokens: dict[str, str],
    assignments: dict[str, dict],
    matched: dict[str, tuple[str, str]],
    collections: dict[str, str],
) -> None:
    currency = p["currency"]
    invoices = book.out.invoices
    target: OpenInvoice | None = None
    account: str | None = None
    how = ""
    assigned = assignments.get(p["payment_id"])
    if assigned:
        how = "assigned"
        target = invoices.get(assigned.get("invoice_number") or "")
        account = target.account_id if target else assigned.get("account_id")
    elif p.get("end_to_end_id") in collections and collections[p["end_to_end_id"]] in invoices:
        how, target = "direct_debit", invoices[collections[p["end_to_end_id"]]]
        account = target.account_id
    elif (referenced := invoice_of_reference(p.get("creditor_reference"))) in invoices:
        how, target = "creditor_reference", invoices[referenced]
        account = target.account_id
    else:
        refs = [
            n
            for n in invoice_numbers_in(f"{p.get('invoice_hint') or ''} {p.get('remittance') or ''}")
            if n in invoices
        ]
        if refs:
            how, target = "reference", invoices[refs[0]]
            account = target.account_id
        elif invoice_numbers_in(f"{p.get('invoice_hint') or ''} {p.get('remittance') or ''}"):
            book.out.suspense.append({"payment_id": p["payment_id"], "reason": "unknown_invoice"})
            return
        elif p.get("token") and p["token"] in tokens:
            account = tokens[p["token"]]
            exact = sorted(
                (
                    i
                    for i in book.by_account.get((account, currency), [])
                    if i.open > 0 and i.open == Decimal(p["amount"])
                ),
                key=lambda i: (i.due_date, i.number),
            )
            if not exact:
                reason = "no_open_invoice_of_amount"
                book.out.suspense.append({"payment_id": p["payment_id"], "reason": reason})
                return
            how, target = "token_amount", exact[0]
        elif p.get("account_id"):
            how, account = "account", p["account_id"]
        else:
            reason = "unknown_token" if p.get("token") else "no_reference"
            book.out.suspense.append({"payment_id": p["payment_id"], "reason": reason})
            return
    if target is not None and target.currency != currency:
        book.out.suspense.append({"payment_id": p["payment_id"], "reason": "currency_mismatch"})
        return
    if not account:
        book.out.suspense.append({"payment_id": p["payment_id"], "reason": "unknown_account"})
        return
    book.pay(p, target, account, currency)
    matched[p["payment_id"]] = (account, currency)
    book.out.matches.append(
        {
            "payment_id": p["payment_id"],
            "how": how,
            "account_id": account,
            "invoice_number": target.number if target else None,
        }
    )
