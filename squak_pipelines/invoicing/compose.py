"""Compose an account's invoice for a billing cycle from its services, plan fees and usage.

Plain Python over small per-account inputs (a month has one invoice per account and
currency, not one per call: usage arrives already summed by the warehouse). Money is
Decimal. Rules (docs/billing-rules.md):
- cycle: the account's cycle (calendar month or from its bill day, cycles.py) in the plan's time
  zone; the invoice is issued on the day it is finalized and due `due_days` after that;
- recurring fee per service period (the plan's fee for the service's product), prorated by
  day: days active in the cycle / days in the cycle, the activation day counted and the
  disconnection day not; a plan change ends one period and starts the next;
- one-time activation fee when a service's first period starts inside the cycle;
- usage lines summed by service, call type and destination (calls, charged seconds or
  messages, allowance used, amount; one line however many plan discounts touched it); usage
  of an earlier cycle not yet invoiced is labelled late;
- discounts as their own negative lines, by discount and call type; promotions and coupons
  as their own negative lines too (promotions.py, scopes by exact line kind: scopes.py);
- per-number fees (E911) count each number of the invoice's services active at any moment of
  the cycle; a fee with no amount in the invoice's currency stops the draft (DraftError);
- every line rounded half up to the currency's minor unit; subtotal = sum of the lines;
  each tax computed once on its whole taxable base and rounded once; total = subtotal + taxes.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from squak_pipelines.cycles import DEFAULT_DUE_DAYS, CycleError
from squak_pipelines.invoicing.promotions import SCOPES, Coupon, promotion_amounts
from squak_pipelines.invoicing.scopes import charge_in_scope, in_tax_base
from squak_pipelines.money import parse_amount, round_to_currency
from squak_pipelines.rating.plans import Plan

ZERO = Decimal(0)


class DraftError(CycleError):
    """An invoice cannot be drafted as the rules stand (names the account, the rule and the
    reference file to fix); nothing of the run is finalized."""


@dataclass(frozen=True)
class Cycle:
    label: str  # YYYY-MM (a calendar month) or YYYY-MM-DD (a cycle from a bill day; cycles.py)
    first: date
    last: date  # inclusive
    issued: date | None = None  # the day its invoices are finalized (default: the day after it)
    due_days: int = DEFAULT_DUE_DAYS

    @classmethod
    def parse(cls, label: str) -> Cycle:
        """The calendar month `YYYY-MM`."""
        try:
            year, month = (int(x) for x in label.split("-"))
            first = date(year, month, 1)
        except ValueError:
            raise ValueError(f"billing cycle must be YYYY-MM, got {label!r}") from None
        return cls(label, first, date(year, month, calendar.monthrange(year, month)[1]))

    @property
    def month(self) -> str:
        """The billing month (run, partition and documents folder) the cycle belongs to."""
        return self.label[:7]

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def issue_date(self) -> date:
        return self.issued or self.last + timedelta(days=1)

    @property
    def due_date(self) -> date:
        return self.issue_date + timedelta(days=self.due_days)


@dataclass
class Line:
    kind: str  # recurring, one_time, usage, late_usage, adjustment, discount, promotion, tax
    description: str
    amount: Decimal
    quantity: Decimal = Decimal(1)
    unit: str = ""
    unit_price: Decimal | None = None
    service_id: str = ""
    call_type: str = ""
    destination: str = ""
    calls: int = 0
    allowance_used: Decimal = ZERO
    tax_id: str = ""
    base: Decimal | None = None  # taxable base of a tax line
    applies_to: str = ""  # scope of a promotion line (all, recurring, one_time, usage)
    seconds: int = 0  # charged seconds of a voice usage line (its quantity in minutes is rounded)
    # The usage a usage, discount or adjustment line sums (`squak explain` finds its events):
    cycle: str = ""  # the usage's cycle (usage and adjustment lines)
    service: str = ""  # voice, sms, ... (usage lines)
    band: str = ""  # the time band, where the plan shows a line per band
    discount_name: str = ""  # the plan discount a discount line sums
    late: bool = False  # usage of an earlier cycle (late usage and its discounts)


@dataclass
class Invoice:
    account_id: str
    cycle: str
    currency: str
    issue_date: str
    due_date: str
    customer: dict[str, str]
    lines: list[Line] = field(default_factory=list)
    subtotal: Decimal = ZERO
    tax_total: Decimal = ZERO
    total: Decimal = ZERO
    previous_balance: Decimal = ZERO
    payments: Decimal = ZERO  # payments received since the last invoice, net of refunds (negative)
    credits: Decimal = ZERO  # credit notes issued since the last invoice (negative)
    amount_due: Decimal = ZERO
    number: str | None = None
    document_type: str = "invoice"  # or credit_note
    corrects: str = ""  # the invoice a credit note corrects
    reason: str = ""  # why a credit note was issued
    reverse_charge: str = ""  # the VAT (tax id) the customer accounts for itself (reverse charge)

    @property
    def key(self) -> str:
        return f"{self.account_id}:{self.cycle}:{self.currency}"

    def as_dict(self) -> dict:
        """JSON-ready (amounts as decimal strings)."""
        head = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "lines"}
        lines = [{f: _plain(getattr(line, f)) for f in LINE_FIELDS} for line in self.lines]
        return {**head, "lines": lines, "key": self.key}


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return dict(value)
    return value


LINE_FIELDS = tuple(f.name for f in fields(Line))


@dataclass(frozen=True)
class ServicePeriod:
    service_id: str
    product_id: str
    plan_id: str
    number: str | None
    period: int
    active_from: datetime  # UTC
    active_to: datetime | None


def _local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def active_days(period: ServicePeriod, cycle: Cycle, zone: ZoneInfo) -> int:
    """Days of the cycle the service was active (activation day in, disconnection day out)."""
    start = max(cycle.first, _local_date(period.active_from, zone))
    end = cycle.last + timedelta(days=1)
    if period.active_to is not None:
        end = min(end, _local_date(period.active_to, zone))
    return max((end - start).days, 0)


def service_lines(
    periods: list[ServicePeriod], plans: dict[str, Plan], cycle: Cycle, currency: str
) -> list[Line]:
    """Recurring (prorated) and one-time lines of an account's service periods."""
    lines: list[Line] = []
    for p in sorted(periods, key=lambda x: (x.active_from, x.service_id, x.period)):
        plan = plans.get(p.plan_id)
        if plan is None or plan.currency != currency:
            continue
        zone = ZoneInfo(plan.timezone)
        days = active_days(p, cycle, zone)
        label = f" {p.number}" if p.number else ""
        for fee in (plan.fees or {}).get("recurring", []):
            if fee.get("product") != p.product_id or days == 0:
                continue
            price = parse_amount(str(fee["amount"]), field="fees.recurring.amount")
            full = days == cycle.days
            text = f"{fee.get('description', p.product_id)}{label} ({plan.name})"
            if not full:
                text += f", {days} of {cycle.days} days"
            lines.append(
                Line(
                    "recurring",
                    text,
                    round_to_currency(price * days / cycle.days, currency),
                    (Decimal(days) / cycle.days).quantize(Decimal("0.0001")) if not full else Decimal(1),
                    "month",
                    price,
                    service_id=p.service_id,
                )
            )
        activated = _local_date(p.active_from, zone)
        if p.period == 1 and cycle.first <= activated <= cycle.last:
            for fee in (plan.fees or {}).get("one_time", []):
                if fee.get("product") not in (None, p.product_id):
                    continue
                price = parse_amount(str(fee["amount"]), field="fees.one_time.amount")
                lines.append(
                    Line(
                        "one_time",
                        f"{fee.get('description', 'One-time charge')}{label}",
                        round_to_currency(price, currency),
                        Decimal(1),
                        "each",
                        price,
                        service_id=p.service_id,
                    )
                )
    return lines


def _summed(usage: list[dict], banded: frozenset[str]) -> list[dict]:
    """Usage sums added up per cycle, service, call type and destination, and time band for
    the plans in `banded` (the warehouse also splits them by the plan discount that touched
    them; a customer sees one line)."""
    out: dict[tuple[str, str, str, str, str], dict] = {}
    for u in usage:
        band = (u.get("band") or "") if u.get("plan_id") in banded else ""
        key = (u["cycle"], u["service"], u["call_type"] or "", u["destination"] or "", band)
        into = out.setdefault(key, {"cycle": key[0], "service": key[1], "call_type": key[2],
                                    "destination": key[3], "band": band, "calls": 0, "units": 0,
                                    "allowance_used": 0, "charge": ZERO})
        into["calls"] += int(u["calls"])
        into["units"] += int(u["units"])
        into["allowance_used"] += int(u["allowance_used"])
        into["charge"] += Decimal(u["charge"])
    return [out[k] for k in sorted(out)]


def usage_lines(usage: list[dict], cycle: Cycle, currency: str,
                banded: frozenset[str] = frozenset()) -> list[Line]:
    """Usage and discount lines from usage sums (one dict per service, call type, destination,
    cycle and discount, optionally plan and band: calls, units, allowance_used, charge,
    discount, discount_name); plans in `banded` show a line per time band."""
    lines: list[Line] = []
    for u in _summed(usage, banded):
        late = u["cycle"] < cycle.label
        voice = u["service"] == "voice"
        units, allowance = int(u["units"]), int(u["allowance_used"])
        quantity = Decimal(units) / 60 if voice else Decimal(units)
        prefix = f"Late usage from {u['cycle']}: " if late else ""
        what = "calls" if voice else "messages"
        text = (
            f"{prefix}{u['service'].upper() if not voice else 'Voice'} {u['call_type']} - "
            f"{u['destination'] or 'no destination'}{', ' + u['band'] if u['band'] else ''} "
            f"({u['calls']} {what})"
        )
        lines.append(
            Line(
                "late_usage" if late else "usage",
                " ".join(text.split()),
                round_to_currency(u["charge"], currency),
                quantity.quantize(Decimal("0.0001")),
                "min" if voice else "msg",
                call_type=u["call_type"],
                destination=u["destination"],
                calls=u["calls"],
                allowance_used=(Decimal(allowance) / 60 if voice else Decimal(allowance)).quantize(
                    Decimal("0.0001")),
                seconds=units if voice else 0,
                cycle=u["cycle"],
                service=u["service"],
                band=u["band"],
                late=late,
            )
        )
    discounts: dict[tuple[str, str, bool], Decimal] = {}
    for u in usage:
        if u.get("discount") and Decimal(u["discount"]) != 0:
            key = (u["discount_name"] or "Discount", u["call_type"] or "", u["cycle"] < cycle.label)
            discounts[key] = discounts.get(key, ZERO) + Decimal(u["discount"])
    for (name, call_type, late), amount in sorted(discounts.items()):
        label = f"{name} ({call_type} usage{', late' if late else ''})"
        lines.append(Line("discount", label, -round_to_currency(amount, currency), call_type=call_type,
                          discount_name=name, late=late))
    return lines


def adjustment_lines(adjustments: list[dict], currency: str) -> list[Line]:
    """Re-rating differences on usage already invoiced (a closed cycle is never altered)."""
    return [
        Line(
            "adjustment",
            f"Re-rating adjustment to {a['cycle']} usage ({int(a['calls'])} calls)",
            round_to_currency(Decimal(a["difference"]), currency),
            calls=int(a["calls"]),
            cycle=a["cycle"],
        )
        for a in sorted(adjustments, key=lambda x: x["cycle"])
        if round_to_currency(Decimal(a["difference"]), currency) != 0
    ]


def tax_lines(lines: list[Line], taxes: list[dict], currency: str) -> list[Line]:
    """Each percentage tax once on its whole base (EN 16931), rounded once. Per-number fees
    are `number_fee_lines`."""
    out: list[Line] = []
    for tax in taxes:
        if tax["kind"] != "percent":
            continue
        scope = tax["applies_to"]
        base = sum((line.amount for line in lines if taxable(line, scope)), ZERO)
        if base == 0:
            continue
        rate = Decimal(tax["rate_percent"])
        out.append(
            Line(
                "tax",
                f"{tax['name']} {rate.normalize():f}%",
                round_to_currency(base * rate / 100, currency),
                tax_id=tax["tax_id"],
                base=base,
            )
        )
    return out


def cycle_moments(cycle: Cycle, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The cycle's first and end instants (end exclusive), midnight in `zone`."""
    first = datetime.combine(cycle.first, datetime.min.time(), zone)
    end = datetime.combine(cycle.last + timedelta(days=1), datetime.min.time(), zone)
    return first, end


def numbers_active(periods: list[ServicePeriod], plans: dict[str, Plan], cycle: Cycle,
                   currency: str) -> list[str]:
    """Numbers of the services billed in `currency` that were active at any moment of the
    cycle (in their plan's zone): a number disconnected at 00:30 on the first day counts."""
    out = set()
    for p in periods:
        plan = plans.get(p.plan_id)
        if not p.number or plan is None or plan.currency != currency:
            continue
        first, end = cycle_moments(cycle, ZoneInfo(plan.timezone))
        if p.active_from < end and (p.active_to is None or p.active_to > first):
            out.add(p.number)
    return sorted(out)


def number_fee_lines(account_id: str, fees: list[dict], numbers: list[str], currency: str) -> list[Line]:
    """Each per-number fee of the account's jurisdiction on the invoice's numbers. A fee is
    named by its `name`; its rows (one `tax_id` each) give its amount per currency. A fee due
    on numbers with no amount in the invoice's currency stops the draft."""
    by_fee: dict[str, dict[str, dict]] = {}
    for fee in fees:
        if fee["kind"] == "fixed" and fee["applies_to"] == "per_number":
            by_fee.setdefault(fee["name"], {})[fee["currency"]] = fee
    out = []
    for name, amounts in sorted(by_fee.items()):
        if not numbers:
            continue
        fee = amounts.get(currency)
        if fee is None:
            ids = ", ".join(f["tax_id"] for f in amounts.values())
            raise DraftError(
                f"account {account_id}: the per-number fee {name!r} ({ids}) is due on {len(numbers)} "
                f"number(s) ({', '.join(numbers)}) billed in {currency}, but reference/tax_rates.csv "
                f"gives it only in {', '.join(sorted(amounts))}; add a row for {name!r} in {currency}")
        amount = Decimal(fee["amount"])
        out.append(Line("tax", f"{fee['name']} ({len(numbers)} numbers)",
                        round_to_currency(amount * len(numbers), currency), Decimal(len(numbers)),
                        "number", amount, tax_id=fee["tax_id"]))
    return out


def promotion_lines(lines: list[Line], coupons: list[Coupon], cycle: Cycle, currency: str) -> list[Line]:
    """The account's coupons running in this cycle, as negative lines (promotions.py)."""
    totals = {
        scope: sum((x.amount for x in lines if charge_in_scope(x.kind, x.call_type, scope)), ZERO)
        for scope in SCOPES
    }
    out = []
    for coupon, amount in promotion_amounts(coupons, cycle.label, currency, totals):
        promo = coupon.promotion
        what = f"{promo.value.normalize():f}% off" if promo.kind == "percent" else "credit"
        scope = "" if promo.applies_to == "all" else f" {promo.applies_to} charges"
        label = f"{promo.description} ({what}{scope}"
        if promo.duration == "cycles":
            done = Cycle.parse(coupon.first_cycle)
            label += f", cycle {_months_between(done, cycle) + 1} of {promo.cycles}"
        out.append(Line("promotion", label + ")", amount, applies_to=promo.applies_to))
    return out


def _months_between(first: Cycle, later: Cycle) -> int:
    return (later.first.year - first.first.year) * 12 + later.first.month - first.first.month


def taxable(line: Line, scope: str) -> bool:
    return in_tax_base(line.kind, line.call_type, line.applies_to, scope)


def compose(
    account: dict[str, str],
    cycle: Cycle,
    currency: str,
    periods: list[ServicePeriod],
    plans: dict[str, Plan],
    usage: list[dict],
    taxes: list[dict],
    previous_balance: Decimal = ZERO,
    adjustments: list[dict] | None = None,
    coupons: list[Coupon] | None = None,
    credits: Decimal = ZERO,
    payments: Decimal = ZERO,
) -> Invoice:
    """The invoice of one account, cycle and currency."""
    banded = frozenset(p.plan_id for p in plans.values() if p.show_bands)
    lines = service_lines(periods, plans, cycle, currency) + usage_lines(usage, cycle, currency, banded)
    lines += adjustment_lines(adjustments or [], currency)
    lines += promotion_lines(lines, coupons or [], cycle, currency)
    numbers = numbers_active(periods, plans, cycle, currency)
    reverse = reverse_charged(account, taxes)
    taxes = [t for t in taxes if t["tax_id"] != reverse]
    taxes_due = tax_lines(lines, taxes, currency) + number_fee_lines(
        account["account_id"], taxes, numbers, currency)
    subtotal = sum((line.amount for line in lines), ZERO)
    tax_total = sum((line.amount for line in taxes_due), ZERO)
    customer = {
        k: account.get(k) or ""
        for k in (
            "account_id",
            "name",
            "email",
            "street",
            "city",
            "state",
            "postal_code",
            "country",
            "segment",
            "delivery_method",
            "privacy_mask",
            "brand_logo",
            "brand_primary_color",
            "brand_accent_color",
            "template",
            "call_detail",
            "vat_id",
        )
    }
    return Invoice(
        account_id=account["account_id"],
        cycle=cycle.label,
        currency=currency,
        issue_date=cycle.issue_date.isoformat(),
        due_date=cycle.due_date.isoformat(),
        customer=customer,
        lines=lines + taxes_due,
        subtotal=subtotal,
        tax_total=tax_total,
        total=subtotal + tax_total,
        previous_balance=previous_balance,
        payments=payments,
        credits=credits,
        amount_due=subtotal + tax_total + previous_balance + payments + credits,
        reverse_charge=reverse,
    )


def reverse_charged(account: dict[str, str], taxes: list[dict]) -> str:
    """The VAT a business customer with a VAT id accounts for itself, where the tax table
    marks it `reverse_charge` ('' otherwise)."""
    if account.get("segment") != "business" or not account.get("vat_id"):
        return ""
    return next((t["tax_id"] for t in taxes if t.get("reverse_charge")), "")

