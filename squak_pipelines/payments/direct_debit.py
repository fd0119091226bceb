"""Collecting by SEPA direct debit: pain.008 batches for accounts with a mandate.

Who is collected: an account paying by bank (`payment_method = ach`) in EUR with a valid
mandate on file (IBAN, mandate id and date of signature, checked when the account is taken
in). Each of its open final invoices is collected once, for its open amount, on its due date
(or `lead_days` after today when that is later). The first collection under a mandate is
`FRST`, every later one `RCUR`. A returned collection is not presented again by itself: the
invoice reopens and dunning takes over.

The creditor (the operator) comes from `reference/direct_debit.yaml`: creditor_name,
creditor_iban, creditor_bic, creditor_id (the SEPA creditor identifier), lead_days. Without
that file nothing is collected. The XML is built by the `sepaxml` library (pain.008.001.02),
its message id and creation time set from the project's clock, and validated against the
pain.008.001.02 schema that library ships before it is written.

The end-to-end id of a collection is ours (`SQK-DD-<invoice number>`), so the bank credit
that pays it and the return that takes it back both find it (`matching.py`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # our own output only, re-serialized; nothing untrusted is parsed
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from sepaxml import SepaDD
from sepaxml.validation import try_valid_xml
from stdnum.iso7064 import mod_97_10

SCHEMA = "pain.008.001.02"
NS = f"urn:iso:std:iso:20022:tech:xsd:{SCHEMA}"
MANDATE_ID = re.compile(r"[A-Za-z0-9+?/:().,' -]{1,35}")  # the SEPA character set, 35 at most


class DirectDebitError(ValueError):
    """reference/direct_debit.yaml or a mandate is not usable (names the field)."""


def creditor_id_problem(value: str) -> str | None:
    """The SEPA creditor identifier's check (country, check digits over the national id and
    country, ignoring the business code), or None when it is valid."""
    text = value.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{3}[A-Z0-9]{1,28}", text):
        return f"{value!r} is not shaped as a SEPA creditor identifier (e.g. DE98ZZZ09999999999)"
    if not mod_97_10.is_valid(text[7:] + text[:4]):
        return f"{value!r} has wrong check digits"
    return None


def mandate_problem(iban: str, mandate_id: str, mandate_date: str, bic: str, today: date) -> str | None:
    """What is wrong with an account's mandate (field: reason), or None when it can be used."""
    try:
        IBAN(iban)
    except SchwiftyException as exc:
        return f"iban: {iban!r} is not a valid IBAN ({exc})"
    if not MANDATE_ID.fullmatch(mandate_id or ""):
        return f"mandate_id: {mandate_id!r} must be 1-35 characters of the SEPA set"
    try:
        signed = date.fromisoformat(mandate_date)
    except ValueError:
        return f"mandate_date: {mandate_date!r} is not an ISO date"
    if signed > today:
        return f"mandate_date: {mandate_date} is in the future"
    if bic:
        try:
            BIC(bic)
        except SchwiftyException as exc:
            return f"bic: {bic!r} is not a valid BIC ({exc})"
    return None


@dataclass(frozen=True)
class Creditor:
    name: str
    iban: str
    bic: str
    creditor_id: str
    lead_days: int = 2

    @classmethod
    def load(cls, path: Path) -> Creditor | None:
        if not path.exists():
            return None
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise DirectDebitError(f"{path}: must be a mapping")
        for key in ("creditor_name", "creditor_iban", "creditor_bic", "creditor_id"):
            if not str(loaded.get(key) or "").strip():
                raise DirectDebitError(f"{path}: {key} is required")
        try:
            iban = str(IBAN(str(loaded["creditor_iban"])))
        except SchwiftyException as exc:
            raise DirectDebitError(f"{path}: creditor_iban is not a valid IBAN ({exc})") from None
        try:
            bic = str(BIC(str(loaded["creditor_bic"])))
        except SchwiftyException as exc:
            raise DirectDebitError(f"{path}: creditor_bic is not a valid BIC ({exc})") from None
        problem = creditor_id_problem(str(loaded["creditor_id"]))
        if problem:
            raise DirectDebitError(f"{path}: creditor_id {problem}")
        lead = loaded.get("lead_days", 2)
        if not isinstance(lead, int) or lead < 1:
            raise DirectDebitError(f"{path}: lead_days must be a whole number of days >= 1")
        return cls(str(loaded["creditor_name"]), iban, bic, str(loaded["creditor_id"]).replace(" ", ""), lead)


def end_to_end_id(invoice_number: str) -> str:
    return f"SQK-DD-{invoice_number}"


def due_collections(open_invoices: list[dict], mandates: dict[str, dict], already: set[str],
                    mandates_used: set[str], today: date, lead_days: int) -> list[dict]:
    """Collections to request now: one per open EUR invoice of a mandate account not yet
    collected. open_invoices: number, account_id, currency, due_date, open (Decimal);
    mandates: account_id -> iban, bic, mandate_id, mandate_date, name."""
    out = []
    first_used = set(mandates_used)
    for inv in sorted(open_invoices, key=lambda i: (i["due_date"], i["number"])):
        mandate = mandates.get(inv["account_id"])
        e2e = end_to_end_id(inv["number"])
        if mandate is None or inv["currency"] != "EUR" or inv["open"] <= 0 or e2e in already:
            continue
        sequence = "RCUR" if mandate["mandate_id"] in first_used else "FRST"
        first_used.add(mandate["mandate_id"])
        out.append({
            "end_to_end_id": e2e, "invoice_number": inv["number"], "account_id": inv["account_id"],
            "amount": inv["open"], "currency": "EUR", "mandate_id": mandate["mandate_id"],
            "mandate_date": date.fromisoformat(mandate["mandate_date"]), "iban": mandate["iban"],
            "bic": mandate.get("bic") or "", "name": mandate["name"], "sequence_type": sequence,
            "collection_date": max(inv["due_date"], today + timedelta(days=lead_days)),
        })
    return out


def pain008(creditor: Creditor, collections: list[dict], message_id: str, created: datetime) -> bytes:
    """The pain.008.001.02 document of these collections, validated against its schema."""
    sdd = SepaDD({"name": creditor.name, "IBAN": creditor.iban, "BIC": creditor.bic, "batch": True,
                  "creditor_id": creditor.creditor_id, "currency": "EUR"}, schema=SCHEMA)
    for c in collections:
        cents = int((Decimal(c["amount"]) * 100).to_integral_value())
        payment = {"name": c["name"], "IBAN": c["iban"], "amount": cents, "type": c["sequence_type"],
                   "collection_date": c["collection_date"], "mandate_id": c["mandate_id"],
                   "mandate_date": c["mandate_date"], "description": f"Invoice {c['invoice_number']}",
                   "endtoend_id": c["end_to_end_id"]}
        if c["bic"]:
            payment["BIC"] = c["bic"]
        sdd.add_payment(payment)
    document = ET.fromstring(sdd.export(validate=False))
    # The library stamps the machine's time and random ids; ours come from the clock and the run.
    header = document.find(f"{{{NS}}}CstmrDrctDbtInitn/{{{NS}}}GrpHdr")
    header.find(f"{{{NS}}}MsgId").text = message_id
    header.find(f"{{{NS}}}CreDtTm").text = created.strftime("%Y-%m-%dT%H:%M:%S")
    for n, info in enumerate(document.iter(f"{{{NS}}}PmtInfId"), 1):
        info.text = f"{message_id}-{n}"[:35]
    ET.register_namespace("", NS)
    xml = ET.tostring(document, encoding="utf-8", xml_declaration=True)
    try_valid_xml(xml, SCHEMA)
    return xml
