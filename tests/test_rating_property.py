"""Property: the vectorized engine prices exactly like the per-event reference implementation,
on random decks (prefixes up to 8 digits, bands, effective dates, increments), random plans
(band rule, rounding, decimals, allowances, discounts) and random calls across a DST change."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squak_pipelines.rating import engine, reference
from squak_pipelines.rating.engine import rate
from tests.rating_helpers import DECK_HEADER, events, plan_at

INCREMENTS = ["60/60", "30/6", "1/1", "0/1", "6/6", "60/1"]
DATES = ["", "2026-10-01", "2026-10-28", "2026-11-01"]
BASE = datetime(2026, 10, 26, tzinfo=UTC)  # a week that contains the end of US DST

deck_row = st.tuples(
    st.text("129", min_size=1, max_size=8),  # prefix
    st.sampled_from(["A", "B", "C"]),  # destination
    st.integers(0, 5000),  # rate in 1/10,000
    st.sampled_from([0, 0, 250]),  # connect fee in 1/10,000
    st.sampled_from(INCREMENTS),
    st.sampled_from(DATES),
    st.sampled_from(["", "", "peak", "evening"]),
    st.sampled_from(["voice", "voice", "sms"]),
)
call = st.tuples(
    st.text("129", min_size=0, max_size=15),  # digits of the called number
    st.integers(0, 8 * 86400),  # seconds after BASE
    st.sampled_from([0, 1, 5, 59, 61, 125, 900, 1800]),
    st.booleans(),  # answered
    st.sampled_from(["voice", "voice", "sms"]),
    st.sampled_from(["A", "B"]),
    st.sampled_from(["national", "international"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(deck_row, min_size=1, max_size=25), calls=st.lists(call, min_size=1, max_size=25),
       band_rule=st.sampled_from(["start", "split"]), rounding=st.sampled_from(["half_up", "up", "down"]),
       decimals=st.integers(2, 6), minutes=st.integers(0, 20), otherwise=st.booleans(),
       percent=st.sampled_from(["0", "5", "12.5"]))
def test_engine_equals_reference(rows, calls, band_rule, rounding, decimals, minutes, otherwise,
                                 percent) -> None:
    seen, lines = set(), []
    for prefix, dest, rate_, connect, inc, eff, band, service in rows:
        if (service, prefix, band, eff) in seen:
            continue
        seen.add((service, prefix, band, eff))
        price = f"{rate_ / 10000:.4f},{connect / 10000:.4f}"
        lines.append(f"{prefix},{dest},{price},{inc},{eff},{band},{service}")
    bands = [{"name": "peak", "windows": ["Mon-Fri 08:00-18:00"]},
             {"name": "evening", "windows": ["Mon-Fri 18:00-22:00", "Sun 01:00-02:00"]}]
    if otherwise:
        bands.append({"name": "offpeak", "otherwise": True})
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_at(Path(tmp), deck=DECK_HEADER + "\n" + "\n".join(lines) + "\n", band_rule=band_rule,
                       rounding=rounding, rating_decimals=decimals, time_bands=bands,
                       allowances=[{"name": "bundle", "service": "voice", "minutes": minutes,
                                    "destinations": ["A", "C*"]},
                                   {"name": "texts", "service": "sms", "messages": minutes % 3}],
                       discounts=[{"name": "intl", "applies_to": "international_usage", "percent": percent}])
    specs = [{"called": ("+" + d) if d else "112", "billsec": b, "answered": a and (b > 0 or s == "sms"),
              "service": s, "account": acct, "call_type": ct,
              "at": (BASE + timedelta(seconds=t)).isoformat()}
             for d, t, b, a, s, acct, ct in calls]
    got = rate(events(specs), {"T": plan}).to_pylist()
    saved, engine.CHUNK = engine.CHUNK, 3  # chunked pricing gives the same answer
    try:
        assert rate(events(specs), {"T": plan}).to_pylist() == got
    finally:
        engine.CHUNK = saved
    want = reference.rate_events([
        reference.Event(str(i), s["service"], s["called"], datetime.fromisoformat(s["at"]), s["billsec"],
                        s["answered"], s["call_type"], s["account"]) for i, s in enumerate(specs)], plan)
    for spec, g, w in zip(specs, got, want, strict=True):
        assert g["status"] == w.status, spec
        if w.status == "rated":
            assert (g["charge"], g["discount"], g["allowance_used"], g["charged_units"]) == (
                w.charge, w.discount, w.covered, w.units), spec
            assert g["cycle"] == w.cycle
