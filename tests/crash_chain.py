"""The billing chain run stage by stage in one process (no Dagster, no dbt), as the crash
tests drive it: every stage is safe to run again, so the chain is simply run again after a
crash. Run as `python -m tests.crash_chain` with SQUAK_DATA_DIR (and SQUAK_FAULT) set."""

from __future__ import annotations

import json
from datetime import date

from squak_pipelines.config import Settings
from squak_pipelines.demo.payments import write_demo_payments
from squak_pipelines.invoicing.delivery import deliver_cycle
from squak_pipelines.invoicing.stage import bill_cycle, cycles_to_bill, write_documents
from squak_pipelines.mediation.stage import mediate, mediated_days
from squak_pipelines.orders.stage import run_order_stage
from squak_pipelines.payments.stage import run_payments
from squak_pipelines.rating.stage import rate_days
from squak_pipelines.warehouse import open_warehouse


def main() -> None:
    settings = Settings.from_env()
    warehouse = open_warehouse(settings)
    month = json.loads((settings.data_dir / "demo" / "manifest.json").read_text())["options"]["month"]
    run_order_stage(warehouse, settings)
    mediate(warehouse, settings)
    rate_days(warehouse, settings, [date.fromisoformat(d) for d in mediated_days(warehouse)])
    if month in cycles_to_bill(warehouse, settings):
        bill_cycle(warehouse, settings, month, finalize=True, documents=False)
    write_documents(warehouse, settings, month)
    deliver_cycle(warehouse, settings, month)
    if not any(settings.payments_drop_dir.glob("*")) if settings.payments_drop_dir.exists() else True:
        write_demo_payments(warehouse, settings)
    run_payments(warehouse, settings)


if __name__ == "__main__":
    main()
