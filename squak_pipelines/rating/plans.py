"""Rate plans (YAML) and their rate decks (CSV), loaded and validated.

A plan names its currency, time zone, rounding, `rating_decimals`, `band_rule`, time bands,
the decks it uses per service, allowances, discounts and fees (fees are for invoicing). A
deck row has the columns of docs/billing-rules.md (prefix, destination, rate, connect_fee,
increment, effective_from, time_band, service). Anything malformed fails the load with the
file, row and column named (`PlanFileError`).
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from squak_pipelines.limits import Limits
from squak_pipelines.money import MINOR_UNITS, ROUNDING_MODES, parse_amount

SERVICES = ("voice", "sms")
BAND_RULES = ("start", "split")
DISCOUNT_SCOPES = ("usage", "international_usage", "voice", "sms")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_WEEK = 7 * 1440
MAX_DECIMALS = 6  # money on the engine's path is integer micro-units


class PlanFileError(ValueError):
    """A plan or deck is malformed; the message names file, row (line) and column."""

    def __init__(self, path: Path | str, line: int | None, column: str, problem: str):
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: column {column!r}: {problem}")
        self.path, self.line, self.column, self.problem = Path(path), line, column, problem


@dataclass(frozen=True)
class DeckRow:
    prefix: str
    destination: str
    rate: Decimal
    connect_fee: Decimal
    first: int  # increment A: the first block (a minimum), seconds
    step: int  # increment B: the following blocks, seconds
    effective_from: date | None  # None: always
    band: str  # "" = any time (fallback)
    service: str
    file: str
    line: int

    @property
    def increment(self) -> str:
        return f"{self.first}/{self.step}"


@dataclass(frozen=True)
class Allowance:
    name: str
    service: str
    units: int  # seconds (voice) or messages (sms) per cycle
    destinations: tuple[str, ...]  # glob patterns over deck destination names; empty = all

    def covers(self, destination: str) -> bool:
        return not self.destinations or any(fnmatch.fnmatchcase(destination, p) for p in self.destinations)


@dataclass(frozen=True)
class Discount:
    name: str
    applies_to: str
    percent: Decimal


@dataclass(frozen=True)
class Plan:
    plan_id: str
    name: str
    currency: str
    timezone: str
    rounding: str
    rating_decimals: int
    band_rule: str
    bands: tuple[str, ...]  # band names; index in this tuple is the band id
    week: tuple[int, ...]  # band id of each minute of the week (Mon 00:00 = 0); -1 = none
    rows: tuple[DeckRow, ...]
    allowances: tuple[Allowance, ...] = ()
    discounts: tuple[Discount, ...] = ()
    fees: dict[str, Any] = field(default_factory=dict, compare=False)
    source: str = field(default="", compare=False)
    show_bands: bool = False  # invoices give usage a line per time band (`show_bands: true`)

    def deck(self, service: str) -> list[DeckRow]:
        return [r for r in self.rows if r.service == service]


def _fail(path: Path, line: int | None, column: str, problem: str) -> None:
    raise PlanFileError(path, line, column, problem)


def _amount(path: Path, line: int, column: str, text: str, default: str | None = None) -> Decimal:
    if text == "" and default is not None:
        text = default
    try:
        value = parse_amount(text, field=column)
    except ValueError as exc:
        raise PlanFileError(path, line, column, str(exc)) from None
    if value < 0:
        _fail(path, line, column, f"must not be negative, got {text}")
    if -value.as_tuple().exponent > MAX_DECIMALS:  # type: ignore[operator]
        _fail(path, line, column, f"at most {MAX_DECIMALS} decimal places, got {text}")
    return value


def parse_increment(text: str) -> tuple[int, int]:
    """`A/B` seconds (A >= 0 first block, B >= 1 following blocks); a bare `N` means N/N."""
    parts = text.split("/")
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"increment must be A/B whole seconds, got {text!r}")
    first, step = int(parts[0]), int(parts[1])
    if step < 1:
        raise ValueError(f"increment B must be at least 1 second, got {text!r}")
    return first, step


def _window_minutes(path: Path, band: str, text: str) -> list[int]:
    """Minutes of the week covered by `Mon-Fri 08:00-19:00` (days: `Sat,Sun`, `Mon-Fri`,
    `Daily`; times HH:MM, end exclusive, `24:00` allowed, end before start runs past midnight)."""
    try:
        days_text, times = text.strip().rsplit(" ", 1)
        start_text, end_text = times.split("-")
        start, end = _hhmm(start_text), _hhmm(end_text)
        days: list[int] = []
        for part in days_text.replace(" ", "").lower().split(","):
            if part in ("daily", "all", "mon-sun"):
                days.extend(range(7))
            elif "-" in part:
                a, b = part.split("-")
                i, j = DAYS.index(a[:3]), DAYS.index(b[:3])
                days.extend(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
            else:
                days.append(DAYS.index(part[:3]))
    except ValueError:
        raise PlanFileError(path, None, f"time_bands.{band}.windows",
                            f"window {text!r} is not like 'Mon-Fri 08:00-19:00'") from None
    length = (end - start) % 1440 or 1440
    return [(d * 1440 + start + m) % MINUTES_PER_WEEK for d in days for m in range(length)]


def _hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    value = int(hours) * 60 + int(minutes)
    if not (0 <= int(minutes) < 60 and 0 <= value <= 1440):
        raise ValueError(text)
    return value % 1440 if value != 1440 else 0


def _week(path: Path, bands_doc: list[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    names: list[str] = []
    week = [-1] * MINUTES_PER_WEEK
    otherwise: int | None = None
    for doc in bands_doc or []:
        name = str(doc.get("name", "")).strip()
        if not name or name in names:
            _fail(path, None, "time_bands.name", f"band names must be unique and non-empty ({name!r})")
        names.append(name)
        band = len(names) - 1
        if doc.get("otherwise"):
            if otherwise is not None:
                _fail(path, None, f"time_bands.{name}", "only one band can be 'otherwise'")
            otherwise = band
            continue
        for window in doc.get("windows") or []:
            for minute in _window_minutes(path, name, str(window)):
                if week[minute] not in (-1, band):
                    day, rest = divmod(minute, 1440)
                    _fail(path, None, f"time_bands.{name}",
                          f"window {window!r} overlaps band {names[week[minute]]!r} "
                          f"on {DAYS[day].title()} {rest // 60:02d}:{rest % 60:02d}")
                week[minute] = band
    if otherwise is not None:
        week = [otherwise if b == -1 else b for b in week]
    return tuple(names), tuple(week)


def load_deck(path: Path, bands: tuple[str, ...], limits: Limits | None = None) -> list[DeckRow]:
    """Rows of one deck CSV (header required; column order and extra columns free); a rate
    or connect fee above the operator's bound (`reference/limits.yaml`) is an error."""
    limits = limits or Limits()
    if not path.exists():
        _fail(path, None, "(file)", "rate deck not found")
    rows: list[DeckRow] = []
    seen: dict[tuple[str, str, str, date | None], int] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        for column in ("prefix", "destination", "rate"):
            if column not in (reader.fieldnames or []):
                _fail(path, 1, column, "required column is missing")
        for raw in reader:
            line = reader.line_num
            row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
            prefix = row["prefix"]
            if not prefix.isdigit() or not prefix.isascii():
                _fail(path, line, "prefix", f"must be digits only (E.164 without '+'), got {prefix!r}")
            if not row["destination"]:
                _fail(path, line, "destination", "must not be empty")
            try:
                first, step = parse_increment(row.get("increment") or "60/60")
            except ValueError as exc:
                raise PlanFileError(path, line, "increment", str(exc)) from None
            effective = None
            if text := row.get("effective_from", ""):
                try:
                    effective = date.fromisoformat(text)
                except ValueError:
                    _fail(path, line, "effective_from", f"must be an ISO date, got {text!r}")
            band = row.get("time_band", "")
            if band and band not in bands:
                _fail(path, line, "time_band", f"unknown band {band!r}; the plan defines {list(bands)}")
            service = (row.get("service") or "voice").lower()
            if service not in SERVICES:
                _fail(path, line, "service", f"must be one of {SERVICES}, got {service!r}")
            key = (service, prefix, band, effective)
            if key in seen:
                _fail(path, line, "prefix", f"duplicate prefix {prefix} for band {band or '(any)'} "
                      f"and date {effective or '(always)'} (first on line {seen[key]})")
            seen[key] = line
            rate = _amount(path, line, "rate", row["rate"])
            connect_fee = _amount(path, line, "connect_fee", row.get("connect_fee", ""), "0")
            for name, value in (("rate", rate), ("connect_fee", connect_fee)):
                if value > limits.max_rate:
                    _fail(path, line, name, f"{value} is above the largest rate allowed ({limits.max_rate}, "
                          "reference/limits.yaml max_rate)")
            rows.append(DeckRow(
                prefix=prefix, destination=row["destination"],
                rate=rate, connect_fee=connect_fee,
                first=first, step=step, effective_from=effective, band=band, service=service,
                file=path.name, line=line))
    return rows


def _deck_path(plan_path: Path, text: str, bases: tuple[Path, ...] = ()) -> Path:
    """Deck paths are relative to the plan's folder, or to its parent (reference/plans ->
    reference/decks), or to one of `bases` (a proposal's plan outside reference/)."""
    candidate = Path(text)
    if candidate.is_absolute():
        return candidate
    for base in (plan_path.parent, plan_path.parent.parent, *bases):
        if (base / candidate).exists():
            return base / candidate
    return plan_path.parent / candidate


def load_plan(path: Path, limits: Limits | None = None, replaced: Mapping[str, Path] | None = None,
              bases: tuple[Path, ...] = ()) -> Plan:
    """Load and validate one plan YAML with its decks (bounds: `reference/limits.yaml`).
    `replaced` replaces deck files by name (a what-if's proposed deck); `bases`: more folders
    deck paths may be relative to."""
    limits = limits or Limits.load(path.parent.parent)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PlanFileError(path, None, "(yaml)", str(exc)) from None
    for key in ("plan_id", "currency", "timezone"):
        if not doc.get(key):
            _fail(path, None, key, "is required")
    currency = str(doc["currency"]).upper()
    if currency not in MINOR_UNITS:
        _fail(path, None, "currency", f"unknown ISO 4217 currency {currency!r}")
    try:
        ZoneInfo(str(doc["timezone"]))
    except (ZoneInfoNotFoundError, ValueError):
        _fail(path, None, "timezone", f"unknown time zone {doc['timezone']!r}")
    rounding = str(doc.get("rounding", "half_up"))
    if rounding not in ROUNDING_MODES:
        _fail(path, None, "rounding", f"must be one of {sorted(ROUNDING_MODES)}, got {rounding!r}")
    decimals = doc.get("rating_decimals", 4)
    if not isinstance(decimals, int) or not 0 <= decimals <= MAX_DECIMALS:
        _fail(path, None, "rating_decimals", f"must be a whole number 0..{MAX_DECIMALS}, got {decimals!r}")
    band_rule = str(doc.get("band_rule", "start"))
    if band_rule not in BAND_RULES:
        _fail(path, None, "band_rule", f"must be one of {BAND_RULES}, got {band_rule!r}")
    bands, week = _week(path, doc.get("time_bands") or [])
    decks = doc.get("decks") or {}
    if not isinstance(decks, dict) or not decks:
        _fail(path, None, "decks", "must map a service (voice, sms) to a deck CSV")
    rows: list[DeckRow] = []
    for service, deck_file in decks.items():
        if service not in SERVICES:
            _fail(path, None, "decks", f"unknown service {service!r}")
        deck_path = _deck_path(path, str(deck_file), bases)
        rows.extend(load_deck((replaced or {}).get(deck_path.name, deck_path), bands, limits))
    unique = {(r.file, r.line): r for r in rows}  # a file named twice is read once
    return Plan(
        plan_id=str(doc["plan_id"]), name=str(doc.get("name", doc["plan_id"])), currency=currency,
        timezone=str(doc["timezone"]), rounding=rounding, rating_decimals=decimals,
        band_rule=band_rule, bands=bands, week=week, rows=tuple(unique.values()),
        allowances=tuple(_allowances(path, doc.get("allowances") or [])),
        discounts=tuple(_discounts(path, doc.get("discounts") or [])),
        fees=_fees(path, doc.get("fees") or {}, limits), source=str(path),
        show_bands=_flag(path, doc, "show_bands"))


def _flag(path: Path, doc: dict, key: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        _fail(path, None, key, f"must be true or false, got {value!r}")
    return bool(value)


def _fees(path: Path, doc: Any, limits: Limits) -> dict[str, Any]:
    """The plan's fees, each amount a decimal from 0 to the largest fee allowed."""
    if not isinstance(doc, dict):
        _fail(path, None, "fees", "must map recurring/one_time to lists of fees")
    for kind in ("recurring", "one_time"):
        for i, fee in enumerate(doc.get(kind) or []):
            where = f"fees.{kind}[{i}].amount"
            if not isinstance(fee, dict) or "amount" not in fee:
                _fail(path, None, where, "is required")
            try:
                amount = parse_amount(str(fee["amount"]), field=where)
            except ValueError as exc:
                raise PlanFileError(path, None, where, str(exc)) from None
            if amount < 0:
                _fail(path, None, where, f"must not be negative, got {amount}")
            if amount > limits.max_fee:
                _fail(path, None, where, f"{amount} is above the largest fee allowed ({limits.max_fee}, "
                      "reference/limits.yaml max_fee)")
    return doc


def _allowances(path: Path, docs: list[dict[str, Any]]) -> list[Allowance]:
    out = []
    for i, doc in enumerate(docs):
        where = f"allowances[{i}]"
        service = str(doc.get("service", "voice"))
        if service not in SERVICES:
            _fail(path, None, f"{where}.service", f"must be one of {SERVICES}")
        key = "minutes" if service == "voice" else "messages"
        amount = doc.get(key)
        if not isinstance(amount, int) or amount < 0:
            _fail(path, None, f"{where}.{key}", f"must be a whole number >= 0, got {amount!r}")
        if doc.get("rollover"):
            _fail(path, None, f"{where}.rollover", "rollover of allowances is not supported yet")
        units = amount * 60 if service == "voice" else amount
        out.append(Allowance(str(doc.get("name", where)), service, units,
                             tuple(str(p) for p in doc.get("destinations") or [])))
    return out


def _discounts(path: Path, docs: list[dict[str, Any]]) -> list[Discount]:
    out = []
    for i, doc in enumerate(docs):
        where = f"discounts[{i}]"
        scope = str(doc.get("applies_to", "usage"))
        if scope not in DISCOUNT_SCOPES:
            _fail(path, None, f"{where}.applies_to", f"must be one of {DISCOUNT_SCOPES}, got {scope!r}")
        try:
            percent = parse_amount(str(doc.get("percent", "")), field="percent")
        except ValueError as exc:
            raise PlanFileError(path, None, f"{where}.percent", str(exc)) from None
        if not 0 <= percent <= 100 or -percent.as_tuple().exponent > 4:  # type: ignore[operator]
            _fail(path, None, f"{where}.percent", f"must be 0..100 with at most 4 decimals, got {percent}")
        out.append(Discount(str(doc.get("name", where)), scope, percent))
    return out


def load_plans(plans_dir: Path, replaced: Mapping[str, Path] | None = None) -> dict[str, Plan]:
    """Every plan in a folder of YAML files, by plan id (`replaced`: see load_plan)."""
    plans: dict[str, Plan] = {}
    limits = Limits.load(plans_dir.parent)
    for path in sorted(plans_dir.glob("*.y*ml")):
        plan = load_plan(path, limits, replaced)
        if plan.plan_id in plans:
            _fail(path, None, "plan_id",
                  f"duplicate plan id {plan.plan_id!r} (also {plans[plan.plan_id].source})")
        plans[plan.plan_id] = plan
    return plans
