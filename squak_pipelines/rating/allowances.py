"""Allowances (bundles): units consumed in call order per account, plan, cycle and allowance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.rating.clock import cycle_label
from squak_pipelines.rating.plans import Plan


def consume(plan: Plan, allowance: np.ndarray, units: np.ndarray, at: np.ndarray, cycle: np.ndarray,
             account: np.ndarray, accounts: pa.Array, opening: pd.DataFrame | None) -> np.ndarray:
    """Allowance units covering each event: consumed in order of call start (ties in input
    order) per account, cycle and allowance, after what `opening` says was used before."""
    covered = np.zeros(len(units), dtype=np.int64)
    eligible = np.flatnonzero(allowance >= 0)
    cyc = cycle[eligible] - cycle[eligible].min()
    group = (account[eligible] * (int(cyc.max()) + 1) + cyc) * len(plan.allowances) + allowance[eligible]
    order = np.argsort(group * (2**32) + (at[eligible] - at[eligible].min()), kind="stable")
    g, u = group[order], units[eligible][order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    total = np.cumsum(u)
    used_before = total - u - np.repeat(total[starts] - u[starts], sizes)
    if opening is not None and len(opening):
        head = eligible[order[starts]]
        keys = pd.DataFrame({
            "account_id": pc.take(accounts, pa.array(account[head])).to_pylist(),
            "cycle": [cycle_label(c) for c in cycle[head]],
            "allowance": [plan.allowances[a].name for a in allowance[head]]})
        prior = keys.merge(opening, how="left", on=["account_id", "cycle", "allowance"])["used"]
        used_before = used_before + np.repeat(prior.fillna(0).to_numpy(dtype=np.int64), sizes)
    quota = np.array([a.units for a in plan.allowances], dtype=np.int64)[allowance[eligible][order]]
    covered[eligible[order]] = np.minimum(u, np.maximum(quota - used_before, 0))
    return covered
