"""Run the revenue-assurance controls of a billing cycle and keep their results.

Results go to `assurance.control_results` (one row per control and cycle),
`assurance.findings` (the leakage report: every discrepancy with its amount and record) and
`assurance.expected_revenue` (control 7's table); the leakage report is also written as
`invoices/<cycle>/leakage-<cycle>.csv` for finance. A re-run replaces the cycle's rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from squak_pipelines import clock
from squak_pipelines.assurance.billing_controls import (
    duplicate_billing,
    invoiced_vs_expected,
    orders_vs_billing,
)
from squak_pipelines.assurance.calendar_controls import billing_calendar
from squak_pipelines.assurance.collection_controls import invoiced_vs_collected
from squak_pipelines.assurance.controls import (
    FINDING_COLUMNS,
    Control,
    ControlResult,
    Phase,
    Scope,
    combine,
)
from squak_pipelines.assurance.rerating import rerating
from squak_pipelines.assurance.tables import SCHEMAS as TABLES
from squak_pipelines.assurance.thresholds import load_thresholds
from squak_pipelines.assurance.usage_controls import suspense_aging, usage_completeness, zero_rated
from squak_pipelines.config import Settings
from squak_pipelines.csv_export import escape_table
from squak_pipelines.invoicing.compose import Cycle
from squak_pipelines.invoicing.stage import account_cycles
from squak_pipelines.migrations import migrate
from squak_pipelines.money import money_array
from squak_pipelines.warehouse import Warehouse

CONTROLS: tuple[Control, ...] = (
    Control(1, "usage_completeness", "Usage completeness", usage_completeness, ("draft", "final")),
    Control(2, "suspense_aging", "Suspense and reject aging", suspense_aging),
    Control(3, "duplicate_billing", "Duplicate billing", duplicate_billing),
    Control(4, "zero_rated", "Zero-rated audit", zero_rated),
    Control(5, "rerating", "Independent re-rating", rerating, ("draft", "final")),
    Control(6, "orders_vs_billing", "Orders vs billing", orders_vs_billing),
    Control(7, "invoiced_vs_expected", "Invoiced vs expected revenue", invoiced_vs_expected),
    Control(8, "invoiced_vs_collected", "Invoiced vs collected", invoiced_vs_collected),
    Control(9, "billing_calendar", "Billing calendar", billing_calendar),
)
MICRO = Decimal("0.000001")


@dataclass
class AssuranceReport:
    cycle: str
    as_of: date
    results: list[ControlResult] = field(default_factory=list)
    leakage_report: Path | None = None

    @property
    def critical_failures(self) -> list[ControlResult]:
        return [r for r in self.results if r.critical and not r.passed]


def ensure_tables(warehouse: Warehouse) -> None:
    """The warehouse's tables, created or upgraded by the numbered migrations."""
    migrate(warehouse)


def run_controls(
    warehouse: Warehouse,
    settings: Settings,
    label: str,
    as_of: date | None = None,
    phase: Phase = "final",
    names: tuple[str, ...] | None = None,
) -> list[ControlResult]:
    """Evaluate the controls that apply to the phase (all of them after finalization)."""
    as_of = as_of or clock.today()
    cycles = account_cycles(warehouse, label, as_of, False)
    billed = set(warehouse.query_arrow(
        "select distinct cycle from invoicing.invoices where substr(cycle, 1, 7) = :c", {"c": label}
    )["cycle"].to_pylist()) if warehouse.table_exists("invoicing.invoices") else set()
    still_open = sorted({c.label for items in cycles.values() for c in items if c.last >= as_of} - billed)
    scope = Scope(
        warehouse,
        settings,
        Cycle.parse(label),
        as_of,
        load_thresholds(settings.reference_dir),
        phase,
        tuple(still_open),
    )
    return [c.evaluate(scope) for c in CONTROLS if phase in c.phases and (names is None or c.name in names)]


def critical_controls_before_finalization(
    warehouse: Warehouse, settings: Settings, label: str
) -> list[ControlResult]:
    """The critical controls that can judge a cycle before its invoices exist (only those
    are evaluated: the others warn after finalization and would be thrown away here)."""
    thresholds = load_thresholds(settings.reference_dir)
    critical = tuple(name for name, values in thresholds.items() if values.get("critical"))
    return [r for r in run_controls(warehouse, settings, label, phase="draft", names=critical) if r.critical]


def run_assurance(
    warehouse: Warehouse, settings: Settings, label: str, as_of: date | None = None
) -> AssuranceReport:
    """All controls of a finalized cycle, stored, with the leakage report written."""
    report = AssuranceReport(label, as_of or clock.today())
    with warehouse.session():
        ensure_tables(warehouse)
        report.results = run_controls(warehouse, settings, label, report.as_of)
        _store(warehouse, label, report)
    report.leakage_report = write_leakage_report(settings, label, report.results)
    return report


def _store(warehouse: Warehouse, label: str, report: AssuranceReport) -> None:
    now = clock.now()
    results = report.results
    rows = pa.Table.from_pylist(
        [
            {
                "cycle": label,
                "number": r.number,
                "control": r.control,
                "title": r.title,
                "critical": r.critical,
                "passed": r.passed,
                "summary": r.summary,
                "findings": len(r.findings),
                "figures": json.dumps({k: v for k, v in r.figures.items() if k != "by_plan"}, default=str),
                "threshold": json.dumps(r.threshold, default=str),
                "as_of": report.as_of,
                "run_at": now,
            }
            for r in results
        ],
        schema=TABLES["assurance.control_results"],
    )
    finding_table = findings_table(label, results)
    by_plan = next((r.figures.get("by_plan", []) for r in results if r.control == "invoiced_vs_expected"), [])
    expected = pa.table(
        {
            "cycle": [label] * len(by_plan),
            "plan_id": [x["plan_id"] for x in by_plan],
            "currency": [x["currency"] for x in by_plan],
            "line_type": [x["line_type"] for x in by_plan],
            **{k: money_array(x[k] for x in by_plan) for k in ("expected", "invoiced", "difference")},
            "explanation": [x["explanation"] for x in by_plan],
        },
        schema=TABLES["assurance.expected_revenue"],
    )
    with warehouse.transaction():
        for name, table in (
            ("assurance.control_results", rows),
            ("assurance.findings", finding_table),
            ("assurance.expected_revenue", expected),
        ):
            warehouse.execute(f"delete from {name} where cycle = :cycle", {"cycle": label})
            warehouse.load(name, table, mode="append")


def findings_table(label: str, results: list[ControlResult]) -> pa.Table:
    """Every finding of the cycle's controls, in control order, as `assurance.findings` rows."""
    frame = combine(r.findings for r in results)
    text = {
        c: pa.array([None if v is None or pd.isna(v) else str(v) for v in frame[c]], pa.string())
        for c in FINDING_COLUMNS
        if c != "amount"
    }
    amounts = [None if v is None or pd.isna(v) else Decimal(v).quantize(MICRO) for v in frame["amount"]]
    return pa.table(
        {"cycle": pa.array([label] * len(frame), pa.string()), **text, "amount": money_array(amounts)},
        schema=TABLES["assurance.findings"],
    )


def write_leakage_report(settings: Settings, label: str, results: list[ControlResult]) -> Path:
    """`invoices/<cycle>/leakage-<cycle>.csv`: one row per finding (amounts as decimal strings,
    an empty cell where a finding has no amount)."""
    path = settings.data_dir / "invoices" / label / f"leakage-{label}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = findings_table(label, results)
    numbers = {r.control: r.number for r in results}
    table = table.add_column(
        1, "control_number", pa.array([numbers[c] for c in table["control"].to_pylist()], pa.int64())
    )
    pacsv.write_csv(
        escape_table(table.select(["cycle", "control_number", *FINDING_COLUMNS])),
        path,
        pacsv.WriteOptions(quoting_style="needed"),
    )
    return path


def stored_results(warehouse: Warehouse, label: str):
    """The stored control results of a cycle (empty before the first run)."""
    if not warehouse.table_exists("assurance.control_results"):
        return []
    return warehouse.query_arrow(
        "select * from assurance.control_results where cycle = :cycle order by number", {"cycle": label}
    ).to_pylist()
