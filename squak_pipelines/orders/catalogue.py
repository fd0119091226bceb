"""What can be ordered: products (reference/products.csv) and plan ids (reference/plans)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from squak_pipelines.reference.files import load_products


def iso_countries() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes, from the IANA tz database's iso3166.tab (tzdata package)."""
    text = resources.files("tzdata").joinpath("zoneinfo", "iso3166.tab").read_text(encoding="utf-8")
    return frozenset(line.split("\t", 1)[0] for line in text.splitlines()
                     if line and not line.startswith("#"))


@dataclass(frozen=True)
class Catalogue:
    products: pd.DataFrame  # product_id, kind, features, min_quantity, max_quantity, plans
    plan_ids: frozenset[str]

    @classmethod
    def load(cls, reference_dir: Path) -> Catalogue:
        products = load_products(reference_dir / "products.csv").to_pandas()
        plan_ids = set()
        for path in sorted((reference_dir / "plans").glob("*.yaml")):
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            plan_ids.add(str(doc.get("plan_id") or path.stem))
        return cls(products=products, plan_ids=frozenset(plan_ids))

    def needs_number(self, product_id: str) -> bool:
        kinds = dict(zip(self.products["product_id"], self.products["kind"], strict=True))
        return kinds.get(product_id) != "addon"
