"""The `split` band rule: charged seconds laid from the answer time, each priced at the band
in force at that moment, walking band edges and DST offset changes segment by segment."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.rating.clock import OffsetTable, minute_of_week
from squak_pipelines.rating.decks import CompiledDeck
from squak_pipelines.rating.plans import Plan


def split_charges(plan: Plan, deck: CompiledDeck, clock: OffsetTable, prefix: np.ndarray, epoch: np.ndarray,
                  begin: np.ndarray, seconds: np.ndarray, pay: np.ndarray,
                  unrated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rate x seconds summed over the segments, seconds per band) of the charged seconds from
    `begin` on; `unrated` is set where a band has neither its own row nor a fallback."""
    week = np.asarray(plan.week, dtype=np.int16)
    nb = len(plan.bands)
    change = minutes_to_change(week)
    numerator = np.zeros(len(begin), dtype=np.int64)
    per_band = np.zeros((nb + 1, len(begin)), dtype=np.int64)
    active = np.flatnonzero(pay)
    now, left = begin.copy(), np.where(pay, seconds, 0)
    while len(active):
        t = now[active]
        local = clock.local(t)
        mow = minute_of_week(local)
        band = np.where(week[mow] < 0, nb, week[mow])
        to_edge = change[mow] * 60 - local % 60
        seg = np.minimum(np.minimum(left[active], to_edge), clock.until_change(t))
        seg_row = deck.row_table[prefix[active], band, epoch[active]]
        missing = seg_row < 0
        if missing.any():  # a band with neither its own row nor a fallback: not rated
            lost = active[missing]
            unrated[lost] = True
            left[lost] = 0
        numerator[active] += np.where(missing, 0, deck.rate[np.maximum(seg_row, 0)] * seg)
        per_band[band, active] += np.where(missing, 0, seg)
        now[active] += seg
        left[active] -= np.where(missing, left[active], seg)
        active = active[left[active] > 0]
    return numerator, per_band


def minutes_to_change(week: np.ndarray) -> np.ndarray:
    """For each minute of the week, minutes until the band differs (cyclic; large if never)."""
    n = len(week)
    out = np.full(n, 10**9, dtype=np.int64)
    edges = np.flatnonzero(week != np.roll(week, 1))  # minutes where a new band starts
    if len(edges):
        positions = np.arange(n)
        nxt = np.searchsorted(edges, positions, side="right")
        target = np.where(nxt < len(edges), edges[nxt % len(edges)], edges[0] + n)
        out = target - positions
    return out


def split_labels(plan: Plan, per_band: np.ndarray) -> np.ndarray:
    """'peak 420s; offpeak 60s' for calls priced in more than one band, else None."""
    out = np.full(per_band.shape[1], None, dtype=object)
    multi = np.flatnonzero((per_band > 0).sum(axis=0) > 1)
    if not len(multi):
        return out
    parts = []
    for b, name in enumerate([*plan.bands, "(none)"]):
        seconds = per_band[b, multi]
        text = pc.binary_join_element_wise(pa.scalar(f"{name} "), pa.array(seconds).cast(pa.string()),
                                           pa.scalar("s; "), "")
        parts.append(pc.if_else(pa.array(seconds > 0), text, pa.scalar("")))
    label = pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), characters="; ")
    out[multi] = label.to_numpy(zero_copy_only=False)
    return out
