"""The rating engine: prices events under their plans, column-wise and exact.

Decks are compiled to integer tables (`decks.py`); events are priced with array arithmetic
in integer micro-units, chunk by chunk: longest-prefix match, band and deck row, increments,
connect fees, both band rules (`bands.py`), allowances across the whole call in call order
(`allowances.py`), rounding to `rating_decimals`, and discounts. Nothing is a binary float.

Input columns: event_key, service, called_number (E.164 '+digits' or a short code),
start_utc, answer_utc, billsec, answered, call_type, account_id, plan_id. Output: one row
per input row, in input order, with the breakdown (see `OUTPUT_SCHEMA`; text columns are
dictionary-encoded); `status` is 'rated' or the suspense reason (`no_plan`, `no_rate`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from squak_pipelines.rating.allowances import consume
from squak_pipelines.rating.bands import split_charges, split_labels
from squak_pipelines.rating.clock import (
    CycleStarts,
    OffsetTable,
    cycle_label,
    minute_of_week,
    month_start_day,
)
from squak_pipelines.rating.decks import (
    ALWAYS,
    MICRO_SCALE,
    CompiledDeck,
    compiled,
    match_prefix,
    number_digits,
)
from squak_pipelines.rating.plans import Plan

MONEY = pa.decimal128(18, MICRO_SCALE)
TS = pa.timestamp("s", tz="UTC")
CHUNK = 1 << 20  # events priced at a time (bounds the working memory)
STATUS = ("rated", "no_plan", "no_rate")
OUTPUT_SCHEMA = pa.schema([
    ("status", pa.string()), ("currency", pa.string()), ("rated_at", TS), ("cycle", pa.string()),
    ("matched_prefix", pa.string()), ("destination", pa.string()), ("band", pa.string()),
    ("band_split", pa.string()), ("deck_file", pa.string()), ("deck_line", pa.int64()),
    ("effective_from", pa.date32()), ("increment", pa.string()), ("rate", MONEY),
    ("connect_fee", MONEY), ("charged_units", pa.int64()), ("allowance", pa.string()),
    ("allowance_used", pa.int64()), ("charge", MONEY), ("discount_name", pa.string()),
    ("discount", MONEY), ("final_charge", MONEY),
])
LABELLED = ("currency", "cycle", "band", "band_split", "allowance", "discount_name")


def _round(numerator: np.ndarray, denominator: int, mode: str) -> np.ndarray:
    """Integer division with the plan's rounding, for non-negative numerators."""
    if mode == "up":
        return -(-numerator // denominator)
    if mode == "down":
        return numerator // denominator
    return (2 * numerator + denominator) // (2 * denominator)


def _check_no_overflow(deck, units: np.ndarray, service: str) -> None:
    """Prices are exact 64-bit integer arithmetic: refuse (never wrap round) a rate times a
    duration that would not fit. Bounds on the inputs (reference/limits.yaml) keep real data
    far below this; a quote of a hand-made events file can still hit it."""
    per_unit = int(units.max()) * (60 if service == "sms" else 1)
    if int(deck.rate.max()) * per_unit + int(deck.connect.max()) * 60 >= 2**62:
        raise OverflowError(f"a charge of {per_unit:,} units at the deck's largest rate does not fit exact "
                            "64-bit rating; the call or the rate is out of any real range")


def to_decimal(units: np.ndarray, valid: np.ndarray | None = None, scale: int = MICRO_SCALE) -> pa.Array:
    """decimal128(18, 6) from integers in units of 10**-scale, without floats or Python loops."""
    micros = np.asarray(units, dtype=np.int64) * 10 ** (MICRO_SCALE - scale)
    words = np.zeros((len(micros), 2), dtype=np.int64)
    words[:, 0] = micros
    if (micros < 0).any():
        words[:, 1] = micros >> 63
    mask = None if valid is None else pa.array(valid, pa.bool_()).buffers()[1]
    nulls = 0 if valid is None else int(len(valid) - np.count_nonzero(valid))
    return pa.Array.from_buffers(MONEY, len(micros), [mask, pa.py_buffer(words)], null_count=nulls)


class Labels:
    """Strings by code (0 = null, 1.. = values): text columns become dictionary arrays."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.codes: dict[str, int] = {}

    def code(self, value: str) -> int:
        if value not in self.codes:
            self.values.append(value)
            self.codes[value] = len(self.values)
        return self.codes[value]

    def many(self, values: list[str]) -> np.ndarray:
        return np.array([self.code(v) for v in values], dtype=np.int32)

    def column(self, codes: np.ndarray) -> pa.Array:
        null = codes == 0
        indices = pa.array(codes - 1, pa.int32(), mask=null if null.any() else None)
        return pa.DictionaryArray.from_arrays(indices, pa.array(self.values or [""], pa.string()))


class Registry:
    """The deck rows used in one call, numbered globally (0 = none, 1.. = rows)."""

    def __init__(self) -> None:
        self.decks: list[CompiledDeck] = []
        self.base: dict[int, int] = {}

    def offset(self, deck: CompiledDeck) -> int:
        if id(deck) not in self.base:
            self.base[id(deck)] = 1 + sum(len(d.rows) for d in self.decks)
            self.decks.append(deck)
        return self.base[id(deck)]

    def columns(self, row: np.ndarray) -> dict[str, pa.Array]:
        """Deck fields of each event's row (`row` 0: null)."""
        found = row > 0
        at = np.where(found, row - 1, 0)
        empty = not self.decks

        def cat(values: list) -> np.ndarray:
            return np.array(values if not empty else [0], dtype=np.int64)

        labels = {k: Labels() for k in ("matched_prefix", "destination", "deck_file", "increment")}
        codes = {k: cat([labels[k].code(str(getattr(r, a))) for d in self.decks for r in d.rows])
                 for k, a in (("matched_prefix", "prefix"), ("destination", "destination"),
                              ("deck_file", "file"), ("increment", "increment"))}
        out = {k: labels[k].column(np.where(found, codes[k][at], 0).astype(np.int32)) for k in codes}
        line = cat([r.line for d in self.decks for r in d.rows])
        day = cat([x for d in self.decks for x in d.day])
        dated = found & (day[at] != ALWAYS)
        out["deck_line"] = pa.array(line[at], pa.int64(), mask=~found)
        out["effective_from"] = pa.array(np.where(dated, day[at], 0).astype(np.int32), pa.int32(),
                                         mask=~dated).cast(pa.date32())
        out["rate"] = to_decimal(cat([x for d in self.decks for x in d.rate])[at], found)
        out["connect_fee"] = to_decimal(cat([x for d in self.decks for x in d.connect])[at], found)
        return out


class Inputs:
    """The event columns the engine needs, as numpy arrays (each computed once per call)."""

    def __init__(self, events: pa.Table, cycle_starts: CycleStarts | None = None) -> None:
        def flag(column: str, value: str) -> np.ndarray:
            return np.asarray(pc.fill_null(pc.equal(events[column], value), False).to_numpy(
                zero_copy_only=False), dtype=bool)

        self.events = events
        self.cycle_starts = cycle_starts
        start = pc.cast(events["start_utc"], TS).cast(pa.int64())
        answer = pc.cast(events["answer_utc"], TS).cast(pa.int64())
        self.at = np.asarray(pc.fill_null(pc.coalesce(answer, start), 0).to_numpy(zero_copy_only=False),
                             dtype=np.int64)  # rating instant: answer time, else start (UTC)
        self.billsec = np.asarray(pc.fill_null(events["billsec"], 0).to_numpy(zero_copy_only=False),
                                  dtype=np.int64)
        self.answered = np.asarray(pc.fill_null(events["answered"], False).to_numpy(zero_copy_only=False),
                                   dtype=bool)
        self.sms = flag("service", "sms")
        # Calls never charged: emergency, and internal calls (extensions, feature codes: no
        # E.164 number a deck could price).
        self.emergency = flag("call_type", "emergency") | flag("call_type", "internal")
        self.international = flag("call_type", "international")
        self.value, self.count = number_digits(events["called_number"])
        self._accounts: tuple[np.ndarray, pa.Array] | None = None

    def accounts(self) -> tuple[np.ndarray, pa.Array]:
        """(account code per event, -1 for none; account ids by code), computed when needed."""
        if self._accounts is None:
            encoded = pc.dictionary_encode(self.events["account_id"].combine_chunks().cast(pa.string()))
            codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
            self._accounts = (np.asarray(codes, dtype=np.int64), encoded.dictionary)
        return self._accounts


class Result:
    """Output arrays of a call, zero-initialised (codes and rows: 0 = null)."""

    def __init__(self, n: int) -> None:
        self.status = np.full(n, STATUS.index("no_plan"), dtype=np.int8)
        self.row = np.zeros(n, dtype=np.int32)
        self.codes = {k: np.zeros(n, dtype=np.int32) for k in LABELLED}
        self.units = np.zeros(n, dtype=np.int64)
        self.covered = np.zeros(n, dtype=np.int64)
        self.charge = np.zeros(n, dtype=np.int64)  # micro-units
        self.discount = np.zeros(n, dtype=np.int64)


def _groups(events: pa.Table, sms: np.ndarray) -> list[tuple[str, str, np.ndarray | slice]]:
    """(plan id, service, rows) groups; a slice when one group holds every row."""
    plan_ids = pc.fill_null(events["plan_id"], "").combine_chunks().cast(pa.string())
    first = plan_ids[0].as_py() if len(plan_ids) else ""
    if pc.all(pc.equal(plan_ids, first)).as_py():
        by_plan: list[tuple[str, np.ndarray | slice]] = [(first, slice(0, len(plan_ids)))]
    else:
        encoded = pc.dictionary_encode(plan_ids)
        codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
        by_plan = [(p, np.flatnonzero(codes == c)) for c, p in enumerate(encoded.dictionary.to_pylist())]
    groups: list[tuple[str, str, np.ndarray | slice]] = []
    for plan_id, rows in by_plan:
        flags = sms[rows]
        if not flags.any() or flags.all():
            groups.append((plan_id, "sms" if flags.any() else "voice", rows))
            continue
        base = np.arange(len(sms)) if isinstance(rows, slice) else rows
        groups += [(plan_id, "voice", base[~flags]), (plan_id, "sms", base[flags])]
    return groups


def _chunks(rows: np.ndarray | slice, n: int) -> Iterator[tuple[slice, np.ndarray | slice]]:
    """(positions within the group, positions in the call) chunk by chunk."""
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))
        if isinstance(rows, slice):
            yield part, slice(rows.start + part.start, rows.start + part.stop)
        else:
            yield part, rows[part]


def rate(events: pa.Table, plans: dict[str, Plan], opening: pd.DataFrame | None = None,
         allowances: bool = True, cycle_starts: CycleStarts | None = None) -> pa.Table:
    """Price `events` (see module doc). `opening` holds allowance units already used earlier
    in a cycle (account_id, cycle, allowance, used); `cycle_starts` the accounts whose cycles
    do not follow the calendar month (bill days)."""
    inputs = Inputs(events, cycle_starts)
    result = Result(events.num_rows)
    labels = {k: Labels() for k in LABELLED}
    registry = Registry()
    for plan_id, service, rows in _groups(events, inputs.sms) if events.num_rows else []:
        if plan_id in plans:
            Pricing(plans[plan_id], service, inputs, rows, result, labels, registry).run(opening, allowances)
    return _assemble(inputs, result, labels, registry)


class Pricing:
    """Prices one plan's events of one service, in chunks, into the call's `Result`."""

    def __init__(self, plan: Plan, service: str, inputs: Inputs, rows: np.ndarray | slice, result: Result,
                 labels: dict[str, Labels], registry: Registry) -> None:
        self.plan, self.service, self.inputs, self.rows, self.result = plan, service, inputs, rows, result
        self.labels = labels
        self.n = rows.stop - rows.start if isinstance(rows, slice) else len(rows)
        self.at = inputs.at[rows]
        self.clock = OffsetTable.build(plan.timezone, self.at)
        self.deck = compiled(plan, service)
        self.base = registry.offset(self.deck) if self.deck is not None else 0
        self.week = np.asarray(plan.week, dtype=np.int16)
        self.band_codes = np.append(labels["band"].many(list(plan.bands)), 0).astype(np.int32)
        n = self.n
        self.row = np.full(n, -1, dtype=np.int32)  # deck row within the deck
        self.prefix = np.full(n, -1, dtype=np.int32)
        self.epoch = np.zeros(n, dtype=np.int32)
        self.cycle = np.zeros(n, dtype=np.int64)
        self.units = np.zeros(n, dtype=np.int64)
        self.allowance = np.full(n, -1, dtype=np.int64)

    def run(self, opening: pd.DataFrame | None, allowances: bool) -> None:
        for local, rows in _chunks(self.rows, self.n):
            self._match(local, rows)
        covered = np.zeros(self.n, dtype=np.int64)
        if allowances and self.plan.allowances and (self.allowance >= 0).any():
            account, accounts = self.inputs.accounts()
            account = account[self.rows]
            self.allowance[account < 0] = -1
            if (self.allowance >= 0).any():
                covered = consume(self.plan, self.allowance, self.units, self.at, self.cycle, account,
                                  accounts, opening)
        for local, rows in _chunks(self.rows, self.n):
            self._charge(local, rows, covered[local])

    def _match(self, p: slice, g: np.ndarray | slice) -> None:
        """Band, deck row, charged units and allowance of a chunk."""
        plan, out, inputs = self.plan, self.result, self.inputs
        at = self.at[p]
        local = self.clock.local(at)
        day = local // 86_400
        cycle = month_start_day(day)  # the cycle's first day (plan-local)
        if self.inputs.cycle_starts:
            account, accounts = self.inputs.accounts()
            cycle = self.inputs.cycle_starts.apply(account[g], accounts.to_pylist(), day, cycle)
        self.cycle[p] = cycle
        present = np.unique(cycle)
        cycle_codes = self.labels["cycle"].many([cycle_label(c) for c in present])
        out.codes["cycle"][g] = cycle_codes[np.searchsorted(present, cycle)]
        out.codes["currency"][g] = self.labels["currency"].code(plan.currency)
        band = self.week[minute_of_week(local)]
        band_slot = np.where(band < 0, len(plan.bands), band)
        out.codes["band"][g] = self.band_codes[band_slot]
        billsec, emergency = inputs.billsec[g], inputs.emergency[g]
        billable = inputs.answered[g] & ((billsec > 0) | (self.service == "sms"))
        status = np.where(billable & ~emergency, STATUS.index("no_rate"), 0).astype(np.int8)
        deck = self.deck
        if deck is None:
            out.status[g] = status
            return
        epoch = (np.searchsorted(deck.epochs, day, side="right") - 1 if len(deck.epochs) > 1
                 else np.where(day >= deck.epochs[0], 0, -1))
        prefix = match_prefix(deck, inputs.value[g], inputs.count[g], day)
        table_row = deck.row_table[np.maximum(prefix, 0), band_slot, np.maximum(epoch, 0)]
        row = np.where(prefix >= 0, table_row, -1)
        charged = billable & ~emergency & (row >= 0)
        status[charged] = 0
        out.status[g] = status
        r = np.maximum(row, 0)
        if self.service == "sms":
            units = charged.astype(np.int64)
        else:
            first_block, step = deck.first[r], deck.step[r]
            blocks = -(-np.maximum(billsec - first_block, 0) // step)
            units = np.where(charged, first_block + blocks * step, 0)
        self.row[p], self.prefix[p], self.epoch[p], self.units[p] = row, prefix, epoch, units
        self.allowance[p] = np.where(charged, deck.allowance[r], -1)

    def _charge(self, p: slice, g: np.ndarray | slice, covered: np.ndarray) -> None:
        """Charge, discount and labels of a chunk, given the allowance units covering it."""
        plan, out, deck = self.plan, self.result, self.deck
        units, row = self.units[p], self.row[p]
        out.units[g] = units
        out.covered[g] = covered
        if deck is None:
            return
        r = np.maximum(row, 0)
        charged = (out.status[g] == 0) & (units > 0)
        uncovered = units - covered
        pay = charged & (uncovered > 0)
        if pay.any():
            _check_no_overflow(deck, uncovered[pay], self.service)
        if self.service == "voice" and plan.band_rule == "split" and pay.any():
            unrated = np.zeros(len(row), dtype=bool)
            numerator, per_band = split_charges(plan, deck, self.clock, self.prefix[p], self.epoch[p],
                                                self.at[p] + covered, uncovered, pay, unrated)
            if unrated.any():  # a band of the call has neither its own row nor a fallback
                out.status[g] = np.where(unrated, STATUS.index("no_rate"), out.status[g])
                row = np.where(unrated, -1, row)
                pay &= ~unrated
            numerator = np.where(pay, numerator + deck.connect[r] * 60, 0)
            text = split_labels(plan, per_band)
            multi = np.flatnonzero(text != None)  # noqa: E711
            codes = np.zeros(len(row), dtype=np.int32)
            codes[multi] = self.labels["band_split"].many(list(text[multi]))
            out.codes["band_split"][g] = codes
        else:
            per_unit = uncovered if self.service == "voice" else uncovered * 60
            numerator = np.where(pay, deck.connect[r] * 60 + deck.rate[r] * per_unit, 0)
        charge = _round(numerator, 60 * 10 ** (MICRO_SCALE - plan.rating_decimals), plan.rounding)
        discount, names = _discounts(plan, self.service, charge, self.inputs.international[g],
                                     self.labels["discount_name"])
        scale = 10 ** (MICRO_SCALE - plan.rating_decimals)
        out.charge[g] = charge * scale
        out.discount[g] = discount * scale
        out.codes["discount_name"][g] = names
        out.row[g] = np.where(row >= 0, row + self.base, 0)
        allowance_codes = np.append(self.labels["allowance"].many([a.name for a in plan.allowances]), 0)
        out.codes["allowance"][g] = np.where(covered > 0, allowance_codes[self.allowance[p]], 0)


def _discounts(plan: Plan, service: str, charge: np.ndarray, international: np.ndarray,
               labels: Labels) -> tuple[np.ndarray, np.ndarray]:
    """Each plan discount as its own amount (rounded per event with the plan's rounding)."""
    total = np.zeros(len(charge), dtype=np.int64)
    codes = np.zeros(len(charge), dtype=np.int32)
    if not plan.discounts:
        return total, codes
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
    for combo in np.unique(applied):
        if combo:
            name = "; ".join(d.name for k, d in enumerate(plan.discounts) if int(combo) >> k & 1)
            codes[applied == combo] = labels.code(name)
    return total, codes


def _assemble(inputs: Inputs, out: Result, labels: dict[str, Labels], registry: Registry) -> pa.Table:
    rated = out.status == 0
    deck = registry.columns(out.row)
    out.row = None  # type: ignore[assignment]  # free as we go: the output is large
    columns: dict[str, pa.Array] = {
        "status": pa.DictionaryArray.from_arrays(pa.array(out.status.astype(np.int32)), pa.array(STATUS)),
        "rated_at": pa.array(inputs.at, pa.int64()).cast(TS),
        **{k: labels[k].column(out.codes.pop(k)) for k in LABELLED},
        **deck,
        "charged_units": pa.array(out.units, pa.int64(), mask=~rated),
        "allowance_used": pa.array(out.covered, pa.int64(), mask=~rated),
        "charge": to_decimal(out.charge, rated),
        "discount": to_decimal(out.discount, rated),
    }
    columns["final_charge"] = to_decimal(out.charge - out.discount, rated)
    return pa.table({name: columns[name] for name in OUTPUT_SCHEMA.names})
