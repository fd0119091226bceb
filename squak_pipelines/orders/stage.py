"""The order stage end to end: new drop files -> accounts, order lines, services, inventory.

Incremental and idempotent: a drop file is processed once per content (sha256). Re-running
over the same drops changes nothing; a new drop adds only its orders, provisioned against
the state the warehouse already holds. A file re-delivered under another name is recorded
as a duplicate delivery and not processed again.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.cycles import ALWAYS, CycleError, Schedule, check_bill_day
from squak_pipelines.faults import fault_point
from squak_pipelines.migrations import migrate
from squak_pipelines.orders.catalogue import Catalogue
from squak_pipelines.orders.intake import ACCOUNT_FIELDS, file_kind, read_drops
from squak_pipelines.orders.provisioning import HISTORY_COLUMNS, SERVICE_COLUMNS, Provisioner
from squak_pipelines.orders.tables import SCHEMAS, to_table
from squak_pipelines.orders.validation import validate_accounts, validate_lines
from squak_pipelines.paths import ACCOUNT_ID_RULE, is_safe_part
from squak_pipelines.reference.files import read_rows
from squak_pipelines.warehouse import Warehouse


@dataclass
class OrderStageResult:
    files_processed: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    accounts_received: int = 0
    lines_received: int = 0
    lines_accepted: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    services_active: int = 0
    numbers_assigned: int = 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _existing(warehouse: Warehouse, table: str) -> pd.DataFrame:
    if warehouse.table_exists(table):
        return warehouse.query_df(f"select * from {table}")
    return pd.DataFrame(columns=SCHEMAS[table].names)


def _seed_inventory(settings: Settings) -> pd.DataFrame:
    rows = read_rows(settings.reference_dir / "number_inventory.csv",
                     ("number", "country", "area_code", "state", "block", "status"))
    frame = pd.DataFrame([r for _, r in rows])
    frame["service_id"] = None
    frame["quarantine_until"] = pd.NaT
    return frame


def _merge_inventory(current: pd.DataFrame, seeded: pd.DataFrame) -> pd.DataFrame:
    """Numbers added to the reference inventory join as available; known ones keep state."""
    if current.empty:
        return seeded
    new = seeded[~seeded["number"].isin(current["number"])]
    return pd.concat([current, new], ignore_index=True) if len(new) else current


def _switch_serves(settings: Settings) -> list[str]:
    path = settings.reference_dir / "switches.csv"
    rows = read_rows(path, ("switch_id",))
    return [token for _, r in rows for token in r.get("serves", "").split(",") if token]


def drop_files(settings: Settings) -> list[Path]:
    folder = settings.orders_drop_dir
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and file_kind(p)]
    # Accounts before orders, then by name (operators date-stamp their drops).
    return sorted(files, key=lambda p: (file_kind(p) != "accounts", p.name))


def run_order_stage(warehouse: Warehouse, settings: Settings) -> OrderStageResult:
    result = OrderStageResult()
    migrate(warehouse)
    catalogue = Catalogue.load(settings.reference_dir)
    intake = _existing(warehouse, "orders.intake_files")
    known_hashes = set(intake["sha256"])
    new_files, file_rows = [], []
    for path in drop_files(settings):
        digest = _sha256(path)
        if digest in known_hashes:
            if path.name not in set(intake["file_name"]):
                file_rows.append({"file_name": path.name, "sha256": digest, "kind": file_kind(path),
                                  "status": "duplicate_delivery", "records": 0, "rejected": 0})
            result.files_skipped.append(path.name)
            continue
        known_hashes.add(digest)
        new_files.append((path, path.name, digest))

    accounts = _existing(warehouse, "orders.accounts")
    lines_seen = _existing(warehouse, "orders.order_lines")
    rejections_seen = _existing(warehouse, "orders.rejections")
    services = _existing(warehouse, "orders.services")
    inventory = _merge_inventory(_existing(warehouse, "orders.number_inventory"), _seed_inventory(settings))

    batch = read_drops([(p, name) for p, name, _ in new_files])
    result.files_processed = [name for _, name, _ in new_files]
    result.accounts_received = len(batch.accounts)
    result.lines_received = len(batch.lines) + int((batch.rejections["entity"] == "order").sum())

    # Accounts: validate, then upsert (a later record of an account replaces the earlier one).
    new_accounts = validate_accounts(batch.accounts)
    new_accounts, bad_accounts = _split_bad_accounts(new_accounts)
    batch.rejections = pd.concat([batch.rejections, bad_accounts], ignore_index=True)
    new_accounts = new_accounts.drop_duplicates("account_id", keep="last")
    bill_days = _bill_day_changes(accounts, new_accounts)
    accounts = pd.concat([accounts[~accounts["account_id"].isin(new_accounts["account_id"])],
                          new_accounts[[*ACCOUNT_FIELDS, "billing_issue", "source_file"]]],
                         ignore_index=True)
    account_rejects = pd.concat([rejections_seen, batch.rejections], ignore_index=True)
    account_rejects = account_rejects[account_rejects["entity"] == "account"]
    rejected_accounts = {k: r for k, r in zip(account_rejects["record_key"], account_rejects["reason"],
                                              strict=True) if k not in set(accounts["account_id"])}

    seen = set(zip(lines_seen["order_id"], lines_seen["line_no"], strict=True))
    checked = validate_lines(batch.lines, accounts, rejected_accounts, catalogue, seen)
    provisioner = Provisioner(
        inventory, services[list(SERVICE_COLUMNS)], _switch_serves(settings),
        needs_number={p: catalogue.needs_number(p) for p in catalogue.products["product_id"]},
        product_features=dict(zip(catalogue.products["product_id"], catalogue.products["features"],
                                  strict=True)))
    history = _received_history(checked)
    checked["status"] = "rejected"
    valid = checked[checked["reason"].isna()].sort_values(
        ["effective_ts", "order_id", "line_no"], kind="stable")
    accepted, failed = [], {}
    for idx, line in zip(valid.index, valid.to_dict("records"), strict=True):
        outcome = provisioner.apply(line)
        events = list(outcome.history)
        if outcome.accepted:
            accepted.append(idx)
        else:
            field_name = "phone_number" if line["kind"] in ("disconnect", "change_plan") else "area_code"
            failed[idx] = (outcome.reason, outcome.message, field_name)
            events.append(("rejected", line["effective_ts"], str(outcome.reason)))
        history.extend({"order_id": line["order_id"], "line_no": line["line_no"], "status": s,
                        "at": at, "detail": d} for s, at, d in events)
    checked.loc[accepted, "status"] = "accepted"
    if failed:
        fails = pd.DataFrame.from_dict(failed, orient="index", columns=["reason", "message", "field"])
        checked.loc[fails.index, ["reason", "message", "field"]] = fails.to_numpy()

    line_rejects = checked[checked["status"] == "rejected"]
    rejections = pd.concat([batch.rejections, pd.DataFrame({
        "entity": "order", "record_key": line_rejects["order_id"], "line_no": line_rejects["line_no"],
        "source_file": line_rejects["source_file"], "source_line": line_rejects["source_line"],
        "field": line_rejects["field"], "reason": line_rejects["reason"],
        "message": line_rejects["message"],
        "record": [json.dumps({k: str(v) for k, v in r.items()}, ensure_ascii=False)
                   for r in line_rejects[list(SCHEMAS["orders.order_lines"].names[:13])].to_dict("records")],
    })], ignore_index=True)

    order_lines = checked.rename(columns={"effective_ts": "effective_at_ts"})
    order_lines["effective_at"] = order_lines["effective_at_ts"]
    per_file = Counter(rejections["source_file"])
    for path, name, digest in new_files:
        records = int((batch.accounts["source_file"] == name).sum()
                      + (batch.lines["source_file"] == name).sum()
                      + (batch.rejections["source_file"] == name).sum())
        file_rows.append({"file_name": name, "sha256": digest, "kind": file_kind(path),
                          "status": "processed", "records": records, "rejected": per_file.get(name, 0)})

    # One transaction: the files are recorded as processed together with what they produced,
    # so a failure anywhere leaves the warehouse as it was and the next run takes them again.
    with warehouse.transaction():
        if file_rows:
            warehouse.load("orders.intake_files", to_table("orders.intake_files", pd.DataFrame(file_rows)),
                           mode="append")
        if new_files or not warehouse.count("orders.number_inventory"):
            warehouse.load("orders.order_lines", to_table("orders.order_lines", order_lines), mode="append")
            warehouse.load("orders.rejections", to_table("orders.rejections", rejections), mode="append")
            warehouse.load("orders.order_status_history",
                           to_table("orders.order_status_history",
                                    pd.DataFrame(history, columns=list(HISTORY_COLUMNS))),
                           mode="append")
            warehouse.load("orders.accounts", to_table("orders.accounts", accounts))
            if len(bill_days):
                warehouse.load("orders.bill_days", to_table("orders.bill_days", bill_days), mode="append")
            warehouse.load("orders.services", to_table("orders.services", provisioner.services_frame()))
            warehouse.load("orders.number_inventory", to_table("orders.number_inventory",
                                                               provisioner.inventory_frame()))
            fault_point("orders.before_commit")

    result.lines_accepted = int((checked["status"] == "accepted").sum())
    result.rejected_by_reason = dict(Counter(rejections["reason"]))
    result.services_active = int(warehouse.scalar(
        "select count(*) from orders.services where active_to is null"))
    result.numbers_assigned = int(warehouse.scalar(
        "select count(*) from orders.number_inventory where status = 'assigned'"))
    return result


def _split_bad_accounts(accounts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(usable accounts, rejections of the others): an account id that cannot name a folder
    (`invalid_account_id`: it becomes part of portal and notice paths) or a bill day outside
    1-31 (`invalid_bill_day`)."""
    problems: dict[object, tuple[str, str, str]] = {}
    rows = zip(accounts.index, accounts["account_id"], accounts["bill_day"], strict=True)
    for idx, account_id, value in rows:
        if not is_safe_part(account_id):
            problems[idx] = ("account_id", "invalid_account_id",
                             f"account id {account_id!r} is not {ACCOUNT_ID_RULE}")
            continue
        try:
            check_bill_day(value)
        except CycleError as exc:
            problems[idx] = ("bill_day", "invalid_bill_day", str(exc))
    bad = accounts.loc[list(problems)]
    rejects = pd.DataFrame({
        "entity": "account", "record_key": bad["account_id"], "line_no": "",
        "source_file": bad["source_file"], "source_line": bad["source_line"],
        "field": [problems[i][0] for i in bad.index], "reason": [problems[i][1] for i in bad.index],
        "message": [problems[i][2] for i in bad.index],
        "record": [json.dumps({k: str(v) for k, v in r.items() if k in ACCOUNT_FIELDS}, ensure_ascii=False)
                   for r in bad.to_dict("records")]})
    return accounts.drop(index=list(problems)), rejects


def _bill_day_changes(known: pd.DataFrame, received: pd.DataFrame) -> pd.DataFrame:
    """Rows of `orders.bill_days` for accounts whose bill day changes: the old day since
    always (the first change only) and the new one from the old schedule's next cycle boundary
    after today (so one short cycle runs between the two schedules)."""
    columns = ["account_id", "bill_day", "effective_from"]
    if not len(known):
        return pd.DataFrame(columns=columns)
    old = dict(zip(known["account_id"], known["bill_day"], strict=True))
    rows = []
    for account_id, value in zip(received["account_id"], received["bill_day"], strict=True):
        if account_id not in old or check_bill_day(old[account_id]) == check_bill_day(value):
            continue
        before, after = check_bill_day(old[account_id]), check_bill_day(value)
        _, last = Schedule.fixed(before).cycle_of(clock.today())
        rows += [{"account_id": account_id, "bill_day": before, "effective_from": ALWAYS},
                 {"account_id": account_id, "bill_day": after, "effective_from": last + timedelta(days=1)}]
    return pd.DataFrame(rows, columns=columns)


def _received_history(checked: pd.DataFrame) -> list[dict[str, object]]:
    received_at = pd.to_datetime(checked["submitted_at"].where(checked["submitted_at"] != ""),
                                 utc=True, errors="coerce", format="ISO8601").fillna(checked["effective_ts"])
    rows = [{"order_id": o, "line_no": n, "status": "received", "at": at, "detail": f}
            for o, n, at, f in zip(checked["order_id"], checked["line_no"], received_at,
                                   checked["source_file"], strict=True)]
    verdict = [{"order_id": o, "line_no": n, "status": "validated" if r is None or pd.isna(r) else "rejected",
                "at": at, "detail": "" if r is None or pd.isna(r) else r}
               for o, n, r, at in zip(checked["order_id"], checked["line_no"], checked["reason"],
                                      received_at, strict=True)]
    return rows + verdict
