"""Warehouse tables of the operator's reference files (schema `raw`): declared once, here."""

from __future__ import annotations

import pyarrow as pa

from squak_pipelines.schema import DATE, MONEY, TEXT, schemas, table

TABLES = (
    table("raw.products", "Product catalogue (reference/products.csv).", [
        ("product_id", TEXT), ("name", TEXT), ("kind", TEXT), ("features", TEXT),
        ("min_quantity", pa.int32()), ("max_quantity", pa.int32()), ("plans", TEXT)],
          unique=["product_id"], rewritten=True),
    table("raw.tax_rates", "Tax rates by jurisdiction and date (reference/tax_rates.csv).", [
        ("tax_id", TEXT), ("name", TEXT), ("country", TEXT), ("state", TEXT), ("applies_to", TEXT),
        ("kind", TEXT), ("currency", TEXT), ("rate_percent", pa.decimal128(9, 4)), ("amount", MONEY),
        ("effective_from", DATE), ("vat", pa.bool_()), ("reverse_charge", pa.bool_())],
          unique=["tax_id"], rewritten=True),
    table("raw.switches", "The operator's switches: CDR format, time zone, country, drop folder and "
          "layout file (custom CDR templates).", [
        ("switch_id", TEXT), ("format", TEXT), ("timezone", TEXT), ("country", TEXT), ("folder", TEXT),
        ("layout", TEXT)],
          unique=["switch_id"], rewritten=True),
    table("raw.cost_rates", "Wholesale cost decks by carrier and prefix (reference/cost_rates.csv).", [
        ("carrier", TEXT), ("prefix", TEXT), ("destination", TEXT), ("service", TEXT), ("currency", TEXT),
        ("rate", MONEY), ("effective_from", DATE)]),
)
SCHEMAS: dict[str, pa.Schema] = schemas(TABLES)
