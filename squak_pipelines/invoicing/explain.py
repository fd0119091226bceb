"""Explain an amount: from an invoice line to the events it sums, and from an event to what
priced it (deck file and row, band, increment, allowance, rounding, discount) and the invoice
line that billed it.

A usage line sums the events its invoice billed (`invoicing.billed_events`) of one cycle,
service, call type and destination (and time band, where the plan shows bands); a discount
line sums those events' plan discounts; an adjustment line sums re-rating differences. The
line records that group when it is issued (migration 8), so the events are found exactly and
their sum, rounded to the currency, is the line's amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from squak_pipelines.money import round_to_currency
from squak_pipelines.warehouse import Warehouse, check_identifier

EVENT_LINES = ("usage", "late_usage", "discount")
RATED_COLUMNS = """r.event_key, r.start_utc, r.service, r.call_type, r.calling_number, r.called_number,
       r.destination, r.band, r.billsec, r.charged_units, r.plan_id, r.matched_prefix, r.deck_file,
       r.deck_line, r.effective_from, r.increment, r.rate, r.connect_fee, r.allowance,
       r.allowance_used, r.charge, r.discount_name, r.discount, r.final_charge, r.cycle"""
LINE_EVENTS_SQL = f"""
select {RATED_COLUMNS}
from invoicing.billed_events b
join rating.rated_events r on r.event_key = b.event_key
where b.invoice_number = :number
  and r.cycle {{cycle}}
  and coalesce(r.call_type, '') = :call_type
  {{group}}
order by r.start_utc, r.event_key
"""
USAGE_GROUP = """and r.service = :service and coalesce(r.destination, '') = :destination
  and case when r.plan_id = any(:banded) then coalesce(r.band, '') else '' end = :band"""
DISCOUNT_GROUP = "and r.discount <> 0 and coalesce(r.discount_name, 'Discount') = :discount_name"
ADJUSTMENTS_SQL = """
select a.event_key, a.partition_day, a.cycle, a.billed_charge, a.rerated_charge, a.difference
from rating.adjustments a
where a.invoice_number = :number and a.cycle = :cycle
order by a.partition_day, a.event_key
"""


class ExplainError(LookupError):
    """Nothing to explain: an unknown invoice, line or event (one line, for the CLI)."""


@dataclass(frozen=True)
class LineExplanation:
    number: str
    currency: str
    line: dict
    events: pa.Table  # the events (or re-rating differences) the line sums, in call order
    basis: str  # the column summed: charge, discount or difference ('' for other lines)
    total: Decimal  # the basis summed over the events, exact
    amount: Decimal  # that total rounded to the currency, with the line's sign

    @property
    def adds_up(self) -> bool:
        return not self.basis or self.amount == self.line["amount"]


def _invoice(warehouse: Warehouse, number: str) -> dict:
    rows = warehouse.query_arrow(
        "select number, invoice_key, account_id, cycle, currency from invoicing.invoices "
        "where number = :number", {"number": number}).to_pylist()
    if not rows:
        raise ExplainError(f"invoice {number!r} is not a final invoice")
    return rows[0]


def _line(warehouse: Warehouse, invoice: dict, line_no: int) -> dict:
    rows = warehouse.query_arrow(
        "select * from invoicing.invoice_lines where invoice_key = :key and line_no = :line",
        {"key": invoice["invoice_key"], "line": line_no}).to_pylist()
    if not rows:
        count = warehouse.scalar("select count(*) from invoicing.invoice_lines where invoice_key = :key",
                                 {"key": invoice["invoice_key"]})
        raise ExplainError(f"invoice {invoice['number']} has no line {line_no} (it has lines 1-{count})")
    return rows[0]


def explain_line(warehouse: Warehouse, number: str, line_no: int, banded: list[str]) -> LineExplanation:
    """The events behind line `line_no` of final invoice `number` (`banded`: the plans that show
    a line per time band)."""
    invoice = _invoice(warehouse, number)
    line = _line(warehouse, invoice, line_no)
    kind, currency = line["kind"], invoice["currency"]
    if kind not in (*EVENT_LINES, "adjustment"):
        return LineExplanation(number, currency, line, pa.table({}), "", Decimal(0), line["amount"])
    if line["late"] is None:
        raise ExplainError(f"line {line_no} of {number} was issued before invoice lines recorded the "
                           "usage they sum; explain its events one by one with --event")
    if kind == "adjustment":
        events = warehouse.query_arrow(ADJUSTMENTS_SQL, {"number": number, "cycle": line["cycle"]})
        return _summed(number, currency, line, events, "difference", 1)
    params: dict[str, object] = {"number": number, "call_type": line["call_type"] or "",
                                 "invoice_cycle": invoice["cycle"]}
    if kind == "discount":
        group, basis, sign = DISCOUNT_GROUP, "discount", -1
        cycle = "< :invoice_cycle" if line["late"] else "= :invoice_cycle"
        params["discount_name"] = line["discount_name"]
    else:
        group, basis, sign, cycle = USAGE_GROUP, "charge", 1, "= :cycle"
        params.update(cycle=line["cycle"], service=line["service"], destination=line["destination"] or "",
                      band=line["band"] or "", banded=list(banded))
    events = warehouse.query_arrow(LINE_EVENTS_SQL.format(cycle=cycle, group=group), params)
    return _summed(number, currency, line, events, basis, sign)


def _summed(number: str, currency: str, line: dict, events: pa.Table, basis: str,
            sign: int) -> LineExplanation:
    total = sum((Decimal(v) for v in events[basis].to_pylist()), Decimal(0))
    return LineExplanation(number, currency, line, events, basis, total,
                           sign * round_to_currency(total, currency))


@dataclass(frozen=True)
class EventExplanation:
    key: str
    record: dict | None  # where mediation read it (events, quarantine or B-legs)
    held: str  # '' or where mediation keeps it instead of rating it (quarantine, b_legs)
    rated: dict | None  # the rating trace
    suspense: dict | None  # why it could not be priced
    invoice: dict | None  # the invoice and line that billed it
    adjustments: list[dict]
    plan: dict | None  # the plan's rounding rules (as the plan file reads today)
    deck_row: dict | None  # the deck row, as the deck file reads today


def explain_event(warehouse: Warehouse, key: str, reference_dir: Path, banded: list[str]) -> EventExplanation:
    """Everything recorded about one event, from its CDR line to its invoice line."""
    record, held = None, ""
    for table, where in (("mediation.events", ""), ("mediation.quarantine", "quarantine"),
                         ("mediation.b_legs", "b_legs")):
        record = _one(warehouse, table, key)
        if record:
            held = where
            break
    rated = _one(warehouse, "rating.rated_events", key)
    suspense = _one(warehouse, "rating.suspense", key)
    if not (record or rated or suspense):
        raise ExplainError(f"event {key!r} is not in the warehouse")
    invoice = _billed_on(warehouse, key, rated, banded) if rated else None
    adjustments = (warehouse.query_arrow("select * from rating.adjustments where event_key = :key "
                                         "order by partition_day", {"key": key}).to_pylist()
                   if warehouse.table_exists("rating.adjustments") else [])
    plan, deck_row = _plan_and_row(reference_dir, rated) if rated else (None, None)
    return EventExplanation(key, record, held, rated, suspense, invoice, adjustments, plan, deck_row)


def _one(warehouse: Warehouse, table: str, key: str) -> dict | None:
    """The row of `table` with this event key (None: no row, or no such table yet)."""
    if not warehouse.table_exists(table):
        return None
    rows = warehouse.query_arrow(f"select * from {check_identifier(table)} where event_key = :key",
                                 {"key": key}).to_pylist()
    return rows[0] if rows else None


def _billed_on(warehouse: Warehouse, key: str, rated: dict, banded: list[str]) -> dict | None:
    """The invoice that billed the event and its usage line (by the group the line records)."""
    if not warehouse.table_exists("invoicing.billed_events"):
        return None
    rows = warehouse.query_arrow(
        "select i.number, i.invoice_key, i.cycle from invoicing.billed_events b "
        "join invoicing.invoices i on i.number = b.invoice_number where b.event_key = :key",
        {"key": key}).to_pylist()
    if not rows:
        return None
    band = (rated["band"] or "") if rated["plan_id"] in banded else ""
    lines = warehouse.query_arrow(
        "select line_no, description, amount from invoicing.invoice_lines where invoice_key = :k "
        "and kind in ('usage', 'late_usage') and cycle = :cycle and service = :service "
        "and coalesce(call_type, '') = :call_type and coalesce(destination, '') = :destination "
        "and coalesce(band, '') = :band",
        {"k": rows[0]["invoice_key"], "cycle": rated["cycle"], "service": rated["service"],
         "call_type": rated["call_type"] or "", "destination": rated["destination"] or "",
         "band": band}).to_pylist()
    return {**rows[0], "line": lines[0] if lines else None}


def _plan_and_row(reference_dir: Path, rated: dict) -> tuple[dict | None, dict | None]:
    """The plan's rounding rules and the deck row that priced the event, as the reference
    files read today (a deck changed since shows a different rate than the trace)."""
    from squak_pipelines.rating.plans import PlanFileError, load_plans

    try:
        plan = load_plans(reference_dir / "plans").get(rated.get("plan_id") or "")
    except (PlanFileError, OSError):
        return None, None
    if plan is None:
        return None, None
    rules = {"plan_id": plan.plan_id, "currency": plan.currency, "timezone": plan.timezone,
             "rounding": plan.rounding, "rating_decimals": plan.rating_decimals, "band_rule": plan.band_rule}
    at = (rated.get("deck_file"), rated.get("deck_line"))
    row = next((r for r in plan.rows if (r.file, r.line) == at), None)
    if row is None:
        return rules, None
    return rules, {"prefix": row.prefix, "destination": row.destination, "rate": row.rate,
                   "connect_fee": row.connect_fee, "increment": row.increment,
                   "effective_from": row.effective_from, "band": row.band, "service": row.service}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _fields(title: str, values: dict) -> list[str]:
    width = max((len(k) for k in values), default=0)
    return [title, *(f"  {k:<{width}}  {_text(v)}" for k, v in values.items())]


LINE_TABLE = ("event_key", "start_utc", "called_number", "destination", "band", "billsec",
              "charged_units", "deck_file", "deck_line", "rate", "allowance_used", "charge", "discount")


def describe_line(found: LineExplanation, limit: int = 20) -> str:
    """The line, the events it sums (the first `limit`) and whether they add up to it."""
    line = found.line
    amount = round_to_currency(line["amount"], found.currency)
    out = [f"{found.number} line {line['line_no']}: {line['description']}",
           f"  kind {line['kind']}, amount {amount} {found.currency}"]
    if not found.basis:
        extra = {k: line[k] for k in ("quantity", "unit", "unit_price", "service_id", "tax_id", "base",
                                       "applies_to") if line.get(k) not in (None, "")}
        out += _fields("  not priced from events: the line as issued", extra)
        return "\n".join(out)
    rows = found.events.to_pylist()
    columns = [c for c in (LINE_TABLE if found.basis != "difference" else found.events.column_names)
               if c in found.events.column_names]
    out.append(f"  {len(rows):,} events; sum of {found.basis}: {found.total} -> rounded to the currency "
               f"{found.amount:f} {'= the line' if found.adds_up else '!= the line ' + str(line['amount'])}")
    out.append("  " + ",".join(columns))
    out += ["  " + ",".join(_text(row[c]) for c in columns) for row in rows[:limit]]
    if len(rows) > limit:
        out.append(f"  ... and {len(rows) - limit:,} more (--out FILE.csv writes them all)")
    return "\n".join(out)


def describe_event(found: EventExplanation) -> str:
    """Every recorded step of one event, one field a line."""
    out = [f"event {found.key}"]
    if found.record:
        record = {k: found.record.get(k) for k in ("source_file", "source_line", "source_sha256", "switch_id",
                                                    "partition_day", "service", "call_type", "calling_number",
                                                    "called_number", "start_utc", "answer_utc", "billsec",
                                                    "answered")}
        if found.held:
            record["held_in"] = f"mediation.{found.held}"
            record.update({k: found.record.get(k) for k in ("fraud_rules", "decision", "a_leg_id")
                           if k in found.record})
        out += _fields("mediated (squak cdr show KEY prints its raw line)", record)
    if found.suspense:
        out += _fields("not priced (suspense)", {k: found.suspense.get(k) for k in
                                                 ("reason", "account_id", "plan_id", "partition_day")})
    if found.rated:
        r = found.rated
        out += _fields("priced", {
            "account": r["account_id"], "service_id": r["service_id"], "plan": r["plan_id"],
            "cycle": r["cycle"], "currency": r["currency"], "rated_at": r["rated_at"],
            "deck": f"{r['deck_file']} line {r['deck_line']}", "matched_prefix": r["matched_prefix"],
            "destination": r["destination"], "effective_from": r["effective_from"], "band": r["band"],
            "band_split": r["band_split"], "increment": r["increment"], "rate": r["rate"],
            "connect_fee": r["connect_fee"], "billsec": r["billsec"], "charged_units": r["charged_units"],
            "allowance": r["allowance"], "allowance_used": r["allowance_used"], "charge": r["charge"],
            "discount": f"{r['discount']} ({r['discount_name']})" if r["discount_name"] else r["discount"],
            "final_charge": r["final_charge"]})
    if found.plan:
        out += _fields("plan rules (plan file as it reads today)", found.plan)
    if found.deck_row:
        out += _fields("deck row (deck file as it reads today)", found.deck_row)
    if found.rated:
        if found.invoice:
            line, currency = found.invoice["line"], found.rated["currency"]
            where = (f"line {line['line_no']}: {line['description']} "
                     f"({round_to_currency(line['amount'], currency)} {currency})") if line else \
                "a line issued before lines recorded their usage"
            out += _fields("billed", {"invoice": found.invoice["number"], "line": where})
        else:
            out.append("not billed yet")
    for adjustment in found.adjustments:
        out += _fields("re-rating adjustment", adjustment)
    return "\n".join(out)
