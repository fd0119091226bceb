"""Provisioning: allocate numbers, test activation, and keep the service timeline.

Order lines are applied in order of effective time (then order id, line). Allocation is
sequential state (the "next free" number depends on every earlier allocation), so this
walks order lines one by one; orders are thousands, not the millions of CDRs.

Rules:
- A requested number is used if it is in the inventory and free at the effective time;
  otherwise the lowest free number of the requested area (or of the requested number's
  area). No free number left: the line is rejected with `area_exhausted`.
- Activation test: the number is valid E.164 and a switch serves its country/state.
  A failure rejects the line (`activation_failed`) and returns the number.
- A service is active from the effective time of its order. A disconnect ends it at its
  effective time; the number returns to the inventory after the quarantine period.
- A plan change ends the current period and opens a new one on the new plan.
- An add-on (a product of kind `addon`, e.g. an SMS option) belongs to a line: the one its
  order line names (`phone_number`), else the first line sold in the same order, else the
  account (`parent_service_id` empty). It ends with its line: disconnecting the line ends
  the line's add-ons at the same moment, and the account's own add-ons end when its last
  line does.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
QUARANTINE = timedelta(days=90)
SERVICE_COLUMNS = ("service_id", "period", "account_id", "order_id", "line_no", "product_id",
                   "plan_id", "number", "features", "active_from", "active_to", "parent_service_id")
HISTORY_COLUMNS = ("order_id", "line_no", "status", "at", "detail")


@dataclass
class Outcome:
    """Result of applying one valid order line."""

    accepted: bool
    reason: str | None = None
    message: str | None = None
    history: list[tuple[str, pd.Timestamp, str]] = field(default_factory=list)


class Provisioner:
    """Number inventory and service periods, updated line by line."""

    def __init__(self, inventory: pd.DataFrame, services: pd.DataFrame, switch_serves: list[str],
                 needs_number: dict[str, bool], product_features: dict[str, str]):
        self.inventory = inventory.set_index("number", drop=False).to_dict("index")
        self.services: list[dict[str, object]] = services.to_dict("records")
        self.serves = set(switch_serves)
        self.needs_number = needs_number
        self.product_features = product_features
        self.open_period: dict[str, int] = {}  # number -> index of its open period
        self.by_account: dict[str, list[int]] = {}
        self.addons = {p for p, needed in needs_number.items() if not needed}
        self.lines_of_order: dict[str, list[str]] = {}  # order id -> service ids of its lines
        for i, s in enumerate(self.services):
            parent = s.get("parent_service_id")
            s["parent_service_id"] = "" if parent is None or pd.isna(parent) else str(parent)
            s["active_to"] = None if pd.isna(s["active_to"]) else s["active_to"]
            s["number"] = None if s["number"] is None or pd.isna(s["number"]) else s["number"]
            self.by_account.setdefault(str(s["account_id"]), []).append(i)
            if s["number"] and s["active_to"] is None:
                self.open_period[str(s["number"])] = i
        self.area_heap: dict[str, list[str]] = {}
        for number, item in self.inventory.items():
            if item["status"] in ("available", "quarantine"):
                self.area_heap.setdefault(str(item["area_code"]), []).append(number)
        for heap in self.area_heap.values():
            heapq.heapify(heap)

    # --- number pool -------------------------------------------------------------
    def _free(self, number: str, at: pd.Timestamp) -> bool:
        item = self.inventory.get(number)
        if item is None or number in self.open_period:
            return False
        if item["status"] == "available":
            return True
        until = item.get("quarantine_until")
        return item["status"] == "quarantine" and until is not None and not pd.isna(until) and until <= at

    def _next_free(self, area: str, at: pd.Timestamp) -> str | None:
        heap = self.area_heap.get(area, [])
        skipped = []
        found = None
        while heap:
            number = heapq.heappop(heap)
            if self._free(number, at):
                found = number
                break
            if self.inventory[number]["status"] == "quarantine":
                skipped.append(number)  # may be free for a later order
        for number in skipped:
            heapq.heappush(heap, number)
        return found

    def _assign(self, number: str, service_id: str) -> None:
        self.inventory[number].update(status="assigned", service_id=service_id, quarantine_until=None)

    def _release(self, number: str, at: pd.Timestamp) -> None:
        self.inventory[number].update(status="quarantine", service_id=None,
                                      quarantine_until=at + QUARANTINE)
        heapq.heappush(self.area_heap.setdefault(str(self.inventory[number]["area_code"]), []), number)

    def _activation_test(self, number: str) -> tuple[bool, str]:
        item = self.inventory[number]
        if not E164.match(number):
            return False, f"{number} is not a valid E.164 number"
        region = f"{item['country']}:{item['state']}" if item.get("state") else str(item["country"])
        if self.serves and region not in self.serves and str(item["country"]) not in self.serves:
            return False, f"no switch serves {region}"
        return True, f"test call to {number} completed"

    # --- order lines -------------------------------------------------------------
    def apply(self, line: dict[str, object]) -> Outcome:
        kind = line["kind"]
        if kind in ("new", "add_on"):
            return self._sell(line)
        if kind == "disconnect":
            return self._disconnect(line)
        return self._change_plan(line)

    def _sell(self, line: dict[str, object]) -> Outcome:
        at: pd.Timestamp = line["effective_ts"]  # type: ignore[assignment]
        account = str(line["account_id"])
        if line["kind"] == "add_on" and not self._has_active_service(account, at):
            return Outcome(False, "no_active_service", "an add-on needs an active service on the account")
        product = str(line["product_id"])
        qty = int(line["qty"])  # type: ignore[arg-type]
        features = str(line["features"]) or self.product_features.get(product, "")
        base_id = f"SVC-{line['order_id']}-{line['line_no']}"
        history: list[tuple[str, pd.Timestamp, str]] = []
        if not self.needs_number.get(product, True):
            parent = self._parent_line(line)
            for k in range(1, qty + 1):
                self._open(f"{base_id}-{k}", line, None, features, at, parent=parent)
            history.append(("active", at, f"{qty} x {product}"
                            + (f" on {parent}" if parent else " on the account")))
            return Outcome(True, history=history)
        numbers: list[str] = []
        requested = str(line.get("requested_number") or "")
        area = str(line.get("area_code") or "")
        if not area and requested in self.inventory:
            area = str(self.inventory[requested]["area_code"])
        for k in range(qty):
            number = requested if k == 0 and requested and self._free(requested, at) else None
            if k == 0 and requested and number is None:
                history.append(("requested_number_unavailable", at, requested))
            number = number or self._next_free(area, at)
            if number is None:
                for taken in numbers:  # give back what this line took
                    self.inventory[taken].update(status="available", service_id=None)
                    heapq.heappush(self.area_heap.setdefault(area, []), taken)
                return Outcome(False, "area_exhausted",
                               f"no free number left in area {area or '(none given)'} for {qty} line(s)",
                               history)
            self._assign(number, f"{base_id}-{k + 1}")
            numbers.append(number)
        for number in numbers:
            ok, detail = self._activation_test(number)
            history.append(("number_allocated", at, number))
            history.append(("activation_test_" + ("passed" if ok else "failed"), at, detail))
            if not ok:
                for taken in numbers:
                    self.inventory[taken].update(status="available", service_id=None)
                return Outcome(False, "activation_failed", detail, history)
        for k, number in enumerate(numbers, 1):
            self._open(f"{base_id}-{k}", line, number, features, at)
            self.lines_of_order.setdefault(str(line["order_id"]), []).append(f"{base_id}-{k}")
        history.append(("active", at, ", ".join(numbers)))
        return Outcome(True, history=history)

    def _open(self, service_id: str, line: dict[str, object], number: str | None, features: str,
              at: pd.Timestamp, period: int = 1, plan_id: str | None = None, parent: str = "") -> None:
        self.services.append({
            "service_id": service_id, "period": period, "account_id": line["account_id"],
            "order_id": line["order_id"], "line_no": line["line_no"], "product_id": line["product_id"],
            "plan_id": plan_id or line["plan_id"], "number": number, "features": features,
            "active_from": at, "active_to": None, "parent_service_id": parent})
        self.by_account.setdefault(str(line["account_id"]), []).append(len(self.services) - 1)
        if number:
            self.open_period[number] = len(self.services) - 1

    def _parent_line(self, line: dict[str, object]) -> str:
        """The line an add-on belongs to ('' for the account)."""
        named = self._current(line) if line.get("phone_number") else None
        if named is not None:
            return str(named["service_id"])
        same_order = self.lines_of_order.get(str(line["order_id"]), [])
        return same_order[0] if same_order else ""

    def _end_addons(self, ended: dict[str, object], at: pd.Timestamp) -> list[str]:
        """End the open add-ons of a line that just ended (and the account's own add-ons when
        it was the account's last open line); returns their service ids."""
        account = ended["account_id"]
        mine = [self.services[i] for i in self.by_account.get(str(account), [])]
        lines_left = any(s["active_to"] is None and s["product_id"] not in self.addons for s in mine)
        out = []
        for s in mine:
            if s["active_to"] is not None or s["product_id"] not in self.addons:
                continue
            mine_ended = s["parent_service_id"] == ended["service_id"]
            if mine_ended or (not s["parent_service_id"] and not lines_left):
                s["active_to"] = at
                out.append(str(s["service_id"]))
        return out

    def _has_active_service(self, account: str, at: pd.Timestamp) -> bool:
        periods = (self.services[i] for i in self.by_account.get(account, []))
        return any(s["active_from"] <= at and (s["active_to"] is None or at < s["active_to"])
                   for s in periods)

    def _current(self, line: dict[str, object]) -> dict[str, object] | None:
        number = str(line["phone_number"])
        idx = self.open_period.get(number)
        if idx is None:
            return None
        period = self.services[idx]
        at = line["effective_ts"]
        if period["account_id"] != line["account_id"] or period["active_from"] > at:  # type: ignore[operator]
            return None
        return period

    def _end_current(self, line: dict[str, object]) -> dict[str, object] | None:
        """Close the number's open period at the line's effective time (None: not active)."""
        period = self._current(line)
        if period is not None:
            period["active_to"] = line["effective_ts"]
        return period

    def _disconnect(self, line: dict[str, object]) -> Outcome:
        period = self._end_current(line)
        if period is None:
            return Outcome(False, "disconnect_not_active",
                           f"{line['phone_number']} has no active service on this account")
        at: pd.Timestamp = line["effective_ts"]  # type: ignore[assignment]
        number = str(line["phone_number"])
        del self.open_period[number]
        self._release(number, at)
        ended = self._end_addons(period, at)
        detail = f"{period['service_id']}; number in quarantine until {(at + QUARANTINE):%Y-%m-%d}"
        if ended:
            detail += f"; add-ons ended with it: {', '.join(ended)}"
        return Outcome(True, history=[("disconnected", at, detail)])

    def _change_plan(self, line: dict[str, object]) -> Outcome:
        period = self._end_current(line)
        if period is None:
            return Outcome(False, "change_plan_not_active",
                           f"{line['phone_number']} has no active service on this account")
        at: pd.Timestamp = line["effective_ts"]  # type: ignore[assignment]
        number = str(line["phone_number"])
        self._open(str(period["service_id"]), {**period, "order_id": line["order_id"],
                                               "line_no": line["line_no"]},
                   number, str(period["features"]), at, period=int(period["period"]) + 1,  # type: ignore[arg-type]
                   plan_id=str(line["plan_id"]))
        return Outcome(True, history=[("plan_changed", at, f"{period['plan_id']} -> {line['plan_id']}")])

    # --- results -------------------------------------------------------------------
    def services_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.services, columns=list(SERVICE_COLUMNS))
        for col in ("active_from", "active_to"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        frame["period"] = frame["period"].astype("int64")
        return frame.sort_values(["service_id", "period"]).reset_index(drop=True)

    def inventory_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(list(self.inventory.values()))
        frame["quarantine_until"] = pd.to_datetime(frame["quarantine_until"], utc=True)
        return frame.sort_values("number").reset_index(drop=True)
