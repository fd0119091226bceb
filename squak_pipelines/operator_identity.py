"""The operator's identity, from `reference/operator.yaml`, on every document it issues.

Legal name, postal address, tax identifiers (VAT id checked with python-stdnum, a national
tax registration such as a US EIN, a company registration), bank account (IBAN and BIC
checked with schwifty), contact, the legal footer, the invoice number prefix and the
payment link (`{token}` becomes the invoice's signed, expiring token: payments/links.py;
`SQUAK_PAYMENT_URL` overrides it). A missing required field or a malformed
IBAN, BIC or VAT id fails the load naming the file, the field and the rule, before any
invoice is finalized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from squak_pipelines.orders.catalogue import iso_countries
from squak_pipelines.tax_ids import vat_problem, with_prefix
from squak_pipelines.yaml_files import read_mapping

FILE_NAME = "operator.yaml"
REQUIRED = ("legal_name", "address.street", "address.city", "address.postal_code", "address.country",
            "contact.email", "bank.iban", "bank.bic", "footer", "invoice_prefix", "payment_link")


class OperatorFileError(ValueError):
    """`reference/operator.yaml` is missing a legal field or holds a malformed one."""

    def __init__(self, path: Path, field: str, rule: str):
        super().__init__(f"{path}: field {field!r}: {rule}")
        self.path, self.field, self.rule = path, field, rule


@dataclass(frozen=True)
class Operator:
    legal_name: str
    trading_name: str
    street: str
    city: str
    postal_code: str
    state: str
    country: str
    vat_id: str  # with its country prefix ('' when not VAT registered)
    tax_registration: str  # e.g. a US EIN (EN 16931 BT-32)
    tax_registration_scheme: str
    company_registration: str  # EN 16931 BT-30
    iban: str
    bic: str
    bank_name: str
    email: str
    phone: str
    website: str
    footer: str
    invoice_prefix: str
    payment_link: str

    @property
    def address_line(self) -> str:
        place = " ".join(x for x in (self.state, self.postal_code) if x)
        return ", ".join(x for x in (self.street, self.city, place, self.country) if x)

    def as_dict(self) -> dict[str, str]:
        return {**self.__dict__, "address_line": self.address_line}


def _get(doc: dict, dotted: str) -> str:
    value: object = doc
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value).strip()


def load_operator(reference_dir: Path) -> Operator:
    """The operator of `reference/operator.yaml`, every field checked."""
    path = reference_dir / FILE_NAME
    doc = read_mapping(path, lambda field, rule: OperatorFileError(path, field, rule),
                       "the operator's identity file is missing; every invoice needs the seller's "
                       "legal name, address, tax ids and bank account")
    for name in REQUIRED:
        if not _get(doc, name):
            raise OperatorFileError(path, name, "required legal field is missing or empty")
    country = _get(doc, "address.country").upper()
    if country not in iso_countries():
        raise OperatorFileError(path, "address.country", f"{country!r} is not an ISO 3166 country code")
    iban, bic = _bank(path, _get(doc, "bank.iban"), _get(doc, "bank.bic"))
    vat_id = _get(doc, "vat_id")
    if vat_id:
        problem = vat_problem(vat_id, country)
        if problem:
            raise OperatorFileError(path, "vat_id", f"python-stdnum check failed: {problem}")
        vat_id = with_prefix(vat_id, country)
    if "{token}" not in _get(doc, "payment_link"):
        raise OperatorFileError(path, "payment_link", "must contain {token} (the signed payment token)")
    prefix = _get(doc, "invoice_prefix")
    if not prefix.replace("-", "").isalnum():
        raise OperatorFileError(path, "invoice_prefix", f"{prefix!r}: letters, digits and '-' only")
    return Operator(
        legal_name=_get(doc, "legal_name"), trading_name=_get(doc, "trading_name") or _get(doc, "legal_name"),
        street=_get(doc, "address.street"), city=_get(doc, "address.city"),
        postal_code=_get(doc, "address.postal_code"), state=_get(doc, "address.state"), country=country,
        vat_id=vat_id, tax_registration=_get(doc, "tax_registration.id"),
        tax_registration_scheme=_get(doc, "tax_registration.scheme"),
        company_registration=_get(doc, "company_registration"), iban=iban, bic=bic,
        bank_name=_get(doc, "bank.name"), email=_get(doc, "contact.email"), phone=_get(doc, "contact.phone"),
        website=_get(doc, "contact.website"), footer=_get(doc, "footer"), invoice_prefix=prefix,
        payment_link=_get(doc, "payment_link"),
    )


def _bank(path: Path, iban_text: str, bic_text: str) -> tuple[str, str]:
    from schwifty import BIC, IBAN
    from schwifty.exceptions import SchwiftyException

    try:
        iban = IBAN(iban_text)
    except SchwiftyException as exc:
        raise OperatorFileError(path, "bank.iban", f"schwifty IBAN check failed: {exc}") from None
    try:
        bic = BIC(bic_text)
    except SchwiftyException as exc:
        raise OperatorFileError(path, "bank.bic", f"schwifty BIC check failed: {exc}") from None
    if bic.country_code != iban.country_code:
        raise OperatorFileError(path, "bank.bic", f"BIC {bic} is of {bic.country_code}, the IBAN of "
                                f"{iban.country_code}")
    return str(iban.compact), str(bic.compact)
