"""The demo operator's customers: accounts, number inventory, orders and service timeline.

Orders are what the order stage will read; the service timeline is what provisioning of
the valid orders yields (same allocation rule as the order stage: a requested number if
free, else the lowest free number of the requested area, orders taken in order of their
effective time). The traffic generator uses that timeline to decide who calls when.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from schwifty import IBAN

from squak_pipelines.demo.catalogue import E164_DIGITS, HOME_COUNTRIES, NUMBER_AREAS, switch_for

FIRST_NAMES = ("James", "Maria", "Robert", "Linda", "Wei", "Aisha", "José", "Zoë", "Lukas",
               "Amélie", "Priya", "Oliver", "Sofía", "Jürgen", "Chloé", "Mohammed", "Emma",
               "Noah", "Ana", "Kenji", "Fatima", "Liam", "Olga", "Siobhán")
LAST_NAMES = ("Smith", "García", "Johnson", "Müller", "Nguyen", "O'Brien", "Dubois", "Schmidt",
              "Patel", "Hernández", "Brown", "Rossi", "Kowalski", "Wilson", "Martin", "López",
              "Fischer", "Taylor", "Moreau", "Jansen", "Kim", "Ramírez", "Walsh", "Weber")
COMPANY_WORDS = ("Harbor", "Summit", "Northwind", "Bluebird", "Keystone", "Redwood", "Atlas",
                 "Beacon", "Cedar", "Falcon", "Granite", "Juniper", "Lighthouse", "Meridian")
COMPANY_KINDS = ("Logistics", "Dental Group", "Law Partners", "Realty", "Engineering",
                 "Consulting", "Bakery", "Clinic", "Architects", "Travel")
STREETS = ("Main St", "Oak Ave", "High Street", "Hauptstraße", "Rue de la Paix", "Av. Reforma",
           "Market St", "Elm St", "Station Road", "Lindenallee")
CITIES = {"US": {"NY": "New York", "FL": "Miami", "MA": "Boston", "IL": "Chicago", "TX": "Austin",
                 "CA": "San Francisco", "WA": "Seattle"},
          "GB": "London", "DE": "Berlin", "FR": "Paris", "MX": "Ciudad de México"}
PALETTE = (("#0b3d91", "#f2a900"), ("#1b5e20", "#a5d6a7"), ("#4a148c", "#ce93d8"),
           ("#b71c1c", "#ffcdd2"), ("#006064", "#80deea"), ("#263238", "#ff7043"))
SEGMENT_CALLS_PER_DAY = {"RES-LINE": 2.2, "UCAAS-SEAT": 6.5, "DID": 1.2, "FAX-LINE": 0.4}
QUARANTINE_DAYS = 90


@dataclass
class DemoOperator:
    """Everything about the demo operator's customers that the files are written from."""

    accounts: list[dict[str, str]]
    inventory: list[dict[str, str]]
    base_orders: list[dict[str, str]]
    month_orders: list[dict[str, object]]
    services: pd.DataFrame
    faults: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _account(rng: np.random.Generator, idx: int, country: str, state: str, segment: str,
             created: datetime) -> dict[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    if segment == "business":
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)}"
        if idx % 17 == 3:
            name = f"{last}, {rng.choice(LAST_NAMES)} & Co"
    else:
        name = f"{first} {last}"
    account_id = f"ACC-{idx:06d}"
    city = CITIES[country][state] if country == "US" else CITIES[country]
    method = rng.choice(["card", "card", "card", "ach", "invoice"])
    card = method == "card"
    primary, accent = PALETTE[idx % len(PALETTE)]
    delivery = rng.choice(["email", "email", "email", "portal", "post"])
    return {
        "account_id": account_id, "name": str(name), "segment": segment,
        "email": f"billing+{account_id.lower()}@example.{country.lower()}",
        "street": f"{int(rng.integers(1, 999))} {rng.choice(STREETS)}", "city": city,
        "state": state, "postal_code": str(int(rng.integers(10000, 99999))), "country": country,
        "currency": str(HOME_COUNTRIES[country]["currency"]),
        "bill_day": "1" if segment == "residential" or idx % 5 else ("15" if idx % 10 else "28"),
        "payment_method": str(method),
        "card_token": f"tok_{rng.bytes(8).hex()}" if card else "",
        "card_brand": str(rng.choice(["visa", "mastercard", "amex"])) if card else "",
        "card_last4": f"{int(rng.integers(0, 10000)):04d}" if card else "",
        "card_expiry": f"{int(rng.integers(1, 13)):02d}/{int(rng.integers(2027, 2031))}" if card else "",
        "autopay": "true" if card and rng.random() < 0.6 else "false",
        "delivery_method": str(delivery),
        "privacy_mask": "true" if rng.random() < 0.15 else "false",
        "brand_logo": f"brands/{account_id}.svg" if segment == "business" else "",
        "brand_primary_color": primary if segment == "business" else "",
        "brand_accent_color": accent if segment == "business" else "",
        "template": "",
        "created_at": _iso(created),
        "call_detail": "appendix" if idx % 9 == 4 else "",  # itemized pages in the invoice
        **_mandate(idx, method, country, created),
        "vat_id": _vat_id(idx, country) if segment == "business" else "",
    }


VAT_SHAPES = {  # how a demo VAT id is laid out: `b` the digits from the index, `n` the searched ones
    "DE": lambda b, n: f"DE{b}{n % 10}",
    "FR": lambda b, n: f"FR{n // 10:02d}{b}{n % 10}",
    "GB": lambda b, n: f"GB{b[:7]}{n % 100:02d}",
}


def _vat_id(idx: int, country: str) -> str:
    """A business customer's VAT id with valid check digits (python-stdnum finds them); '' for
    countries whose demo customers give none."""
    from stdnum import get_cc_module

    shape = VAT_SHAPES.get(country)
    if shape is None:
        return ""
    module = get_cc_module(country.lower(), "vat")
    body = str(10_000_000 + (idx * 7919 + 104729) % 89_999_999)
    return next((c for c in (shape(body, n) for n in range(1000)) if module.is_valid(c)), "")
    fixed, searched = VAT_SHAPES[country]
    module = get_cc_module(country.lower(), "vat")
    body = f"{(idx * 7919 + 104729) % 10 ** fixed:0{fixed}d}"
    for n in range(10 ** searched):
        tail = f"{n:0{searched}d}"
        candidate = f"{country}{tail}{body}" if country == "FR" else f"{country}{body}{tail}"
        if candidate[2] != "0" and module.is_valid(candidate):
            return candidate
    return ""


def _mandate(idx: int, method: str, country: str, created: datetime) -> dict[str, str]:
    """EUR customers paying by bank signed a SEPA direct-debit mandate when they joined."""
    if method != "ach" or HOME_COUNTRIES[country]["currency"] != "EUR":
        return {"iban": "", "bic": "", "mandate_id": "", "mandate_date": ""}
    iban = IBAN.generate("DE", bank_code="37040044", account_code=f"{idx:010d}")
    return {"iban": str(iban), "bic": "COBADEFFXXX", "mandate_id": f"SQK-MNDT-{idx:06d}",
            "mandate_date": created.date().isoformat()}


def _choose_home(rng: np.random.Generator) -> tuple[str, str, str]:
    """(country, area, segment) of a new customer; the area fixes state and switch."""
    country = str(rng.choice(["US", "GB", "DE", "FR", "MX"], p=[0.70, 0.10, 0.06, 0.06, 0.08]))
    areas = [a for a in NUMBER_AREAS if a[0] == country]
    area = areas[int(rng.integers(0, len(areas)))]
    if country in {"GB", "DE", "FR"}:
        segment = "business"
    elif country == "MX":
        segment = "residential"
    else:
        segment = "business" if rng.random() < 0.3 else "residential"
    return country, area[1], segment


def _plan_for(country: str, segment: str, product: str) -> str:
    if product == "FAX-LINE":
        return "FAX-US"
    if segment == "residential":
        return "RES-MX" if country == "MX" else "RES-US-BASIC"
    return {"US": "BIZ-US-UCAAS", "GB": "BIZ-UK"}.get(country, "BIZ-EU")


def _order_lines(rng: np.random.Generator, country: str, area: str, segment: str
                 ) -> list[tuple[str, int]]:
    if segment == "residential":
        lines = [("RES-LINE", 1)]
    else:
        lines = [("UCAAS-SEAT", int(rng.integers(1, 9)))]
        if rng.random() < 0.5:
            lines.append(("DID", int(rng.integers(1, 4))))
        if country == "US" and rng.random() < 0.08:
            lines.append(("FAX-LINE", 1))
    if rng.random() < 0.55:
        lines.append(("SMS-OPTION", 1))
    return lines


class NumberPool:
    """Free numbers per area; 'next free' is the lowest free number of the area."""

    def __init__(self, areas: dict[str, list[int]]):
        self.free = {a: list(nums) for a, nums in areas.items()}
        for heap in self.free.values():
            heapq.heapify(heap)
        self.taken: set[int] = set()

    def take(self, area: str, requested: int | None = None) -> int:
        if requested is not None and requested not in self.taken:
            self.taken.add(requested)
            return requested
        heap = self.free[area]
        while heap:
            number = heapq.heappop(heap)
            if number not in self.taken:
                self.taken.add(number)
                return number
        raise RuntimeError(f"number area {area} exhausted")


def build_operator(rng: np.random.Generator, customers: int, month_start: date) -> DemoOperator:
    """Accounts, inventory, orders and the provisioned service timeline of the demo."""
    start = datetime(month_start.year, month_start.month, month_start.day, tzinfo=UTC)
    month_end = (start + timedelta(days=32)).replace(day=1)
    history_start = start - timedelta(days=540)
    accounts: list[dict[str, str]] = []
    requests: list[dict[str, object]] = []  # valid order lines, before allocation

    n_new = max(1, customers // 30)  # customers who join during the demo month
    for idx in range(1, customers + n_new + 1):
        joins_in_month = idx > customers
        country, area, segment = _choose_home(rng)
        state = next(a[3] for a in NUMBER_AREAS if a[0] == country and a[1] == area)
        if joins_in_month:
            effective = start + timedelta(seconds=int(rng.integers(2 * 86400, 26 * 86400)))
        else:
            span = int((start - history_start).total_seconds()) - 7 * 86400
            effective = history_start + timedelta(seconds=int(rng.integers(0, span)))
        account = _account(rng, idx, country, state, segment, effective - timedelta(hours=2))
        accounts.append(account)
        order_id = f"ORD-{effective:%Y%m}-{idx:06d}"
        for line_no, (product, qty) in enumerate(_order_lines(rng, country, area, segment), 1):
            requests.append({"order_id": order_id, "line_no": line_no,
                             "account_id": account["account_id"], "kind": "new",
                             "product_id": product, "plan_id": _plan_for(country, segment, product),
                             "quantity": qty, "country": country, "area_code": area,
                             "state": state, "segment": segment, "effective_at": effective,
                             "in_month": joins_in_month})

    # Number inventory: enough of each area's block for its demand plus spare.
    demand: dict[str, int] = {}
    for r in requests:
        if r["product_id"] != "SMS-OPTION":
            demand[str(r["area_code"])] = demand.get(str(r["area_code"]), 0) + int(r["quantity"])
    area_numbers: dict[str, list[int]] = {}
    inventory: list[dict[str, str]] = []
    for country, area, block, state, _tz in NUMBER_AREAS:
        length = E164_DIGITS.get(country, 12)
        size = int(demand.get(area, 0) * 1.4) + 40
        first = int(block.ljust(length, "0")) + 100
        numbers = list(range(first, first + size))
        area_numbers[area] = numbers
        inventory.extend({"number": f"+{n}", "country": country, "area_code": area,
                          "state": state, "block": f"+{block}", "status": "available"}
                         for n in numbers)
    # A block in an area no switch serves (Nevada): orders there fail the activation test,
    # and it is small enough that a large order exhausts it.
    inventory.extend({"number": f"+1702555{n:04d}", "country": "US", "area_code": "702",
                      "state": "NV", "block": "+1702555", "status": "available"} for n in range(100, 110))
    pool = NumberPool(area_numbers)

    # Provision valid requests in effective order.
    requests.sort(key=lambda r: (r["effective_at"], r["order_id"], r["line_no"]))
    services: list[dict[str, object]] = []
    base_orders: list[dict[str, str]] = []
    month_orders: dict[str, dict[str, object]] = {}
    for r in requests:
        requested = None
        if int(r["quantity"]) == 1 and r["product_id"] != "SMS-OPTION" and rng.random() < 0.2:
            free = [n for n in area_numbers[str(r["area_code"])][-30:] if n not in pool.taken]
            requested = free[int(rng.integers(0, len(free)))] if free else None
        numbers = []
        if r["product_id"] != "SMS-OPTION":
            numbers = [pool.take(str(r["area_code"]), requested if i == 0 else None)
                       for i in range(int(r["quantity"]))]
        line = {"order_id": r["order_id"], "line_no": str(r["line_no"]),
                "account_id": r["account_id"], "kind": "new", "product_id": r["product_id"],
                "plan_id": r["plan_id"], "quantity": str(r["quantity"]),
                "area_code": r["area_code"], "requested_number": f"+{requested}" if requested else "",
                "phone_number": "", "features": "", "effective_at": _iso(r["effective_at"]),
                "submitted_at": _iso(r["effective_at"] - timedelta(hours=1)), "notes": ""}
        _add_order_line(line, r["in_month"], base_orders, month_orders)
        for number in numbers:
            services.append({"account_id": r["account_id"], "product_id": r["product_id"],
                             "plan_id": r["plan_id"], "number": str(number),
                             "country": r["country"], "state": r["state"],
                             "segment": r["segment"],
                             "switch_id": switch_for(str(r["country"]), str(r["state"])),
                             "active_from": r["effective_at"], "active_to": None,
                             "sms": False})
    svc = pd.DataFrame(services)
    sms_accounts = {r["account_id"] for r in requests if r["product_id"] == "SMS-OPTION"}
    svc["sms"] = svc["account_id"].isin(sms_accounts) & (svc["product_id"] != "FAX-LINE")

    _month_lifecycle(rng, svc, start, month_end, month_orders)
    faults = _order_faults(rng, accounts, svc, start, month_orders)
    names = {a["account_id"]: a["name"] for a in accounts}
    svc["display_name"] = svc["account_id"].map(names)
    svc["calls_per_day"] = svc["product_id"].map(SEGMENT_CALLS_PER_DAY).fillna(0.0)
    return DemoOperator(accounts=accounts, inventory=inventory, base_orders=base_orders,
                        month_orders=list(month_orders.values()), services=svc, faults=faults)


def _add_order_line(line: dict[str, str], in_month: bool, base_orders: list[dict[str, str]],
                    month_orders: dict[str, dict[str, object]]) -> None:
    """History goes to the base CSV; the month's orders to JSON Lines (one order, many lines)."""
    if not in_month:
        base_orders.append(line)
        return
    order = month_orders.setdefault(line["order_id"], {
        "order_id": line["order_id"], "account_id": line["account_id"],
        "submitted_at": line["submitted_at"], "notes": line.get("notes", ""), "lines": []})
    order["lines"].append({k: v for k, v in line.items()  # type: ignore[union-attr]
                           if k not in {"order_id", "account_id", "submitted_at", "notes"}})


def _month_lifecycle(rng: np.random.Generator, svc: pd.DataFrame, start: datetime,
                     month_end: datetime, month_orders: dict[str, dict[str, object]]) -> None:
    """Disconnects and plan changes inside the month (proration and plan-in-force paths)."""
    established = (svc["active_from"] < start) & (svc["product_id"] != "SMS-OPTION")
    basic = svc.index[established & (svc["plan_id"] == "RES-US-BASIC")]
    others = svc.index[established & (svc["plan_id"] != "RES-US-BASIC")]
    per_kind = max(1, len(svc) // 80)  # at least one of each, whatever the scale
    changes = rng.choice(basic, size=min(len(basic), per_kind), replace=False)
    disconnects = rng.choice(others, size=min(len(others), per_kind), replace=False)
    picks = [*((r, "disconnect") for r in disconnects), *((r, "change_plan") for r in changes)]
    for seq, (row_id, kind) in enumerate(picks, 1):
        row = svc.loc[row_id]
        at = start + timedelta(seconds=int(rng.integers(3 * 86400, 25 * 86400)))
        line = {"order_id": f"ORD-{start:%Y%m}-C{seq:05d}", "line_no": "1",
                "account_id": row["account_id"], "product_id": row["product_id"],
                "quantity": "1", "area_code": "", "requested_number": "",
                "phone_number": f"+{row['number']}", "features": "", "effective_at": _iso(at),
                "submitted_at": _iso(at - timedelta(hours=3)), "notes": ""}
        if kind == "disconnect":
            svc.loc[row_id, "active_to"] = at
            _add_order_line({**line, "kind": "disconnect", "plan_id": ""}, True, [], month_orders)
        else:
            # Plan change: the old plan ends, a new service period starts on the new plan.
            svc.loc[row_id, "active_to"] = at
            new = svc.loc[row_id].copy()
            new["plan_id"], new["active_from"], new["active_to"] = "RES-US-PLUS", at, None
            svc.loc[len(svc)] = new
            _add_order_line({**line, "kind": "change_plan", "plan_id": "RES-US-PLUS"}, True, [],
                            month_orders)


def _order_faults(rng: np.random.Generator, accounts: list[dict[str, str]], svc: pd.DataFrame,
                  start: datetime, month_orders: dict[str, dict[str, object]]
                  ) -> dict[str, list[dict[str, str]]]:
    """Orders and accounts the order stage must reject, each with its expected reason."""
    at = start + timedelta(days=9, hours=15)
    expected: list[dict[str, str]] = []
    us_res = next(a for a in accounts if a["country"] == "US" and a["segment"] == "residential")
    us_biz = next(a for a in accounts if a["country"] == "US" and a["segment"] == "business")

    def order(suffix: str, account_id: str, reason: str, notes: str = "", **line: str) -> None:
        order_id = f"ORD-{start:%Y%m}-F{suffix}"
        base = {"line_no": "1", "kind": "new", "product_id": "RES-LINE", "plan_id": "RES-US-BASIC",
                "quantity": "1", "area_code": "212", "requested_number": "", "phone_number": "",
                "features": "", "effective_at": _iso(at), "submitted_at": _iso(at)}
        month_orders[order_id] = {"order_id": order_id, "account_id": account_id,
                                  "submitted_at": _iso(at), "notes": notes,
                                  "lines": [{**base, **line}]}
        expected.append({"order_id": order_id, "reason": reason})

    order("01", us_res["account_id"], "unknown_product", product_id="VOIP-GOLD")
    order("02", us_res["account_id"], "unknown_plan", plan_id="RES-US-PLATINUM")
    order("03", us_res["account_id"], "quantity_out_of_range", quantity="5")
    order("04", us_biz["account_id"], "feature_not_offered", product_id="FAX-LINE",
          plan_id="FAX-US", features="sms")
    order("05", us_res["account_id"], "card_number_in_input",
          notes="customer read card 4111 1111 1111 1111 over the phone")
    order("11", us_biz["account_id"], "area_exhausted", product_id="UCAAS-SEAT",
          plan_id="BIZ-US-UCAAS", quantity="20", area_code="702")
    order("12", us_res["account_id"], "activation_failed", area_code="702")
    inactive = f"+{int(svc['number'].astype('int64').max()) + 7}"
    order("06", us_res["account_id"], "disconnect_not_active", kind="disconnect",
          phone_number=inactive, area_code="")
    # Accounts with bad billing information, each with one order.
    bad_accounts = [("missing_payment_method", {"payment_method": "", "card_token": "",
                                                "card_brand": "", "card_last4": "",
                                                "card_expiry": ""}),
                    ("expired_card", {"card_expiry": "03/2024"}),
                    ("invalid_country", {"country": "ZZ"}),
                    ("card_number_in_input", {"card_token": "4111111111111111"})]
    for n, (reason, changes) in enumerate(bad_accounts, start=7):
        template = dict(us_res)
        account_id = f"ACC-9{n:05d}"
        template.update({"account_id": account_id, "payment_method": "card",
                         "card_token": f"tok_{rng.bytes(8).hex()}", "card_brand": "visa",
                         "card_last4": "4242", "card_expiry": "12/2029",
                         "created_at": _iso(at), **changes})
        accounts.append(template)
        order(f"{n:02d}", account_id, reason)
    # The same order id delivered again.
    first = next(iter(month_orders.values()))
    dup_id = str(first["order_id"])
    month_orders[f"{dup_id}#again"] = {**first}
    expected.append({"order_id": dup_id, "reason": "duplicate_order_id"})
    return {"orders": expected}
