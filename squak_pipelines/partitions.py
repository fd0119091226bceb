"""Dagster's partitions on Squak's clock: daily CDR days through today, and billing months
through the last month that has ended (the UI's latest partition). With `SQUAK_TODAY` set they
end at that date, not the machine's."""

from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

from squak_pipelines import clock


def daily() -> dg.DailyPartitionsDefinition:
    start = clock.first_cdr_day().isoformat()
    if clock.is_set():
        return dg.DailyPartitionsDefinition(start_date=start,
                                            end_date=(clock.today() + timedelta(days=1)).isoformat())
    return dg.DailyPartitionsDefinition(start_date=start, end_offset=1)


def monthly() -> dg.MonthlyPartitionsDefinition:
    start = os.environ.get("SQUAK_FIRST_CYCLE", "2025-01-01")
    if clock.is_set():
        return dg.MonthlyPartitionsDefinition(start_date=start,
                                              end_date=clock.today().replace(day=1).isoformat())
    return dg.MonthlyPartitionsDefinition(start_date=start, end_offset=0)
