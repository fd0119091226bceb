"""What a tariff what-if reports: CSVs and a plotly figure in a folder, its rows in
`rating.what_if` (for the dbt mart `what_if_impact`), and a short text summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from squak_pipelines import clock
from squak_pipelines.config import Settings
from squak_pipelines.csv_export import write_csv
from squak_pipelines.migrations import migrate
from squak_pipelines.money import money_array
from squak_pipelines.rating.tables import SCHEMAS
from squak_pipelines.rating.what_if import Proposal, WhatIf, what_if
from squak_pipelines.warehouse import Warehouse

RESULTS = "rating.what_if"
SHOWN = ("events", "changed", "revenue_before", "revenue_after", "revenue_delta", "margin_before",
         "margin_after")


@dataclass(frozen=True)
class Scenario:
    result: WhatIf
    name: str
    folder: Path
    files: list[Path]
    rows: int  # written to rating.what_if


def scenario_name(proposal: Proposal) -> str:
    """A proposal's default name: its files' names."""
    return "+".join([Path(p).stem for p in proposal.plans] + sorted(proposal.decks))


def run_scenario(warehouse: Warehouse, settings: Settings, cycle: str, proposal: Proposal,
                 name: str = "", out: Path | None = None, events_csv: bool = False) -> Scenario:
    """The what-if of `proposal` on `cycle`, its report files (default folder
    `<data dir>/what-if/<cycle>-<name>`) and its rows in `rating.what_if`."""
    name = name or scenario_name(proposal)
    result = what_if(warehouse, settings.reference_dir, cycle, proposal)
    folder = out or settings.data_dir / "what-if" / f"{cycle}-{name}"
    files = write_report(result, folder, events_csv=events_csv)
    return Scenario(result, name, folder, files, store(warehouse, result, name))


def store(warehouse: Warehouse, result: WhatIf, scenario: str) -> int:
    """Replace the scenario's rows in `rating.what_if`; returns the rows written."""
    migrate(warehouse)
    rows = result.by("account_id", "plan_id", "destination")
    now: datetime = clock.now()
    table = pa.table({
        "scenario": [scenario] * len(rows), "cycle": [result.cycle] * len(rows),
        "created_at": pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")),
        "currency": rows["currency"], "account_id": rows["account_id"], "plan_id": rows["plan_id"],
        "destination": rows["destination"], "events": rows["events"], "changed": rows["changed"],
        "unpriced_before": rows["unpriced_before"], "unpriced_after": rows["unpriced_after"],
        "revenue_before": money_array(rows["revenue_before"]),
        "revenue_after": money_array(rows["revenue_after"]),
        "cost": money_array(rows["cost"]),
    }, schema=SCHEMAS[RESULTS])
    with warehouse.transaction():
        warehouse.execute(f"delete from {RESULTS} where scenario = :s", {"s": scenario})
        if table.num_rows:
            warehouse.load(RESULTS, table, mode="append")
    return table.num_rows


def write_report(result: WhatIf, folder: Path, events_csv: bool = False) -> list[Path]:
    """by_plan.csv, by_destination.csv, by_account.csv, most_affected.csv, allowances.csv and
    impact.html (plotly, self-contained); with `events_csv`, every event's before and after."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"by_plan": result.by("plan_id"), "by_destination": result.by("destination"),
              "by_account": result.by("account_id", "plan_id"), "most_affected": result.most_affected(),
              "allowances": result.allowances()}
    written = []
    for name, frame in tables.items():
        path = folder / f"{name}.csv"
        write_csv(pa.Table.from_pandas(frame.astype(str), preserve_index=False), path)
        written.append(path)
    figure = folder / "impact.html"
    figure.write_text(_figure(result, tables["by_plan"], tables["by_destination"]), encoding="utf-8")
    written.append(figure)
    if events_csv:
        path = folder / "events.csv"
        write_csv(result.events, path)
        written.append(path)
    return written


def _figure(result: WhatIf, by_plan: pd.DataFrame, by_destination: pd.DataFrame) -> str:
    """Revenue delta by plan and by the destinations that move most, per currency."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    top = by_destination.assign(size=by_destination["revenue_delta"].map(abs)) \
        .sort_values("size", ascending=False).head(15)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Revenue delta by plan",
                                                           "Destinations that move most"))
    for currency, part in by_plan.groupby("currency"):
        figure.add_trace(go.Bar(x=part["plan_id"], y=[float(v) for v in part["revenue_delta"]],
                                name=f"plans ({currency})"), row=1, col=1)
    for currency, part in top.groupby("currency"):
        figure.add_trace(go.Bar(x=part["destination"], y=[float(v) for v in part["revenue_delta"]],
                                name=f"destinations ({currency})"), row=1, col=2)
    figure.update_layout(title=f"Tariff what-if, cycle {result.cycle}", barmode="group")
    return figure.to_html(include_plotlyjs=True, full_html=True)


def summary(result: WhatIf, count: int = 10) -> str:
    """Totals per currency, every plan, the most affected accounts and allowance effects."""
    out = [f"what-if on cycle {result.cycle}: {result.events.num_rows:,} events re-priced in "
           f"{result.seconds:.1f} s"]
    out += _block("per currency", result.by(), ("currency",))
    out += _block("by plan", result.by("plan_id"), ("currency", "plan_id"))
    out += _block(f"{count} most affected accounts", result.most_affected(count),
                  ("currency", "account_id", "plan_id"))
    allowances = result.allowances()
    if len(allowances):
        out.append("allowance units used (seconds or messages)")
        out += ["  " + "  ".join(str(v) for v in row) for row in
                allowances[["plan_id", "allowance", "used_before", "used_after", "delta"]]
                .itertuples(index=False)]
    return "\n".join(out)


def _block(title: str, frame: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    columns = [*keys, *SHOWN]
    text = frame[columns].astype(str).to_string(index=False)
    return [title, *("  " + line for line in text.splitlines())]
