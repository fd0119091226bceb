"""What a revenue-assurance control is: its scope, its result, and the findings behind it.

A control compares figures one way of counting gives with figures another way gives, for one
billing cycle, and lists every record that explains a difference (a finding: what kind of
leak, which record, whose, how much). The controls themselves live in `usage_controls`,
`billing_controls`, `collection_controls` and `rerating`; `stage` runs and stores them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import pandas as pd

from squak_pipelines.config import Settings
from squak_pipelines.invoicing.compose import Cycle
from squak_pipelines.warehouse import Warehouse

Phase = Literal["draft", "final"]  # before finalization (the gate) or after (the audit)
FINDING_COLUMNS = ["control", "kind", "record", "account_id", "currency", "amount", "detail"]


@dataclass(frozen=True)
class Scope:
    """One run of the controls: which cycle, as of which day, with which thresholds."""

    warehouse: Warehouse
    settings: Settings
    cycle: Cycle
    as_of: date
    thresholds: Mapping[str, Mapping[str, Any]]
    phase: Phase = "final"
    open_cycles: tuple[str, ...] = ()  # account cycles of the month not ended by `as_of`

    def limits(self, control: str) -> Mapping[str, Any]:
        return self.thresholds[control]

    def has(self, *tables: str) -> bool:
        return all(self.warehouse.table_exists(t) for t in tables)

    @property
    def params(self) -> dict[str, Any]:
        """Named SQL parameters every control may use."""
        return {
            "cycle": self.cycle.label,
            "first": self.cycle.first,
            "last": self.cycle.last,
            "as_of": self.as_of,
            "open_cycles": ",".join(self.open_cycles),
        }


@dataclass
class ControlResult:
    control: str
    number: int
    title: str
    critical: bool
    passed: bool
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)
    threshold: dict[str, Any] = field(default_factory=dict)
    findings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FINDING_COLUMNS))

    @property
    def leakage(self) -> dict[str, Decimal]:
        """Sum of the findings' amounts by currency (findings without an amount left out)."""
        out: dict[str, Decimal] = {}
        for currency, amount in zip(self.findings["currency"], self.findings["amount"], strict=True):
            if amount is not None and not pd.isna(amount) and currency:
                out[currency] = out.get(currency, Decimal(0)) + Decimal(amount)
        return out


@dataclass(frozen=True)
class Control:
    number: int
    name: str
    title: str
    run: Callable[[Scope], tuple[bool, str, dict[str, Any], pd.DataFrame]]
    phases: tuple[Phase, ...] = ("final",)

    def evaluate(self, scope: Scope) -> ControlResult:
        limits = dict(scope.limits(self.name))
        passed, summary, figures, found = self.run(scope)
        found = found.assign(control=self.name)[FINDING_COLUMNS] if len(found) else empty_findings()
        return ControlResult(
            self.name,
            self.number,
            self.title,
            bool(limits.get("critical")),
            passed,
            summary,
            figures,
            {k: v for k, v in limits.items() if k != "critical"},
            found,
        )


def empty_findings() -> pd.DataFrame:
    return pd.DataFrame(columns=FINDING_COLUMNS)


def findings(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Finding rows (missing keys are empty) as a frame; amounts stay Decimal."""
    frame = pd.DataFrame(list(rows), columns=FINDING_COLUMNS[1:])
    frame.insert(0, "control", "")
    return frame


def findings_frame(
    kind: str,
    record: pd.Series,
    *,
    account_id: Any = None,
    currency: Any = None,
    amount: Any = None,
    detail: Any = None,
) -> pd.DataFrame:
    """Findings built column-wise from a query's result (one per row; scalars repeat)."""
    frame = pd.DataFrame({"record": record.astype(str).to_numpy()})
    for name, value in (
        ("account_id", account_id),
        ("currency", currency),
        ("amount", amount),
        ("detail", detail),
    ):
        frame[name] = value.to_numpy() if isinstance(value, pd.Series) else value
    frame.insert(0, "kind", kind)
    frame.insert(0, "control", "")
    return frame[FINDING_COLUMNS]


def combine(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Several finding frames as one (empty when all are)."""
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else empty_findings()


def money(value: Any) -> Decimal:
    """A SQL amount (Decimal, string or None) as a Decimal; never a float."""
    if value is None or (not isinstance(value, str | Decimal | int) and pd.isna(value)):
        return Decimal(0)
    if isinstance(value, float):
        raise TypeError(f"binary float {value!r} where an amount was expected")
    return Decimal(value) if not isinstance(value, Decimal) else value


def amounts_text(amounts: Mapping[str, Decimal]) -> str:
    return ", ".join(f"{c} {a:,.2f}" for c, a in sorted(amounts.items())) or "0"
