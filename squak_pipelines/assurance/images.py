"""Figures as PNG images (Kaleido drives a headless Chromium), for the Dagster UI, which shows
images embedded in Markdown metadata."""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from pathlib import Path

import plotly.graph_objects as go

log = logging.getLogger(__name__)


def images_wanted() -> bool:
    """Dashboard images are on unless SQUAK_DASHBOARD_IMAGES is off (a server without Chromium,
    or where the Dagster UI is not used; the finance report's figures do not need them)."""
    return os.environ.get("SQUAK_DASHBOARD_IMAGES", "on").lower() not in ("off", "0", "false", "no")


def figure_pngs(figures: dict[str, go.Figure], width: int = 900) -> dict[str, bytes]:
    """Every figure as PNG bytes, rendered in one browser session; empty (with a warning) where
    no Chromium is installed, so the report still gets written."""
    import plotly.io as pio

    if not images_wanted():
        return {}

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"{name}.png" for name in figures]
        try:
            pio.write_images(list(figures.values()), paths, format="png", width=width)
        except Exception as exc:  # no Chromium, or Kaleido missing: images are an extra
            log.warning("figures not rendered as images (%s); install chromium for them", exc)
            return {}
        return {name: path.read_bytes() for name, path in zip(figures, paths, strict=True)}


def markdown_image(png: bytes, title: str) -> str:
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
