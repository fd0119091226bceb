"""Thresholds of the revenue-assurance controls: defaults here, overrides in
`reference/assurance.yaml` (only the keys an operator wants to change).

`critical: true` makes a control block invoice finalization; the others warn.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, dict[str, Any]] = {
    "usage_completeness": {"critical": True, "max_unexplained_records": 0},
    "suspense_aging": {"critical": False, "bucket_edges_days": [7, 30, 60], "max_oldest_days": 60},
    "duplicate_billing": {"critical": True, "max_duplicates": 0},
    "zero_rated": {
        "critical": False,
        "max_unexplained_share": 0.0,
        # Zero price is expected for these: free calls, calls to the operator's own numbers,
        # calls inside an allowance, calls wholly discounted, emergency calls.
        "free_prefixes": [
            "1800",
            "1833",
            "1844",
            "1855",
            "1866",
            "1877",
            "1888",
            "44800",
            "44808",
            "49800",
            "33800",
            "52800",
        ],
        "free_call_types": ["emergency", "internal", "tollfree", "onnet"],
        "on_net": True,
        "allowance": True,
    },
    "rerating": {
        "critical": True,
        "sample_share": 0.1,
        "min_accounts": 5,
        "max_events": 20_000,
        "max_mismatches": 0,
    },
    "orders_vs_billing": {"critical": True, "max_missing_charges": 0, "max_charges_for_inactive": 0},
    "invoiced_vs_expected": {"critical": False, "max_unexplained_minor_units_per_line": 0.5},
    "invoiced_vs_collected": {
        "critical": False,
        "max_unmatched_payments": 0,
        "min_collection_rate": 0.0,
        "max_ledger_differences": 0,
    },
    "billing_calendar": {"critical": True, "max_unbilled_cycles": 0},
}


class ThresholdsError(ValueError):
    """`reference/assurance.yaml` names an unknown control or setting, or a wrong value."""


def load_thresholds(reference_dir: Path) -> dict[str, dict[str, Any]]:
    """The defaults with the operator's file laid over them (validated key by key)."""
    merged = copy.deepcopy(DEFAULTS)
    path = reference_dir / "assurance.yaml"
    if not path.exists():
        return merged
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ThresholdsError(f"{path}: expected a mapping of control names")
    for control, settings in loaded.items():
        if control not in merged:
            raise ThresholdsError(f"{path}: unknown control {control!r}; known: {', '.join(DEFAULTS)}")
        if not isinstance(settings, dict):
            raise ThresholdsError(f"{path}: {control} must be a mapping of settings")
        for key, value in settings.items():
            if key not in merged[control]:
                raise ThresholdsError(f"{path}: {control}.{key} is not a setting of {control}")
            want = type(DEFAULTS[control][key])
            ok = isinstance(value, want) or (want is float and isinstance(value, int))
            if not ok or (isinstance(value, bool) and want is not bool):
                raise ThresholdsError(f"{path}: {control}.{key} must be {want.__name__}, got {value!r}")
            merged[control][key] = value
    return merged


def default_file_text() -> str:
    """The shipped `assurance.yaml`: every setting at its default, for operators to edit."""
    header = (
        "# Revenue-assurance controls (see squak_pipelines/assurance/). critical: true blocks\n"
        "# invoice finalization when the control fails; other controls warn.\n"
    )
    return header + yaml.safe_dump(DEFAULTS, sort_keys=False, default_flow_style=None, width=100)
