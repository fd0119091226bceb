"""`squak generate`: write the whole demo operator under the data directory.

Deterministic for a seed. Writes reference files (products, plans, rate decks, taxes,
switches, number inventory, brand logos), order drops (accounts and orders, CSV and JSON
Lines) and a month of CDR drop files per switch per day, with the faults the pipeline must
catch. `demo/manifest.json` records the truth: what was generated and every injected fault.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import yaml

from squak_pipelines.assurance.thresholds import default_file_text
from squak_pipelines.config import Settings
from squak_pipelines.demo import catalogue, switch_formats
from squak_pipelines.demo.operator import DemoOperator, build_operator
from squak_pipelines.demo.traffic import DayPlan, day_calls, day_sms, fraud_burst, irsf_pump

Progress = Callable[[int, int, int], None]
MALFORMED_KINDS = ("wrong_column_count", "unparseable_time", "negative_duration",
                   "end_before_start", "non_numeric_number")
FAR_FUTURE = 4_102_444_800  # 2100-01-01, "still active"


@dataclass(frozen=True)
class GenerateOptions:
    customers: int = 300
    month: str = "2026-10"
    cdrs: int = 100_000
    seed: int = 42
    deck_extra_prefixes: int = 0
    asterisk_only: bool = False  # every line on the Asterisk switch, no SMS (benchmarks)

    @property
    def month_start(self) -> date:
        return datetime.strptime(self.month, "%Y-%m").date()


def generate(settings: Settings, options: GenerateOptions,
             progress: Progress | None = None) -> dict[str, object]:
    """Generate the demo data set; returns the manifest (also written to disk)."""
    root = settings.data_dir
    _clear_previous(settings)
    rng = np.random.default_rng(options.seed)
    month_start = options.month_start
    operator = build_operator(rng, options.customers, month_start)
    if options.asterisk_only:
        operator.services["switch_id"] = "ast-nyc1"
        operator.services["sms"] = False
    _write_reference(settings.reference_dir, operator, options)
    orders_manifest = _write_orders(settings.orders_drop_dir, operator, month_start)
    cdr_manifest = _write_cdrs(settings.cdr_drop_dir, rng, operator, options, progress)
    manifest = {
        "generated_by": "squak generate", "options": asdict(options),
        "counts": {"accounts": len(operator.accounts), "services": len(operator.services),
                   "inventory_numbers": len(operator.inventory),
                   "cdr_files": len(cdr_manifest["files"]),
                   "cdr_records": sum(f["records"] for f in cdr_manifest["files"])},
        "orders": orders_manifest, "cdr": cdr_manifest,
    }
    (root / "demo").mkdir(parents=True, exist_ok=True)
    (root / "demo" / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    return manifest


def _clear_previous(settings: Settings) -> None:
    """Regenerate from scratch, but never delete folders a user filled by hand."""
    owned = [settings.reference_dir, settings.cdr_drop_dir, settings.orders_drop_dir]
    marker = settings.data_dir / "demo" / "manifest.json"
    if not marker.exists() and any(p.exists() and any(p.iterdir()) for p in owned):
        raise FileExistsError(
            f"{settings.data_dir} holds data not made by `squak generate`; "
            "use another SQUAK_DATA_DIR or remove it first")
    for path in owned:
        shutil.rmtree(path, ignore_errors=True)


# --- reference ------------------------------------------------------------------

def _write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or tuple(rows[0])
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


COST_COLUMNS = ("carrier", "prefix", "destination", "service", "currency", "rate", "effective_from")
WHOLESALE_SHARE = Decimal("0.45")  # the demo carrier charges 45% of the retail rate


def _cost_rates(deck_from: str) -> list[dict]:
    """A wholesale carrier's cost deck per currency, from the retail decks' all-day rows."""
    rows = []
    for currency in ("USD", "GBP", "EUR", "MXN"):
        retail = catalogue.voice_deck_rows(currency, deck_from, deck_from, 0) + catalogue.sms_deck_rows(
            currency, deck_from)
        latest: dict[tuple[str, str], dict] = {}
        for r in retail:
            if not r.get("time_band"):
                latest[(r["prefix"], r.get("service") or "voice")] = r
        for (prefix, service), r in sorted(latest.items()):
            rate = (Decimal(str(r["rate"])) * WHOLESALE_SHARE).quantize(Decimal("0.0001"))
            rows.append({"carrier": "Squak Wholesale", "prefix": prefix, "destination": r["destination"],
                         "service": service, "currency": currency, "rate": str(rate),
                         "effective_from": deck_from})
    return rows


def _write_reference(ref: Path, operator: DemoOperator, options: GenerateOptions) -> None:
    start = options.month_start
    price_change = (start + timedelta(days=14)).isoformat()
    deck_from = (start - timedelta(days=365)).isoformat()
    _write_csv(ref / "products.csv", list(catalogue.PRODUCTS))
    for currency in ("USD", "GBP", "EUR", "MXN"):
        _write_csv(ref / "decks" / f"{currency.lower()}_voice.csv",
                   catalogue.voice_deck_rows(currency, deck_from, price_change,
                                             options.deck_extra_prefixes), catalogue.DECK_COLUMNS)
        _write_csv(ref / "decks" / f"{currency.lower()}_sms.csv",
                   catalogue.sms_deck_rows(currency, deck_from), catalogue.DECK_COLUMNS)
    _write_csv(ref / "cost_rates.csv", _cost_rates(deck_from), list(COST_COLUMNS))
    (ref / "plans").mkdir(parents=True, exist_ok=True)
    for plan in catalogue.plans():
        (ref / "plans" / f"{plan['plan_id']}.yaml").write_text(
            yaml.safe_dump(plan, sort_keys=False, allow_unicode=True), encoding="utf-8")
    _write_csv(ref / "tax_rates.csv", [
        {**dict(zip(catalogue.TAX_COLUMNS, r, strict=True)),
         "reverse_charge": "yes" if r[0] in catalogue.REVERSE_CHARGED else ""}
        for r in catalogue.TAX_RATES])
    _write_csv(ref / "switches.csv", list(catalogue.SWITCHES))
    (ref / "layouts").mkdir(parents=True, exist_ok=True)
    for name, text in catalogue.EXAMPLE_LAYOUTS.items():  # examples: no demo switch uses them
        (ref / "layouts" / f"{name}.yaml").write_text(text, encoding="utf-8")
    _write_csv(ref / "numbering_plan.csv", [
        {"prefix": d.prefix, "country": d.country, "kind": d.kind, "destination": d.name}
        for d in catalogue.DESTINATIONS])
    _write_csv(ref / "dialing_rules.csv", [
        {"country": c, "country_code": str(r["cc"]), "trunk_prefix": str(r["trunk"]),
         "international_prefix": str(r["intl"]), "emergency_numbers": ";".join(r["emergency"])}  # type: ignore[arg-type]
        for c, r in catalogue.HOME_COUNTRIES.items()])
    (ref / "fraud_rules.yaml").write_text(yaml.safe_dump(fraud_rules(options), sort_keys=False))
    (ref / "assurance.yaml").write_text(default_file_text())
    (ref / "billing.yaml").write_text(
        "# The first month Squak bills (usage before it is late usage of that cycle) and the\n"
        "# payment terms: an invoice is due this many days after the day it is issued.\n"
        f"first_cycle: '{options.month}'\ndue_days: 15\n", encoding="utf-8")
    (ref / "direct_debit.yaml").write_text(
        "# SEPA direct debit: the operator as creditor (pain.008). EUR accounts paying by bank\n"
        "# (payment_method ach) with a mandate are collected on their invoices' due dates.\n"
        "creditor_name: Squak Communications Europe GmbH\ncreditor_iban: DE89370400440532013000\n"
        "creditor_bic: COBADEFFXXX\ncreditor_id: DE98ZZZ09999999999\nlead_days: 2\n", encoding="utf-8")
    (ref / "operator.yaml").write_text(OPERATOR_YAML, encoding="utf-8")
    _write_csv(ref / "number_inventory.csv", operator.inventory)
    (ref / "brands").mkdir(parents=True, exist_ok=True)
    for account in operator.accounts:
        if account["brand_logo"]:
            (ref / account["brand_logo"]).write_text(_logo_svg(account), encoding="utf-8")
    _write_promotions(ref, operator, start.strftime("%Y-%m"))


OPERATOR_YAML = """\
# The operator's identity, printed on every invoice, credit note, e-invoice and notice.
legal_name: Squak Communications Inc.
trading_name: Squak
address:
  street: 100 Example Street
  city: New York
  state: NY
  postal_code: "10001"
  country: US
# EU VAT registration (EN 16931 BT-31) and the US federal tax id (BT-32)
vat_id: DE314159262
tax_registration:
  scheme: EIN
  id: 12-3456789
company_registration: NY DOS 1234567
bank:
  name: Commerzbank
  iban: DE89370400440532013000
  bic: COBADEFFXXX
contact:
  email: billing@squak.example
  phone: "+1 212 555 0100"
  website: https://squak.example
footer: >-
  Squak Communications Inc., 100 Example Street, New York, NY 10001, USA. Registered in New
  York (DOS 1234567). EIN 12-3456789. VAT DE314159262. Questions about this invoice:
  billing@squak.example.
invoice_prefix: SQK
payment_link: https://pay.squak.example/pay?token={token}
"""


def _write_promotions(ref: Path, operator: DemoOperator, cycle: str) -> None:
    """A welcome discount for three cycles, a one-off loyalty credit and a usage promotion."""
    _write_csv(ref / "promotions.csv", [
        {"promotion_id": "WELCOME3", "description": "Welcome offer", "kind": "percent", "value": "15",
         "currency": "", "applies_to": "recurring", "duration": "cycles", "cycles": "3"},
        {"promotion_id": "LOYAL10", "description": "Loyalty credit", "kind": "fixed", "value": "10.00",
         "currency": "USD", "applies_to": "all", "duration": "once", "cycles": ""},
        {"promotion_id": "CALLS5", "description": "Calling promotion", "kind": "percent", "value": "5",
         "currency": "", "applies_to": "usage", "duration": "forever", "cycles": ""},
    ])
    coupons = []
    for n, account in enumerate(operator.accounts):
        promotion = ("WELCOME3", "LOYAL10", "CALLS5")[n // 7 % 3] if n % 7 == 3 else None
        if promotion:
            coupons.append({"account_id": account["account_id"], "promotion_id": promotion,
                            "first_cycle": cycle})
    _write_csv(ref / "coupons.csv", coupons, ("account_id", "promotion_id", "first_cycle"))


def _logo_svg(account: dict[str, str]) -> str:
    initials = "".join(w[0] for w in account["name"].split()[:2] if w[0].isalpha()).upper()
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="48" viewBox="0 0 160 48">'
            f'<rect width="48" height="48" rx="10" fill="{account["brand_primary_color"]}"/>'
            f'<text x="24" y="31" font-family="sans-serif" font-size="18" font-weight="bold" '
            f'fill="{account["brand_accent_color"]}" text-anchor="middle">{initials or "S"}</text>'
            f'</svg>\n')


# --- orders ---------------------------------------------------------------------

def _write_orders(folder: Path, operator: DemoOperator, month_start: date) -> dict[str, object]:
    cutoff = datetime(month_start.year, month_start.month, 1, tzinfo=UTC).strftime("%Y-%m-%dT")
    base = [a for a in operator.accounts if a["created_at"] < cutoff]
    new = [a for a in operator.accounts if a["created_at"] >= cutoff]
    tag = month_start.strftime("%Y-%m")
    _write_csv(folder / "accounts-base.csv", base)
    _write_csv(folder / f"accounts-{tag}.csv", new)
    _write_csv(folder / "orders-base.csv", operator.base_orders)
    with (folder / f"orders-{tag}.jsonl").open("w", encoding="utf-8") as fh:
        for order in sorted(operator.month_orders, key=lambda o: str(o["submitted_at"])):
            fh.write(json.dumps(order, ensure_ascii=False) + "\n")
    return {"accounts": len(operator.accounts), "base_order_lines": len(operator.base_orders),
            "month_orders": len(operator.month_orders), "expected_rejections": operator.faults["orders"]}


# --- CDRs ---------------------------------------------------------------------

def _services_frame(operator: DemoOperator) -> pd.DataFrame:
    svc = operator.services.copy()
    svc["from_s"] = svc["active_from"].map(lambda t: int(t.timestamp()))
    svc["to_s"] = svc["active_to"].map(lambda t: FAR_FUTURE if t is None or pd.isna(t)
                                       else int(t.timestamp()))
    return svc[svc["product_id"] != "SMS-OPTION"].reset_index(drop=True)


def _file_name(switch: dict[str, str], day: date) -> str:
    if switch["format"] == "asterisk":
        return f"Master-{day:%Y%m%d}.csv"
    if switch["format"] == "freeswitch":
        return f"Master.csv.{day:%Y%m%d}-000000.gz"
    return f"cdr_{switch['switch_id']}_{day:%Y%m%d}.csv"


def _write_cdrs(folder: Path, rng: np.random.Generator, operator: DemoOperator,
                options: GenerateOptions, progress: Progress | None) -> dict[str, object]:
    svc = _services_frame(operator)
    month_start = options.month_start
    days = [month_start + timedelta(days=i) for i in range(31)
            if (month_start + timedelta(days=i)).month == month_start.month]
    onnet_pool = {c: svc.loc[svc["country"] == c, "number"].to_numpy(dtype=object)
                  for c in svc["country"].unique()}
    # Calibrate volume: ~85% voice, ~15% SMS of the requested CDR count.
    voice_share = 1.0 if options.asterisk_only else 0.85
    voice_scale = voice_share * options.cdrs / max(1.0, svc["calls_per_day"].sum() * len(days) * 0.9)
    sms_rate = np.where(svc["segment"] == "business", 2.5, 1.2)[svc["sms"].to_numpy()].sum()
    sms_scale = 0.15 * options.cdrs / max(1.0, sms_rate * len(days))
    unknown_pool = _unknown_numbers(operator)
    fraud = _fraud_plan(rng, svc, days, FraudSize.of(options))
    carry: dict[str, np.ndarray] = {}
    files: list[dict[str, object]] = []
    seq = {s["switch_id"]: 1 for s in catalogue.SWITCHES}
    total = 0
    for i, day in enumerate(days):
        for switch in catalogue.SWITCHES:
            sid, tz = switch["switch_id"], switch["timezone"]
            if sid == "sqk-sms1":
                if options.asterisk_only:
                    continue
                truth = day_sms(rng, svc, day, sms_scale, onnet_pool)
            else:
                truth = day_calls(rng, svc, DayPlan(sid, tz, day, voice_scale), onnet_pool)
            parts = [truth]
            late = 0
            if i == 0 and sid != "sqk-sms1":
                prev = day_calls(rng, svc, DayPlan(sid, tz, day - timedelta(days=1),
                                                   voice_scale * 0.03), onnet_pool)
                late = len(prev)
                parts.insert(0, prev)
            for kind, (when, caller, count) in fraud.items():
                if when == day and caller["switch_id"] == sid:
                    make = fraud_burst if kind == "fraud_burst" else irsf_pump
                    # Fraud runs at night, local time of the switch (03:10 burst, 01:00 IRSF).
                    night = time(3, 10) if kind == "fraud_burst" else time(1, 0)
                    at = int(datetime.combine(day, night, ZoneInfo(tz)).timestamp())
                    parts.append(make(rng, caller, at, count))
            parts = [p for p in parts if len(p)]
            if not parts:
                continue  # a switch with no lines homed on it delivers no file
            truth = pd.concat(parts, ignore_index=True)
            truth = truth.sort_values("start", kind="stable").reset_index(drop=True)
            unknown = _mark_unknown(rng, truth, unknown_pool)
            table = _render(truth, switch, day, rng, seq[sid])
            seq[sid] += len(truth)
            lines = switch_formats.to_lines(table)
            entry, carry[sid] = _assemble(rng, folder / switch["folder"], _file_name(switch, day),
                                          switch, lines, carry.get(sid),
                                          protected=(truth["tag"] != "").to_numpy())
            entry.update(local_day=day.isoformat(), late_previous_month=late,
                         unknown_caller=unknown,
                         fraud={k: int((truth["tag"] == k).sum()) for k in fraud})
            files.append(entry)
            total += entry["records"]
        if progress:
            progress(i + 1, len(days), total)
    resent = _resend(folder, files)
    return {"files": files, "resent_file": resent,
            "fraud": {k: {"day": v[0].isoformat(), "number": f"+{v[1]['number']}",
                          "switch_id": v[1]["switch_id"], "calls": v[2]}
                      for k, v in fraud.items()}}


def _render(truth: pd.DataFrame, switch: dict[str, str], day: date, rng: np.random.Generator,
            seq0: int):
    if switch["format"] == "asterisk":
        return switch_formats.render_asterisk(truth, switch["timezone"], rng, seq0)
    if switch["format"] == "freeswitch":
        return switch_formats.render_freeswitch(truth, switch["timezone"], rng, seq0)
    return switch_formats.render_canonical(truth, switch["switch_id"], f"{day:%Y%m%d}", seq0)


def _unknown_numbers(operator: DemoOperator) -> np.ndarray:
    """Numbers in Squak's blocks that were never allocated (calls from them are suspect)."""
    taken = {int(n.lstrip("+")) for n in (r["number"] for r in operator.inventory)}
    top = max(taken)
    return np.array([str(top + k) for k in range(11, 60, 7)], dtype=object)


def _mark_unknown(rng: np.random.Generator, truth: pd.DataFrame, pool: np.ndarray) -> int:
    pick = (rng.random(len(truth)) < 0.003) & (truth["tag"] == "").to_numpy() \
        & (truth["service"] == "voice").to_numpy()
    truth.loc[pick, "calling"] = pool[rng.integers(0, len(pool), size=int(pick.sum()))]
    truth.loc[pick, "account_id"] = ""
    truth.loc[pick, "tag"] = "unknown_caller"
    return int(pick.sum())


@dataclass(frozen=True)
class FraudSize:
    """How much fraud the demo plants, scaled to its daily volume: about 2% of a day's
    records for the burst and 1.2% for the IRSF pump (at least 8 and 5 calls, at most 150
    and 90), so the planted fraud is caught by rules tuned to it and no day exceeds the gate."""

    burst_calls: int
    irsf_calls: int

    @classmethod
    def of(cls, options: GenerateOptions) -> FraudSize:
        daily = options.cdrs / 31
        return cls(int(min(150, max(8, round(0.02 * daily)))), int(min(90, max(5, round(0.012 * daily)))))


def fraud_rules(options: GenerateOptions) -> dict[str, object]:
    """The demo operator's fraud rules, tuned to its size: a burst is more than two thirds of the
    planted burst's calls within the window (30 at full size), and the gate lets a day hold the
    planted incident even where it is a large share of a small day's traffic."""
    size = FraudSize.of(options)
    rules = {k: dict(v) for k, v in catalogue.FRAUD_RULES.items()}  # type: ignore[union-attr]
    rules["burst"]["max_calls"] = min(30, max(5, size.burst_calls * 2 // 3))
    rules["gate"]["min_quarantined"] = -(-5 * max(size.burst_calls, size.irsf_calls) // 4)
    return rules


def _fraud_plan(rng: np.random.Generator, svc: pd.DataFrame, days: list[date], size: FraudSize):
    """A short-call burst from a residential line and an IRSF pump from a business PBX."""
    established = svc[(svc["to_s"] == FAR_FUTURE) & (svc["from_s"] < _epoch(days[0]))]
    res = established[(established["segment"] == "residential")
                      & (established["switch_id"] == "ast-nyc1")]
    biz = established[(established["segment"] == "business")
                      & (established["switch_id"] == "fs-chi1")]
    plan = {}
    if len(res):
        plan["fraud_burst"] = (days[min(11, len(days) - 1)], res.iloc[int(rng.integers(len(res)))],
                               size.burst_calls)
    if len(biz):
        plan["fraud_irsf"] = (days[min(19, len(days) - 1)], biz.iloc[int(rng.integers(len(biz)))],
                              size.irsf_calls)
    return plan


def _epoch(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp())


def _assemble(rng: np.random.Generator, folder: Path, name: str, switch: dict[str, str],
              lines: np.ndarray, carried: np.ndarray | None, protected: np.ndarray
              ) -> tuple[dict[str, object], np.ndarray]:
    """Place duplicates and carried-over lines, break a few lines, write the file.
    `protected` lines (planted fraud, unknown callers) get no other fault, so every fault
    in the manifest is counted once."""
    n = len(lines)
    keys = np.arange(n, dtype=float)
    plain = np.flatnonzero(~protected)
    # At least one repeat per file, so the fault exists at any scale.
    within = rng.choice(plain, size=int(np.ceil(n * 0.002)), replace=False) if len(plain) > 10 \
        else np.array([], int)
    dup_keys = within + rng.uniform(1, np.maximum(2, n - within))
    carried = carried if carried is not None else np.array([], dtype=object)
    carry_keys = rng.uniform(0, max(n, 1), size=len(carried))
    all_lines = np.concatenate([lines, lines[within], carried])
    origin = np.concatenate([np.zeros(n, int), np.ones(len(within), int), np.full(len(carried), 2)])
    repeated = np.zeros(len(origin), dtype=bool)
    repeated[within] = True  # lines that have a copy: breaking them would hide the repeat
    repeated[:n] |= protected
    order = np.argsort(np.concatenate([keys, dup_keys, carry_keys]), kind="stable")
    all_lines, origin, repeated = all_lines[order], origin[order], repeated[order]

    malformed: dict[str, list[int]] = {}
    header = 1 if switch["format"] == "canonical" else 0
    originals = np.flatnonzero((origin == 0) & ~repeated)
    count = int(rng.integers(1, 4)) if rng.random() < 0.5 and len(originals) > 20 else 0
    for pos in rng.choice(originals, size=count, replace=False) if count else []:
        kind = MALFORMED_KINDS[int(rng.integers(len(MALFORMED_KINDS)))]
        all_lines[pos] = _break_line(all_lines[pos], kind, switch["format"])
        malformed.setdefault(kind, []).append(int(pos) + 1 + header)
        origin[pos] = 3  # broken: not a candidate for tomorrow's repeats

    body = b"\n".join(all_lines) + (b"\n" if len(all_lines) else b"")
    if header:
        body = switch_formats.canonical_header() + b"\n" + body
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    data = gzip.compress(body, compresslevel=3, mtime=0) if name.endswith(".gz") else body
    path.write_bytes(data)
    # A small share of today's clean lines reappears in tomorrow's file.
    clean = all_lines[(origin == 0) & ~repeated]
    next_carry = clean[rng.choice(len(clean), size=int(np.ceil(len(clean) * 0.001)), replace=False)] \
        if len(clean) > 20 else np.array([], dtype=object)
    entry = {"file": f"{switch['folder']}/{name}", "switch_id": switch["switch_id"],
             "format": switch["format"], "bytes": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), "records": len(all_lines),
             "duplicates_within": len(within), "duplicates_across": len(carried),
             "malformed": malformed}
    return entry, next_carry


def _break_line(line: bytes, kind: str, fmt: str) -> bytes:
    """Turn one good CDR line into a malformed one of the given kind."""
    fields = next(csv.reader(io.StringIO(line.decode("utf-8"))))
    pos = switch_formats.FIELD_POS[fmt]
    if kind == "wrong_column_count":
        fields = fields[:8]
    elif kind == "unparseable_time":
        fields[pos["start"]] = "2026-13-45 25:61:00"
    elif kind == "negative_duration":
        fields[pos["duration"]] = "-42"
    elif kind == "end_before_start":
        fields[pos["end"]] = fields[pos["start"]].replace(fields[pos["start"]][:4],
                                                          str(int(fields[pos["start"]][:4]) - 1), 1)
    elif kind == "non_numeric_number":
        fields[pos["called"]] = "CALL-ME-NOW"
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(fields)
    return out.getvalue().encode("utf-8")


def _resend(folder: Path, files: list[dict[str, object]]) -> dict[str, str] | None:
    """The same Asterisk file delivered twice under another name (same content hash)."""
    candidates = [f for f in files if f["format"] == "asterisk"]
    if not candidates:
        return None
    original = candidates[min(11, len(candidates) - 1)]
    source = folder / str(original["file"])
    target = source.with_name(source.stem + "-resend" + source.suffix)
    shutil.copyfile(source, target)
    return {"original": str(original["file"]), "copy": str(target.relative_to(folder)),
            "sha256": str(original["sha256"])}
