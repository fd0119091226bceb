"""Content versions of the operator's rule files: rate plans, rate decks, the tax table and
the fraud rules. Dagster observes them as source assets (a changed file is a new data version
upstream of what it prices or screens)."""

from __future__ import annotations

import hashlib
from pathlib import Path

RULE_FILES: dict[str, tuple[tuple[str, ...], str]] = {
    "rate_plans": (("plans/*.yaml", "plans/*.yml"),
                   "Rate plans (`reference/plans/*.yaml`): currency, time zone, rounding, bands, "
                   "allowances, discounts and fees."),
    "rate_decks": (("decks/*.csv",),
                   "Rate decks (`reference/decks/*.csv`): prefix, destination, rate, connect fee, "
                   "increment, time band and effective date."),
    "tax_table": (("tax_rates.csv",),
                  "The tax table (`reference/tax_rates.csv`), landed as `raw.tax_rates`."),
    "fraud_rules": (("fraud_rules.yaml",),
                    "Fraud screening rules and the quarantine limit (`reference/fraud_rules.yaml`)."),
}


def rule_files(reference_dir: Path, name: str) -> list[Path]:
    """The files of one kind of rules, in name order."""
    patterns, _ = RULE_FILES[name]
    return sorted({p for pattern in patterns for p in reference_dir.glob(pattern) if p.is_file()})


def rules_version(reference_dir: Path, name: str) -> tuple[str, list[str]]:
    """A version of the files' names and contents (16 hex digits), and their names."""
    digest = hashlib.sha256()
    files = rule_files(reference_dir, name)
    for path in files:
        relative = path.relative_to(reference_dir).as_posix()
        digest.update(relative.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16], [p.relative_to(reference_dir).as_posix() for p in files]
