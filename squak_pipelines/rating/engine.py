"""The rating engine: prices events under their plans, column-wise and exact.

Per plan and service the deck is compiled once into integer tables:
- a dense table over the first six digits of a number -> longest deck prefix of up to six
  digits (one per effective-date epoch, so a prefix exists only from its first date), with
  a sorted-key search for the few longer prefixes;
- a (prefix, band, epoch) -> deck row table that applies rules 2 and 3 of BILLING_RULES.md
  (band row in force, else the empty-band fallback; latest effective_from on or before).
Events are then priced with array arithmetic in integer micro-units: increments, connect
fees, both band rules (split walks band edges and DST changes segment by segment),
allowances (a stable sort and a cumulative sum per account, plan, cycle and allowance),
rounding to `rating_decimals`, and discounts. Nothing is a binary float.

Input columns: event_key, service, called_number (E.164 '+digits' or a short code),
start_utc, answer_utc, billsec, answered, call_type, account_id, plan_id. Output: one row
per input row, in input order, with the breakdown (see `OUTPUT_SCHEMA`); `status` is
'rated' or the suspense reason (`no_plan`, `no_rate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.rating.clock import OffsetTable, local_day, minute_of_week, month_index, month_label
from squak_pipelines.rating.plans import DeckRow, Plan

DENSE_DIGITS = 6
MAX_DIGITS = 15
ALWAYS = -(2**40)  # epoch day of rows without effective_from
MICRO_SCALE = 6
MONEY = pa.decimal128(18, MICRO_SCALE)
TS = pa.timestamp("s", tz="UTC")
OUTPUT_SCHEMA = pa.schema([
    ("status", pa.string()), ("currency", pa.string()), ("rated_at", TS), ("cycle", pa.string()),
    ("matched_prefix", pa.string()), ("destination", pa.string()), ("band", pa.string()),
    ("band_split", pa.string()), ("deck_file", pa.string()), ("deck_line", pa.int64()),
    ("effective_from", pa.date32()), ("increment", pa.string()), ("rate", MONEY),
    ("connect_fee", MONEY), ("charged_units", pa.int64()), ("allowance", pa.string()),
    ("allowance_used", pa.int64()), ("charge", MONEY), ("discount_name", pa.string()),
    ("discount", MONEY), ("final_charge", MONEY),
])


@dataclass(frozen=True)
class CompiledDeck:
    """One plan's rows of one service as integer arrays."""

    rows: list[DeckRow]
    prefixes: np.ndarray  # str, index = prefix id
    prefix_first_day: np.ndarray  # first day any row of the prefix applies
    epochs: np.ndarray  # sorted effective days (ALWAYS first when such rows exist)
    dense: np.ndarray  # (epochs, 10**DENSE_DIGITS) -> prefix id of <= DENSE_DIGITS digits, -1
    short_keys: dict[int, tuple[np.ndarray, np.ndarray]]  # length -> (sorted int keys, prefix ids)
    long_bucket: np.ndarray  # bool per dense key: a longer prefix starts with it
    row_table: np.ndarray  # (prefix, band or none, epoch) -> row index, -1
    rate: np.ndarray  # micro-units per minute (or per message)
    connect: np.ndarray
    first: np.ndarray
    step: np.ndarray
    allowance: np.ndarray  # index of the first allowance covering the row's destination, -1


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
    size = 10**DENSE_DIGITS
    dense = np.full((len(epochs), size), -1, dtype=np.int32)
    long_bucket = np.zeros(size, dtype=bool)
    for e, epoch_day in enumerate(epochs):
        for p in prefixes:  # shortest first, so longer prefixes overwrite
            if len(p) <= DENSE_DIGITS and first_day[pid[p]] <= epoch_day:
                width = 10 ** (DENSE_DIGITS - len(p))
                dense[e, int(p) * width:(int(p) + 1) * width] = pid[p]
    short_keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for length in sorted({len(p) for p in prefixes}):
        group = [p for p in prefixes if len(p) == length]
        keys = np.array([int(p) for p in group], dtype=np.int64)
        order = np.argsort(keys)
        short_keys[length] = (keys[order], np.array([pid[group[i]] for i in order], dtype=np.int32))
        if length > DENSE_DIGITS:
            long_bucket[np.unique(keys // 10 ** (length - DENSE_DIGITS))] = True
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
        dense=dense, short_keys=short_keys, long_bucket=long_bucket, row_table=table,
        rate=np.array([_micros(r.rate) for r in rows], dtype=np.int64),
        connect=np.array([_micros(r.connect_fee) for r in rows], dtype=np.int64),
        first=np.array([r.first for r in rows], dtype=np.int64),
        step=np.array([r.step for r in rows], dtype=np.int64),
        allowance=allowance)


def _latest(candidates: list[int], rows: list[DeckRow], day: dict[DeckRow, int]) -> int | None:
    return max(candidates, key=lambda i: day[rows[i]]) if candidates else None


def _day(value) -> int:
    return int(np.datetime64(value, "D").astype(np.int64))


def _micros(value) -> int:
    return int(value.scaleb(MICRO_SCALE))


@lru_cache(maxsize=64)
def compiled(plan: Plan, service: str) -> CompiledDeck | None:
    return _compile(plan, service)


def digit_matrix(numbers: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(digits n x 15 uint8, digit count) of '+digits' numbers; count 0 for anything else
    (short codes, letters, empty)."""
    arr = pc.fill_null(numbers, "").cast(pa.string())
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] else np.zeros(1, np.uint8)
    data = np.concatenate([data, np.zeros(MAX_DIGITS + 1, np.uint8)])  # reads past the end are 0
    length = offsets[1:] - offsets[:-1] - 1
    plus = (data[offsets[:-1]] == ord("+")) & (length >= 1) & (length <= MAX_DIGITS)
    digits = np.empty((n, MAX_DIGITS), dtype=np.uint8)
    ok = plus.copy()
    for i in range(MAX_DIGITS):
        column = data[offsets[:-1] + 1 + i] - np.uint8(48)
        inside = i < length
        ok &= ~inside | (column <= 9)
        digits[:, i] = np.where(inside, column, 0)
    count = np.where(ok, length, 0)
    return digits, count


def _key(digits: np.ndarray, length: int) -> np.ndarray:
    key = np.zeros(len(digits), dtype=np.int64)
    for i in range(length):
        key = key * 10 + digits[:, i]
    return key


def match_prefix(deck: CompiledDeck, digits: np.ndarray, count: np.ndarray, epoch: np.ndarray,
                 day: np.ndarray) -> np.ndarray:
    """Longest deck prefix (id, -1 for none) in force on `day` for each number."""
    n = len(count)
    found = np.full(n, -1, dtype=np.int32)
    full = (count >= DENSE_DIGITS) & (epoch >= 0)
    key6 = _key(digits, DENSE_DIGITS)
    found[full] = deck.dense[epoch[full], key6[full]]
    longer = np.flatnonzero(full & deck.long_bucket[np.where(full, key6, 0)])
    short = np.flatnonzero((count > 0) & (count < DENSE_DIGITS) & (epoch >= 0))
    for subset, lengths in ((longer, [k for k in deck.short_keys if k > DENSE_DIGITS]),
                            (short, [k for k in deck.short_keys if k < DENSE_DIGITS])):
        if not len(subset):
            continue
        pending = np.ones(len(subset), dtype=bool)
        for length in sorted(lengths, reverse=True):
            keys, ids = deck.short_keys[length]
            fits = pending & (count[subset] >= length)
            if not fits.any():
                continue
            k = _key(digits[subset], length)
            at = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
            hit = fits & (keys[at] == k)
            hit &= deck.prefix_first_day[ids[at]] <= day[subset]
            found[subset[hit]] = ids[at][hit]
            pending &= ~hit
    return found


def _round(numerator: np.ndarray, denominator: int, mode: str) -> np.ndarray:
    """Integer division with the plan's rounding, for non-negative numerators."""
    if mode == "up":
        return -(-numerator // denominator)
    if mode == "down":
        return numerator // denominator
    return (2 * numerator + denominator) // (2 * denominator)


def to_decimal(units: np.ndarray, valid: np.ndarray | None = None, scale: int = MICRO_SCALE) -> pa.Array:
    """decimal128(18, 6) from integers in units of 10**-scale, without floats or Python loops."""
    micros = np.asarray(units, dtype=np.int64) * 10 ** (MICRO_SCALE - scale)
    words = np.empty((len(micros), 2), dtype=np.int64)
    words[:, 0] = micros
    words[:, 1] = micros >> 63
    mask = None if valid is None else pa.array(valid, pa.bool_()).buffers()[1]
    nulls = 0 if valid is None else int((~valid).sum())
    return pa.Array.from_buffers(MONEY, len(micros), [mask, pa.py_buffer(words.tobytes())], null_count=nulls)


class Labels:
    """Strings by integer code, so output text columns are built with one `take`."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.codes: dict[str, int] = {}

    def code(self, value: str) -> int:
        if value not in self.codes:
            self.codes[value] = len(self.values)
            self.values.append(value)
        return self.codes[value]

    def many(self, values: list[str]) -> np.ndarray:
        return np.array([self.code(v) for v in values], dtype=np.int64)

    def column(self, codes: np.ndarray) -> pa.Array:
        valid = codes >= 0
        return pc.take(pa.array(self.values or [""], pa.string()),
                       pa.array(np.where(valid, codes, 0), pa.int64(), mask=~valid))


@dataclass
class Inputs:
    """The event columns the engine needs, as numpy arrays (computed once per call)."""

    at: np.ndarray  # rating instant: answer time, else start (UTC seconds)
    billsec: np.ndarray
    answered: np.ndarray
    sms: np.ndarray
    emergency: np.ndarray
    international: np.ndarray
    account: np.ndarray  # account code (-1: none)
    accounts: pa.Array  # account ids by code
    digits: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, events: pa.Table) -> Inputs:
        def flag(column: str, value: str) -> np.ndarray:
            return np.asarray(pc.fill_null(pc.equal(events[column], value), False).to_numpy(
                zero_copy_only=False), dtype=bool)

        start = pc.cast(events["start_utc"], TS).cast(pa.int64())
        answer = pc.cast(events["answer_utc"], TS).cast(pa.int64())
        at = pc.fill_null(pc.if_else(pc.is_valid(answer), answer, start), 0)
        accounts = pc.dictionary_encode(events["account_id"].combine_chunks().cast(pa.string()))
        digits, count = digit_matrix(events["called_number"].combine_chunks())
        return cls(
            at=np.asarray(at.to_numpy(zero_copy_only=False), dtype=np.int64),
            billsec=np.asarray(pc.fill_null(events["billsec"], 0).to_numpy(zero_copy_only=False),
                               dtype=np.int64),
            answered=np.asarray(pc.fill_null(events["answered"], False).to_numpy(zero_copy_only=False),
                                dtype=bool),
            sms=flag("service", "sms"), emergency=flag("call_type", "emergency"),
            international=flag("call_type", "international"),
            account=np.asarray(pc.fill_null(accounts.indices, -1).to_numpy(zero_copy_only=False),
                               dtype=np.int64),
            accounts=accounts.dictionary, digits=digits, count=count)


STATUS = ("rated", "no_plan", "no_rate")
INT_COLUMNS = ("rated_at", "deck_line", "effective_from", "rate", "connect_fee", "charged_units",
               "allowance_used", "charge", "discount", "final_charge")
TEXT_COLUMNS = ("currency", "cycle", "matched_prefix", "destination", "band", "band_split", "deck_file",
                "increment", "allowance", "discount_name")


class Output:
    """Result arrays for all events; text columns hold label codes (-1 = null)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.status = np.full(n, STATUS.index("no_plan"), dtype=np.int8)
        self.ints = {k: np.zeros(n, dtype=np.int64) for k in INT_COLUMNS}
        self.codes = {k: np.full(n, -1, dtype=np.int64) for k in TEXT_COLUMNS}
        self.labels = {k: Labels() for k in TEXT_COLUMNS}
        self.rated = np.zeros(n, dtype=bool)
        self.has_row = np.zeros(n, dtype=bool)


def rate(events: pa.Table, plans: dict[str, Plan], opening: pd.DataFrame | None = None,
         allowances: bool = True) -> pa.Table:
    """Price `events` (see module doc). `opening` holds allowance units already used earlier
    in a cycle (account_id, cycle, allowance, used)."""
    inputs = Inputs.of(events)
    result = Output(events.num_rows)
    plan_codes = pc.dictionary_encode(pc.fill_null(events["plan_id"], "").combine_chunks().cast(pa.string()))
    codes = np.asarray(plan_codes.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    for code, plan_id in enumerate(plan_codes.dictionary.to_pylist()):
        plan = plans.get(plan_id)
        if plan is None:
            continue
        idx = np.flatnonzero(codes == code)
        for sms in (False, True):
            part = idx[inputs.sms[idx] == sms]
            if len(part):
                _rate_part(plan, "sms" if sms else "voice", inputs, part, result, opening, allowances)
    return _assemble(result)


def _rate_part(plan: Plan, service: str, inputs: Inputs, idx: np.ndarray, out: Output,
               opening: pd.DataFrame | None, allowances: bool) -> None:
    at = inputs.at[idx]
    clock = OffsetTable.build(plan.timezone, at)
    local = clock.local(at)
    day = local_day(local)
    cycle = month_index(local)
    n = len(idx)
    out.codes["currency"][idx] = out.labels["currency"].code(plan.currency)
    cycles, inverse = np.unique(cycle, return_inverse=True)
    out.codes["cycle"][idx] = out.labels["cycle"].many([month_label(c) for c in cycles])[inverse.reshape(-1)]
    out.ints["rated_at"][idx] = at
    billsec, emergency = inputs.billsec[idx], inputs.emergency[idx]
    billable = inputs.answered[idx] & ((billsec > 0) | (service == "sms"))
    status = np.where(billable & ~emergency, STATUS.index("no_rate"), 0).astype(np.int8)
    week = np.asarray(plan.week, dtype=np.int16)
    nb = len(plan.bands)
    band = week[minute_of_week(local)]
    band_slot = np.where(band < 0, nb, band)
    band_labels = np.append(out.labels["band"].many(list(plan.bands)), -1)
    out.codes["band"][idx] = band_labels[band_slot]
    deck = compiled(plan, service)
    if deck is None:
        out.status[idx] = status
        out.rated[idx] = status == 0
        return
    epoch = np.searchsorted(deck.epochs, day, side="right") - 1
    prefix = match_prefix(deck, inputs.digits[idx], inputs.count[idx], epoch, day)
    ok = prefix >= 0
    row = np.full(n, -1, dtype=np.int32)
    row[ok] = deck.row_table[prefix[ok], band_slot[ok], epoch[ok]]
    charged = billable & ~emergency & (row >= 0)
    status[charged] = 0
    r = np.maximum(row, 0)
    if service == "sms":
        units = charged.astype(np.int64)
    else:
        over = np.maximum(billsec - deck.first[r], 0)
        units = np.where(charged, deck.first[r] + (-(-over // deck.step[r])) * deck.step[r], 0)
    allowance = np.where(charged, deck.allowance[r], -1).astype(np.int64)
    covered = np.zeros(n, dtype=np.int64)
    if allowances and plan.allowances:
        allowance[inputs.account[idx] < 0] = -1
        if (allowance >= 0).any():
            covered = _consume(plan, allowance, units, at, cycle, inputs.account[idx], inputs.accounts,
                               opening)
    uncovered = units - covered
    pay = charged & (uncovered > 0)
    if service == "voice" and plan.band_rule == "split" and pay.any():
        numerator, per_band = _split(plan, deck, clock, prefix, epoch, at + covered, uncovered, pay,
                                     row, status)
        numerator = np.where(pay & (status == 0), numerator + deck.connect[r] * 60, 0)
        split = _split_labels(plan, per_band)
        multi = split != None  # noqa: E711
        if multi.any():
            out.codes["band_split"][idx[multi]] = out.labels["band_split"].many(list(split[multi]))
    else:
        per_unit = uncovered if service == "voice" else uncovered * 60
        numerator = np.where(pay, deck.connect[r] * 60 + deck.rate[r] * per_unit, 0)
    charge = _round(numerator, 60 * 10 ** (MICRO_SCALE - plan.rating_decimals), plan.rounding)
    discount, discount_code = _discounts(plan, service, charge, inputs.international[idx],
                                         out.labels["discount_name"])
    scale = 10 ** (MICRO_SCALE - plan.rating_decimals)
    found = row >= 0
    out.status[idx] = status
    out.rated[idx] = status == 0
    out.has_row[idx] = found
    for key, attr in (("destination", "destination"), ("deck_file", "file"), ("increment", "increment")):
        codes = out.labels[key].many([getattr(x, attr) for x in deck.rows])
        out.codes[key][idx] = np.where(found, codes[r], -1)
    prefix_codes = out.labels["matched_prefix"].many(list(deck.prefixes))
    out.codes["matched_prefix"][idx] = np.where(found, prefix_codes[np.maximum(prefix, 0)], -1)
    lines = np.array([x.line for x in deck.rows], dtype=np.int64)
    effective = np.array([ALWAYS if x.effective_from is None else _day(x.effective_from) for x in deck.rows],
                         dtype=np.int64)
    out.ints["deck_line"][idx] = lines[r]
    out.ints["effective_from"][idx] = effective[r]
    out.ints["rate"][idx] = deck.rate[r]
    out.ints["connect_fee"][idx] = deck.connect[r]
    out.ints["charged_units"][idx] = units
    allowance_codes = np.append(out.labels["allowance"].many([a.name for a in plan.allowances]), -1)
    out.codes["allowance"][idx] = np.where(covered > 0, allowance_codes[allowance], -1)
    out.ints["allowance_used"][idx] = covered
    out.ints["charge"][idx] = charge * scale
    out.ints["discount"][idx] = discount * scale
    out.ints["final_charge"][idx] = (charge - discount) * scale
    out.codes["discount_name"][idx] = discount_code


def _discounts(plan: Plan, service: str, charge: np.ndarray, international: np.ndarray,
               labels: Labels) -> tuple[np.ndarray, np.ndarray]:
    """Each plan discount as its own amount (rounded per event with the plan's rounding)."""
    total = np.zeros(len(charge), dtype=np.int64)
    applied = np.zeros(len(charge), dtype=np.int64)  # bit k: discount k applied
    for k, disc in enumerate(plan.discounts):
        if disc.applies_to == "international_usage":
            scope = international
        elif disc.applies_to in ("voice", "sms"):
            scope = np.full(len(charge), disc.applies_to == service)
        else:
            scope = np.ones(len(charge), dtype=bool)
        percent = int(disc.percent.scaleb(4))  # 1/10,000 of a percent
        amount = np.where(scope & (charge > 0), _round(charge * percent, 1_000_000, plan.rounding), 0)
        total += amount
        applied |= np.where(amount > 0, 1 << k, 0)
    combos, inverse = np.unique(applied, return_inverse=True)
    names = ["; ".join(d.name for k, d in enumerate(plan.discounts) if int(c) >> k & 1) for c in combos]
    codes = np.array([labels.code(x) if x else -1 for x in names], dtype=np.int64)
    return total, codes[inverse.reshape(-1)]


def _consume(plan: Plan, allowance: np.ndarray, units: np.ndarray, at: np.ndarray, cycle: np.ndarray,
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
            "cycle": [month_label(c) for c in cycle[head]],
            "allowance": [plan.allowances[a].name for a in allowance[head]]})
        prior = keys.merge(opening, how="left", on=["account_id", "cycle", "allowance"])["used"]
        used_before = used_before + np.repeat(prior.fillna(0).to_numpy(dtype=np.int64), sizes)
    quota = np.array([a.units for a in plan.allowances], dtype=np.int64)[allowance[eligible][order]]
    covered[eligible[order]] = np.minimum(u, np.maximum(quota - used_before, 0))
    return covered


def _split(plan: Plan, deck: CompiledDeck, clock: OffsetTable, prefix: np.ndarray, epoch: np.ndarray,
           begin: np.ndarray, seconds: np.ndarray, pay: np.ndarray, row: np.ndarray,
           status: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`split` band rule: the charged seconds from `begin` on, each priced at the band in force
    at that moment. Walks band edges (and DST offset changes) segment by segment."""
    week = np.asarray(plan.week, dtype=np.int16)
    nb = len(plan.bands)
    change = _minutes_to_change(week)
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
            status[lost] = STATUS.index("no_rate")
            row[lost] = -1
            left[lost] = 0
        numerator[active] += np.where(missing, 0, deck.rate[np.maximum(seg_row, 0)] * seg)
        per_band[band, active] += np.where(missing, 0, seg)
        now[active] += seg
        left[active] -= np.where(missing, left[active], seg)
        active = active[left[active] > 0]
    return numerator, per_band


def _minutes_to_change(week: np.ndarray) -> np.ndarray:
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


def _split_labels(plan: Plan, per_band: np.ndarray) -> np.ndarray:
    """'peak 420s; offpeak 60s' for calls priced in more than one band, else None."""
    names = [*plan.bands, "(none)"]
    parts = []
    for b, name in enumerate(names):
        seconds = pa.array(per_band[b]).cast(pa.string())
        text = pc.binary_join_element_wise(pa.scalar(f"{name} "), seconds, pa.scalar("s; "), "")
        parts.append(pc.if_else(pa.array(per_band[b] > 0), text, pa.scalar("")))
    label = pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), characters="; ")
    multi = (per_band > 0).sum(axis=0) > 1
    return np.where(multi, label.to_numpy(zero_copy_only=False), None)


def _assemble(out: Output) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for name in OUTPUT_SCHEMA.names:
        kind = OUTPUT_SCHEMA.field(name).type
        if name == "status":
            columns[name] = pc.take(pa.array(STATUS), pa.array(out.status.astype(np.int64)))
        elif name in TEXT_COLUMNS:
            columns[name] = out.labels[name].column(out.codes[name])
        elif name == "rated_at":
            columns[name] = pa.array(out.ints[name], pa.int64()).cast(TS)
        elif name == "effective_from":
            days = out.ints[name]
            valid = out.has_row & (days != ALWAYS)
            columns[name] = pa.array(np.where(valid, days, 0).astype(np.int32), pa.int32(),
                                     mask=~valid).cast(pa.date32())
        elif name in ("deck_line", "rate", "connect_fee"):
            columns[name] = (to_decimal(out.ints[name], out.has_row) if kind == MONEY
                             else pa.array(out.ints[name], pa.int64(), mask=~out.has_row))
        elif kind == MONEY:
            columns[name] = to_decimal(out.ints[name], out.rated)
        else:
            columns[name] = pa.array(out.ints[name], pa.int64(), mask=~out.rated)
    return pa.table(columns, schema=OUTPUT_SCHEMA)
