"""Progress of long work: drawn by `squak run` as it happens, and recorded in the Dagster run's
log through the shipped dagster.yaml."""

from __future__ import annotations

import io
import logging

import dagster as dg
import yaml

from squak_pipelines.config import Settings
from squak_pipelines.instance import instance_yaml
from squak_pipelines.progress import LOGGER, Progress, ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drawn(stream: io.StringIO, total: int) -> str:
    bar = ProgressBar(stream)
    LOGGER.addHandler(bar)
    LOGGER.setLevel(logging.INFO)
    try:
        progress = Progress("final invoices", total, "invoices", every=0)
        for _ in range(total):
            progress.advance()
    finally:
        LOGGER.removeHandler(bar)
        bar.close()
    return stream.getvalue()


def test_a_pipe_gets_a_line_a_quarter_and_a_terminal_one_bar_redrawn() -> None:
    lines = _drawn(io.StringIO(), 100).splitlines()
    assert [line.strip() for line in lines] == [
        f"final invoices: {n}/100 invoices" for n in (1, 25, 50, 75, 100)]
    drawn = _drawn(_Terminal(), 10)
    assert drawn.count("\r") == 10 and drawn.endswith("] 10/10 invoices\x1b[K\n")
    assert "[" + "#" * 28 + "]" in drawn


def test_the_run_log_records_the_progress(tmp_path) -> None:
    @dg.asset
    def busy() -> None:
        progress = Progress("documents", 3, "invoices", every=0)
        for _ in range(3):
            progress.advance()

    settings = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path)})
    overrides = {k: v for k, v in yaml.safe_load(instance_yaml(settings)).items() if k == "python_logs"}
    with dg.instance_for_test(overrides=overrides) as instance:
        result = dg.materialize([busy], instance=instance)
        messages = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]
    assert "documents: 3/3 invoices" in " ".join(messages)
