"""Sanity bounds on what Squak accepts: the longest call, the largest rate, fee and payment.

A value past a bound is an input error (a switch writing garbage, a typo of three zeros in a
deck, a bank file in the wrong unit), so it is rejected with a clear reason, never priced.
The operator can move a bound in `reference/limits.yaml`; every key is optional:

    max_call_seconds: 86400     # duration or billsec of one call (24 h)
    max_rate: 1000              # price of one rated unit (a minute, a message) in a deck
    max_fee: 100000             # one recurring or one-off fee of a plan
    max_payment: 10000000       # one payment, in its currency

With these bounds no charge can overflow the rating engine's 64-bit micro-units
(max_rate x max_call_seconds x 10^6 is far below 2^63).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path

import yaml


class LimitsError(ValueError):
    """reference/limits.yaml is not usable (names the key)."""


@dataclass(frozen=True)
class Limits:
    max_call_seconds: int = 86_400
    max_rate: Decimal = Decimal("1000")
    max_fee: Decimal = Decimal("100000")
    max_payment: Decimal = Decimal("10000000")

    @classmethod
    def load(cls, reference_dir: Path) -> Limits:
        path = reference_dir / "limits.yaml"
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
        loaded = loaded or {}
        if not isinstance(loaded, dict):
            raise LimitsError(f"{path}: must be a mapping of limit: value")
        known = {f.name: f.type for f in fields(cls)}
        values = {}
        for key, value in loaded.items():
            if key not in known:
                raise LimitsError(f"{path}: unknown limit {key!r} (known: {', '.join(known)})")
            try:
                number = int(value) if key == "max_call_seconds" else Decimal(str(value))
            except (ValueError, ArithmeticError):
                raise LimitsError(f"{path}: {key} must be a number, got {value!r}") from None
            if number <= 0:
                raise LimitsError(f"{path}: {key} must be positive, got {value!r}")
            values[key] = number
        limits = cls(**values)
        if limits.max_rate * limits.max_call_seconds * 10**6 >= 2**62:
            raise LimitsError(f"{path}: max_rate x max_call_seconds is too large for exact rating "
                              "(the product in micro-units must stay below 2^62)")
        return limits
