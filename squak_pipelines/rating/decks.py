"""Rate decks compiled to integer tables, and longest-prefix matching of E.164 numbers.

Per plan and service the deck is compiled once:
- a dense table over the leading digits of a number (up to seven) -> the longest deck
  prefix of up to that many digits, one table per date on which the set of prefixes
  changes (a prefix exists from its first effective date), with a sorted-key search for
  the longer prefixes;
- a (prefix, band, effective-date epoch) -> deck row table that applies rules 2 and 3 of
  docs/billing-rules.md (band row in force, else the empty-band fallback; latest
  effective_from on or before the call);
- per row: rate and connect fee in micro-units, increment, first allowance covering it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.rating.plans import DeckRow, Plan

DENSE_DIGITS = 7  # at most 10**7 int32 entries (40 MB) per prefix-existence epoch
MAX_DIGITS = 15
ALWAYS = -(2**40)  # epoch day of rows without effective_from
MICRO_SCALE = 6


@dataclass(frozen=True)
class CompiledDeck:
    """One plan's rows of one service as integer arrays."""

    rows: list[DeckRow]
    prefixes: np.ndarray  # str, index = prefix id
    prefix_first_day: np.ndarray  # first day any row of the prefix applies
    epochs: np.ndarray  # sorted effective days (ALWAYS first when such rows exist)
    digits: int  # width of the dense table
    existence: np.ndarray  # sorted days on which the set of prefixes changes
    dense: np.ndarray  # (existence epoch, 10**digits) -> longest prefix id of <= digits, -1
    short_keys: dict[int, tuple[np.ndarray, np.ndarray]]  # length -> (sorted int keys, prefix ids)
    long_bucket: np.ndarray  # bool per dense key: a longer prefix starts with it
    row_table: np.ndarray  # (prefix, band or none, epoch) -> row index, -1
    rate: np.ndarray  # micro-units per minute (or per message)
    connect: np.ndarray
    first: np.ndarray
    step: np.ndarray
    allowance: np.ndarray  # index of the first allowance covering the row's destination, -1
    line: np.ndarray  # line of the row in its deck file
    day: np.ndarray  # effective_from as a day number (ALWAYS when empty)


def _compile(plan: Plan, service: str) -> CompiledDeck | None:
    rows = plan.deck(service)
    if not rows:
        return None
    prefixes = sorted({r.prefix for r in rows}, key=lambda p: (len(p), p))
    pid = {p: i for i, p in enumerate(prefixes)}
    day = {r: (ALWAYS if r.effective_from is None else _day(r.effective_from)) for r in rows}
    first_day = np.full(len(prefixes), np.iinfo(np.int64).max, dtype=np.int64)
    for r in rows:
        first_day[pid[r.prefix]] = min(first_day[pid[r.prefix]], day[r])
    epochs = np.array(sorted(set(day.values())), dtype=np.int64)
    width = min(DENSE_DIGITS, max(len(p) for p in prefixes))
    existence = np.unique(first_day)
    dense = np.full((len(existence), 10**width), -1, dtype=np.int32)
    long_bucket = np.zeros(10**width, dtype=bool)
    for e, epoch_day in enumerate(existence):
        for p in prefixes:  # shortest first, so longer prefixes overwrite
            if len(p) <= width and first_day[pid[p]] <= epoch_day:
                span = 10 ** (width - len(p))
                dense[e, int(p) * span:(int(p) + 1) * span] = pid[p]
    short_keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for length in sorted({len(p) for p in prefixes}):
        group = [p for p in prefixes if len(p) == length]
        keys = np.array([int(p) for p in group], dtype=np.int64)
        order = np.argsort(keys)
        short_keys[length] = (keys[order], np.array([pid[group[i]] for i in order], dtype=np.int32))
        if length > width:
            long_bucket[np.unique(keys // 10 ** (length - width))] = True
    nbands = len(plan.bands)
    table = np.full((len(prefixes), nbands + 1, len(epochs)), -1, dtype=np.int32)
    by_prefix: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_prefix.setdefault(pid[r.prefix], []).append(i)
    band_id = {b: k for k, b in enumerate(plan.bands)}
    for p, members in by_prefix.items():
        for e, epoch_day in enumerate(epochs):
            live = [i for i in members if day[rows[i]] <= epoch_day]
            fallback = _latest([i for i in live if not rows[i].band], rows, day)
            for b in range(nbands + 1):
                banded = [i for i in live if rows[i].band and band_id[rows[i].band] == b]
                chosen = _latest(banded, rows, day)
                table[p, b, e] = chosen if chosen is not None else (-1 if fallback is None else fallback)
    allowance = np.array(
        [next((k for k, a in enumerate(plan.allowances) if a.service == service and a.covers(r.destination)),
              -1) for r in rows], dtype=np.int16)
    return CompiledDeck(
        rows=rows, prefixes=np.array(prefixes, dtype=object), prefix_first_day=first_day, epochs=epochs,
        digits=width, existence=existence, dense=dense, short_keys=short_keys, long_bucket=long_bucket,
        row_table=table,
        rate=np.array([_micros(r.rate) for r in rows], dtype=np.int64),
        connect=np.array([_micros(r.connect_fee) for r in rows], dtype=np.int64),
        first=np.array([r.first for r in rows], dtype=np.int64),
        step=np.array([r.step for r in rows], dtype=np.int64),
        allowance=allowance, line=np.array([r.line for r in rows], dtype=np.int64),
        day=np.array([day[r] for r in rows], dtype=np.int64))


def _latest(candidates: list[int], rows: list[DeckRow], day: dict[DeckRow, int]) -> int | None:
    return max(candidates, key=lambda i: day[rows[i]]) if candidates else None


def _day(value) -> int:
    return int(np.datetime64(value, "D").astype(np.int64))


def _micros(value) -> int:
    return int(value.scaleb(MICRO_SCALE))


@lru_cache(maxsize=64)
def compiled(plan: Plan, service: str) -> CompiledDeck | None:
    return _compile(plan, service)


POW10 = np.array([10**k for k in range(MAX_DIGITS + 1)], dtype=np.int64)


def number_digits(numbers: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(value, digit count) of '+digits' E.164 numbers as integers; count 0 for anything else
    (short codes, letters, empty, more than 15 digits)."""
    arr = pc.fill_null(numbers, "").cast(pa.string())
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    body = pc.utf8_slice_codeunits(arr, 1)
    count = np.asarray(pc.binary_length(body).to_numpy(zero_copy_only=False), dtype=np.int64)
    plus = np.asarray(pc.starts_with(arr, "+").to_numpy(zero_copy_only=False), dtype=bool)
    ok = plus & (count >= 1) & (count <= MAX_DIGITS)
    try:
        if not ok.all():
            raise pa.ArrowInvalid("not every number is +digits")
        value = pc.cast(body, pa.int64())  # the common case: one parse, no checks per row
    except pa.ArrowInvalid:
        ok &= np.asarray(pc.fill_null(pc.ascii_is_decimal(body), False).to_numpy(zero_copy_only=False),
                         dtype=bool)
        value = pc.cast(pc.if_else(pa.array(ok), body, pa.scalar("0")), pa.int64())
    return np.asarray(value.to_numpy(zero_copy_only=False), dtype=np.int64), np.where(ok, count, 0)


def _key(value: np.ndarray, count: np.ndarray, length: int) -> np.ndarray:
    """The first `length` digits of each number (numbers with at least that many digits)."""
    return value // POW10[np.maximum(count - length, 0)]


def match_prefix(deck: CompiledDeck, value: np.ndarray, count: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Longest deck prefix (id, -1 for none) in force on `day` for each number."""
    width = deck.digits
    exist = (np.searchsorted(deck.existence, day, side="right") - 1 if len(deck.existence) > 1
             else np.where(day >= deck.existence[0], 0, -1))
    full = (count >= width) & (exist >= 0)
    key = np.where(full, _key(value, count, width), 0)
    found = np.where(full, deck.dense[np.maximum(exist, 0), key], -1).astype(np.int32)
    longer = np.flatnonzero(full & deck.long_bucket[key])
    short = np.flatnonzero((count > 0) & (count < width) & (exist >= 0))
    for subset, lengths in ((longer, [k for k in deck.short_keys if k > width]),
                            (short, [k for k in deck.short_keys if k < width])):
        if not len(subset):
            continue
        pending = np.ones(len(subset), dtype=bool)
        for length in sorted(lengths, reverse=True):
            keys, ids = deck.short_keys[length]
            fits = pending & (count[subset] >= length)
            if not fits.any():
                continue
            k = _key(value[subset], count[subset], length)
            at = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
            hit = fits & (keys[at] == k)
            hit &= deck.prefix_first_day[ids[at]] <= day[subset]
            found[subset[hit]] = ids[at][hit]
            pending &= ~hit
    return found
