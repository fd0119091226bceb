"""When a record is an answered call: one rule for mediation and for `squak rate` quotes.

A call is answered when the switch wrote an answer time and a positive billsec, and its
disposition does not say otherwise (NO ANSWER, BUSY, FAILED: a switch that states the call
was not answered is believed, whatever billsec says). A message is answered when delivered (or
when no disposition is given).
FreeSWITCH's disposition is derived from the hangup cause, so only its answer time and
billsec count (a call answered and then timed out is still answered).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

NOT_ANSWERED = ("NO ANSWER", "BUSY", "FAILED", "CONGESTION", "CANCEL")


def answered_mask(service: pa.Array, disposition: pa.Array, answer: pa.Array | None,
                  billsec: pa.Array, derived: bool = False) -> pa.Array:
    """Answered calls and delivered messages. `answer`: the answer times (None when the
    input has no such column: billsec decides); `derived`: the disposition is Squak's reading
    of another field, not the switch's statement (FreeSWITCH)."""
    talked = pc.greater(pc.fill_null(billsec, 0), 0)
    if answer is not None:
        talked = pc.and_(talked, pc.is_valid(answer))
    stated = pc.utf8_upper(pc.fill_null(disposition, ""))
    denied = pc.is_in(stated, value_set=pa.array(NOT_ANSWERED))
    voice = talked if derived else pc.and_(talked, pc.invert(denied))
    sms = pc.equal(pc.fill_null(service, ""), "sms")
    delivered = pc.is_in(stated, value_set=pa.array(["DELIVERED", ""]))
    return pc.if_else(sms, delivered, voice)
