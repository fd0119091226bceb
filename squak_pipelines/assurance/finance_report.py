"""The finance report of a cycle: one self-contained HTML file (plotly.js inline, no network)
written next to the invoices as `invoices/<cycle>/finance-report-<cycle>.html`.

Everything in it comes from the dbt marts; the template autoescapes, and figure data enters
the page as JSON with `<`, `>` and `&` escaped, so text from reference files cannot break out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import jinja2
import pandas as pd
import plotly.graph_objects as go

from squak_pipelines.config import Settings
from squak_pipelines.invoicing.render import operator_of
from squak_pipelines.money import round_to_currency
from squak_pipelines.warehouse import Warehouse

MARTS = (
    "revenue_monthly",
    "usage_daily_hourly",
    "top_destinations",
    "ra_control_status",
    "ra_leakage",
    "receivables_aging",
    "collections_by_cycle",
    "arpu_mou_monthly",
    "tax_report",
)
LEAKAGE_ROWS = 200  # findings shown in the page; the CSV and the mart hold all of them


@dataclass
class FinanceReport:
    cycle: str
    path: Path
    figures: dict[str, go.Figure] = field(default_factory=dict)
    kpis: list[dict[str, str]] = field(default_factory=list)


def load_marts(warehouse: Warehouse) -> dict[str, pd.DataFrame]:
    return {name: warehouse.query_df(f"select * from marts.{name}") for name in MARTS}


def report_cycles(marts: Mapping[str, pd.DataFrame]) -> list[str]:
    """Cycles with invoiced revenue or control results."""
    return sorted(set(marts["revenue_monthly"]["cycle"]) | set(marts["ra_control_status"]["cycle"]))


def _money(amount, currency: str) -> str:
    if amount is None or pd.isna(amount):
        return ""
    return f"{round_to_currency(Decimal(str(amount)), currency):,}"


def _script_json(fig: go.Figure) -> str:
    """Figure JSON safe inside a <script> element."""
    return fig.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def kpis(marts: Mapping[str, pd.DataFrame], cycle: str) -> list[dict[str, str]]:
    """Headline figures: revenue, collection rate and ARPU per currency; controls passed."""
    revenue = marts["revenue_monthly"].query("cycle == @cycle")
    collections = marts["collections_by_cycle"].query("cycle == @cycle").set_index("currency")
    arpu = marts["arpu_mou_monthly"].query("cycle == @cycle")
    out = []
    for currency, group in revenue.groupby("currency"):
        total = sum((Decimal(str(v)) for v in group["revenue"]), Decimal(0))
        row = collections.loc[currency] if currency in collections.index else None
        rate = (
            "" if row is None or pd.isna(row["collection_rate"]) else f"{float(row['collection_rate']):.0%}"
        )
        accounts = int(arpu.query("currency == @currency")["accounts"].sum())
        out.append(
            {
                "label": f"Revenue before tax ({currency})",
                "value": _money(total, currency),
                "sub": f"{accounts} invoiced accounts, ARPU {_money(total / accounts, currency)}; "
                f"collected {rate}"
                if accounts
                else f"collected {rate}",
            }
        )
    controls = marts["ra_control_status"].query("cycle == @cycle")
    if len(controls):
        passed = int(controls["passed"].sum())
        out.append(
            {
                "label": "Revenue-assurance controls",
                "value": f"{passed} of {len(controls)} passed",
                "sub": ", ".join(controls.loc[~controls["passed"].astype(bool), "control"]) or "no findings",
            }
        )
    return out


def _controls(marts: Mapping[str, pd.DataFrame], cycle: str) -> list[dict]:
    rows = marts["ra_control_status"].query("cycle == @cycle").sort_values("control_number")
    out = []
    for r in rows.to_dict("records"):
        verdict = "pass" if r["passed"] else ("FAIL" if r["critical"] else "attention")
        out.append(
            {**r, "verdict": verdict, "css": {"pass": "pass", "FAIL": "fail"}.get(verdict, "attention")}
        )
    return out


def _cell(value, currency: str | None):
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return _money(value, currency) if currency else value


def _table(frame: pd.DataFrame, money_columns: tuple[str, ...]) -> list[dict]:
    """Rows for the template: amounts in the currency's minor unit, empty cells for nulls."""
    rows = []
    for r in frame.to_dict("records"):
        currency = r["currency"] if isinstance(r["currency"], str) else ""
        rows.append({k: _cell(v, currency if k in money_columns else None) for k, v in r.items()})
    return rows


def render(
    settings: Settings,
    warehouse_kind: str,
    marts: Mapping[str, pd.DataFrame],
    cycle: str,
    figures: dict[str, go.Figure],
) -> str:
    import plotly.offline

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("squak_pipelines.assurance", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    collections = marts["collections_by_cycle"].sort_values(["cycle", "currency"])
    collections = collections.assign(
        rate=[("" if pd.isna(x) else f"{float(x):.1%}") for x in collections["collection_rate"]]
    )
    leakage = marts["ra_leakage"].query("cycle == @cycle").sort_values(["control_number", "kind", "record"])
    controls = marts["ra_control_status"].query("cycle == @cycle")
    return env.get_template("finance_report.html.j2").render(
        cycle=cycle,
        operator=operator_of(settings.reference_dir).legal_name,
        warehouse=warehouse_kind,
        as_of=str(controls["as_of"].max()) if len(controls) else "",
        plotly_js=plotly.offline.get_plotlyjs(),
        kpis=kpis(marts, cycle),
        controls=_controls(marts, cycle),
        figures=[
            {"id": f"figure-{name}", "json": _script_json(fig)}
            for name, fig in figures.items()
            if name != "ra_controls"
        ],
        collections=_table(collections, ("invoiced", "collected", "open_amount")),
        arpu=_table(
            marts["arpu_mou_monthly"].query("cycle == @cycle").sort_values(["currency", "segment"]), ("arpu",)
        ),
        taxes=_table(
            marts["tax_report"].query("cycle == @cycle").sort_values(["currency", "jurisdiction", "tax_id"]),
            ("taxable_base", "tax_invoiced", "tax_credited", "tax_net"),
        ),
        leakage=_table(leakage.head(LEAKAGE_ROWS), ("amount",)),
        leakage_total=len(leakage),
        leakage_file=str(settings.data_dir / "invoices" / cycle / f"leakage-{cycle}.csv"),
    )


def write_finance_report(
    settings: Settings, warehouse_kind: str, marts: Mapping[str, pd.DataFrame], cycle: str
) -> FinanceReport:
    from squak_pipelines.assurance.figures import cycle_figures

    figures = cycle_figures(marts, cycle)
    path = settings.data_dir / "invoices" / cycle / f"finance-report-{cycle}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(settings, warehouse_kind, marts, cycle, figures), encoding="utf-8")
    return FinanceReport(cycle, path, figures, kpis(marts, cycle))
