"""Plotly figures for finance, built from the dbt marts of a cycle (plain functions of frames).

Each figure answers one question: how revenue moved, what it is made of, when customers
call, where they call, whether revenue assurance passed, and what is still owed.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
    "height": 420,
    "font": {"family": "DejaVu Sans, Arial, sans-serif", "size": 12},
}


def _styled(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01}, **LAYOUT)
    return fig


def _numeric(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Decimal columns as floats for plotting only (figures never feed back into money)."""
    return frame.assign(**{c: pd.to_numeric(frame[c].astype(str), errors="coerce") for c in columns})


def _currency_colours(currencies) -> dict[str, str]:
    palette = px.colors.qualitative.D3
    return {c: palette[i % len(palette)] for i, c in enumerate(sorted(set(currencies)))}


def revenue_trend(daily_usage: pd.DataFrame, monthly: pd.DataFrame) -> go.Figure:
    """Rated usage revenue per day and currency, beside invoiced revenue per cycle."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.65, 0.35],
        horizontal_spacing=0.1,
        subplot_titles=("Rated usage per day", "Invoiced before tax per cycle"),
    )
    daily = _numeric(daily_usage, "rated_amount").sort_values("start_day")
    months = _numeric(monthly, "revenue").sort_values("cycle")
    colours = _currency_colours(list(daily["currency"]) + list(months["currency"]))
    for currency, group in daily.groupby("currency"):
        fig.add_trace(
            go.Scatter(
                x=group["start_day"],
                y=group["rated_amount"],
                mode="lines+markers",
                name=currency,
                legendgroup=currency,
                line={"color": colours[currency]},
            ),
            row=1,
            col=1,
        )
    for currency, group in months.groupby("currency"):
        fig.add_trace(
            go.Bar(
                x=group["cycle"],
                y=group["revenue"],
                name=currency,
                legendgroup=currency,
                showlegend=currency not in set(daily["currency"]),
                marker={"color": colours[currency]},
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(type="category", row=1, col=2)
    fig.update_layout(barmode="group", legend={"title": "currency"})
    return _styled(fig, "Revenue trend")


def revenue_mix(revenue: pd.DataFrame) -> go.Figure:
    """Share of each currency's revenue before tax by line kind and by product."""
    from plotly.subplots import make_subplots

    frame = _numeric(revenue, "revenue")
    frame = frame.assign(product_id=frame["product_id"].replace("none", "not product-specific"))
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=("by line kind", "by product")
    )
    palette = px.colors.qualitative.Safe + px.colors.qualitative.Pastel
    for col, dimension in ((1, "line_kind"), (2, "product_id")):
        mix = frame.groupby(["currency", dimension], as_index=False)["revenue"].sum()
        base = mix.groupby("currency")["revenue"].transform(lambda s: s[s > 0].sum())
        mix = mix.assign(share=mix["revenue"] / base)
        for i, (value, group) in enumerate(mix.groupby(dimension)):
            fig.add_trace(
                go.Bar(
                    x=group["currency"],
                    y=group["share"],
                    name=str(value),
                    legendgroup=dimension,
                    legendgrouptitle_text=dimension.replace("_id", ""),
                    marker={"color": palette[(i + 7 * (col - 1)) % len(palette)]},
                    customdata=group["revenue"],
                    hovertemplate="%{x} %{y:.1%} (%{customdata:,.2f})",
                ),
                row=1,
                col=col,
            )
    fig.update_layout(barmode="relative", legend={"groupclick": "toggleitem"})
    fig.update_yaxes(tickformat=".0%")
    return _styled(fig, "Revenue mix (share of revenue before tax)")


def usage_heatmap(hourly: pd.DataFrame) -> go.Figure:
    """Voice minutes by ISO weekday and UTC hour over the cycle."""
    frame = _numeric(hourly, "voice_minutes")
    grid = (
        frame.groupby(["start_isodow", "start_hour"])["voice_minutes"]
        .sum()
        .unstack(fill_value=0)
        .reindex(index=range(1, 8), columns=range(24), fill_value=0)
    )
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[f"{h:02d}" for h in range(24)],
            y=list(WEEKDAYS),
            colorscale="Blues",
            colorbar={"title": "minutes"},
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="hour (UTC)")
    return _styled(fig, "Voice minutes by weekday and hour")


def top_destinations(destinations: pd.DataFrame, top: int = 8) -> go.Figure:
    """The top destinations by usage revenue, one panel per currency, with the usage margin
    (usage revenue minus wholesale cost; minutes inside bundles cost but earn through the
    recurring fee, so a bundled destination can show a negative usage margin)."""
    from plotly.subplots import make_subplots

    frame = _numeric(destinations, "revenue", "margin")
    frame = frame[frame["revenue_rank"] <= top]
    currencies = sorted(set(frame["currency"])) or ["-"]
    cols = 2 if len(currencies) > 1 else 1
    rows = -(-len(currencies) // cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=currencies, horizontal_spacing=0.3, vertical_spacing=0.12
    )
    for i, currency in enumerate(currencies):
        group = frame[frame["currency"] == currency].sort_values("revenue")
        row, col = i // cols + 1, i % cols + 1
        fig.add_trace(
            go.Bar(
                x=group["revenue"],
                y=group["destination"],
                orientation="h",
                name="usage revenue",
                marker={"color": "#4c78a8"},
                showlegend=i == 0,
            ),
            row=row,
            col=col,
        )
        if group["margin"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=group["margin"],
                    y=group["destination"],
                    mode="markers",
                    name="usage margin",
                    marker={"symbol": "diamond", "color": "#e45756", "size": 8},
                    showlegend=i == 0,
                ),
                row=row,
                col=col,
            )
    fig.update_layout(legend={"orientation": "h", "y": 1.1, "x": 1, "xanchor": "right"})
    fig.add_annotation(
        text="usage margin = usage revenue − wholesale cost; minutes inside bundles cost the "
        "carrier but are paid for by the recurring fee",
        xref="paper",
        yref="paper",
        x=0,
        y=-0.1,
        showarrow=False,
        font={"size": 11, "color": "#5b6b7b"},
        xanchor="left",
    )
    return _styled(fig, f"Top {top} destinations by usage revenue").update_layout(
        height=max(420, rows * (24 * top + 90))
    )


def control_status(controls: pd.DataFrame) -> go.Figure:
    """The cycle's revenue-assurance controls as a colour-coded table."""
    verdict = [
        "pass" if p else ("FAIL" if c else "attention")
        for p, c in zip(controls["passed"], controls["critical"], strict=True)
    ]
    colours = ["#d8f0dd" if v == "pass" else ("#f8d0d0" if v == "FAIL" else "#fbe9c6") for v in verdict]
    fig = go.Figure(
        go.Table(
            columnwidth=[30, 190, 70, 80, 520],
            header={
                "values": ["#", "control", "critical", "result", "figures"],
                "fill_color": "#2f3e4e",
                "font": {"color": "white"},
                "align": "left",
            },
            cells={
                "values": [
                    controls["control_number"],
                    controls["title"],
                    ["yes" if c else "no" for c in controls["critical"]],
                    verdict,
                    controls["summary"],
                ],
                "fill_color": [colours] * 5,
                "align": "left",
                "height": 26,
            },
        )
    )
    return _styled(fig, "Revenue-assurance controls").update_layout(height=120 + 30 * len(controls))


def aging(receivables: pd.DataFrame) -> go.Figure:
    """Open receivables per currency by aging bucket."""
    frame = _numeric(receivables, "open_amount")
    fig = px.bar(
        frame,
        x="currency",
        y="open_amount",
        color="bucket",
        category_orders={"bucket": list(BUCKETS)},
        labels={"open_amount": "open amount"},
    )
    return _styled(fig, "Receivables aging")


def cycle_figures(marts: Mapping[str, pd.DataFrame], cycle: str) -> dict[str, go.Figure]:
    """Every figure of the finance report for one cycle, by name."""
    hourly = marts["usage_daily_hourly"]
    in_cycle = hourly[pd.to_datetime(hourly["start_day"]).dt.strftime("%Y-%m") == cycle]
    daily = in_cycle.groupby(["start_day", "currency"], as_index=False)["rated_amount"].sum()
    revenue = marts["revenue_monthly"]
    monthly = revenue.groupby(["cycle", "currency"], as_index=False)["revenue"].sum()
    return {
        "revenue_trend": revenue_trend(daily, monthly),
        "revenue_mix": revenue_mix(revenue[revenue["cycle"] == cycle]),
        "usage_heatmap": usage_heatmap(in_cycle),
        "top_destinations": top_destinations(marts["top_destinations"].query("cycle == @cycle")),
        "ra_controls": control_status(
            marts["ra_control_status"].query("cycle == @cycle").sort_values("control_number")
        ),
        "aging": aging(marts["receivables_aging"]),
    }
