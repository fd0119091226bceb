"""Squak's demo reference data: destinations, rate decks, plans, products, taxes, switches.

All prices are decimal strings. The destination table is the single source from which
every plan's rate decks are derived, so decks in different currencies stay consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from squak_pipelines.money import quantize


@dataclass(frozen=True)
class Destination:
    """One range of the world numbering plan as a rate deck row sees it."""

    prefix: str          # E.164 digits without '+'
    country: str         # ISO 3166 alpha-2 of the range
    name: str            # deck `destination`
    kind: str            # fixed, mobile, tollfree, premium, highrisk
    length: int          # total E.164 digits of a number in this range
    usd_rate: str        # base retail price per minute in USD when international


# fmt: off
DESTINATIONS: tuple[Destination, ...] = (
    # NANP: US, Canada and Caribbean share country code 1.
    Destination("1", "US", "United States - Fixed", "fixed", 11, "0.0100"),
    *(Destination(f"1{npa}", "US", "United States - Fixed", "fixed", 11, "0.0100")
      for npa in ("212", "213", "305", "312", "404", "415", "512", "617", "646", "702", "713", "718")),
    *(Destination(f"1{npa}", "US", "United States - Toll-free", "tollfree", 11, "0.0000")
      for npa in ("800", "833", "844", "855", "866", "877", "888")),
    Destination("1900", "US", "United States - Premium", "premium", 11, "1.9900"),
    *(Destination(f"1{npa}", "CA", "Canada", "fixed", 11, "0.0150")
      for npa in ("204", "403", "416", "514", "604", "613")),
    Destination("1876", "JM", "Jamaica", "fixed", 11, "0.1900"),
    Destination("1809", "DO", "Dominican Republic", "fixed", 11, "0.1200"),
    # United Kingdom
    Destination("44", "GB", "United Kingdom - Fixed", "fixed", 12, "0.0200"),
    Destination("4420", "GB", "United Kingdom - London", "fixed", 12, "0.0180"),
    Destination("44161", "GB", "United Kingdom - Manchester", "fixed", 12, "0.0190"),
    Destination("447", "GB", "United Kingdom - Mobile", "mobile", 12, "0.0900"),
    Destination("4477", "GB", "United Kingdom - Mobile", "mobile", 12, "0.0850"),
    Destination("44800", "GB", "United Kingdom - Freephone", "tollfree", 12, "0.0000"),
    Destination("4490", "GB", "United Kingdom - Premium", "premium", 12, "1.5000"),
    # Germany
    Destination("49", "DE", "Germany - Fixed", "fixed", 12, "0.0200"),
    Destination("4930", "DE", "Germany - Berlin", "fixed", 12, "0.0190"),
    Destination("4989", "DE", "Germany - Munich", "fixed", 12, "0.0190"),
    *(Destination(f"49{p}", "DE", "Germany - Mobile", "mobile", 13, "0.1100")
      for p in ("151", "152", "160", "170", "171", "176")),
    Destination("49800", "DE", "Germany - Freephone", "tollfree", 13, "0.0000"),
    Destination("49900", "DE", "Germany - Premium", "premium", 13, "1.8000"),
    # France
    Destination("33", "FR", "France - Fixed", "fixed", 11, "0.0200"),
    Destination("331", "FR", "France - Paris", "fixed", 11, "0.0180"),
    Destination("336", "FR", "France - Mobile", "mobile", 11, "0.1000"),
    Destination("337", "FR", "France - Mobile", "mobile", 11, "0.1000"),
    Destination("33800", "FR", "France - Freephone", "tollfree", 11, "0.0000"),
    Destination("33899", "FR", "France - Premium", "premium", 11, "1.6000"),
    # Mexico
    Destination("52", "MX", "Mexico", "fixed", 12, "0.0600"),
    Destination("5255", "MX", "Mexico - Mexico City", "fixed", 12, "0.0450"),
    Destination("5281", "MX", "Mexico - Monterrey", "fixed", 12, "0.0500"),
    Destination("5233", "MX", "Mexico - Guadalajara", "fixed", 12, "0.0500"),
    # India, Philippines, Australia, China
    Destination("91", "IN", "India - Fixed", "fixed", 12, "0.0350"),
    *(Destination(f"91{p}", "IN", "India - Mobile", "mobile", 12, "0.0300") for p in ("7", "8", "9")),
    Destination("63", "PH", "Philippines - Fixed", "fixed", 11, "0.1400"),
    Destination("639", "PH", "Philippines - Mobile", "mobile", 12, "0.1800"),
    Destination("61", "AU", "Australia - Fixed", "fixed", 11, "0.0400"),
    Destination("614", "AU", "Australia - Mobile", "mobile", 11, "0.0700"),
    Destination("86", "CN", "China - Fixed", "fixed", 12, "0.0300"),
    Destination("8613", "CN", "China - Mobile", "mobile", 13, "0.0300"),
    # High-risk ranges abused for international revenue share fraud (IRSF).
    Destination("882", "XN", "International Networks", "highrisk", 12, "4.5000"),
    Destination("8816", "XS", "Satellite - Iridium", "highrisk", 12, "6.9000"),
    Destination("252", "SO", "Somalia", "highrisk", 11, "1.2500"),
    Destination("53", "CU", "Cuba", "highrisk", 10, "1.1000"),
    Destination("2392", "ST", "Sao Tome and Principe", "highrisk", 10, "2.4000"),
)
# fmt: on

HIGH_RISK_PREFIXES = tuple(d.prefix for d in DESTINATIONS if d.kind == "highrisk")

# Countries where Squak has customers: currency, national dialling and emergency numbers.
HOME_COUNTRIES: dict[str, dict[str, object]] = {
    "US": {"cc": "1", "currency": "USD", "trunk": "1", "intl": "011", "emergency": ("911",)},
    "GB": {"cc": "44", "currency": "GBP", "trunk": "0", "intl": "00", "emergency": ("999", "112")},
    "DE": {"cc": "49", "currency": "EUR", "trunk": "0", "intl": "00", "emergency": ("112", "110")},
    "FR": {"cc": "33", "currency": "EUR", "trunk": "0", "intl": "00", "emergency": ("112", "15")},
    "MX": {"cc": "52", "currency": "MXN", "trunk": "", "intl": "00", "emergency": ("911",)},
}

# Retail multiplier from the USD base price, per deck currency (fixed demo FX, decimal).
FX = {"USD": Decimal("1"), "GBP": Decimal("0.80"), "EUR": Decimal("0.92"), "MXN": Decimal("18.5")}

# Fraud screening thresholds (reference/fraud_rules.yaml), editable by the operator.
FRAUD_RULES: dict[str, object] = {
    "burst": {"max_calls": 30, "window_minutes": 10},
    "short_calls": {"max_seconds": 6, "min_calls": 20, "window_minutes": 60},
    "high_risk": {"prefixes": list(HIGH_RISK_PREFIXES)},
    "concurrency": {"calls_per_line": 2},
    "night_international": {"start": "00:00", "end": "05:00", "max_calls": 10},
    "gate": {"max_quarantine_share": 0.05},
}

# Digits of a full E.164 number (country code included) in each home country.
E164_DIGITS = {"US": 11, "GB": 12, "DE": 12, "FR": 11, "MX": 12}

# Areas customers' numbers are allocated from: (country, area, E.164 block prefix, state, tz).
NUMBER_AREAS: tuple[tuple[str, str, str, str, str], ...] = (
    ("US", "212", "1212736", "NY", "America/New_York"),
    ("US", "646", "1646412", "NY", "America/New_York"),
    ("US", "305", "1305442", "FL", "America/New_York"),
    ("US", "617", "1617309", "MA", "America/New_York"),
    ("US", "312", "1312867", "IL", "America/Chicago"),
    ("US", "512", "1512480", "TX", "America/Chicago"),
    ("US", "415", "1415691", "CA", "America/Los_Angeles"),
    ("US", "206", "1206524", "WA", "America/Los_Angeles"),
    ("GB", "20", "4420794", "", "Europe/London"),
    ("GB", "161", "44161496", "", "Europe/London"),
    ("DE", "30", "493025", "", "Europe/Berlin"),
    ("DE", "89", "498921", "", "Europe/Berlin"),
    ("FR", "1", "3314272", "", "Europe/Paris"),
    ("MX", "55", "525541", "", "America/Mexico_City"),
)

# Layout files for custom CDR templates (reference/layouts/<name>.yaml; a switch names one in
# the `layout` column of switches.csv). Examples only: the demo's switches use built-in formats.
EXAMPLE_LAYOUTS: dict[str, str] = {
    "asterisk_cdr_custom": """\
# Asterisk cdr_custom.conf:
# Master.csv => ${CSV_QUOTE(${CDR(clid)})},${CSV_QUOTE(${CDR(src)})},${CSV_QUOTE(${CDR(dst)})},
#   ${CSV_QUOTE(${CDR(dcontext)})},${CSV_QUOTE(${CDR(start,u)})},${CSV_QUOTE(${CDR(answer,u)})},
#   ${CSV_QUOTE(${CDR(end,u)})},${CDR(duration,f)},${CDR(billsec,f)},${CSV_QUOTE(${CDR(disposition)})},
#   ${CSV_QUOTE(${CDR(accountcode)})},${CSV_QUOTE(${CDR(uniqueid)}-${CDR(sequence)})}
fields: [clid, calling_number, called_number, dcontext, start_time, answer_time, end_time,
         duration, billsec, disposition, account_code, record_id]
quoting: csv
time_format: epoch
disposition: asterisk
""",
    "freeswitch_pipe": """\
# FreeSWITCH cdr_csv.conf.xml template (values are not escaped, so no quoting):
# ${uuid}|${bleg_uuid}|${caller_id_number}|${destination_number}|${start_stamp}|${answer_stamp}|
#   ${end_stamp}|${duration}|${billsec}|${hangup_cause}|${accountcode}
fields: [record_id, b_leg_id, calling_number, called_number, start_time, answer_time, end_time,
         duration, billsec, disposition, account_code]
quoting: none
delimiter: "|"
time_format: "%Y-%m-%d %H:%M:%S"
disposition: freeswitch
""",
}

# Which switch carries a home country's (or US state's) traffic, and in which format.
SWITCHES: tuple[dict[str, str], ...] = (
    {"switch_id": "ast-nyc1", "format": "asterisk", "timezone": "America/New_York",
     "country": "US", "folder": "ast-nyc1", "serves": "US:NY,US:FL,US:MA"},
    {"switch_id": "fs-chi1", "format": "freeswitch", "timezone": "America/Chicago",
     "country": "US", "folder": "fs-chi1", "serves": "US:IL,US:TX,US:CA,US:WA"},
    {"switch_id": "sqk-lon1", "format": "canonical", "timezone": "UTC",
     "country": "GB", "folder": "sqk-lon1", "serves": "GB,DE,FR,MX"},
    {"switch_id": "sqk-sms1", "format": "canonical", "timezone": "UTC",
     "country": "US", "folder": "sqk-sms1", "serves": "sms"},
)


def switch_for(country: str, state: str) -> str:
    """The voice switch a customer's line is homed on."""
    for switch in SWITCHES[:3]:
        served = switch["serves"].split(",")
        if country in served or f"{country}:{state}" in served:
            return switch["switch_id"]
    raise ValueError(f"no switch serves {country}/{state}")


# --- plans -------------------------------------------------------------------

PLAN_HOME = {"RES-US-BASIC": "US", "RES-US-PLUS": "US", "BIZ-US-UCAAS": "US", "FAX-US": "US",
             "BIZ-UK": "GB", "BIZ-EU": "DE", "RES-MX": "MX"}


def _bands(*windows: tuple[str, str]) -> list[dict[str, object]]:
    bands: list[dict[str, object]] = [{"name": n, "windows": [w]} for n, w in windows]
    return [*bands, {"name": "offpeak", "otherwise": True}]


def plans() -> list[dict[str, object]]:
    """The demo rate plans, as the YAML documents an operator would edit."""
    def fees(recurring: list[tuple[str, str, str]], activation: str, currency: str):
        return {
            "recurring": [{"product": p, "description": d, "amount": a, "per": "service"}
                          for p, d, a in recurring],
            "one_time": [{"code": "ACTIVATION", "description": "Activation fee",
                          "amount": activation, "per": "service"}],
        }

    peak = ("peak", "Mon-Fri 08:00-19:00")
    return [
        {"plan_id": "RES-US-BASIC", "name": "Residential Basic (US)", "currency": "USD",
         "timezone": "America/New_York", "rounding": "half_up", "rating_decimals": 4,
         "band_rule": "start", "time_bands": _bands(peak),
         "decks": {"voice": "decks/usd_voice.csv", "sms": "decks/usd_sms.csv"},
         "allowances": [{"name": "500 US & Canada minutes", "service": "voice", "minutes": 500,
                         "destinations": ["United States*", "Canada*"]}],
         "discounts": [],
         "fees": fees([("RES-LINE", "Home phone line", "19.99"),
                       ("SMS-OPTION", "Text messaging", "3.00")], "25.00", "USD")},
        {"plan_id": "RES-US-PLUS", "name": "Residential Plus (US)", "currency": "USD",
         "timezone": "America/New_York", "rounding": "half_up", "rating_decimals": 4,
         "band_rule": "start", "time_bands": _bands(peak),
         "decks": {"voice": "decks/usd_voice.csv", "sms": "decks/usd_sms.csv"},
         "allowances": [{"name": "2,000 US & Canada minutes", "service": "voice", "minutes": 2000,
                         "destinations": ["United States*", "Canada*"]},
                        {"name": "100 SMS", "service": "sms", "messages": 100}],
         "discounts": [{"name": "5% off international calls", "applies_to": "international_usage",
                        "percent": "5"}],
         "fees": fees([("RES-LINE", "Home phone line (Plus)", "29.99"),
                       ("SMS-OPTION", "Text messaging", "0.00")], "25.00", "USD")},
        {"plan_id": "BIZ-US-UCAAS", "name": "Business UCaaS (US)", "currency": "USD",
         "timezone": "America/Chicago", "rounding": "half_up", "rating_decimals": 4,
         "band_rule": "split",
         "time_bands": _bands(("peak", "Mon-Fri 08:00-18:00"), ("evening", "Mon-Fri 18:00-22:00")),
         "decks": {"voice": "decks/usd_voice.csv", "sms": "decks/usd_sms.csv"},
         "allowances": [{"name": "1,000 US & Canada minutes per seat pool", "service": "voice",
                         "minutes": 1000, "destinations": ["United States*", "Canada*"]},
                        {"name": "200 SMS", "service": "sms", "messages": 200}],
         "discounts": [{"name": "10% off international calls", "applies_to": "international_usage",
                        "percent": "10"}],
         "fees": fees([("UCAAS-SEAT", "UCaaS seat", "29.00"), ("DID", "Additional number", "2.50"),
                       ("SMS-OPTION", "Business messaging", "5.00")], "50.00", "USD")},
        {"plan_id": "FAX-US", "name": "Fax Line (US)", "currency": "USD",
         "timezone": "America/New_York", "rounding": "up", "rating_decimals": 4,
         "band_rule": "start", "time_bands": _bands(peak),
         "decks": {"voice": "decks/usd_voice.csv"}, "allowances": [], "discounts": [],
         "fees": fees([("FAX-LINE", "Fax line", "9.99")], "15.00", "USD")},
        {"plan_id": "BIZ-UK", "name": "Business Voice (UK)", "currency": "GBP",
         "timezone": "Europe/London", "rounding": "half_up", "rating_decimals": 4,
         "band_rule": "start", "time_bands": _bands(peak),
         "decks": {"voice": "decks/gbp_voice.csv", "sms": "decks/gbp_sms.csv"},
         "allowances": [{"name": "1,000 UK minutes", "service": "voice", "minutes": 1000,
                         "destinations": ["United Kingdom*"]}],
         "discounts": [],
         "fees": fees([("UCAAS-SEAT", "Cloud seat", "22.00"), ("DID", "Additional number", "2.00"),
                       ("SMS-OPTION", "Messaging", "4.00")], "40.00", "GBP")},
        {"plan_id": "BIZ-EU", "name": "Business Voice (EU)", "currency": "EUR",
         "timezone": "Europe/Berlin", "rounding": "half_up", "rating_decimals": 4,
         "band_rule": "start", "time_bands": _bands(peak),
         "decks": {"voice": "decks/eur_voice.csv", "sms": "decks/eur_sms.csv"},
         "allowances": [{"name": "1,000 EU minutes", "service": "voice", "minutes": 1000,
                         "destinations": ["Germany*", "France*"]}],
         "discounts": [],
         "fees": fees([("UCAAS-SEAT", "Cloud seat", "24.00"), ("DID", "Additional number", "2.20"),
                       ("SMS-OPTION", "Messaging", "4.50")], "45.00", "EUR")},
        {"plan_id": "RES-MX", "name": "Hogar (MX)", "currency": "MXN",
         "timezone": "America/Mexico_City", "rounding": "down", "rating_decimals": 4,
         "band_rule": "start", "time_bands": _bands(peak),
         "decks": {"voice": "decks/mxn_voice.csv", "sms": "decks/mxn_sms.csv"},
         "allowances": [{"name": "300 minutos nacionales", "service": "voice", "minutes": 300,
                         "destinations": ["Mexico*"]}],
         "discounts": [],
         "fees": fees([("RES-LINE", "Línea residencial", "299.00"),
                       ("SMS-OPTION", "Mensajes", "49.00")], "350.00", "MXN")},
    ]


# --- rate decks ---------------------------------------------------------------

DECK_COLUMNS = ("prefix", "destination", "rate", "connect_fee", "increment", "effective_from",
                "time_band", "service")
DECK_HOMES = {"USD": "US", "GBP": "GB", "EUR": "DE", "MXN": "MX"}
EU_HOMES = {"DE", "FR"}


def _increment(dest: Destination, home: str) -> str:
    if dest.kind in {"premium", "highrisk"}:
        return "60/60"
    if dest.country == home or (home == "DE" and dest.country in EU_HOMES):
        return "1/1" if home != "US" else "6/6"
    return "30/6"


def _domestic_rate(dest: Destination, currency: str) -> Decimal:
    if dest.kind == "tollfree":
        return Decimal("0")
    if dest.kind == "premium":
        return Decimal(dest.usd_rate) * FX[currency]
    base = Decimal("0.0120") if dest.kind == "mobile" else Decimal("0.0080")
    return base * FX[currency]


def voice_deck_rows(currency: str, month_start: str, price_change: str,
                    extra_prefixes: int = 0) -> list[dict[str, str]]:
    """Voice deck of a currency: domestic ranges cheap, the rest at FX-converted retail.

    UK mobile gets peak/offpeak rows and a mid-month price change (`price_change` date);
    `extra_prefixes` adds carrier-style sub-ranges under the mobile ranges (for benchmarks).
    """
    home = DECK_HOMES[currency]
    rows: list[dict[str, str]] = []
    for dest in DESTINATIONS:
        domestic = dest.country == home or (home == "DE" and dest.country in EU_HOMES)
        rate = _domestic_rate(dest, currency) if domestic else Decimal(dest.usd_rate) * FX[currency]
        connect = Decimal("0.25") * FX[currency] if dest.kind in {"premium", "highrisk"} else 0
        base = {"prefix": dest.prefix, "destination": dest.name, "connect_fee": _dec(connect),
                "increment": _increment(dest, home), "effective_from": month_start,
                "time_band": "", "service": "voice"}
        if dest.prefix in {"447", "4477"} and not domestic:
            offpeak = rate * Decimal("0.7")
            rows.append({**base, "rate": _dec(rate), "time_band": "peak"})
            rows.append({**base, "rate": _dec(offpeak), "time_band": ""})
            rows.append({**base, "rate": _dec(rate * Decimal("1.1")), "time_band": "peak",
                         "effective_from": price_change})
            rows.append({**base, "rate": _dec(offpeak * Decimal("1.1")), "time_band": "",
                         "effective_from": price_change})
        else:
            rows.append({**base, "rate": _dec(rate)})
    rows.extend(_sub_ranges(rows, extra_prefixes))
    return rows


def _sub_ranges(rows: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """Carrier decks split mobile ranges into many sub-prefixes; emulate that."""
    if count <= 0:
        return []
    parents = [r for r in rows if "Mobile" in r["destination"] and r["time_band"] == ""
               and r["effective_from"] == rows[0]["effective_from"]]
    existing = {(r["prefix"], r["time_band"], r["effective_from"]) for r in rows}
    extra: list[dict[str, str]] = []
    width = 1
    while len(extra) < count:
        for parent in parents:
            for suffix in range(10 ** width):
                prefix = parent["prefix"] + str(suffix).zfill(width)
                key = (prefix, parent["time_band"], parent["effective_from"])
                if key in existing:
                    continue
                existing.add(key)
                step = Decimal(suffix % 7) / 1000
                extra.append({**parent, "prefix": prefix,
                              "rate": _dec(Decimal(parent["rate"]) + step)})
                if len(extra) >= count:
                    return extra
        width += 1
    return extra


def sms_deck_rows(currency: str, month_start: str) -> list[dict[str, str]]:
    """SMS per-message prices: domestic cheap, international dearer."""
    home = DECK_HOMES[currency]
    rows = []
    seen: set[str] = set()
    for dest in DESTINATIONS:
        if dest.kind in {"tollfree", "premium"} or dest.prefix in seen:
            continue
        seen.add(dest.prefix)
        domestic = dest.country == home or (home == "DE" and dest.country in EU_HOMES)
        usd = Decimal("0.0075") if domestic else Decimal("0.0500")
        if dest.kind == "highrisk":
            usd = Decimal("0.5000")
        rows.append({"prefix": dest.prefix, "destination": dest.name, "rate": _dec(usd * FX[currency]),
                     "connect_fee": "0", "increment": "1/1", "effective_from": month_start,
                     "time_band": "", "service": "sms"})
    return rows


def _dec(value: Decimal | int) -> str:
    return str(quantize(Decimal(value), 4))


# --- products, taxes -------------------------------------------------------------

PRODUCTS: tuple[dict[str, str], ...] = (
    {"product_id": "RES-LINE", "name": "Home phone line", "kind": "line",
     "features": "voice;sms", "min_quantity": "1", "max_quantity": "2",
     "plans": "RES-US-BASIC;RES-US-PLUS;RES-MX"},
    {"product_id": "UCAAS-SEAT", "name": "UCaaS seat", "kind": "seat",
     "features": "voice;sms;video", "min_quantity": "1", "max_quantity": "500",
     "plans": "BIZ-US-UCAAS;BIZ-UK;BIZ-EU"},
    {"product_id": "DID", "name": "Additional virtual number", "kind": "did",
     "features": "voice;sms", "min_quantity": "1", "max_quantity": "100",
     "plans": "BIZ-US-UCAAS;BIZ-UK;BIZ-EU"},
    {"product_id": "FAX-LINE", "name": "Fax line", "kind": "line", "features": "fax",
     "min_quantity": "1", "max_quantity": "10", "plans": "FAX-US"},
    {"product_id": "SMS-OPTION", "name": "Text messaging option", "kind": "addon",
     "features": "sms", "min_quantity": "1", "max_quantity": "1",
     "plans": "RES-US-BASIC;RES-US-PLUS;RES-MX;BIZ-US-UCAAS;BIZ-UK;BIZ-EU"},
)

# Squak is established in Germany for VAT: a French business customer with a VAT id accounts
# for French VAT itself (reverse charge, Article 196 of the VAT Directive).
REVERSE_CHARGED = frozenset({"FR-TVA"})
TAX_COLUMNS = ("tax_id", "name", "country", "state", "applies_to", "kind", "rate", "amount",
               "currency", "effective_from")

# fmt: off
TAX_RATES: tuple[tuple[str, ...], ...] = (
    ("US-FUSF", "Federal Universal Service Fee", "US", "", "all", "percent", "21.6", "", "USD", "2026-01-01"),
    ("US-FET", "Federal Excise Tax", "US", "", "usage", "percent", "3", "", "USD", "2026-01-01"),
    ("US-NY-SALES", "New York State Sales Tax", "US", "NY", "all", "percent", "4", "", "USD", "2026-01-01"),
    ("US-NY-E911", "New York E911 Surcharge", "US", "NY", "per_number", "fixed", "", "1.00", "USD", "2026-01-01"),
    ("US-CA-SALES", "California Sales Tax", "US", "CA", "recurring", "percent", "7.25", "", "USD", "2026-01-01"),
    ("US-CA-E911", "California 911 Surcharge", "US", "CA", "per_number", "fixed", "", "0.30", "USD", "2026-01-01"),
    ("US-TX-SALES", "Texas Sales Tax", "US", "TX", "all", "percent", "6.25", "", "USD", "2026-01-01"),
    ("US-TX-E911", "Texas 911 Fee", "US", "TX", "per_number", "fixed", "", "0.50", "USD", "2026-01-01"),
    ("US-FL-CST", "Florida Communications Services Tax", "US", "FL", "all", "percent", "7.44", "", "USD", "2026-01-01"),
    ("US-FL-E911", "Florida E911 Fee", "US", "FL", "per_number", "fixed", "", "0.40", "USD", "2026-01-01"),
    ("US-IL-TELECOM", "Illinois Telecommunications Excise Tax", "US", "IL", "all", "percent", "7", "", "USD", "2026-01-01"),
    ("US-IL-E911", "Illinois 911 Surcharge", "US", "IL", "per_number", "fixed", "", "1.50", "USD", "2026-01-01"),
    ("US-WA-SALES", "Washington Sales Tax", "US", "WA", "all", "percent", "6.5", "", "USD", "2026-01-01"),
    ("US-WA-E911", "Washington Enhanced 911 Tax", "US", "WA", "per_number", "fixed", "", "0.95", "USD", "2026-01-01"),
    ("US-MA-SALES", "Massachusetts Sales Tax", "US", "MA", "recurring", "percent", "6.25", "", "USD", "2026-01-01"),
    ("US-MA-E911", "Massachusetts 911 Fee", "US", "MA", "per_number", "fixed", "", "1.00", "USD", "2026-01-01"),
    ("GB-VAT", "Value Added Tax", "GB", "", "all", "percent", "20", "", "GBP", "2026-01-01"),
    ("DE-UST", "Umsatzsteuer", "DE", "", "all", "percent", "19", "", "EUR", "2026-01-01"),
    ("FR-TVA", "Taxe sur la valeur ajoutée", "FR", "", "all", "percent", "20", "", "EUR", "2026-01-01"),
    ("MX-IVA", "Impuesto al Valor Agregado", "MX", "", "all", "percent", "16", "", "MXN", "2026-01-01"),
    ("MX-IEPS", "IEPS Telecomunicaciones", "MX", "", "usage", "percent", "3", "", "MXN", "2026-01-01"),
)
# fmt: on
